"""Load a GGUF checkpoint one tensor at a time, packing each linear layer as it arrives.

Why: transformers' GGUF path (``from_pretrained(dir, gguf_file=...)``) dequantizes every tensor
into one float state dict first and builds the model from it; with oneDNN's packed linears
(``cpu_linear.py``) the packed copies were then made beside the dense weights. For
SmolLM2-135M (538 MB of fp32) that peaked at 1.45 GB. Here the model is built from its
config, and each GGUF tensor is dequantized, given transformers' own name and layout
(the same ``TensorProcessor`` and name map transformers uses), copied into its parameter or
packed straight into a ``OneDNNLinear``, and dropped, so at most one dequantized tensor
exists beside the model; the file's pages are let go as they are read and freed memory is
handed back to the system (glibc keeps freed blocks otherwise).

The result is the model transformers would build, value for value:
``tests/test_gguf_streaming.py`` compares every tensor with transformers' own load of a GGUF
file written there (and of SmolLM2's file, where that package is installed). Architectures
whose tensor processor merges or splits tensors across several GGUF entries (MoE experts,
GPT-2's fused attention, ...) are not streamed: ``load_gguf_streaming`` returns None and
the caller uses transformers' path.
"""

from __future__ import annotations

import contextlib
import mmap
import warnings
from pathlib import Path
from typing import Any, Callable, Optional

import numpy as np
import torch
from torch import nn

from ..memory import keep_large_blocks_returnable, return_freed_memory_to_the_system, reuse_freed_blocks
from .cpu_linear import OneDNNLinear, pack_all_but_a_tied_head, tied_output_head


def _processor(architecture: str, config: Any) -> Any:
    from transformers.modeling_gguf_pytorch_utils import TENSOR_PROCESSORS, TensorProcessor

    return TENSOR_PROCESSORS.get(architecture, TensorProcessor)(config=config.to_dict())


def streamable(processor: Any) -> bool:
    """Whether every GGUF tensor maps to one parameter on its own (base or Llama processor)."""
    from transformers.modeling_gguf_pytorch_utils import LlamaTensorProcessor, TensorProcessor

    return type(processor) in (TensorProcessor, LlamaTensorProcessor)


def _drop_pages(reader: Any, tensor: Any) -> None:
    """Let the kernel drop the file pages of a tensor already read (they count in RSS)."""
    buffer = getattr(reader.data, "_mmap", None)
    if buffer is None or not hasattr(buffer, "madvise"):
        return
    start = int(tensor.data_offset) // mmap.PAGESIZE * mmap.PAGESIZE
    end = int(tensor.data_offset) + int(tensor.n_bytes)
    try:
        buffer.madvise(mmap.MADV_DONTNEED, start, end - start)
    except (OSError, ValueError):
        pass


def transformers_model(config: Any, dtype: torch.dtype) -> nn.Module:
    """transformers' own model class for ``config``, weights left uninitialised."""
    from transformers import AutoModelForCausalLM

    with _no_random_init():  # every weight is overwritten from the file
        return AutoModelForCausalLM.from_config(config, dtype=dtype)


