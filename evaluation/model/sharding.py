"""Tensor-parallel sharding rules of GLM-130B checkpoints: merge and split.

The reference (SAT / GLM-130B ``convert_tp``) shards each parameter one of four ways:

* column-parallel, split on dim 0: ``query_key_value`` (weight, bias; whole heads stay
  together because each head's q, k, v rows are contiguous) and the vocab-parallel
  ``word_embeddings.weight``;
* GLU column-parallel: ``mlp.dense_h_to_4h`` (weight, bias) holds [x1; x2]; each half is
  split on dim 0 separately so every shard keeps matching x1/x2 slices;
* row-parallel, split on dim 1: ``attention.dense.weight``, ``mlp.dense_4h_to_h.weight``;
* replicated: layernorms and the biases of the two row-parallel layers.

Loading stays memory-lean: shards are memory-mapped and copied one at a time into the
full-size parameters, so only the model plus one shard is resident.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal, Mapping

import torch

Kind = Literal["column", "glu", "row", "replicated"]


def shard_kind(key: str) -> Kind:
    if key.endswith("word_embeddings.weight") or ".query_key_value." in key:
        return "column"
    if ".dense_h_to_4h." in key:
        return "glu"
    if key.endswith("attention.dense.weight") or key.endswith("dense_4h_to_h.weight"):
        return "row"
    return "replicated"


def shard_slice(full: torch.Tensor, kind: Kind, rank: int, size: int) -> torch.Tensor:
    """The part of ``full`` that tensor-parallel rank ``rank`` of ``size`` holds."""
    if kind == "replicated":
        return full
    if kind == "row":
        return full.chunk(size, dim=1)[rank]
    if kind == "column":
        return full.chunk(size, dim=0)[rank]
    x1, x2 = full.chunk(2, dim=0)
    return torch.cat((x1.chunk(size, dim=0)[rank], x2.chunk(size, dim=0)[rank]), dim=0)


def _check_divisible(key: str, full: torch.Tensor, kind: Kind, size: int) -> None:
    dim = 1 if kind == "row" else 0
    length = full.shape[dim] // (2 if kind == "glu" else 1)
    if kind != "replicated" and length % size:
        raise ValueError(f"{key}: dim {dim} of size {length} cannot be split {size} ways")


def split_state(state: Mapping[str, torch.Tensor], size: int) -> list[dict[str, torch.Tensor]]:
    """A full (1-way) state dict -> ``size`` shard state dicts."""
    for key, tensor in state.items():
        _check_divisible(key, tensor, shard_kind(key), size)
    return [{k: shard_slice(v, shard_kind(k), r, size).clone() for k, v in state.items()} for r in range(size)]


def copy_shard_into(full: Mapping[str, torch.Tensor], shard: Mapping[str, torch.Tensor], rank: int, size: int, source: Path | str = "<shard>") -> None:
    """Write one shard's tensors into their places in the full-size tensors ``full``."""
    missing = sorted(set(full) - set(shard))
    unexpected = sorted(set(shard) - set(full))
    if missing or unexpected:
        raise ValueError(f"{source}: keys do not match the model; missing {missing[:5]}, unexpected {unexpected[:5]}")
    with torch.no_grad():
        for key, part in shard.items():
            kind = shard_kind(key)
            if kind == "glu":
                x1, x2 = full[key].chunk(2, dim=0)
                p1, p2 = part.chunk(2, dim=0)
                for half, piece in ((x1, p1), (x2, p2)):
                    _copy(half.chunk(size, dim=0)[rank], piece, key, source)
            else:
                _copy(shard_slice(full[key], kind, rank, size), part, key, source)


def merge_parts(key: str, parts: list[torch.Tensor]) -> torch.Tensor:
    """Inverse of ``shard_slice``: the full tensor from every rank's part, in rank order."""
    kind = shard_kind(key)
    if kind == "replicated" or len(parts) == 1:
        return parts[0]
    if kind == "row":
        return torch.cat(parts, dim=1)
    if kind == "column":
        return torch.cat(parts, dim=0)
    halves = [p.chunk(2, dim=0) for p in parts]
    return torch.cat([h[0] for h in halves] + [h[1] for h in halves], dim=0)


def _copy(destination: torch.Tensor, source_tensor: torch.Tensor, key: str, source: Path | str) -> None:
    if destination.shape != source_tensor.shape:
        raise ValueError(f"{source}: {key} has shape {tuple(source_tensor.shape)}, expected {tuple(destination.shape)} for this shard")
    destination.copy_(source_tensor)
