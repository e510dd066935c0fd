"""Tensor-parallel sharding rules of GLM-130B checkpoints: merge and split.

The reference (SAT / GLM-130B ``convert_tp``) shards each parameter one of four ways:

* column-parallel, split on dim 0: ``query_key_value`` (weight, bias; whole heads stay
  together because each head's q, k, v rows are contiguous) and the vocab-parallel
  ``word_embeddings.weight``;
* GLU column-parallel: ``mlp.dense_h_to_4h`` (weight, bias) holds [x1; x2]; each half is
  split on dim 0 separately so every shard keeps matching x1/x2 slices;
* row-parallel, split on dim 1: ``attention.dense.weight``, ``mlp.dense_4h_to_h.weight``;
* replicated: layernorms and the biases of the two row-parallel layers.

Loading stays memory-lean: shards are memory-mapped, and each parameter's part for the
layout being filled (one process, or one tensor-parallel rank) is cut from the overlapping
slices only (``resplit_part``), so beyond the model one parameter's worth is resident.
"""

from __future__ import annotations

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


def _range_of_parts(parts: list[torch.Tensor], dim: int, rank: int, size: int, key: str) -> torch.Tensor:
    """Slice ``rank`` of ``size`` along ``dim`` of the concatenation of ``parts``, built from
    the overlapping pieces only (memory-mapped parts are read no further than needed)."""
    total = sum(p.shape[dim] for p in parts)
    if total % size:
        raise ValueError(f"{key}: dim {dim} of size {total} cannot be split {size} ways")
    width = total // size
    start, stop = rank * width, (rank + 1) * width
    pieces, offset = [], 0
    for part in parts:
        low, high = max(offset, start), min(offset + part.shape[dim], stop)
        if low < high:
            pieces.append(part.narrow(dim, low - offset, high - low))
        offset += part.shape[dim]
    return pieces[0] if len(pieces) == 1 else torch.cat(pieces, dim=dim)


def resplit_part(key: str, parts: list[torch.Tensor], rank: int, size: int) -> torch.Tensor:
    """What rank ``rank`` of a ``size``-way model holds for ``key``, from the parts of a
    checkpoint saved ``len(parts)``-way (in rank order), by the rules above: the same
    size reads its own part, size 1 merges, any other size re-splits."""
    kind = shard_kind(key)
    if kind == "replicated":
        return parts[0]
    if len(parts) == size:
        return parts[rank]
    if kind == "glu":
        halves = [p.chunk(2, dim=0) for p in parts]
        return torch.cat((_range_of_parts([h[0] for h in halves], 0, rank, size, key),
                          _range_of_parts([h[1] for h in halves], 0, rank, size, key)), dim=0)
    return _range_of_parts(parts, 1 if kind == "row" else 0, rank, size, key)


def check_tensor_parallel(config, size: int) -> None:
    """A clear error, before anything is loaded, when a model cannot be split ``size`` ways."""
    if size < 1:
        raise ValueError(f"--model-parallel-size must be >= 1, got {size}")
    for what, value in (("num_attention_heads", config.num_attention_heads), ("inner_hidden_size", config.inner_hidden_size),
                        ("vocab_size", config.vocab_size)):
        if value % size:
            raise ValueError(f"--model-parallel-size {size} does not divide {what} = {value} (each shard needs whole heads, "
                             "matching GeGLU halves and an equal part of the vocabulary)")


def shard_sized_model(model, size: int) -> None:
    """Give a GLM built on the meta device the layer shapes of one ``size``-way shard, in
    place: fewer heads and narrower projections, a vocabulary slice (no communication yet;
    ``evaluation/distributed/tensor_parallel.py`` adds it after loading)."""
    if size == 1:
        return
    from torch import nn

    config = model.config
    check_tensor_parallel(config, size)
    hidden, inner = config.hidden_size, config.inner_hidden_size
    device = model.transformer.word_embeddings.weight.device
    for layer in model.transformer.layers:
        attention, mlp = layer.attention, layer.mlp
        attention.num_heads = config.num_attention_heads // size
        attention.query_key_value = nn.Linear(hidden, 3 * hidden // size, device=device)
        attention.dense = nn.Linear(hidden // size, hidden, device=device)
        mlp.dense_h_to_4h = nn.Linear(hidden, 2 * inner // size, device=device)
        mlp.dense_4h_to_h = nn.Linear(inner // size, hidden, device=device)
    model.transformer.word_embeddings = nn.Embedding(config.vocab_size // size, hidden, device=device)


def _copy_overlap(destination: torch.Tensor, part: torch.Tensor, dim: int, source_rank: int, source_size: int,
                  rank: int, size: int, key: str) -> None:
    """Copy the slice that source shard ``source_rank`` of ``source_size`` and target shard
    ``rank`` of ``size`` have in common along ``dim`` (nothing when they do not overlap)."""
    total = part.shape[dim] * source_size
    other = [n for i, n in enumerate(part.shape) if i != dim]
    if total != destination.shape[dim] * size or other != [n for i, n in enumerate(destination.shape) if i != dim]:
        raise ValueError(f"{key} has shape {tuple(part.shape)} in a {source_size}-way checkpoint, which does not fit "
                         f"{tuple(destination.shape)} for rank {rank} of {size} (does the model config match the checkpoint?)")
    source_start, target_start = source_rank * part.shape[dim], rank * destination.shape[dim]
    low = max(source_start, target_start)
    high = min(source_start + part.shape[dim], target_start + destination.shape[dim])
    if low < high:
        destination.narrow(dim, low - target_start, high - low).copy_(part.narrow(dim, low - source_start, high - low))


def copy_part_into(destination: torch.Tensor, part: torch.Tensor, key: str, source_rank: int, source_size: int,
                   rank: int = 0, size: int = 1) -> None:
    """Write what source shard ``source_rank`` (of a ``source_size``-way checkpoint) holds of
    ``key`` into ``destination``, rank ``rank``'s tensor of a ``size``-way model. Called once
    per source shard, this fills every destination, so a loader needs one shard in memory
    at a time whatever the two sizes are."""
    kind = shard_kind(key)
    if kind == "replicated" or source_size == size:
        if kind == "replicated" and source_rank != 0 and source_size != size:
            return  # replicated: written from the first shard already
        if part.shape != destination.shape:
            raise ValueError(f"{key} has shape {tuple(part.shape)}, expected {tuple(destination.shape)}"
                             + (f" for rank {rank} of {size}" if size > 1 else "") + " (does the model config match the checkpoint?)")
        destination.copy_(part)
        return
    if kind == "glu":
        for target_half, source_half in zip(destination.chunk(2, dim=0), part.chunk(2, dim=0)):
            _copy_overlap(target_half, source_half, 0, source_rank, source_size, rank, size, key)
        return
    _copy_overlap(destination, part, 1 if kind == "row" else 0, source_rank, source_size, rank, size, key)
