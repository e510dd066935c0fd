"""Weight-only INT8 / INT4 quantization of the four linear layers of every GLM block.

The rule is GLM-130B's (``quantization/layers.py`` of THUDM/GLM-130B):

* symmetric, one scale per output row: ``scale = absmax(row) / (2^(b-1) - 1)``, rounded
  to fp16 as the reference stores it, and ``q = round(w / scale)``;
* INT4 values are packed two per byte along the input dimension, the first of each pair
  in the high nibble (the reference's ``int4WeightCompression`` kernel);
* ``query_key_value``, ``attention.dense``, ``dense_h_to_4h`` and ``dense_4h_to_h`` are
  quantized; embeddings, layernorms and biases keep the model's float type;
* a pre-quantized checkpoint stores the integer tensor under ``<layer>.weight`` and the
  scales under ``<layer>.weight_scale``.

Row-parallel layers (``attention.dense``, ``dense_4h_to_h``) of an N-way pre-quantized
checkpoint were quantized per shard, so a row carries N scales, one per input segment;
:class:`QuantizedLinear` keeps them (``groups``) so that merging shards changes no value.

Compute: the weight is dequantized to the activation dtype on the activation's device and
multiplied with ``F.linear`` -- on CPU in fp32, on GPU in fp16/bf16. There is no fused
kernel: memory is saved, time is not.
"""

from __future__ import annotations

from pathlib import Path
from typing import Mapping, Optional

import torch
import torch.nn.functional as F
from torch import nn

from .sharding import merge_parts, shard_kind, shard_sized_model

BIT_WIDTHS = (4, 8)
QUANTIZED_LAYERS = ("attention.query_key_value", "attention.dense", "mlp.dense_h_to_4h", "mlp.dense_4h_to_h")
SCALE_SUFFIX = "weight_scale"


def max_level(bits: int) -> int:
    """Largest quantized magnitude: 127 for INT8, 7 for INT4."""
    if bits not in BIT_WIDTHS:
        raise ValueError(f"quantization bit width must be one of {BIT_WIDTHS}, got {bits}")
    return 2 ** (bits - 1) - 1


def pack_int4(values: torch.Tensor) -> torch.Tensor:
    """int8 values in [-7, 7], shape [out, in] -> int8 [out, in / 2]; element 2j in the high nibble."""
    if values.shape[-1] % 2:
        raise ValueError(f"INT4 packing needs an even input dimension, got {values.shape[-1]}")
    as_bytes = values.to(torch.int16) & 0x0F
    packed = (as_bytes[..., 0::2] << 4) | as_bytes[..., 1::2]
    return packed.to(torch.uint8).view(torch.int8)


def unpack_int4(packed: torch.Tensor) -> torch.Tensor:
    """Inverse of :func:`pack_int4`: sign-extended nibbles, int8 [out, 2 * packed_in]."""
    wide = packed.to(torch.int16)
    high = wide >> 4  # arithmetic shift of the signed byte sign-extends the high nibble
    low = ((wide & 0x0F) ^ 0x08) - 0x08
    return torch.stack((high, low), dim=-1).flatten(-2).to(torch.int8)


