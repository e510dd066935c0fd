"""The Hugging Face backend: the scorer API (``api.Scorer``) over any ``transformers`` causal LM.

Every task type calls the same four requests on either backend (``cond_log_prob``,
``continuation_scores``, ``lm_windows`` + ``calculate_loss``, ``generate_text``), so every
task YAML runs unchanged here. A causal LM reads its context left to right: GLM's
encoding switches (``use_task_mask``, ``unidirectional``, ``use_multitask_encoding``) do not
apply and are ignored (a note says so once per run); only ``max_seq_length`` is used.

Semantics follow lm-evaluation-harness's ``hf`` model (v0.4), so scores can be compared:

* A request scores ``log p(target | context)`` with the target tokens teacher-forced; an
  empty context becomes the prefix token (BOS, else EOS); with ``add_bos`` every context
  starts with BOS. Too long inputs lose tokens on the left, keeping the last
  ``max_length`` input tokens (for packed multiple choice: as many as its longest choice
  allows, so a long item keeps the same context for every choice).
* Language modelling uses lm-eval's rolling windows: each window predicts up to
  ``generation_length`` tokens (all ``max_length`` when the YAML asks for more) and sees
  the tokens before them, up to ``max_length`` inputs; the first token is predicted from
  the prefix token. ``generation_length >= max_length`` is exactly ``loglikelihood_rolling``.

What makes it fast (each checked against a plain per-choice forward in
``tests/test_hf_backend.py``):

* Multiple choice encodes the context once per item: the choices follow it in one
  sequence, each attending to the context and to itself only (a 4D block mask) with
  positions continuing from the context end, so each choice sees exactly what it would
  see alone. Models that reject a 4D mask or explicit positions (found by a probe at
  start-up) fall back to one sequence per choice, automatically.
* Only the hidden states of scored rows go through the LM head and log-softmax; the
  [batch, length, vocab] logits tensor is never built (when a probe shows that the
  model's logits are ``lm_head(base_model(...))``; otherwise the full logits are used).
* Requests are sorted by length (longest first) and batched up to ``max_batch_tokens``
  padded tokens, whatever the task's micro-batch size; results come back in request order.
"""

from __future__ import annotations

import inspect
from dataclasses import dataclass, field
from typing import Any, Callable, Optional, Sequence

import numpy as np
import torch
import torch.nn.functional as F

from ..tokenization_hf import HFTokenizer
from .decoding import DecodingSettings, beam_search, greedy_decode
from .api import BatchResults, EncodingOptions, Progress
from .prefix_cache import batch_cache_on_prefix, dynamic_cache_from_states, read_only_prefix_cache_available
from .prefix_reuse import FORWARD_COST_TOKENS, PrefixGroup, PrefixStats, group_by_prefix
from .scored_rows import full_vocab_log_probs, score_target_rows

DEFAULT_MAX_BATCH_TOKENS = 1024
# Greedy generation decodes consecutive prefill batches together up to this many tokens of
# key/value cache (rows x (longest context + max_gen_length)); see plan_decode_groups.
DEFAULT_MAX_DECODE_TOKENS = 4096
DEFAULT_PREFIX_CACHE_MB = 256
PROBE_TOLERANCE = 1e-4


@dataclass
class CausalSequence:
    """One model input row: a context followed by zero or more choice blocks.

    ``tokens[:context_len]`` is read causally; each block (lengths ``block_lens``, in order
    after the context) attends to the whole context and causally to itself, never to
    another block, with positions ``context_len, context_len + 1, ...``. ``target_rows[u]``
    are the rows whose next-token distribution scores ``target_ids[u]`` (unit u)."""

    tokens: np.ndarray
    context_len: int
    block_lens: list[int] = field(default_factory=list)
    target_rows: list[np.ndarray] = field(default_factory=list)
    target_ids: list[np.ndarray] = field(default_factory=list)
    offset: int = 0  # positions start here: the tokens after a reused prefix of this length

    def reusable_prefix(self) -> int:
        """The longest prefix whose cache may stand in for its rows: every scored row (and
        the last context row, which starts every block) must come after it."""
        first_scored = min((int(rows.min()) for rows in self.target_rows if rows.size), default=self.context_len - 1)
        return max(0, min(self.context_len - 1, first_scored))

    def after_prefix(self, length: int) -> "CausalSequence":
        """The part after the first ``length`` ids (a shared prefix whose cache is reused);
        ``length`` must leave at least one context token, whose row reads the first target."""
        return CausalSequence(self.tokens[length:], self.context_len - length, self.block_lens,
                              [rows - length for rows in self.target_rows], self.target_ids, self.offset + length)

    def __len__(self) -> int:
        return int(self.tokens.shape[0])

    @property
    def packed(self) -> bool:
        return len(self.block_lens) > 1

    def positions(self) -> np.ndarray:
        parts = [np.arange(self.context_len)] + [np.arange(self.context_len, self.context_len + n) for n in self.block_lens]
        return np.concatenate(parts).astype(np.int64) + self.offset


