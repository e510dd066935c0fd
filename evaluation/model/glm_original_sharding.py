"""Tensor-parallel sharding rules of original-GLM checkpoints (THUDM/GLM's Megatron ``mpu``).

They differ from GLM-130B's (``sharding.py``) in two places:

* ``query_key_value`` is ``ColumnParallelLinear(h, 3h, stride=3)`` over Megatron's
  [all q | all k | all v] layout, so rank r holds [q_r; k_r; v_r] (its heads' rows of each of
  the three) and shards merge as [q_0; q_1; ...; k_0; k_1; ...; v_0; v_1; ...] (THUDM/GLM's
  ``change_mp.py``). Splitting the fused weight in plain halves would give rank 0 all of q and
  half of k: wrong heads, wrong everything.
* ``dense_h_to_4h`` is a plain column-parallel GELU layer (no GeGLU halves).

The rest is Megatron's usual: ``word_embeddings`` vocabulary-parallel (dim 0), ``attention.dense``
and ``dense_4h_to_h`` weights row-parallel (dim 1), position and block-position tables,
layernorms and the row-parallel biases replicated.
"""

from __future__ import annotations

from typing import Literal, Mapping

import torch

Kind = Literal["qkv", "column", "row", "replicated"]


def original_shard_kind(key: str) -> Kind:
    if ".query_key_value." in key:
        return "qkv"
    if key == "word_embeddings.weight" or ".dense_h_to_4h." in key:
        return "column"
    if key.endswith("attention.dense.weight") or key.endswith("dense_4h_to_h.weight"):
        return "row"
    return "replicated"


def original_shard_slice(full: torch.Tensor, key: str, rank: int, size: int) -> torch.Tensor:
    """The part of ``full`` that rank ``rank`` of a ``size``-way model holds."""
    kind = original_shard_kind(key)
    if kind == "replicated" or size == 1:
        return full
    dim = 1 if kind == "row" else 0
    if full.shape[dim] % (size * (3 if kind == "qkv" else 1)):
        raise ValueError(f"{key}: dim {dim} of size {full.shape[dim]} cannot be split {size} ways")
    if kind == "qkv":
        return torch.cat([part.chunk(size, dim=0)[rank] for part in full.chunk(3, dim=0)], dim=0)
    return full.chunk(size, dim=dim)[rank]


def original_merge_parts(key: str, parts: list[torch.Tensor]) -> torch.Tensor:
    """Inverse of ``original_shard_slice``: the full tensor from every rank's part, in rank order."""
    kind = original_shard_kind(key)
    if kind == "replicated" or len(parts) == 1:
        return parts[0]
    if kind == "qkv":
        thirds = [p.chunk(3, dim=0) for p in parts]
        return torch.cat([t[i] for i in range(3) for t in thirds], dim=0)
    return torch.cat(parts, dim=1 if kind == "row" else 0)


def merge_original_states(states: list[Mapping[str, torch.Tensor]], source: str) -> dict[str, torch.Tensor]:
    """One state dict from the ``mp_rank_XX`` shards of a THUDM/GLM checkpoint, in rank order."""
    keys = list(states[0])
    for rank, state in enumerate(states[1:], 1):
        if set(state) != set(keys):
            differ = sorted(set(state) ^ set(keys))
            raise ValueError(f"{source}: shard {rank} has other keys than shard 0: {differ[:5]}")
    return {key: original_merge_parts(key, [s[key] for s in states]) for key in keys}


def split_original_state(state: Mapping[str, torch.Tensor], size: int) -> list[dict[str, torch.Tensor]]:
    """A full state dict -> ``size`` shard state dicts (what an N-way THUDM/GLM run saves)."""
    return [{k: original_shard_slice(v, k, r, size).clone() for k, v in state.items()} for r in range(size)]


def shard_sized_original(model, size: int) -> None:
    """Give an original GLM built on the meta device the layer shapes of one ``size``-way shard,
    in place (the collectives are added by ``distributed/tensor_parallel.parallelize``)."""
    if size == 1:
        return
    from torch import nn

    from .sharding import check_tensor_parallel

    config = model.config
    check_tensor_parallel(config, size)
    hidden, inner = config.hidden_size, config.inner_hidden_size
    device = model.word_embeddings.weight.device
    for layer in model.transformer.layers:
        attention, mlp = layer.attention, layer.mlp
        attention.num_heads = config.num_attention_heads // size
        attention.query_key_value = nn.Linear(hidden, 3 * hidden // size, device=device)
        attention.dense = nn.Linear(hidden // size, hidden, device=device)
        mlp.dense_h_to_4h = nn.Linear(hidden, inner // size, device=device)
        mlp.dense_4h_to_h = nn.Linear(inner // size, hidden, device=device)
    model.word_embeddings = nn.Embedding(config.vocab_size // size, hidden, device=device)
