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

from typing import Any, Callable, Sequence, TypeVar

from ..scoring.api import EncodingOptions, Progress, Scorer
from ..scoring.decoding import DecodingSettings
from .faults import FaultInjector
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

    def __init__(self, progress: Progress, scale: int, count: int, faults: FaultInjector) -> None:
        self.progress, self.scale, self.count, self.faults = progress, scale, count, faults
        self.reported = 0

    def __call__(self, finished: int) -> None:
        if self.progress is not None:
            step = min(finished * self.scale, self.count - self.reported)
            if step > 0:
                self.progress(step)
                self.reported += step
        self.faults.batch_done()

    def complete(self) -> None:
        if self.progress is not None and self.reported < self.count:
            self.progress(self.count - self.reported)


class DataParallelScorer:
    """``api.Scorer`` over a backend scorer and a :class:`ParallelContext` (see the module doc)."""

    def __init__(self, inner: Scorer, context: ParallelContext, watchdog: Any = None, faults: FaultInjector | None = None) -> None:
        self.inner = inner
        self.context = context
        self.watchdog = watchdog
        self.faults = faults or FaultInjector.from_environment(context.rank)

    def __getattr__(self, name: str) -> Any:  # describe(), tokenizer, ...: the backend's own
        return getattr(self.inner, name)

    def _sharded(self, label: str, score: Callable[[list[Any], Progress], list[T]], requests: Sequence[Any],
                 progress: Progress) -> list[T]:
        count, size, rank = len(requests), self.context.data_parallel_size, self.context.data_parallel_rank
        mine = [requests[i] for i in shard_indices(count, rank, size)]
        shared = _SharedProgress(progress, size, count, self.faults)
        local = score(mine, shared) if mine else []
        if len(local) != len(mine):
            raise RuntimeError(f"the scorer returned {len(local)} results for {len(mine)} requests")
        if self.watchdog is not None:
            self.watchdog.mark(f"gather of {count} {label} results")
        merged = merge_shards(self.context.gather_data_parallel(local), count)
        shared.complete()
        return merged

    # -- api.Scorer ----------------------------------------------------------------------------
    def effective_max_length(self, options: EncodingOptions) -> int:
        return self.inner.effective_max_length(options)

    def lm_windows(self, tokens: Sequence[int], options: EncodingOptions, generation_length: int) -> list[Any]:
        return self.inner.lm_windows(tokens, options, generation_length)

    def cond_log_prob(self, requests, options: EncodingOptions, batch_size: int = 1, progress: Progress = None) -> list[list[float]]:
        return self._sharded("multiple-choice", lambda share, bar: self.inner.cond_log_prob(share, options, batch_size, bar),
                             requests, progress)

    def continuation_scores(self, requests, options: EncodingOptions, batch_size: int = 1,
                            progress: Progress = None) -> list[tuple[float, bool]]:
        return self._sharded("continuation", lambda share, bar: self.inner.continuation_scores(share, options, batch_size, bar),
                             requests, progress)

    def calculate_loss(self, windows, batch_size: int = 1, progress: Progress = None) -> list[tuple[float, int]]:
        return self._sharded("language-model", lambda share, bar: self.inner.calculate_loss(share, batch_size, bar),
                             windows, progress)

    def generate_text(self, contexts, options: EncodingOptions, settings: DecodingSettings, batch_size: int = 1,
                      progress: Progress = None) -> list[list[int]]:
        return self._sharded("generation", lambda share, bar: self.inner.generate_text(share, options, settings, batch_size, bar),
                             contexts, progress)
