"""Faster fp32 linear layers on CPU: oneDNN with weights packed once, instead of MKL's sgemm.

Why this exists: on CPU, torch's fp32 ``F.linear`` calls MKL's sgemm. On the AMD EPYC
(AVX-512) machines this project runs on, that gives 140-180 GFLOP/s at 2 threads. oneDNN
(shipped inside torch, as ``torch.ops.mkldnn``) does the same fp32 products at 300-400
GFLOP/s once the weight has been reordered into its blocked layout
(``benchmarks/cpu_linear.py`` prints both rates). The weight is reordered once, at load
time; every forward then calls ``_linear_pointwise`` on it. This is the path torch's own
compiler (inductor with freezing) takes for CPU linears.

Numbers: both paths multiply and accumulate in fp32. Only the summation order differs, so
outputs differ by fp32 rounding (about 1e-6 relative per layer); there is no reduced
precision (no bf16 or TF32). ``tests/test_cpu_linear.py`` checks single layers and
whole-model scores against the plain path.

The ops are private to torch (pinned here to 2.13.0). ``onednn_available()`` therefore
checks them on a small product before anything relies on them. ``--cpu-linear auto``
falls back to torch's path when the check fails; ``--cpu-linear onednn`` makes that an
error.
"""

from __future__ import annotations

import argparse
import functools
import sys
from typing import Callable, Optional

import torch
import torch.nn.functional as F
from torch import nn

from ..memory import bound_onednn_primitive_caches, keep_large_blocks_returnable, return_freed_memory_to_the_system, reuse_freed_blocks

# Before the first oneDNN primitive (``onednn_available`` makes one): see memory.py.
bound_onednn_primitive_caches()

CPU_LINEAR_CHOICES = ("auto", "onednn", "torch")
# The batch-size hint given to oneDNN's weight reorder. Measured: it changes speed by a few
# percent at most, for any number of input rows (1 to 4096), so one value serves scoring
# batches and one-token generation steps alike.
BATCH_HINT = 1024
_CHECK_TOLERANCE = 1e-4


def add_cpu_linear_argument(parser: argparse.ArgumentParser) -> None:
    """``--cpu-linear``: which fp32 matmul the linear layers use on CPU (both backends)."""
    parser.add_argument("--cpu-linear", choices=CPU_LINEAR_CHOICES, default="auto",
                        help="fp32 linear layers on CPU: 'onednn' packs each weight once for oneDNN "
                             "(about 2x torch's MKL matmul on AVX-512 CPUs; same fp32 arithmetic), 'torch' keeps "
                             "torch's F.linear, 'auto' (default) = onednn on CPU in fp32 when it works, else torch")


def _linear_ops_present() -> bool:
    return (torch.backends.mkldnn.is_available() and hasattr(torch.ops.mkldnn, "_reorder_linear_weight")
            and hasattr(torch.ops.mkldnn, "_linear_pointwise"))


@functools.cache
def onednn_available() -> bool:
    """True when oneDNN's packed linear exists in this torch build and agrees with
    ``F.linear`` on a small random product (with and without bias, 2D and 3D input)."""
    if not _linear_ops_present():
        return False
    generator = torch.Generator().manual_seed(0)
    weight = torch.randn(24, 40, generator=generator)
    bias = torch.randn(24, generator=generator)
    inputs = torch.randn(2, 5, 40, generator=generator)
    try:
        with torch.no_grad():
            layer = OneDNNLinear(weight, bias)
            ok_3d = torch.allclose(layer(inputs), F.linear(inputs, weight, bias), atol=_CHECK_TOLERANCE, rtol=_CHECK_TOLERANCE)
            plain = OneDNNLinear(weight, None)
            ok_2d = torch.allclose(plain(inputs[0]), F.linear(inputs[0], weight), atol=_CHECK_TOLERANCE, rtol=_CHECK_TOLERANCE)
    except (RuntimeError, TypeError):
        return False
    return bool(ok_3d and ok_2d)


def resolve_cpu_linear(choice: str, device: str, dtype: str) -> str:
    """'onednn' or 'torch' for this run; an explicit 'onednn' that cannot work is an error
    (raised while the flags are checked, before any weight is read)."""
    if choice not in CPU_LINEAR_CHOICES:
        raise ValueError(f"--cpu-linear must be one of {', '.join(CPU_LINEAR_CHOICES)}, got {choice!r}")
    if choice == "torch":
        return "torch"
    usable = device == "cpu" and dtype == "fp32"
    if choice == "onednn":
        if not usable:
            raise ValueError(f"--cpu-linear onednn applies to fp32 on CPU only (this run: {dtype} on {device}); "
                             "use --cpu-linear auto or torch")
        if not onednn_available():
            raise ValueError("--cpu-linear onednn: this torch build has no working oneDNN linear "
                             "(torch.ops.mkldnn._linear_pointwise); use --cpu-linear torch")
        return "onednn"
    if usable and not onednn_available():
        # Visible, because the run will be about half as fast as the README's figures.
        print("> Note: --cpu-linear auto: this torch build has no working oneDNN linear "
              "(torch.ops.mkldnn._linear_pointwise missing or disagreeing with F.linear); "
              "using F.linear, which is slower on CPU", file=sys.stderr)
        return "torch"
    return "onednn" if usable else "torch"


