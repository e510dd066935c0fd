"""Megatron-style tensor parallelism for the GLM network, applied after loading a shard.

The model file (``evaluation/model/glm.py``) stays single-device. A rank builds the network
with shard-sized layers (``model/sharding.py: shard_sized_model``), fills them with its part
of the checkpoint, and :func:`parallelize` then adds the communication, in the layout of
SwissArmyTransformer's ``mpu`` that GLM-130B was trained and evaluated with:

* ``query_key_value`` column-parallel (whole heads per shard: each head's q, k, v rows are
  contiguous), ``dense_h_to_4h`` column-parallel per GeGLU half; both need no
  communication, their outputs stay sharded;
* ``attention.dense`` and ``dense_4h_to_h`` row-parallel: the partial products are summed
  with one all-reduce, then the (replicated) bias is added once;
* the word embedding vocabulary-parallel: each rank looks up the ids in its vocabulary
  range, zeros the others, and an all-reduce assembles the rows;
* the tied output projection vocabulary-parallel: scored rows get their log-probabilities
  from per-shard maxima, sums of exponentials and target logits (three small all-reduces
  over [rows] vectors), so the [rows, vocab] logits are never gathered; generation, which
  needs the whole distribution (beam search, bans), all-gathers the logits of its few rows.

Why plain ``torch.distributed`` collectives and not ``torch.distributed.tensor.parallel``:
the DTensor plans (``ColwiseParallel`` / ``RowwiseParallel``) shard a weight evenly on one
dimension, which splits the fused GeGLU ``dense_h_to_4h`` wrongly (each shard must keep
matching x1/x2 halves), they cannot express the vocabulary-parallel log-softmax above, and
they wrap parameters in DTensors that the INT8/INT4 ``QuantizedLinear`` and the
oneDNN-packed CPU linears do not accept. Here every local weight is an ordinary tensor, so
quantization and packing work per shard unchanged. (The Hugging Face backend does use
transformers' DTensor plans: ``tp_plan="auto"``.)

Summation order: the row-parallel all-reduce adds partial sums in a different order than
one matmul does, so results differ from one process in the last bits (measured in
``tests/test_distributed.py``); the single-process path is untouched.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Optional

import torch
import torch.nn.functional as F
from torch import nn


@dataclass(frozen=True)
class TensorParallelGroup:
    """This rank's place in its model-parallel group."""

    rank: int
    size: int
    group: Any  # torch ProcessGroup


def _all_reduce(tensor: torch.Tensor, tp: TensorParallelGroup, op: Any = None) -> torch.Tensor:
    import torch.distributed as dist

    dist.all_reduce(tensor, op=op or dist.ReduceOp.SUM, group=tp.group)
    return tensor


class RowParallelLinear(nn.Module):
    """A row-parallel layer: ``all_reduce(x_shard @ W_shard^T) + bias``. ``layer`` is the
    shard's linear module (``nn.Linear``, ``QuantizedLinear`` or a oneDNN-packed linear)
    without its bias; the bias is replicated and added after the reduction, once."""

    def __init__(self, layer: nn.Module, tp: TensorParallelGroup) -> None:
        super().__init__()
        bias = getattr(layer, "bias", None)
        self.bias = None if bias is None else nn.Parameter(bias.detach(), requires_grad=False)
        layer.bias = None
        self.layer = layer
        self.tp = tp

    def forward(self, inputs: torch.Tensor) -> torch.Tensor:
        out = _all_reduce(self.layer(inputs), self.tp)
        return out if self.bias is None else out + self.bias


class VocabParallelEmbedding(nn.Module):
    """Rows ``[rank * V/size, (rank + 1) * V/size)`` of the embedding; ids outside give zeros,
    and the all-reduce fills in each id's row from the rank that holds it."""

    def __init__(self, embedding: nn.Embedding, tp: TensorParallelGroup) -> None:
        super().__init__()
        self.weight = embedding.weight
        self.tp = tp
        self.start = tp.rank * embedding.num_embeddings
        self.stop = self.start + embedding.num_embeddings

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        outside = (ids < self.start) | (ids >= self.stop)
        local = (ids - self.start).masked_fill(outside, 0)
        rows = F.embedding(local, self.weight).masked_fill(outside.unsqueeze(-1), 0.0)
        return _all_reduce(rows, self.tp)