def quantize_weight(weight: torch.Tensor, bits: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Reference rule for one weight [out, in] -> (int8 tensor, packed for INT4; fp32 scales [out])."""
    levels = max_level(bits)
    w = weight.detach().float()
    scale = (w.abs().amax(dim=-1) / levels).half().float()  # the reference keeps fp16 scales
    safe = torch.where(scale > 0, scale, torch.ones_like(scale))
    q = torch.round(w / safe[:, None]).clamp_(-levels, levels).to(torch.int8)
    return (pack_int4(q) if bits == 4 else q), scale


def dequantize_weight(q: torch.Tensor, scale: torch.Tensor, bits: int, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """int tensor + scales ([out] or [out, groups]) -> float weight [out, in] in ``dtype``."""
    values = unpack_int4(q) if bits == 4 else q
    out, in_features = values.shape
    groups = 1 if scale.dim() == 1 else scale.shape[1]
    grouped = values.view(out, groups, in_features // groups).to(dtype)
    return (grouped * scale.view(out, groups, 1).to(dtype)).view(out, in_features)


class QuantizedLinear(nn.Module):
    """A linear layer holding an INT8/INT4 weight and per-row (per-segment) scales.

    ``weight`` (int8; [out, in] or [out, in/2] packed) and ``weight_scale`` are buffers
    with the reference key names, so the state dict is a pre-quantized checkpoint."""

    def __init__(self, in_features: int, out_features: int, bits: int, groups: int = 1, device: Optional[torch.device] = None) -> None:
        super().__init__()
        max_level(bits)
        self.in_features, self.out_features, self.bits = in_features, out_features, bits
        self.register_buffer("weight", torch.empty(out_features, in_features * bits // 8, dtype=torch.int8, device=device))
        self.register_buffer("weight_scale", torch.empty(0, device=device))
        self.set_groups(groups)
        self.bias = nn.Parameter(torch.empty(out_features, device=device), requires_grad=False)

    @property
    def groups(self) -> int:
        return 1 if self.weight_scale.dim() == 1 else self.weight_scale.shape[1]

    def set_groups(self, groups: int) -> None:
        """Give each row ``groups`` scales (one per input segment of a row-parallel shard)."""
        if self.in_features % groups:
            raise ValueError(f"{self.in_features} input features cannot form {groups} scale groups")
        shape = (self.out_features,) if groups == 1 else (self.out_features, groups)
        self.weight_scale = torch.empty(shape, dtype=torch.float32, device=self.weight.device)

    @classmethod
    def from_linear(cls, linear: nn.Linear, bits: int) -> "QuantizedLinear":
        layer = cls(linear.in_features, linear.out_features, bits, device=linear.weight.device)
        q, scale = quantize_weight(linear.weight, bits)
        with torch.no_grad():
            layer.weight.copy_(q)
            layer.weight_scale = scale.to(linear.weight.device)
            layer.bias.copy_(linear.bias)
        return layer

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        weight = dequantize_weight(self.weight, self.weight_scale, self.bits, x.dtype)
        return F.linear(x, weight, self.bias)

    def extra_repr(self) -> str:
        return f"in_features={self.in_features}, out_features={self.out_features}, bits={self.bits}, groups={self.groups}"


def quantized_layer_names(model: nn.Module) -> list[str]:
    """Module names of the linear layers that quantization replaces."""
    return [name for name, module in model.named_modules()
            if isinstance(module, (nn.Linear, QuantizedLinear)) and name.endswith(QUANTIZED_LAYERS)]


def _replace(model: nn.Module, name: str, new: nn.Module) -> None:
    parent_name, _, child = name.rpartition(".")
    setattr(model.get_submodule(parent_name), child, new)


def quantize_model(model: nn.Module, bits: int) -> nn.Module:
    """Quantize a loaded float model in place (the reference's quantize-after-load)."""
    for name in quantized_layer_names(model):
        layer = model.get_submodule(name)
        if isinstance(layer, nn.Linear):
            _replace(model, name, QuantizedLinear.from_linear(layer, bits))
    return model


def make_quantized_structure(model: nn.Module, bits: int) -> nn.Module:
    """Swap the layers for empty quantized ones (no float weight is ever allocated)."""
    for name in quantized_layer_names(model):
        layer = model.get_submodule(name)
        _replace(model, name, QuantizedLinear(layer.in_features, layer.out_features, bits, device=layer.weight.device))
    return model


def checkpoint_bit_width(state: Mapping[str, torch.Tensor], model: nn.Module) -> Optional[int]:
    """Bit width of a pre-quantized (shard) state dict, or None for a float checkpoint.

    Read from the first quantized layer, a column-parallel ``query_key_value`` whose input
    dimension is whole in every shard: int8 columns = in_features * bits / 8."""
    name = quantized_layer_names(model)[0]
    if f"{name}.{SCALE_SUFFIX}" not in state:
        return None
    tensor = state[f"{name}.weight"]
    in_features = model.get_submodule(name).in_features
    bits = 8 * tensor.shape[1] // in_features
    if tensor.dtype != torch.int8 or bits not in BIT_WIDTHS or tensor.shape[1] * 8 != bits * in_features:
        raise ValueError(f"{name}.weight is {tensor.dtype} {tuple(tensor.shape)}: not an INT8 or INT4 weight "
                         f"for {in_features} input features")
    return bits


def merge_quantized_parts(key: str, parts: list[torch.Tensor]) -> torch.Tensor:
    """Merge one key of a pre-quantized checkpoint: scales of row-parallel layers are
    stacked into [out, shards]; everything else follows the float sharding rules."""
    if key.endswith(SCALE_SUFFIX) and shard_kind(key[: -len(SCALE_SUFFIX)] + "weight") == "row":
        return parts[0] if len(parts) == 1 else torch.stack(parts, dim=1)
    return merge_parts(key, parts)


def quantized_shard(key: str, part: torch.Tensor, bits: int) -> dict[str, torch.Tensor]:
    """The tensors a shard of a pre-quantized checkpoint stores for ``key``, given the
    shard's float ``part``: each shard's slice is quantized on its own, as the reference does."""
    if not (key.endswith(".weight") and key[: -len(".weight")].endswith(QUANTIZED_LAYERS)):
        return {key: part.clone()}
    q, scale = quantize_weight(part, bits)
    return {key: q, key + "_scale": scale.half()}


def load_quantized_checkpoint(model: nn.Module, parts, bits: int) -> None:
    """Fill a model whose layers are :class:`QuantizedLinear` from float or pre-quantized shards.

    ``parts`` (``checkpoint.CheckpointParts``) serves each key for the layout being filled
    (one process, or tensor-parallel rank r of n). Key by key: a float part is read from the
    memory-mapped shard(s), quantized and copied in, so beyond the quantized model only one
    float tensor is resident at a time -- a 16-bit GLM-130B never needs 260 GB of RAM to be
    loaded as INT4. Under tensor parallelism each rank quantizes its own shard, as the
    reference does: row-parallel layers then get one scale per shard segment of a row, so
    quantize-on-load values depend on the tensor-parallel size (a pre-quantized checkpoint
    fixes them). A pre-quantized checkpoint loads as saved at its own size, or merged into
    one process; re-splitting it to another size would need its float weights."""
    quantized = set(quantized_layer_names(model))
    expected = set(model.state_dict())
    present = parts.keys()
    source = parts.first_path
    prequantized = any(k.endswith(SCALE_SUFFIX) for k in present)
    if prequantized and parts.size not in (1, parts.source_size):
        raise ValueError(f"{source}: a pre-quantized {parts.source_size}-way checkpoint loads at tensor-parallel size "
                         f"{parts.source_size} or 1, not {parts.size} (its row-parallel scales belong to its shards); "
                         f"use MP_SIZE={parts.source_size}, or convert the float checkpoint with "
                         f"python -m evaluation.tools.convert_tp IN OUT --tensor-parallel {parts.size} --quantization-bit-width {bits}")
    wanted = expected if prequantized else {k for k in expected if not k.endswith(SCALE_SUFFIX)}
    missing, unexpected = sorted(wanted - present), sorted(present - wanted)
    if missing or unexpected:
        raise ValueError(f"{source}: keys do not match the {'pre-quantized' if prequantized else 'float'} layout "
                         f"of this model; missing {missing[:5]}, unexpected {unexpected[:5]}")

    def merged(key: str) -> torch.Tensor:
        return parts.part(key) if parts.source_size == parts.size else merge_quantized_parts(key, parts.parts(key))

    with torch.no_grad():
        for key, target in model.state_dict().items():
            layer_name = key.rsplit(".", 1)[0]
            if layer_name in quantized and key.endswith(SCALE_SUFFIX):
                continue  # written together with its weight
            if layer_name in quantized and key.endswith(".weight"):
                layer: QuantizedLinear = model.get_submodule(layer_name)
                if prequantized:
                    q, scale = merged(key), merged(key + "_scale")
                    if q.dtype != torch.int8 or q.shape != layer.weight.shape:
                        raise ValueError(f"{source}: {key} is {q.dtype} {tuple(q.shape)}; an INT{bits} checkpoint of this "
                                         f"model stores int8 {tuple(layer.weight.shape)}")
                else:
                    full = parts.part(key)
                    if tuple(full.shape) != (layer.out_features, layer.in_features):
                        raise ValueError(f"{source}: {key} has shape {tuple(full.shape)}, expected "
                                         f"{(layer.out_features, layer.in_features)}")
                    q, scale = quantize_weight(full, bits)
                    del full
                layer.set_groups(1 if scale.dim() == 1 else scale.shape[1])
                layer.weight.copy_(q)
                layer.weight_scale.copy_(scale.float())
                continue
            full = merged(key) if prequantized else parts.part(key)
            if full.shape != target.shape:
                raise ValueError(f"{source}: {key} has shape {tuple(full.shape)}, expected {tuple(target.shape)}")
            target.copy_(full)


def model_bytes(model: nn.Module) -> int:
    """Bytes held by parameters and buffers (what the weights cost in memory)."""
    return sum(t.numel() * t.element_size() for t in [*model.parameters(), *model.buffers()])


def load_quantized_model(config, checkpoint_path: str | Path, bits: Optional[int], rank: int = 0, size: int = 1):
    """Build a GLM (or its tensor-parallel shard ``rank`` of ``size``) with quantized layers
    and fill it from a float or pre-quantized checkpoint.

    ``bits`` None means "whatever the checkpoint is": returns None for a float checkpoint
    (the caller loads it unquantized). A pre-quantized checkpoint whose width differs from
    an explicit ``bits`` is an error rather than a silent re-quantization."""
    from .checkpoint import CheckpointParts  # checkpoint imports the model; keep this module light
    from .glm import GLMModel

    parts = CheckpointParts(checkpoint_path, rank, size)
    with torch.device("meta"):
        model = GLMModel(config)
        shard_sized_model(model, size)
    detected = checkpoint_bit_width(parts.states[0], model)
    if bits is not None and detected is not None and detected != bits:
        raise ValueError(f"{parts.first_path} is pre-quantized to INT{detected}, but INT{bits} was asked for "
                         f"(--quantization-bit-width {detected}, or load the float checkpoint)")
    bits = bits if bits is not None else detected
    if bits is None:
        return None
    make_quantized_structure(model, bits)
    model = model.to_empty(device="cpu")
    load_quantized_checkpoint(model, parts, bits)
    return model