def load_gguf_streaming(path: Path, config: Any, dtype: torch.dtype, pack_linears: bool,
                        build_model: Callable[[Any, torch.dtype], nn.Module] = transformers_model) -> Optional[nn.Module]:
    """The causal LM of ``config`` with the weights of the GGUF file ``path`` (see the module doc),
    or None when its architecture is not streamable; ``pack_linears`` then packs the plain
    ``nn.Linear`` layers for oneDNN, one at a time (a tied head stays dense: ``cpu_linear.py``).
    ``build_model(config, dtype)`` makes the empty model: transformers' class, or the harness's
    own Llama (``lean_llama.LeanLlamaForCausalLM.empty``, which has transformers' parameter
    names, so the same tensor map applies).
    Raises ValueError naming the tensor or parameter when the file has a tensor the model lacks, of another shape, or leaves a parameter unset."""
    import gc

    from gguf import GGUFReader, dequantize
    from transformers.modeling_gguf_pytorch_utils import get_gguf_hf_weights_map, read_field

    keep_large_blocks_returnable()
    reader = GGUFReader(str(path))
    processor = _processor(read_field(reader, "general.architecture")[0], config)
    if not streamable(processor):
        return None
    # The metadata (the tokenizer's vocabulary and merges, read already) is 160 MB of small
    # objects for SmolLM2; only the tensor table is needed from here on.
    reader.fields.clear()
    for tensor in reader.tensors:
        if hasattr(tensor.field, "parts"):
            tensor.field.parts.clear()
    gc.collect()
    return_freed_memory_to_the_system()
    model = build_model(config, dtype)
    mapping = get_gguf_hf_weights_map(model, processor)
    owners = _parameter_owners(model)
    head = tied_output_head(model)
    unloaded = {module_name: {a for a, _ in module.named_parameters(recurse=False)}
                for module_name, module in model.named_modules() if pack_linears and type(module) is nn.Linear and module is not head}
    loaded: set[str] = set()
    for tensor in reader.tensors:
        weights = dequantize(tensor.data, tensor.tensor_type)
        result = processor.process(weights=weights, name=tensor.name, tensor_key_mapping=mapping, parsed_parameters={})
        if result.name not in mapping:
            _drop_pages(reader, tensor)
            continue  # transformers skips these too (e.g. rope frequency tables it recomputes)
        name = mapping[result.name]
        if name not in owners:
            raise ValueError(f"{path}: tensor {tensor.name} maps to {name}, which the model does not have")
        module_name, module, attribute = owners[name]
        with warnings.catch_warnings():  # a float32 tensor is a read-only view of the file: only read here
            warnings.filterwarnings("ignore", message="The given NumPy array is not writable")
            values = torch.from_numpy(np.ascontiguousarray(result.weights))
        target = getattr(module, attribute)
        if tuple(values.shape) != tuple(target.shape):
            raise ValueError(f"{path}: tensor {tensor.name} has shape {tuple(values.shape)}, "
                             f"the model's {name} {tuple(target.shape)}")
        with torch.no_grad():
            target.copy_(values)
        _drop_pages(reader, tensor)
        del values, weights, result, target
        loaded.add(name)
        if module_name in unloaded:
            unloaded[module_name].discard(attribute)
            if not unloaded[module_name]:
                del unloaded[module_name]
                _pack_now(model, module_name, owners)
        del module
    del owners  # it holds modules: a dense weight cannot be freed while it is listed here
    _check_complete(model, loaded, path)
    model.tie_weights()
    model.eval()
    if pack_linears:  # what the loop could not pack yet (a linear with a parameter loaded under a tied name)
        pack_all_but_a_tied_head(model)
    del reader
    return_freed_memory_to_the_system()
    reuse_freed_blocks()
    return model


def _no_random_init() -> Any:
    try:
        from transformers.initialization import no_init_weights
    except ImportError:  # older transformers: random init, slower but the same result
        return contextlib.nullcontext()
    return no_init_weights()


def _pack_now(model: nn.Module, module_name: str, owners: dict[str, tuple[str, nn.Module, str]]) -> None:
    """Replace the fully loaded linear ``module_name`` by its packed form at once and forget the
    dense module, so its weight is freed before the next tensor is read: the dense linears
    never all exist at once (packing after the load peaked 65 MB higher on SmolLM2)."""
    parent_name, _, child_name = module_name.rpartition(".")
    parent = model.get_submodule(parent_name) if parent_name else model
    layer = getattr(parent, child_name)
    setattr(parent, child_name, OneDNNLinear(layer.weight, layer.bias))
    for attribute in ("weight", "bias"):
        owners.pop(f"{module_name}.{attribute}", None)


def _parameter_owners(model: nn.Module) -> dict[str, tuple[str, nn.Module, str]]:
    """state_dict name -> (module name, module, attribute) for parameters and persistent buffers."""
    owners: dict[str, tuple[str, nn.Module, str]] = {}
    for module_name, module in model.named_modules(remove_duplicate=False):
        prefix = f"{module_name}." if module_name else ""
        for attribute, _ in module.named_parameters(recurse=False):
            owners[prefix + attribute] = (module_name, module, attribute)
        for attribute, _ in module.named_buffers(recurse=False):
            if attribute not in module._non_persistent_buffers_set:
                owners[prefix + attribute] = (module_name, module, attribute)
    return owners


def _check_complete(model: nn.Module, loaded: set[str], path: Path) -> None:
    tied = set(getattr(model, "_tied_weights_keys", None) or ())  # a list, or (transformers 5) a dict keyed by name
    missing = [name for name in model.state_dict() if name not in loaded and name not in tied]
    if missing:
        raise ValueError(f"{path}: the GGUF file has no tensor for {', '.join(missing[:5])}"
                         f"{' and more' if len(missing) > 5 else ''}")
