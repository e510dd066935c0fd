"""The GLM scorer: a BIG-bench-style model API over our GLM-130B network.

``cond_log_prob``  - multiple choice: one packed forward per item, summed choice log-probs.
``generate_text``  - greedy or beam search with the KV cache.
``calculate_loss`` - summed negative log-likelihood of language-modelling windows.
``continuation_scores`` - log-likelihood of a target continuation and whether it is greedy.

All three take *tokenized* requests and return one result per request in request
order, so callers may shard requests across processes and gather them back.
Logits are computed only at the rows that are read, never over [batch, seq, vocab].
"""

from __future__ import annotations

from typing import Iterator, Sequence

import numpy as np
import torch

from ..model.glm import GLMModel, KVCache, reorder_cache
from ..tokenization import GLM130BTokenizer
from .api import BatchResults, EncodingOptions, Progress
from .decoding import DecodingSettings, beam_search, greedy_decode
from .scored_rows import score_target_rows
from .packing import (
    GenerationContext,
    PackedSequence,
    SpecialIds,
    build_generation_context,
    build_language_model_windows,
    build_language_model_windows_glm,
    build_multiple_choice,
)

__all__ = ["BatchResults", "EncodingOptions", "GLMScorer", "PAD_MULTIPLE", "Progress", "collate", "pad_to_multiple"]

PAD_MULTIPLE = 32


def pad_to_multiple(length: int, multiple: int = PAD_MULTIPLE) -> int:
    return -(-length // multiple) * multiple


def collate(samples: Sequence[PackedSequence | GenerationContext], pad_id: int, left: bool = False) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, list[int]]:
    """Pad a batch to a multiple of 32. Returns tokens [b, L], positions [b, L] or [b, 2, L],
    mask [b, L, L] and each sample's offset (non-zero when padding on the left).
    Pad rows attend only to themselves so no softmax row is empty."""
    length = pad_to_multiple(max(len(s.tokens) for s in samples))
    b = len(samples)
    two_d = samples[0].positions.ndim == 2
    tokens = np.full((b, length), pad_id, dtype=np.int64)
    positions = np.zeros((b, 2, length) if two_d else (b, length), dtype=np.int64)
    mask = np.zeros((b, length, length), dtype=bool)
    mask[:, np.arange(length), np.arange(length)] = True
    offsets = []
    for i, s in enumerate(samples):
        n = len(s.tokens)
        off = length - n if left else 0
        offsets.append(off)
        tokens[i, off : off + n] = s.tokens
        positions[i, ..., off : off + n] = s.positions
        mask[i, off : off + n, :] = False
        mask[i, off : off + n, off : off + n] = s.mask
    return torch.from_numpy(tokens), torch.from_numpy(positions), torch.from_numpy(mask), offsets


def chunks(sequence: Sequence, size: int) -> Iterator[Sequence]:
    for start in range(0, len(sequence), size):
        yield sequence[start : start + size]


def report_batch(results: list, count: int, progress: Progress, on_batch: BatchResults) -> None:
    """After a batch of ``count`` requests appended to ``results``: tell the callbacks."""
    if on_batch is not None:
        start = len(results) - count
        on_batch(range(start, len(results)), results[start:])
    if progress is not None:
        progress(count)