class OneDNNLinear(nn.Module):
    """``nn.Linear`` for inference on CPU in fp32, with its weight in oneDNN's layout.

    Only the packed weight is kept (the plain one is released when nothing else holds it),
    so the model does not grow; a weight shared with another module (a tied embedding)
    stays there and this layer holds its own packed copy."""

    def __init__(self, weight: torch.Tensor, bias: Optional[torch.Tensor], batch_hint: int = BATCH_HINT) -> None:
        super().__init__()
        if weight.dtype != torch.float32 or weight.device.type != "cpu":
            raise ValueError(f"OneDNNLinear needs an fp32 CPU weight, got {weight.dtype} on {weight.device}")
        self.out_features, self.in_features = weight.shape
        with torch.no_grad():
            self.packed_weight = torch.ops.mkldnn._reorder_linear_weight(weight.detach().contiguous(), batch_hint)
        self.bias = None if bias is None else bias.detach().contiguous()

    def forward(self, inputs: torch.Tensor) -> torch.Tensor:
        if inputs.dtype != torch.float32:
            raise TypeError(f"OneDNNLinear takes fp32 inputs, got {inputs.dtype}")
        return torch.ops.mkldnn._linear_pointwise(inputs.contiguous(), self.packed_weight, self.bias, "none", [], "")

    def __deepcopy__(self, memo: dict) -> "OneDNNLinear":
        # oneDNN tensors have no storage that copy.deepcopy could read: rebuild from the dense weight.
        bias = None if self.bias is None else self.bias.clone()
        return OneDNNLinear(self.packed_weight.to_dense(), bias)

    def extra_repr(self) -> str:
        return f"in_features={self.in_features}, out_features={self.out_features}, bias={self.bias is not None}, onednn"


def pack_linear_layers(model: nn.Module, keep: Callable[[str, nn.Linear], bool] = lambda name, layer: False,
                       after_each: Optional[Callable[[torch.Tensor], object]] = None) -> int:
    """Replace every plain ``nn.Linear`` of ``model`` (fp32, on CPU) by ``OneDNNLinear``,
    in place; ``keep(name, layer)`` exempts layers, and ``after_each(dense_weight)`` runs
    after each replacement (``file_pages.drop_tensor_pages`` for weights that view a mapped file). Subclasses
    of ``nn.Linear`` are left alone: they may compute something else. Returns how many
    layers were replaced.

    One layer at a time, holding no reference to the replaced ones, so each dense weight is
    freed before the next is packed (a list of the modules kept all of them alive until the
    end: +510 MB at the peak on SmolLM2-135M), and glibc is told to return such blocks."""
    keep_large_blocks_returnable()
    targets = [(parent_name, child_name) for parent_name, parent in model.named_modules()
               for child_name, child in parent.named_children() if type(child) is nn.Linear]
    replaced = 0
    for parent_name, child_name in targets:
        parent = model.get_submodule(parent_name) if parent_name else model
        child = getattr(parent, child_name)
        name = f"{parent_name}.{child_name}" if parent_name else child_name
        if keep(name, child) or child.weight.dtype != torch.float32 or child.weight.device.type != "cpu":
            continue
        setattr(parent, child_name, OneDNNLinear(child.weight, child.bias))
        if after_each is not None:
            after_each(child.weight)
        del child
        replaced += 1
    return_freed_memory_to_the_system()
    reuse_freed_blocks()
    return replaced


def tied_output_head(model: nn.Module) -> Optional[nn.Linear]:
    """The model's output head when its weight is the input embedding's (tied), else None."""
    get_out, get_in = getattr(model, "get_output_embeddings", None), getattr(model, "get_input_embeddings", None)
    if get_out is None or get_in is None:
        return None
    head, embedding = get_out(), get_in()
    if type(head) is nn.Linear and embedding is not None and head.weight is getattr(embedding, "weight", None):
        return head
    return None


def pack_all_but_a_tied_head(model: nn.Module, after_each: Optional[Callable[[torch.Tensor], object]] = None) -> int:
    """``pack_linear_layers`` leaving a tied output head dense. Why: the embedding keeps the
    dense matrix anyway, so packing the head adds a second copy (113 MB on SmolLM2-135M) that
    scoring barely uses (the head runs on scored rows only); ``pack_head`` adds it when a
    task generates, where the head runs on every row of every step."""
    head = tied_output_head(model)
    return pack_linear_layers(model, keep=lambda name, layer: layer is head, after_each=after_each)


def pack_head(model: nn.Module) -> bool:
    """Pack a still dense fp32 CPU output head for oneDNN (True when it did)."""
    head = model.get_output_embeddings() if hasattr(model, "get_output_embeddings") else None
    if type(head) is not nn.Linear or head.weight.dtype != torch.float32 or head.weight.device.type != "cpu":
        return False
    model.set_output_embeddings(OneDNNLinear(head.weight, head.bias))
    return True
