"""A scorer that wraps another: the four request methods funnelled through one ``_call``.

The data-parallel scorer (deal requests over ranks, gather them back) and the recording
scorer (serve known results, write new ones) both stand between the tasks and a backend
and do the same thing to every request method; they implement ``_call`` only.
"""

from __future__ import annotations

from typing import Any, Callable, Sequence

from .api import BatchResults, EncodingOptions, Progress, Scorer
from .decoding import DecodingSettings

# (requests, progress, on_batch) -> results: the inner scorer's method, bound to the call's options
Compute = Callable[[list[Any], Progress, BatchResults], list[Any]]


class ScorerWrapper:
    """``api.Scorer`` over ``inner``; subclasses implement :meth:`_call`."""

    def __init__(self, inner: Scorer) -> None:
        self.inner = inner

    def __getattr__(self, name: str) -> Any:  # describe(), tokenizer, ...: the backend's own
        if name == "inner":
            raise AttributeError(name)
        return getattr(self.inner, name)

    def _call(self, method: str, requests: Sequence[Any], options: Any, settings: Any, progress: Progress,
              on_batch: BatchResults, compute: Compute) -> list[Any]:
        """Answer one request call; ``compute`` runs (part of) it on the inner scorer."""
        raise NotImplementedError

    def effective_max_length(self, options: EncodingOptions) -> int:
        return self.inner.effective_max_length(options)

    def lm_windows(self, tokens: Sequence[int], options: EncodingOptions, generation_length: int) -> list[Any]:
        return self.inner.lm_windows(tokens, options, generation_length)

    def cond_log_prob(self, requests, options: EncodingOptions, batch_size: int = 1, progress: Progress = None,
                      on_batch: BatchResults = None) -> list[list[float]]:
        return self._call("cond_log_prob", requests, options, None, progress, on_batch,
                          lambda share, bar, done: self.inner.cond_log_prob(share, options, batch_size, bar, done))

    def continuation_scores(self, requests, options: EncodingOptions, batch_size: int = 1, progress: Progress = None,
                            on_batch: BatchResults = None) -> list[tuple[float, bool]]:
        return self._call("continuation_scores", requests, options, None, progress, on_batch,
                          lambda share, bar, done: self.inner.continuation_scores(share, options, batch_size, bar, done))

    def calculate_loss(self, windows, batch_size: int = 1, progress: Progress = None,
                       on_batch: BatchResults = None) -> list[tuple[float, int]]:
        return self._call("calculate_loss", windows, None, None, progress, on_batch,
                          lambda share, bar, done: self.inner.calculate_loss(share, batch_size, bar, done))

    def generate_text(self, contexts, options: EncodingOptions, settings: DecodingSettings, batch_size: int = 1,
                      progress: Progress = None, on_batch: BatchResults = None) -> list[list[int]]:
        return self._call("generate_text", contexts, options, settings, progress, on_batch,
                          lambda share, bar, done: self.inner.generate_text(share, options, settings, batch_size, bar, done))