class GLMScorer:
    """Scores tokenized requests with a GLM model (implements ``api.Scorer``).

    ``model`` is a :class:`GLMModel` or anything with its interface (``config``, the
    forward, ``logits`` and ``target_log_probs``), such as the tensor-parallel wrapper of
    ``evaluation/distributed/tensor_parallel.py``."""

    def __init__(self, model: GLMModel, tokenizer: GLM130BTokenizer, device: str | torch.device = "cpu") -> None:
        self.model = model
        self.tokenizer = tokenizer
        self.device = torch.device(device)
        self.ids = SpecialIds(mask=tokenizer.mask_id, gmask=tokenizer.gmask_id, sop=tokenizer.sop_id, pad=tokenizer.pad_id,
                              eos=tokenizer.eos_id)
        self.position_2d = model.config.position_encoding_2d
        self.max_model_length = model.config.max_sequence_length

    def effective_max_length(self, options: EncodingOptions) -> int:
        """A task may not ask for more context than the model has positions for."""
        return min(options.max_seq_length, self.max_model_length)

    # -- shared forward --------------------------------------------------------------
    @torch.no_grad()
    def _target_log_probs(self, samples: Sequence[PackedSequence]) -> list[list[tuple[np.ndarray, np.ndarray]]]:
        """For each sample and each of its scored units: log p(target id) at each target row,
        and whether that target id is the row's argmax (the greedy check of continuations)."""
        tokens, positions, mask, _ = collate(samples, self.ids.pad)
        hidden, _ = self.model(tokens.to(self.device), positions.to(self.device), mask.to(self.device))
        return score_target_rows(hidden, samples, self.model.target_log_probs)

    # -- multiple choice ---------------------------------------------------------------
    def pack_choices(self, context: Sequence[int], choices: Sequence[Sequence[int]], options: EncodingOptions) -> PackedSequence:
        return build_multiple_choice(
            context,
            choices,
            self.ids,
            use_task_mask=options.use_task_mask,
            unidirectional=options.unidirectional,
            use_multitask_encoding=options.use_multitask_encoding,
            max_seq_length=self.effective_max_length(options),
            position_2d=self.position_2d,
            unidirectional_prefix=options.unidirectional_prefix,
            context_eos=options.context_eos,
        )

    def cond_log_prob(
        self,
        requests: Sequence[tuple[Sequence[int], Sequence[Sequence[int]]]],
        options: EncodingOptions,
        batch_size: int = 1,
        progress: Progress = None,
        on_batch: BatchResults = None,
    ) -> list[list[float]]:
        """Summed log-probability of every choice given its context, one list per request.
        ``progress`` (e.g. a tqdm bar's ``update``) is told after each batch how many
        requests it finished, ``on_batch`` which ones and their results."""
        results: list[list[float]] = []
        for batch in chunks(requests, batch_size):
            samples = [self.pack_choices(context, choices, options) for context, choices in batch]
            for units in self._target_log_probs(samples):
                results.append([float(log_probs.sum(dtype=np.float64)) for log_probs, _ in units])
            report_batch(results, len(batch), progress, on_batch)
        return results

    # -- continuation log-likelihood (lm-evaluation-harness ``loglikelihood``) ----------
    def continuation_scores(
        self,
        requests: Sequence[tuple[Sequence[int], Sequence[int]]],
        options: EncodingOptions,
        batch_size: int = 1,
        progress: Progress = None,
        on_batch: BatchResults = None,
    ) -> list[tuple[float, bool]]:
        """Log-likelihood of a target continuation given its context (the backend-neutral
        request of lm-evaluation-harness's ``loglikelihood``).

        ``requests`` are ``(context_ids, target_ids)`` pairs of token ids (non-empty target).
        Returns, per request and in request order, ``(sum of log p(target token) in nats,
        summed in float64; is_greedy)`` where ``is_greedy`` is True when every target token
        is the argmax of the model's distribution at its position under teacher forcing
        (ties count for the lower id, as ``argmax`` breaks them). ``options`` are GLM's
        encoding switches: the target is packed as the single choice of a multiple-choice
        item (``build_multiple_choice``), so ``unidirectional`` + ``use_task_mask`` scores
        it as a plain causal LM and the bidirectional modes as a blank after [MASK]/[gMASK].
        Another backend implements the same signature and ignores the GLM switches.
        """
        results: list[tuple[float, bool]] = []
        for batch in chunks(requests, batch_size):
            for context, target in batch:
                if len(target) == 0:
                    raise ValueError("continuation_scores needs a non-empty target")
            samples = [self.pack_choices(context, [target], options) for context, target in batch]
            for units in self._target_log_probs(samples):
                log_probs, greedy = units[0]
                results.append((float(log_probs.sum(dtype=np.float64)), bool(greedy.all())))
            report_batch(results, len(batch), progress, on_batch)
        return results

    # -- language modelling --------------------------------------------------------------
    def lm_windows(self, tokens: Sequence[int], options: EncodingOptions, generation_length: int) -> list[PackedSequence]:
        if options.lm_window_layout == "glm":
            cls_id = self.tokenizer.special_tokens.get("ENC")
            if cls_id is None:
                raise ValueError(f"window-layout: glm puts [CLS] before every window, and tokenizer {type(self.tokenizer).__name__} "
                                 "has none (it is THUDM/GLM's layout for the original GLM's tokenizers)")
            return build_language_model_windows_glm(
                tokens, self.ids, cls_id, use_task_mask=options.use_task_mask, unidirectional=options.unidirectional,
                max_seq_length=self.effective_max_length(options), generation_length=generation_length,
                position_2d=self.position_2d)
        return build_language_model_windows(
            tokens,
            self.ids,
            use_task_mask=options.use_task_mask,
            unidirectional=options.unidirectional,
            max_seq_length=self.effective_max_length(options),
            generation_length=generation_length,
            position_2d=self.position_2d,
        )

    def calculate_loss(self, windows: Sequence[PackedSequence], batch_size: int = 1, progress: Progress = None,
                       on_batch: BatchResults = None) -> list[tuple[float, int]]:
        """(summed NLL in nats, number of scored tokens) per window."""
        results: list[tuple[float, int]] = []
        for batch in chunks(windows, batch_size):
            for units in self._target_log_probs(batch):
                log_probs, _ = units[0]
                results.append((-float(log_probs.sum(dtype=np.float64)), int(log_probs.size)))
            report_batch(results, len(batch), progress, on_batch)
        return results

    # -- generation ---------------------------------------------------------------------
    def generation_context(self, context: Sequence[int], options: EncodingOptions, max_gen_length: int) -> GenerationContext:
        return build_generation_context(
            context,
            self.ids,
            use_task_mask=options.use_task_mask,
            unidirectional=options.unidirectional,
            max_seq_length=self.effective_max_length(options),
            max_gen_length=max_gen_length,
            position_2d=self.position_2d,
        )

    @torch.no_grad()
    def generate_text(
        self,
        contexts: Sequence[Sequence[int]],
        options: EncodingOptions,
        settings: DecodingSettings,
        batch_size: int = 1,
        progress: Progress = None,
        on_batch: BatchResults = None,
    ) -> list[list[int]]:
        """Generated token ids (end token stripped) for each context."""
        outputs: list[list[int]] = []
        for batch in chunks(contexts, batch_size):
            prepared = [self.generation_context(c, options, settings.max_gen_length) for c in batch]
            outputs.extend(self._generate_batch(prepared, settings))
            report_batch(outputs, len(batch), progress, on_batch)
        return outputs

    def _generate_batch(self, contexts: Sequence[GenerationContext], settings: DecodingSettings) -> list[list[int]]:
        tokens, positions, mask, offsets = collate(contexts, self.ids.pad, left=True)
        hidden, cache = self.model(tokens.to(self.device), positions.to(self.device), mask.to(self.device))
        first_logits = self.model.logits(hidden[:, -1])
        key_valid = torch.zeros(tokens.shape, dtype=torch.bool)
        for i, off in enumerate(offsets):
            key_valid[i, off:] = True
        decoder = _CachedDecoder(self.model, cache, key_valid.to(self.device), contexts, self.device)
        if settings.num_beams <= 1:
            return greedy_decode(first_logits, decoder, settings)
        decoder.reorder(torch.arange(len(contexts), device=self.device).repeat_interleave(settings.num_beams))
        tails = [c.tokens[-max(settings.no_repeat_ngram_size - 1, 0) :].tolist() if settings.no_repeat_ngram_size > 1 else [] for c in contexts]
        return beam_search(first_logits, decoder, settings, [len(c.tokens) for c in contexts], tails)