def plan_batches(lengths: Sequence[int], max_tokens: int, rows_per_item: int = 1) -> list[list[int]]:
    """Indices of the requests batched together: longest first, each batch as large as
    ``rows * longest length <= max_tokens`` allows (at least one request). Sorting by
    length keeps padding small; the caller puts results back in request order."""
    order = sorted(range(len(lengths)), key=lambda i: -lengths[i])
    batches: list[list[int]] = []
    current: list[int] = []
    for index in order:
        longest = lengths[current[0]] if current else lengths[index]
        if current and (len(current) + 1) * rows_per_item * longest > max_tokens:
            batches.append(current)
            current = []
        current.append(index)
    if current:
        batches.append(current)
    return batches


def plan_decode_groups(batches: Sequence[Sequence[int]], lengths: Sequence[int], max_tokens: int) -> list[list[list[int]]]:
    """Consecutive prefill batches (from :func:`plan_batches`, longest first) that greedy
    generation decodes as one batch: as many as keep ``rows x longest length <= max_tokens``
    (at least one batch per group).

    Why: a prefill is matrix work whose cost grows with its tokens, so it keeps the
    ``max_batch_tokens`` budget; a decoding step feeds one token per row, and on a CPU its
    cost is mostly reading the weights, so a step at 8 rows costs nearly what one at 30
    does (SmolLM2-135M, fp32, 2 threads: 79 ms at 6.6 rows, 140 ms at 27). Decoding the
    rows of several prefill batches together runs fewer steps for the same tokens."""
    groups: list[list[list[int]]] = []
    rows = 0
    for batch in batches:
        if groups and (rows + len(batch)) * lengths[groups[-1][0][0]] <= max_tokens:
            groups[-1].append(list(batch))
            rows += len(batch)
        else:
            groups.append([list(batch)])
            rows = len(batch)
    return groups


def plain_cache_states(cache: Any) -> Optional[list[tuple[torch.Tensor, torch.Tensor]]]:
    """(keys, values) [rows, kv heads, length, head dim] of each layer of a plain
    ``DynamicCache`` (4.x or 5.x); None for any other cache (sliding windows, quantized,
    offloaded), which :func:`merge_left_padded_caches` does not know how to join."""
    from transformers import DynamicCache

    if type(cache) is not DynamicCache:
        return None
    layers = getattr(cache, "layers", None)
    if layers is not None:
        if any(type(layer).__name__ != "DynamicLayer" or getattr(layer, "keys", None) is None for layer in layers):
            return None
        return [(layer.keys, layer.values) for layer in layers]
    return list(zip(getattr(cache, "key_cache", []), getattr(cache, "value_cache", []))) or None


def merge_left_padded_caches(caches: Sequence[Any], widths: Sequence[int]) -> Optional[Any]:
    """One cache holding the rows of ``caches`` (each left-padded to its own ``widths[i]``
    keys), every row left-padded with zero keys to the widest; None if a cache is not a
    plain ``DynamicCache``. The padding keys are masked out by the caller's padding mask."""
    states = [plain_cache_states(cache) for cache in caches]
    if any(s is None for s in states) or len({len(s) for s in states}) != 1:
        return None
    width = max(widths)
    pad = lambda t, w: F.pad(t, (0, 0, width - w, 0))  # noqa: E731  zero keys on the left of the length dim
    return dynamic_cache_from_states([(torch.cat([pad(s[layer][0], w) for s, w in zip(states, widths)]),
                                       torch.cat([pad(s[layer][1], w) for s, w in zip(states, widths)]))
                                      for layer in range(len(states[0]))])


def block_mask(sequence: CausalSequence, length: int) -> np.ndarray:
    """[length, length] bool (True = may attend) for one sequence right-padded to ``length``;
    pad rows attend to themselves only, so no softmax row is empty."""
    mask = np.zeros((length, length), dtype=bool)
    n = sequence.context_len
    mask[:n, :n] = np.tril(np.ones((n, n), dtype=bool))
    start = n
    for size in sequence.block_lens:
        mask[start : start + size, :n] = True
        mask[start : start + size, start : start + size] = np.tril(np.ones((size, size), dtype=bool))
        start += size
    pad = np.arange(start, length)
    mask[pad, pad] = True
    return mask


