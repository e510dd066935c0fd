"""Data parallelism at the one seam every task goes through: the scorer's request methods.

A task hands the scorer all requests of one data file at once (``api.Scorer``), so the
split happens here and tasks, metrics and aggregation never learn about ranks:

1. The requests are dealt over the data-parallel ranks like the reference's
   non-shuffling ``DistributedSampler``: rank r of W takes requests r, r + W, r + 2W, ...
   (strided, so that each share has the same mix of long and short items when a file is
   sorted by length). The split depends only on the request index and W.
2. Each rank scores its share with its own backend, which batches it as it likes (the
   GLM scorer by micro-batch, the HF scorer by token budget).
3. The shares are all-gathered over the data-parallel group and put back in request order.
   Objects of any length are gathered, so no share is padded and there are no duplicates
   to drop (the reference padded its sampler by repeating indices, then truncated).

Every rank of a model-parallel group holds the same data-parallel rank, so it scores the
same share in lockstep with its peers, as tensor parallelism requires.
"""

from __future__ import annotations

from typing import Any, Sequence, TypeVar

from ..scoring.api import BatchResults, Progress, Scorer
from ..scoring.wrapper import Compute, ScorerWrapper
from .groups import ParallelContext

T = TypeVar("T")


def shard_indices(count: int, rank: int, size: int) -> range:
    """Request indices that data-parallel rank ``rank`` of ``size`` scores."""
    if not 0 <= rank < size:
        raise ValueError(f"data-parallel rank {rank} outside 0..{size - 1}")
    return range(rank, count, size)


def merge_shards(shards: Sequence[Sequence[T]], count: int) -> list[T]:
    """Inverse of :func:`shard_indices`: request i is item i // W of rank i % W's share."""
    size = len(shards)
    for rank, shard in enumerate(shards):
        expected = len(shard_indices(count, rank, size))
        if len(shard) != expected:
            raise RuntimeError(f"data-parallel rank {rank} returned {len(shard)} results for {expected} requests")
    return [shards[i % size][i // size] for i in range(count)]


class _SharedProgress:
    """Rank 0's bar stands for the whole file: each local request counts W times (the
    shares are within one request of each other), and the gather tops it up exactly."""

    def __init__(self, progress: Progress, scale: int, count: int) -> None:
        self.progress, self.scale, self.count = progress, scale, count
        self.reported = 0

    def __call__(self, finished: int) -> None:
        if self.progress is not None:
            step = min(finished * self.scale, self.count - self.reported)
            if step > 0:
                self.progress(step)
                self.reported += step

    def complete(self) -> None:
        if self.progress is not None and self.reported < self.count:
            self.progress(self.count - self.reported)


LABELS = {"cond_log_prob": "multiple-choice", "continuation_scores": "continuation", "calculate_loss": "language-model",
          "generate_text": "generation"}


class DataParallelScorer(ScorerWrapper):
    """``api.Scorer`` over a backend scorer and a :class:`ParallelContext` (see the module doc)."""

    def __init__(self, inner: Scorer, context: ParallelContext, watchdog: Any = None) -> None:
        super().__init__(inner)
        self.context = context
        self.watchdog = watchdog

    def _call(self, method: str, requests: Sequence[Any], options: Any, settings: Any, progress: Progress,
              on_batch: BatchResults, compute: Compute) -> list[Any]:
        count, size, rank = len(requests), self.context.data_parallel_size, self.context.data_parallel_rank
        indices = shard_indices(count, rank, size)
        mine = [requests[i] for i in indices]
        shared = _SharedProgress(progress, size, count)
        # Each rank hears of its own batches, with indices into the whole request list.
        local_batches = None if on_batch is None else (lambda done, results: on_batch([indices[j] for j in done], results))
        local = compute(mine, shared, local_batches) if mine else []
        if len(local) != len(mine):
            raise RuntimeError(f"the scorer returned {len(local)} results for {len(mine)} requests")
        if self.watchdog is not None:
            self.watchdog.mark(f"gather of {count} {LABELS[method]} results")
        merged = merge_shards(self.context.gather_data_parallel(local), count)
        shared.complete()
        return merged