class _CachedDecoder:
    """Feeds one generated token per row through the model with the KV cache.

    Rows map to items through ``row_items`` (identity for greedy, item-major repeats for
    beams); positions of generated tokens follow each item's mask rules."""

    def __init__(self, model: GLMModel, cache: KVCache, key_valid: torch.Tensor, contexts: Sequence[GenerationContext], device: torch.device) -> None:
        self.model = model
        self.cache = cache
        self.key_valid = key_valid  # [rows, context_len]: False on left padding
        self.contexts = contexts
        self.device = device
        self.row_items = torch.arange(len(contexts), device=device)

    def reorder(self, rows: torch.Tensor) -> None:
        self.cache = reorder_cache(self.cache, rows)
        self.key_valid = self.key_valid.index_select(0, rows)
        self.row_items = self.row_items.index_select(0, rows)

    def step(self, tokens: torch.Tensor, step_index: int) -> torch.Tensor:
        rows = tokens.shape[0]
        pos = [self.contexts[i].generated_position(step_index) for i in self.row_items.tolist()]
        positions = torch.tensor(pos, device=self.device)  # [rows, 2]
        positions = positions.unsqueeze(-1) if self.model.config.position_encoding_2d else positions[:, :1]
        generated = torch.ones((rows, step_index + 1), dtype=torch.bool, device=self.device)
        mask = torch.cat((self.key_valid, generated), dim=1).unsqueeze(1)  # [rows, 1, keys]
        hidden, self.cache = self.model(tokens.view(rows, 1).to(self.device), positions, mask, past=self.cache)
        return self.model.logits(hidden[:, -1])