class HFScorer:
    """Scores tokenized requests with a ``transformers`` causal LM (see the module doc)."""

    def __init__(self, model: Any, tokenizer: HFTokenizer, device: str | torch.device = "cpu", *, add_bos: bool = False,
                 max_batch_tokens: int = DEFAULT_MAX_BATCH_TOKENS, max_length: Optional[int] = None,
                 allow_packing: bool = True, prefix_reuse: bool = True, prefix_cache_mb: int = DEFAULT_PREFIX_CACHE_MB,
                 beam_tree: bool = True, pack_head_for_generation: bool = False, log: Any = print,
                 prefix_forward_cost: int = FORWARD_COST_TOKENS, max_decode_tokens: int = DEFAULT_MAX_DECODE_TOKENS) -> None:
        self.model = model
        self.tokenizer = tokenizer
        self.device = torch.device(device)
        self.add_bos = add_bos
        self.max_batch_tokens = max_batch_tokens
        self.max_decode_tokens = max_decode_tokens
        self.max_model_length = max_length or model_max_length(model.config)
        self.log = log
        self._noted_glm_switches = False
        self.dtype = next(model.parameters()).dtype
        self.head_only_at_rows = self._probe_head_split()
        self.packing = allow_packing and self._probe_packing()
        self.prefix_cache_bytes = prefix_cache_mb * 2**20
        self.prefix_forward_cost = prefix_forward_cost  # see prefix_reuse.FORWARD_COST_TOKENS
        self.prefix_stats = PrefixStats()
        self.prefix_cache_read_only = read_only_prefix_cache_available()
        self.kv_bytes_per_token = self._probe_prefix_reuse() if prefix_reuse else 0
        if prefix_reuse and not self.kv_bytes_per_token and self.prefix_cache_read_only:
            self.prefix_cache_read_only = False  # a model that rejects the read-only layer: DynamicCache, as before it
            self.kv_bytes_per_token = self._probe_prefix_reuse()
        self.prefix_reuse = self.kv_bytes_per_token > 0
        self.beam_tree = beam_tree and self._probe_beam_tree()
        self.pack_head_for_generation = pack_head_for_generation  # see cpu_linear.pack_all_but_a_tied_head

    # -- capability probes ---------------------------------------------------------------
    @torch.no_grad()
    def _probe_head_split(self) -> bool:
        """True when ``lm_head(base_model(x))`` equals the model's own logits, so the head
        can run on scored rows only (models with logit scaling or soft-capping fail this
        and keep the full-logits path)."""
        head = self.model.get_output_embeddings()
        base = getattr(self.model, "base_model", None)
        if head is None or base is None or base is self.model:
            return False
        ids = torch.tensor([[self.tokenizer.prefix_id, *range(3, 9)]], device=self.device) % self.tokenizer.num_tokens
        try:
            full = self.model(input_ids=ids, use_cache=False).logits.float()
            split = head(base(input_ids=ids, use_cache=False).last_hidden_state).float()
        except Exception:  # noqa: BLE001 - any failure means "do not split"
            return False
        return bool(torch.allclose(full, split, atol=PROBE_TOLERANCE, rtol=PROBE_TOLERANCE))

    @torch.no_grad()
    def _probe_packing(self) -> bool:
        """True when two choices packed after one context (4D block mask + positions) score
        as they do in two plain causal sequences; False sends multiple choice to one
        sequence per choice."""
        vocab = self.tokenizer.num_tokens
        context, choices = [(7 * i + 3) % vocab for i in range(5)], [[11 % vocab, 12 % vocab, 13 % vocab], [14 % vocab, 15 % vocab]]
        try:
            packed = self._score([self._pack(context, choices, 64)], greedy=False)[0]
            alone = [self._score([self._pack(context, [c], 64)], greedy=False)[0][0] for c in choices]
        except Exception:  # noqa: BLE001 - a model that rejects the mask or the positions
            return False
        return all(np.allclose(p, a, atol=PROBE_TOLERANCE) for p, a in zip(packed, alone))

    @torch.no_grad()
    def _probe_prefix_reuse(self) -> int:
        """Bytes of key/value cache per token (all layers) when scoring after a cached prefix
        gives the plain forward's log-probs on a probe; 0 (reuse off) when the model rejects
        a cache with a 4D mask or disagrees."""
        vocab = self.tokenizer.num_tokens
        ids = [(5 * i + 7) % vocab for i in range(24)]
        choices = [[(ids[0] + 1) % vocab, 3 % vocab], [4 % vocab]] if self.packing else [[(ids[0] + 1) % vocab, 3 % vocab]]
        sample = self._pack(ids, choices, 64)
        try:
            plain = self._score([sample], greedy=False)[0]
            length = 20
            reused = self._score([sample.after_prefix(length)], greedy=False, prefix=self._prefix_cache(sample.tokens[:length]))[0]
            cache = self._prefix_cache(sample.tokens[:2])
        except Exception:  # noqa: BLE001 - a model whose cache or mask handling differs: no reuse
            return 0
        if not all(np.allclose(p, r, atol=PROBE_TOLERANCE) for p, r in zip(plain, reused)):
            return 0
        return sum(k.numel() * k.element_size() + v.numel() * v.element_size() for k, v in cache) // 2

    @torch.no_grad()
    def _probe_beam_tree(self) -> bool:
        """True when beam search with the beams of an item in one cache row
        (``_HFBeamTreeDecoder``) gives the logits of one row per beam on a probe (two
        left-padded contexts, three beams, a reorder between two steps); False keeps the
        row-per-beam decoder (a model that rejects a 4D mask with a cache, or disagrees)."""
        vocab = self.tokenizer.num_tokens
        contexts = [[(3 * i + 5) % vocab for i in range(7)], [(5 * i + 2) % vocab for i in range(4)]]
        beams = 3
        steps = [([0, 0, 0, 3, 3, 3], [11, 12, 13, 14, 15, 16]), ([2, 0, 2, 4, 3, 5], [17, 18, 19, 20, 21, 22])]
        logits = []
        try:
            for tree in (False, True):
                decoder = self._beam_decoder(*self._prefill(contexts)[:3], beams, tree)
                for index, (rows, tokens) in enumerate(steps):
                    decoder.reorder(torch.tensor(rows, device=self.device))
                    logits.append(decoder.step(torch.tensor(tokens, device=self.device) % vocab, index).float())
        except Exception:  # noqa: BLE001 - a model whose cache or mask handling differs: one row per beam
            return False
        half = len(steps)
        return all(torch.allclose(a, b, atol=PROBE_TOLERANCE, rtol=PROBE_TOLERANCE) for a, b in zip(logits[:half], logits[half:]))

    def describe(self) -> dict[str, Any]:
        """How this scorer reads the model, for results.json."""
        return {"packed_multiple_choice": self.packing, "lm_head_only_at_scored_rows": self.head_only_at_rows,
                "max_batch_tokens": self.max_batch_tokens, "max_decode_tokens": self.max_decode_tokens,
                "max_model_length": self.max_model_length, "add_bos": self.add_bos,
                "beam_tree": self.beam_tree, "prefix_reuse": self.prefix_reuse, "prefix_cache_mb": self.prefix_cache_bytes // 2**20,
                "prefix_cache_read_only": self.prefix_cache_read_only, "prefix_forward_cost": self.prefix_forward_cost,
                **({"prefix_reuse_stats": self.prefix_stats.as_dict()} if self.prefix_reuse else {})}

    def effective_max_length(self, options: EncodingOptions) -> int:
        """A task may not ask for more context than the model has positions for."""
        return min(options.max_seq_length, self.max_model_length)

    def _note_glm_switches(self, options: EncodingOptions) -> None:
        if not self._noted_glm_switches and (options.use_task_mask or options.use_multitask_encoding or not options.unidirectional):
            self._noted_glm_switches = True
            self.log("> Note: GLM encoding switches (use-task-mask, unidirectional, use-multitask-encoding) "
                     "do not apply to a causal LM and are ignored by the HF backend")

    def _context(self, context: Sequence[int]) -> list[int]:
        """BOS policy and the empty context (lm-eval: an empty context is the prefix token)."""
        ids = [int(i) for i in context]
        bos = self.tokenizer.bos_id
        if self.add_bos and bos is not None and (not ids or ids[0] != bos):
            ids = [bos, *ids]
        return ids if ids else [self.tokenizer.prefix_id]

    # -- building sequences -----------------------------------------------------------------
    def _pack(self, context: Sequence[int], choices: Sequence[Sequence[int]], max_length: int) -> CausalSequence:
        """Context then ``choice[:-1]`` blocks; ``choice[j]`` is read at the row before it
        (the last context row for ``j == 0``). One block (or none: all choices single
        tokens) is a plain causal sequence."""
        longest = max(len(c) for c in choices)
        if longest > max_length:
            raise ValueError(f"a continuation of {longest} tokens does not fit in {max_length} positions")
        ctx = self._context(context)
        ctx = ctx[max(0, len(ctx) - (max_length - longest + 1)) :]
        n = len(ctx)
        tokens = list(ctx)
        block_lens, rows = [], []
        for choice in choices:
            start = len(tokens)
            rows.append(np.asarray([n - 1, *range(start, start + len(choice) - 1)], dtype=np.int64))
            if len(choice) > 1:
                tokens.extend(choice[:-1])
                block_lens.append(len(choice) - 1)
        return CausalSequence(np.asarray(tokens, dtype=np.int64), n, block_lens, rows,
                              [np.asarray(c, dtype=np.int64) for c in choices])

    # -- the forward pass -------------------------------------------------------------------
    @torch.no_grad()
    def _prefix_cache(self, ids: np.ndarray) -> list[tuple[torch.Tensor, torch.Tensor]]:
        """Per layer (keys, values) [1, heads, len(ids), d] of a shared prefix."""
        out = self.model(input_ids=torch.from_numpy(np.asarray(ids, dtype=np.int64))[None].to(self.device), use_cache=True,
                         logits_to_keep=1)
        return [(layer.keys, layer.values) for layer in output_cache(out).layers]

    @torch.no_grad()
    def _hidden_or_logits(self, samples: Sequence[CausalSequence],
                          prefix: Optional[list[tuple[torch.Tensor, torch.Tensor]]] = None) -> torch.Tensor:
        """Right-padded batch forward: hidden states [b, L, h] (or logits [b, L, V] when the
        head cannot be split off). Plain causal batches use a 2D padding mask; packed ones
        a 4D float mask (0 = attend, dtype minimum = masked) and explicit positions. With
        ``prefix`` (a shared prefix's cache, see ``prefix_reuse.py``) the samples are what
        follows it: every row also attends to the prefix, through a 4D mask."""
        length = max(len(s) for s in samples)
        b = len(samples)
        tokens = np.full((b, length), self.tokenizer.pad_id, dtype=np.int64)
        positions = np.zeros((b, length), dtype=np.int64)
        for i, s in enumerate(samples):
            tokens[i, : len(s)] = s.tokens
            positions[i, : len(s)] = s.positions()
            positions[i, len(s) :] = np.arange(len(s), length) + s.offset
        cache = None
        if prefix is not None:
            cache = batch_cache_on_prefix(prefix, b, self.prefix_cache_read_only)
            own = np.stack([block_mask(s, length) for s in samples])
            allowed = torch.from_numpy(np.concatenate([np.ones((b, length, prefix[0][0].shape[2]), dtype=bool), own], axis=2))[:, None]
            mask = torch.zeros(allowed.shape, dtype=self.dtype).masked_fill_(~allowed, torch.finfo(self.dtype).min)
        elif any(s.packed for s in samples):
            allowed = torch.from_numpy(np.stack([block_mask(s, length) for s in samples]))[:, None]
            mask = torch.zeros(allowed.shape, dtype=self.dtype).masked_fill_(~allowed, torch.finfo(self.dtype).min)
        else:
            mask = torch.from_numpy(np.stack([np.arange(length) < len(s) for s in samples]).astype(np.int64))
        kwargs = dict(input_ids=torch.from_numpy(tokens).to(self.device), attention_mask=mask.to(self.device),
                      position_ids=torch.from_numpy(positions).to(self.device), use_cache=cache is not None)
        if cache is not None:
            kwargs.update(cache_argument(self.model, cache))
        if self.head_only_at_rows:
            return self.model.base_model(**kwargs).last_hidden_state
        return self.model(**kwargs).logits

    @torch.no_grad()
    def _score(self, samples: Sequence[CausalSequence], greedy: bool,
               prefix: Optional[list[tuple[torch.Tensor, torch.Tensor]]] = None) -> list[list[Any]]:
        """Per sample and unit: the target log-probs (float32 array), and with ``greedy``
        also whether each target is the argmax of its row."""
        out = self._hidden_or_logits(samples, prefix)
        project = self.model.get_output_embeddings() if self.head_only_at_rows else (lambda rows: rows)
        scored = score_target_rows(out, samples, full_vocab_log_probs(project))
        if greedy:
            return scored
        return [[log_probs for log_probs, _ in units] for units in scored]

    def _run(self, samples: Sequence[CausalSequence], greedy: bool, progress: Progress,
             counts: Optional[Sequence[int]] = None, on_units: Optional[Callable[[list[int], list[Any]], None]] = None
             ) -> list[list[Any]]:
        """Score samples in token-budget batches; results in sample order. ``counts[i]`` is
        how many requests sample i finishes (for the progress callback); ``on_units`` hears
        of each batch's sample indices and units."""
        results: list[Optional[list[Any]]] = [None] * len(samples)

        def deliver(batch: list[int], scored: list[list[Any]]) -> None:
            for index, units in zip(batch, scored):
                results[index] = units
            if on_units is not None:
                on_units(batch, scored)
            if progress is not None:
                progress(len(batch) if counts is None else sum(counts[i] for i in batch))

        alone = list(range(len(samples)))
        if self.prefix_reuse and len(samples) > 1:
            groups, alone = group_by_prefix([s.tokens for s in samples], [s.reusable_prefix() for s in samples],
                                            forward_cost=self.prefix_forward_cost)
            for group in groups:
                self._run_group(group, samples, greedy, deliver)
        for batch in plan_batches([len(samples[i]) for i in alone], self.max_batch_tokens):
            indices = [alone[j] for j in batch]
            deliver(indices, self._score([samples[i] for i in indices], greedy))
        return results  # type: ignore[return-value]

    def _run_group(self, group: PrefixGroup, samples: Sequence[CausalSequence], greedy: bool,
                   deliver: Callable[[list[int], list[list[Any]]], None]) -> None:
        """The members of one prefix group: the prefix once, then the members' own tokens in
        token-budget batches on its cache, each batch also small enough that the cache it
        needs at once fits --prefix-cache-mb: the prefix, plus rows x (prefix + longest own
        part) keys and values of one layer (``prefix_cache.py``: each layer's are dropped
        after its attention) or of every layer (transformers' ``DynamicCache`` keeps them)."""
        prefix = self._prefix_cache(samples[group.members[0]].tokens[: group.length])
        rests = [samples[i].after_prefix(group.length) for i in group.members]
        stats = self.prefix_stats
        stats.groups += 1
        stats.requests += len(group.members)
        stats.prefix_tokens_saved += group.length * (len(group.members) - 1)
        prefix_bytes = group.length * self.kv_bytes_per_token
        layers_at_once = 1 if self.prefix_cache_read_only else len(prefix)
        for batch in plan_batches([len(r) for r in rests], self.max_batch_tokens):
            longest = max(len(rests[j]) for j in batch)
            row_bytes = max(1, (group.length + longest) * self.kv_bytes_per_token * layers_at_once // len(prefix))
            rows = max(1, (self.prefix_cache_bytes - prefix_bytes) // row_bytes)
            for start in range(0, len(batch), rows):
                part = batch[start : start + rows]
                stats.peak_cache_bytes = max(stats.peak_cache_bytes, prefix_bytes + len(part) * row_bytes)
                deliver([group.members[j] for j in part], self._score([rests[j] for j in part], greedy, prefix))

    @staticmethod
    def _one_to_one(on_batch: BatchResults, finish: Callable[[Any], Any]) -> Optional[Callable[[list[int], list[Any]], None]]:
        """``on_units`` for calls with one sample per request."""
        if on_batch is None:
            return None
        return lambda batch, scored: on_batch(batch, [finish(units) for units in scored])

    # -- the scorer API ----------------------------------------------------------------------
    def cond_log_prob(self, requests: Sequence[tuple[Sequence[int], Sequence[Sequence[int]]]], options: EncodingOptions,
                      batch_size: int = 1, progress: Progress = None, on_batch: BatchResults = None) -> list[list[float]]:
        """Summed log-probability (nats, float64 sum) of every choice given its context.
        ``batch_size`` is ignored: batches are filled to ``max_batch_tokens``."""
        self._note_glm_switches(options)
        max_length = self.effective_max_length(options)

        def finish(units: list[np.ndarray]) -> list[float]:
            return [float(u.sum(dtype=np.float64)) for u in units]

        if self.packing:
            samples = [self._pack(context, choices, max_length) for context, choices in requests]
            return [finish(units) for units in self._run(samples, False, progress, on_units=self._one_to_one(on_batch, finish))]
        # Fallback: one causal sequence per multi-token choice (single-token choices of an
        # item still share one sequence: they are all read at the context's last row).
        samples, owners, counts = [], [], []
        for r, (context, choices) in enumerate(requests):
            single = [k for k, c in enumerate(choices) if len(c) == 1]
            groups = ([single] if single else []) + [[k] for k, c in enumerate(choices) if len(c) > 1]
            for g, group in enumerate(groups):
                samples.append(self._pack(context, [choices[k] for k in group], max_length))
                owners.append((r, group))
                counts.append(1 if g == 0 else 0)
        scores: list[list[float]] = [[0.0] * len(choices) for _, choices in requests]
        remaining = [0] * len(requests)
        for r, _ in owners:
            remaining[r] += 1

        def collect(batch: list[int], scored: list[Any]) -> None:  # a request is done with its last sample
            done = []
            for index, units in zip(batch, scored):
                r, group = owners[index]
                for k, u in zip(group, units):
                    scores[r][k] = float(u.sum(dtype=np.float64))
                remaining[r] -= 1
                if remaining[r] == 0:
                    done.append(r)
            if on_batch is not None and done:
                on_batch(done, [scores[r] for r in done])

        self._run(samples, False, progress, counts, on_units=collect)
        return scores

    def continuation_scores(self, requests: Sequence[tuple[Sequence[int], Sequence[int]]], options: EncodingOptions,
                            batch_size: int = 1, progress: Progress = None, on_batch: BatchResults = None
                            ) -> list[tuple[float, bool]]:
        """(log p(target | context) in nats, summed in float64; whether every target token
        is the argmax under teacher forcing) per request: lm-eval's ``loglikelihood``."""
        self._note_glm_switches(options)
        max_length = self.effective_max_length(options)
        for _, target in requests:
            if len(target) == 0:
                raise ValueError("continuation_scores needs a non-empty target")
        samples = [self._pack(context, [target], max_length) for context, target in requests]

        def finish(units: list[Any]) -> tuple[float, bool]:
            log_probs, greedy = units[0]
            return float(log_probs.sum(dtype=np.float64)), bool(greedy.all())

        return [finish(units) for units in self._run(samples, True, progress, on_units=self._one_to_one(on_batch, finish))]

    def lm_windows(self, tokens: Sequence[int], options: EncodingOptions, generation_length: int) -> list[CausalSequence]:
        """Rolling windows over a document (see the module doc); each predicts its tokens
        from everything before them that fits in ``max_length`` inputs."""
        self._note_glm_switches(options)
        max_length = self.effective_max_length(options)
        step = max(1, min(generation_length, max_length))
        extended = [self.tokenizer.prefix_id, *[int(t) for t in tokens]]  # extended[j + 1] is tokens[j]
        windows = []
        for a in range(0, len(tokens), step):
            b = min(a + step, len(tokens))
            start = max(0, b - max_length)
            inputs = np.asarray(extended[start:b], dtype=np.int64)
            windows.append(CausalSequence(inputs, len(inputs), [], [np.arange(a - start, b - start)],
                                          [np.asarray(extended[a + 1 : b + 1], dtype=np.int64)]))
        return windows

    def calculate_loss(self, windows: Sequence[CausalSequence], batch_size: int = 1, progress: Progress = None,
                       on_batch: BatchResults = None) -> list[tuple[float, int]]:
        """(summed NLL in nats, number of scored tokens) per window."""
        def finish(units: list[np.ndarray]) -> tuple[float, int]:
            return -float(units[0].sum(dtype=np.float64)), int(units[0].size)

        return [finish(units) for units in self._run(windows, False, progress, on_units=self._one_to_one(on_batch, finish))]

    # -- generation -----------------------------------------------------------------------------
    @torch.no_grad()
    def generate_text(self, contexts: Sequence[Sequence[int]], options: EncodingOptions, settings: DecodingSettings,
                      batch_size: int = 1, progress: Progress = None, on_batch: BatchResults = None) -> list[list[int]]:
        """Greedy or beam search (``decoding.py``) with the model's KV cache; generated ids
        per context, end token stripped. Contexts keep their last ``max_length -
        max_gen_length`` tokens."""
        self._note_glm_switches(options)
        if self.pack_head_for_generation:
            from ..model.cpu_linear import pack_head

            pack_head(self.model)  # generation runs the head on every row of every step: worth its packed copy
            self.pack_head_for_generation = False
        budget = self.effective_max_length(options) - settings.max_gen_length
        if budget < 1:
            raise ValueError(f"max_gen_length {settings.max_gen_length} leaves no room for a context "
                             f"in {self.effective_max_length(options)} positions")
        prepared = [self._context(c)[-budget:] for c in contexts]
        # With the beam tree (see _HFBeamTreeDecoder) an item's beams share one cache row, so a
        # batch is budgeted by its items' rows, as for greedy decoding; without it by beams x items.
        rows = 1 if self.beam_tree or settings.num_beams <= 1 else settings.num_beams
        outputs: list[list[int]] = [[] for _ in prepared]
        lengths = [len(c) + settings.max_gen_length for c in prepared]
        batches = plan_batches(lengths, self.max_batch_tokens, rows_per_item=rows)
        # Greedy rows of consecutive batches decode together (plan_decode_groups); beams already
        # give every step num_beams rows per item.
        groups = (plan_decode_groups(batches, lengths, self.max_decode_tokens) if settings.num_beams <= 1
                  else [[batch] for batch in batches])
        for group in groups:
            batch = [index for part in group for index in part]
            generated_batch = self._generate_group([[prepared[i] for i in part] for part in group], settings)
            for index, generated in zip(batch, generated_batch):
                outputs[index] = generated
            if on_batch is not None:
                on_batch(batch, generated_batch)
            if progress is not None:
                progress(len(batch))
        return outputs

    def _generate_group(self, parts: Sequence[Sequence[list[int]]], settings: DecodingSettings) -> list[list[int]]:
        """Greedy generation for the contexts of several prefill batches, each prefilled as
        it would be alone, then decoded as one batch on their merged cache (decoded part by
        part if the model's cache cannot be merged)."""
        if len(parts) == 1:
            return self._generate_batch(parts[0], settings)
        prefills = [self._prefill(part) for part in parts]
        widths = [valid.shape[1] for _, valid, _, _ in prefills]
        cache = merge_left_padded_caches([p[0] for p in prefills], widths)
        if cache is None:
            out: list[list[int]] = []
            for (part_cache, valid, lengths, first_logits) in prefills:
                out.extend(greedy_decode(first_logits, _HFCachedDecoder(self.model, part_cache, valid, lengths), settings))
            return out
        width = max(widths)
        valid = torch.cat([F.pad(v, (width - v.shape[1], 0)) for _, v, _, _ in prefills], dim=0)
        lengths = torch.cat([p[2] for p in prefills])
        first_logits = torch.cat([p[3] for p in prefills])
        del prefills
        return greedy_decode(first_logits, _HFCachedDecoder(self.model, cache, valid, lengths), settings)

    def _prefill(self, contexts: Sequence[list[int]]) -> tuple[Any, torch.Tensor, torch.Tensor, torch.Tensor]:
        """Left-padded contexts through the model once: (cache, valid [rows, length] with 0
        on padding, context lengths, logits after each context)."""
        from transformers import DynamicCache

        length = max(len(c) for c in contexts)
        tokens = torch.full((len(contexts), length), self.tokenizer.pad_id, dtype=torch.long)
        valid = torch.zeros((len(contexts), length), dtype=torch.long)
        for i, c in enumerate(contexts):  # left padding: every context ends at the same column
            tokens[i, length - len(c) :] = torch.tensor(c)
            valid[i, length - len(c) :] = 1
        positions = (valid.cumsum(dim=1) - 1).clamp(min=0)
        out = self.model(input_ids=tokens.to(self.device), attention_mask=valid.to(self.device),
                         position_ids=positions.to(self.device), use_cache=True, logits_to_keep=1,
                         **cache_argument(self.model, DynamicCache()))
        lengths = torch.tensor([len(c) for c in contexts], device=self.device)
        return output_cache(out), valid.to(self.device), lengths, out.logits[:, -1]

    def _generate_batch(self, contexts: Sequence[list[int]], settings: DecodingSettings) -> list[list[int]]:
        cache, valid, lengths, first_logits = self._prefill(contexts)
        if settings.num_beams <= 1:
            return greedy_decode(first_logits, _HFCachedDecoder(self.model, cache, valid, lengths), settings)
        n = settings.no_repeat_ngram_size
        tails = [c[-(n - 1) :] if n > 1 else [] for c in contexts]
        decoder = self._beam_decoder(cache, valid, lengths, settings.num_beams, self.beam_tree)
        return beam_search(first_logits, decoder, settings, [len(c) for c in contexts], tails)

    def _beam_decoder(self, cache: Any, valid: torch.Tensor, lengths: torch.Tensor, beams: int, tree: bool) -> Any:
        """The decoder beam search runs on after ``_prefill``: the beam tree, or one cache row
        per beam (the cache repeated ``beams`` times per item)."""
        if tree:
            return _HFBeamTreeDecoder(self.model, cache, valid, lengths, beams, self.dtype)
        decoder = _HFCachedDecoder(self.model, cache, valid, lengths)
        decoder.reorder(torch.arange(valid.shape[0], device=valid.device).repeat_interleave(beams))
        return decoder


class _HFCachedDecoder:
    """``decoding.Decoder`` over a transformers KV cache: one token per row per step, the
    padding mask growing by one column, positions continuing from each context's end."""

    def __init__(self, model: Any, cache: Any, valid: torch.Tensor, context_lengths: torch.Tensor) -> None:
        self.model = model
        self.cache = cache
        self.valid = valid  # [rows, keys so far]: 0 on left padding
        self.context_lengths = context_lengths

    def reorder(self, rows: torch.Tensor) -> None:
        self.cache.reorder_cache(rows)
        self.valid = self.valid.index_select(0, rows)
        self.context_lengths = self.context_lengths.index_select(0, rows)

    def step(self, tokens: torch.Tensor, step_index: int) -> torch.Tensor:
        rows = tokens.shape[0]
        self.valid = torch.cat((self.valid, torch.ones((rows, 1), dtype=self.valid.dtype, device=self.valid.device)), dim=1)
        positions = (self.context_lengths + step_index).view(rows, 1)
        out = self.model(input_ids=tokens.view(rows, 1), attention_mask=self.valid, position_ids=positions,
                         use_cache=True, **cache_argument(self.model, self.cache))
        self.cache = output_cache(out)
        return out.logits[:, -1]


class _HFBeamTreeDecoder:
    """``decoding.Decoder`` for beam search in which the beams of an item share one cache row.

    Why: the row-per-beam layout copies each item's context cache ``num_beams`` times and
    gathers the whole cache again at every step (``reorder``), and its steps multiply the
    weights with only ``num_beams`` rows per item, so batches hold one or two items and a
    step is bound by reading the weights. Here an item is one row: its context is cached
    once, and at each step its ``k`` beams' tokens go in as ``k`` new positions of that row
    (columns ``context + k * step + j``). A 4D mask lets beam ``j`` see the context and its
    own ancestors only (the slots it descends from, one per step), and every beam token of
    a step has the position ``context length + step``, so each beam computes what it would
    compute alone in its own row. ``reorder`` then only rewrites that ancestry mask: the
    cache is never copied, it grows by ``k`` keys per step, and batches are budgeted like
    greedy ones (one row per item), which puts many items' beams through each matmul."""

    def __init__(self, model: Any, cache: Any, valid: torch.Tensor, context_lengths: torch.Tensor, beams: int,
                 dtype: torch.dtype) -> None:
        self.model = model
        self.cache = cache
        self.context_valid = valid.bool()  # [items, context columns]: False on left padding
        self.context_lengths = context_lengths
        self.dtype = dtype
        items = valid.shape[0]
        self.ancestry = torch.zeros((items, beams, 0), dtype=torch.bool, device=valid.device)  # [items, k, generated columns]
        self.own_slot = torch.eye(beams, dtype=torch.bool, device=valid.device).expand(items, beams, beams)

    def reorder(self, rows: torch.Tensor) -> None:
        """``rows[item * k + j]`` = ``item * k + parent``: new beam j continues beam ``parent``."""
        items, k = self.ancestry.shape[:2]
        parents = rows.view(items, k) - torch.arange(items, device=rows.device).unsqueeze(1) * k
        self.ancestry = self.ancestry.gather(1, parents.unsqueeze(-1).expand(-1, -1, self.ancestry.shape[2]))

    def step(self, tokens: torch.Tensor, step_index: int) -> torch.Tensor:
        items, k = self.ancestry.shape[:2]
        self.ancestry = torch.cat((self.ancestry, self.own_slot), dim=2)
        allowed = torch.cat((self.context_valid.unsqueeze(1).expand(-1, k, -1), self.ancestry), dim=2)
        mask = torch.zeros(allowed.shape, dtype=self.dtype, device=allowed.device).masked_fill_(~allowed, torch.finfo(self.dtype).min)
        positions = (self.context_lengths + step_index).view(items, 1).expand(items, k)
        out = self.model(input_ids=tokens.view(items, k), attention_mask=mask.unsqueeze(1), position_ids=positions,
                         use_cache=True, **cache_argument(self.model, self.cache))
        self.cache = output_cache(out)
        return out.logits.reshape(items * k, -1)


def cache_argument(model: Any, cache: Any) -> dict[str, Any]:
    """The key/value cache keyword of this transformers version: ``cache`` (5.x, where
    ``past_key_values`` is deprecated) or ``past_key_values`` (4.x)."""
    forward = getattr(model, "forward", model)
    try:
        parameters = inspect.signature(forward).parameters
    except (TypeError, ValueError):
        parameters = {}
    return {"cache": cache} if "cache" in parameters else {"past_key_values": cache}


def output_cache(out: Any) -> Any:
    """The updated cache of a forward's output, under either version's name."""
    cache = getattr(out, "cache", None)
    return cache if cache is not None else out.past_key_values


def model_max_length(config: Any) -> int:
    """Positions of a transformers config (lm-eval reads the same attributes; 2048 if none)."""
    for name in ("n_positions", "max_position_embeddings", "n_ctx"):
        value = getattr(config, name, None)
        if isinstance(value, int) and value > 0:
            return value
    return 2048
