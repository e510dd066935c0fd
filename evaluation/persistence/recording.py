"""The outermost scorer: every result goes to disk as its batch finishes, and a result that is
already known (from this run's earlier attempts, or from a cache) is never computed again.

It wraps the data-parallel scorer (or the backend in one process) behind the same
``api.Scorer`` interface, so tasks do not know about it either. Per request call:

1. every rank computes the requests' keys (``identity.request_key``);
2. rank 0, which alone holds the known records, decides which requests are known and
   sends their results to every rank (one broadcast per data file), so all ranks agree
   on what is left to compute, whatever the world size of the attempt that wrote them;
3. the rest goes to the inner scorer, which deals it over the data-parallel ranks; each
   rank appends the records of each of its batches to its own file as the batch finishes;
4. after the gather, rank 0 also appends the records the other ranks computed, so that
   everything a finished file produced is on rank 0's disk even without a shared filesystem.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any, Optional, Sequence

from ..distributed.faults import FaultInjector
from ..scoring.api import BatchResults, Progress, Scorer
from ..scoring.wrapper import Compute, ScorerWrapper
from .identity import call_prefix, request_key
from .records import RecordWriter

# Methods whose results are tuples: JSON gives lists back, so they are restored exactly.
TUPLE_RESULTS = {"continuation_scores", "calculate_loss"}


@dataclass
class Counts:
    """Requests served from each source (cumulative over the run): this run's records of
    earlier attempts, the cache, computed now, or repeated (a request seen before in this
    attempt, served from memory)."""

    from_run: int = 0
    from_cache: int = 0
    computed: int = 0
    repeated: int = 0

    @property
    def total(self) -> int:
        return self.from_run + self.from_cache + self.computed + self.repeated

    def minus(self, other: "Counts") -> "Counts":
        return Counts(self.from_run - other.from_run, self.from_cache - other.from_cache, self.computed - other.computed,
                      self.repeated - other.repeated)


@dataclass
class KnownRecords:
    """Rank 0's lookup tables (empty on the other ranks)."""

    run: dict[str, Any] = field(default_factory=dict)
    cache: dict[str, Any] = field(default_factory=dict)


class RecordingScorer(ScorerWrapper):
    """``api.Scorer`` that records and reuses results (see the module doc)."""

    def __init__(self, inner: Scorer, context: Any, namespace: str, known: KnownRecords, writers: Sequence[RecordWriter],
                 faults: Optional[FaultInjector] = None) -> None:
        super().__init__(inner)
        self.context = context
        self.namespace = namespace
        self.known = known
        self.writers = list(writers)
        self.faults = faults or FaultInjector.from_environment(context.rank)
        self.counts = Counts()
        self.computed_here: dict[str, Any] = {}  # rank 0: this attempt's results, for repeated requests
        self.overhead_seconds = 0.0  # time spent on keys, lookups and writes (what persistence costs)

    def close(self) -> None:
        for writer in self.writers:
            writer.close()

    def _write(self, items: list[tuple[str, Any]]) -> None:
        for writer in self.writers:
            writer.append(items)

    def _call(self, method: str, requests: Sequence[Any], options: Any, settings: Any, progress: Progress,
              on_batch: BatchResults, compute: Compute) -> list[Any]:
        started = time.perf_counter()
        prefix = call_prefix(self.namespace, method, options, settings)
        keys = [request_key(prefix, request) for request in requests]
        found: Optional[dict[int, tuple[Any, str]]] = None
        if self.context.is_main:
            found = {}
            for index, key in enumerate(keys):
                for source, table in (("run", self.known.run), ("cache", self.known.cache), ("repeated", self.computed_here)):
                    if key in table:
                        found[index] = (table[key], source)
                        break
        found = self.context.broadcast_from_main(found)
        restore = tuple if method in TUPLE_RESULTS else (lambda value: value)
        results: list[Any] = [None] * len(requests)
        for index, (value, source) in found.items():
            results[index] = restore(value)
            attribute = {"run": "from_run", "cache": "from_cache", "repeated": "repeated"}[source]
            setattr(self.counts, attribute, getattr(self.counts, attribute) + 1)
        if on_batch is not None and found:
            on_batch(sorted(found), [results[i] for i in sorted(found)])
        if progress is not None and found:
            progress(len(found))

        missing = [i for i in range(len(requests)) if i not in found]
        written_here: set[int] = set()

        def record_batch(done: Sequence[int], batch_results: Sequence[Any]) -> None:
            write_started = time.perf_counter()
            self._write([(keys[missing[j]], result) for j, result in zip(done, batch_results)])
            written_here.update(missing[j] for j in done)
            self.overhead_seconds += time.perf_counter() - write_started
            if on_batch is not None:
                on_batch([missing[j] for j in done], batch_results)
            self.faults.batch_done()  # the test hook: fail after N batches are on disk

        self.overhead_seconds += time.perf_counter() - started
        computed = compute([requests[i] for i in missing], progress, record_batch) if missing else []
        started = time.perf_counter()
        for index, result in zip(missing, computed):
            results[index] = result
        self.counts.computed += len(missing)
        if self.context.is_main:
            gathered = [(keys[i], results[i]) for i in missing if i not in written_here]
            self._write(gathered)  # other ranks' results, now on rank 0's disk too
            for i in missing:
                self.computed_here[keys[i]] = results[i]  # a request repeated later in the run is served
        self.overhead_seconds += time.perf_counter() - started
        return results
