"""The model API every task runs on, as one ``Protocol`` that each backend implements.

Tasks (``evaluation/tasks.py``, ``evaluation/custom_tasks``) and the runner depend on this
module only, never on a concrete backend: the GLM scorer (``glm_scorer.py``), the Hugging
Face scorer (``hf_scorer.py``) and the data-parallel wrapper
(``evaluation/distributed/data_parallel.py``) are interchangeable behind it.

The contract that makes sharding, gathering and resuming possible: every request method
takes a sequence of *tokenized* requests and returns exactly one result per request, in
request order, whatever batching the backend chooses internally; ``on_batch`` hears of
each request's result as soon as its batch is done. So a wrapper may split the requests
over processes, hand each share to a backend, put the results back in order, and keep each
result on disk the moment it exists.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Optional, Protocol, Sequence

from .decoding import DecodingSettings

Progress = Optional[Callable[[int], object]]  # called with the number of requests just finished
# Called after each batch with the indices (into the request list of the call) of the
# requests it finished and their results, in the types the method returns: what makes
# per-item records durable as they are computed (evaluation/persistence/).
BatchResults = Optional[Callable[[Sequence[int], Sequence[Any]], object]]


@dataclass(frozen=True)
class EncodingOptions:
    """The task-level switches of GLM encoding (from the task YAML). A causal-LM backend
    uses ``max_seq_length`` only."""

    use_task_mask: bool = False
    unidirectional: bool = False
    use_multitask_encoding: bool = False
    max_seq_length: int = 2048
    unidirectional_prefix: int = 0  # THUDM/GLM's unidirectional layout (packing.build_multiple_choice)
    context_eos: bool = False  # eos after the mask, THUDM/GLM's add_eos (packing.build_multiple_choice)
    lm_window_layout: str = "glm-130b"  # or "glm": THUDM/GLM's LM windows (packing.build_language_model_windows_glm)


class Scorer(Protocol):
    """What a task may ask of a model. All log-probabilities are natural-log, summed in float64."""

    def effective_max_length(self, options: EncodingOptions) -> int:
        """The sequence length a task really gets: its ``max_seq_length`` capped at the model's positions."""

    def cond_log_prob(self, requests: Sequence[tuple[Sequence[int], Sequence[Sequence[int]]]], options: EncodingOptions,
                      batch_size: int = 1, progress: Progress = None, on_batch: BatchResults = None) -> list[list[float]]:
        """Multiple choice: per ``(context_ids, [choice_ids, ...])`` request, the summed
        log-probability of each choice given the context."""

    def continuation_scores(self, requests: Sequence[tuple[Sequence[int], Sequence[int]]], options: EncodingOptions,
                            batch_size: int = 1, progress: Progress = None, on_batch: BatchResults = None
                            ) -> list[tuple[float, bool]]:
        """Per ``(context_ids, target_ids)`` request: (log p(target | context), whether every
        target token is the greedy choice under teacher forcing)."""

    def lm_windows(self, tokens: Sequence[int], options: EncodingOptions, generation_length: int) -> list[Any]:
        """The scored windows of one document (opaque to callers; each has ``target_ids``)."""

    def calculate_loss(self, windows: Sequence[Any], batch_size: int = 1, progress: Progress = None,
                       on_batch: BatchResults = None) -> list[tuple[float, int]]:
        """Per window from ``lm_windows``: (summed negative log-likelihood, scored tokens)."""

    def generate_text(self, contexts: Sequence[Sequence[int]], options: EncodingOptions, settings: DecodingSettings,
                      batch_size: int = 1, progress: Progress = None, on_batch: BatchResults = None) -> list[list[int]]:
        """Greedy or beam-search continuation of each context (end token stripped)."""