def vocab_parallel_target_log_probs(rows: torch.Tensor, target: torch.Tensor, weight_shard: torch.Tensor,
                                    tp: TensorParallelGroup) -> tuple[torch.Tensor, torch.Tensor]:
    """log p(target) and "target is the argmax" at hidden ``rows`` [R, d] from this rank's
    vocabulary shard of the tied output weight, without gathering the [R, V] logits.

    The same quantities as ``log_softmax`` over the full row: the global maximum, the sum of
    exp(logit - maximum) over every shard, and the target's logit from the shard that holds
    it. The argmax is the lowest id reaching the global maximum, as ``torch.argmax`` picks."""
    import torch.distributed as dist

    local = F.linear(rows, weight_shard).float()  # [R, V/size]
    width = local.shape[-1]
    start = tp.rank * width
    local_max, local_arg = local.max(dim=-1)
    global_max = _all_reduce(local_max.clone(), tp, dist.ReduceOp.MAX)
    sum_exp = _all_reduce((local - global_max.unsqueeze(-1)).exp().sum(dim=-1), tp)
    inside = (target >= start) & (target < start + width)
    index = (target - start).clamp(0, width - 1)
    target_logit = torch.where(inside, local.gather(1, index.unsqueeze(1)).squeeze(1), torch.zeros_like(local_max))
    target_logit = _all_reduce(target_logit, tp)
    picked = (target_logit - global_max) - sum_exp.log()
    candidate = torch.where(local_max == global_max, local_arg + start, torch.full_like(local_arg, width * tp.size))
    argmax = _all_reduce(candidate, tp, dist.ReduceOp.MIN)
    return picked, argmax == target


def gather_vocab(local: torch.Tensor, tp: TensorParallelGroup) -> torch.Tensor:
    """[..., V/size] logits of every shard -> [..., V] (vocabulary order = rank order)."""
    import torch.distributed as dist

    parts = [torch.empty_like(local) for _ in range(tp.size)]
    dist.all_gather(parts, local.contiguous(), group=tp.group)
    return torch.cat(parts, dim=-1)


class TensorParallelGLM(nn.Module):
    """A shard of a GLM behind the interface the GLM scorer uses (``config``, the forward,
    ``logits``, ``target_log_probs``). Build with :func:`parallelize`."""

    def __init__(self, model: nn.Module, tp: TensorParallelGroup) -> None:
        super().__init__()
        self.model = model
        self.tp = tp

    @property
    def config(self) -> Any:
        return self.model.config

    def forward(self, input_ids: torch.Tensor, position_ids: torch.Tensor, attention_mask: torch.Tensor,
                past: Optional[list] = None) -> Any:
        return self.model(input_ids, position_ids, attention_mask, past=past)

    def _output_weight(self) -> torch.Tensor:
        return _embedding_owner(self.model).word_embeddings.weight

    def logits(self, hidden: torch.Tensor) -> torch.Tensor:
        """Full-vocabulary logits (all-gathered): for generation's few rows per step."""
        return gather_vocab(F.linear(hidden, self._output_weight()).float(), self.tp)

    def target_log_probs(self, rows: torch.Tensor, target: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return vocab_parallel_target_log_probs(rows, target, self._output_weight(), self.tp)


def _embedding_owner(model: nn.Module) -> nn.Module:
    """Where the tied word embedding lives: ``model.transformer`` in GLM-130B's network,
    ``model`` itself in the original GLM's (THUDM/GLM's key ``word_embeddings.weight``)."""
    return model if hasattr(model, "word_embeddings") else model.transformer


def parallelize(model: nn.Module, tp: TensorParallelGroup) -> TensorParallelGLM:
    """Add the communication of a ``tp.size``-way shard to a loaded shard-sized GLM (in place):
    GLM-130B's network or the original GLM's, whose blocks name their layers alike (the
    original's stride-3 ``query_key_value`` is column-parallel too, each rank holding its
    heads' q, k and v: ``model/glm_original_sharding.py``)."""
    owner = _embedding_owner(model)
    owner.word_embeddings = VocabParallelEmbedding(owner.word_embeddings, tp)
    for layer in model.transformer.layers:
        layer.attention.dense = RowParallelLinear(layer.attention.dense, tp)
        layer.mlp.dense_4h_to_h = RowParallelLinear(layer.mlp.dense_4h_to_h, tp)
    return TensorParallelGLM(model, tp)
