"""Greedy decoding and GLM-130B's deterministic beam search over a KV-cached decoder.

The model side is abstracted as a ``Decoder``: it has already consumed the contexts
and exposes ``step(tokens, step_index)`` (feed one token per row, get next-token
logits) and ``reorder(rows)`` (select cache rows, for beams). Strategies here only
pick tokens, so they can be tested against any decoder.

Beam search follows the GLM-130B evaluation strategy (``deterministic=True,
consider_end=True``): candidates are the top ``(n_end + 1) * num_beams`` of the summed
log-probs; a candidate ending in an end token becomes a finished beam scored with the
OpenNMT length penalty ``score / ((5 + L) / 6) ** length_penalty``, where L counts the
context (mask and sop included) plus the generated tokens, as in the reference; an item
is done when it has ``num_beams`` finished beams none of which a continuing beam can
still beat. n-gram bans cover n-grams ending in a generated token.
One deliberate difference: the reference measured L on the *padded* batch context,
so its results changed with the batch; here L uses each item's own context length.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Optional, Protocol, Sequence

import torch

BANNED = -65504.0  # the reference's "minus infinity" (the fp16 minimum)


class Decoder(Protocol):
    def step(self, tokens: torch.Tensor, step_index: int) -> torch.Tensor:
        """Feed ``tokens`` [rows] as generated token number ``step_index``; return logits [rows, vocab]."""

    def reorder(self, rows: torch.Tensor) -> None:
        """Keep cache rows ``rows`` (in this order)."""


@dataclass(frozen=True)
class DecodingSettings:
    max_gen_length: int
    end_ids: tuple[int, ...]
    min_gen_length: int = 0
    num_beams: int = 1
    length_penalty: float = 1.0
    no_repeat_ngram_size: int = 0
    banned_first_ids: tuple[int, ...] = ()
    # Stop strings (lm-eval's ``until``) and the check that applies them: ``stopped`` is called
    # with a row's generated ids and is true once its decoded text holds a stop string. The row
    # (a beam: its candidate) then ends like one that produced an end token, but keeps its
    # tokens: the task cuts the decoded text. The strings are part of the settings' digest
    # (record keys, ranks' agreement); the function is not (a lambda's repr has an address).
    stop_strings: tuple[str, ...] = ()
    stopped: Optional[Callable[[Sequence[int]], bool]] = field(default=None, compare=False, metadata={"digest": False})

    def ends(self, tokens: Sequence[int]) -> bool:
        """Whether a row whose generated ids are ``tokens`` is finished."""
        return (bool(tokens) and tokens[-1] in self.end_ids) or (self.stopped is not None and self.stopped(tokens))


def _ban(logits: torch.Tensor, step: int, settings: DecodingSettings) -> None:
    if step < settings.min_gen_length and settings.end_ids:
        logits[..., list(settings.end_ids)] = BANNED
    if step == 0 and settings.banned_first_ids:
        logits[..., list(settings.banned_first_ids)] = BANNED


def _strip_end(tokens: list[int], end_ids: Sequence[int]) -> list[int]:
    return tokens[:-1] if tokens and tokens[-1] in end_ids else tokens


# Finished rows leave the decoder's batch once this share of it or less is still going: a
# finished row would otherwise run through every later step (and, on a KV cache, keep its
# keys), while dropping rows costs one gather of the cache, so it is done in steps, not per row.
PRUNE_WHEN_ACTIVE_SHARE = 0.75


def greedy_decode(first_logits: torch.Tensor, decoder: Decoder, settings: DecodingSettings) -> list[list[int]]:
    """Batched argmax decoding; a row stops at its first end token (or stop string).

    Finished rows are dropped from the decoder (``decoder.reorder``) once at most
    ``PRUNE_WHEN_ACTIVE_SHARE`` of its rows are still going, so a long generation in a
    batch does not carry the batch's finished rows to its end."""
    rows = first_logits.shape[0]
    outputs: list[list[int]] = [[] for _ in range(rows)]
    active = list(range(rows))  # the output row of each decoder row
    done = [False] * rows  # per decoder row
    logits = first_logits.float().clone()
    for step in range(settings.max_gen_length):
        _ban(logits, step, settings)
        next_tokens = logits.argmax(dim=-1)
        for position, token in enumerate(next_tokens.tolist()):
            if not done[position]:
                row = active[position]
                outputs[row].append(token)
                done[position] = settings.ends(outputs[row])
        if all(done) or step + 1 == settings.max_gen_length:
            break
        going = [position for position, finished in enumerate(done) if not finished]
        if len(going) <= PRUNE_WHEN_ACTIVE_SHARE * len(done):
            keep = torch.tensor(going, device=next_tokens.device)
            decoder.reorder(keep)
            next_tokens = next_tokens.index_select(0, keep)
            active = [active[position] for position in going]
            done = [False] * len(going)
        logits = decoder.step(next_tokens, step).float()
    return [_strip_end(out, settings.end_ids) for out in outputs]


class _FinishedBeams:
    """The best ``num_beams`` finished beams of one item, best first."""

    def __init__(self, capacity: int, length_penalty: float) -> None:
        self.capacity = capacity
        self.length_penalty = length_penalty
        self.beams: list[list[int]] = []
        self.scores: list[float] = []

    def penalized(self, score: float, length: int) -> float:
        return score / ((5.0 + length) / 6.0) ** self.length_penalty

    def add(self, score: float, beam: list[int], length: int) -> None:
        score = self.penalized(score, length)
        index = len(self.scores)
        while index > 0 and not score < self.scores[index - 1]:
            index -= 1
        self.beams.insert(index, beam)
        self.scores.insert(index, score)
        del self.beams[self.capacity :], self.scores[self.capacity :]

    def is_full(self) -> bool:
        return len(self.beams) == self.capacity


def beam_search(
    first_logits: torch.Tensor,
    decoder: Decoder,
    settings: DecodingSettings,
    context_lengths: Sequence[int],
    context_tails: Sequence[Sequence[int]],
) -> list[list[int]]:
    """Beam search for a batch of items. ``first_logits`` [items, vocab] are the logits after
    each context; the decoder's cache must already hold ``num_beams`` rows per item
    (item-major). ``context_tails`` are the last tokens of each context (for n-gram bans)."""
    items, vocab = first_logits.shape
    k = settings.num_beams
    n = settings.no_repeat_ngram_size
    end_ids = settings.end_ids
    device = first_logits.device
    logits = first_logits.float().repeat_interleave(k, dim=0)
    beam_scores = torch.full((items, k), float("-inf"), device=device)
    beam_scores[:, 0] = 0.0  # all beams start identical: only the first may expand
    beams: list[list[list[int]]] = [[[] for _ in range(k)] for _ in range(items)]
    bans: list[list[dict[tuple[int, ...], tuple[int, ...]]]] = [[{} for _ in range(k)] for _ in range(items)]
    finished = [_FinishedBeams(k, settings.length_penalty) for _ in range(items)]
    done = [False] * items
    num_candidates = (max(1, len(end_ids)) + 1) * k

    for step in range(settings.max_gen_length):
        logits = logits.view(items, k, vocab)
        _ban(logits, step, settings)
        if n > 0:
            for item in range(items):
                if context_lengths[item] + step <= n:
                    continue
                for beam in range(k):
                    history = [*context_tails[item], *beams[item][beam]]
                    prefix = tuple(history[len(history) - (n - 1) :]) if n > 1 else ()
                    banned = bans[item][beam].get(prefix)
                    if banned:
                        logits[item, beam, list(banned)] = BANNED
        scores = torch.log_softmax(logits, dim=-1) + beam_scores.unsqueeze(-1)
        top_scores, top_index = scores.view(items, k * vocab).topk(num_candidates, dim=1)
        top_scores, top_index = top_scores.tolist(), top_index.tolist()

        rows: list[int] = []
        new_scores: list[list[float]] = []
        new_beams: list[list[list[int]]] = []
        new_bans: list[list[dict]] = []
        for item in range(items):
            kept_scores, kept_beams, kept_bans = [], [], []
            for score, index in zip(top_scores[item], top_index[item]):
                parent, token = divmod(index, vocab)
                beam = [*beams[item][parent], token]
                if not done[item] and (token in end_ids or settings.stopped is not None and settings.stopped(beam)):
                    finished[item].add(score, beam, context_lengths[item] + len(beam))
                elif len(kept_beams) < k:
                    rows.append(item * k + parent)
                    kept_scores.append(score)
                    kept_beams.append(beam)
                    item_bans = dict(bans[item][parent])
                    if n > 0:
                        history = [*context_tails[item], *beams[item][parent]]
                        prefix = tuple(history[len(history) - (n - 1) :]) if n > 1 else ()
                        item_bans[prefix] = item_bans.get(prefix, ()) + (token,)
                    kept_bans.append(item_bans)
                else:
                    break
            new_scores.append(kept_scores)
            new_beams.append(kept_beams)
            new_bans.append(kept_bans)
        beam_scores = torch.tensor(new_scores, device=device)
        beams, bans = new_beams, new_bans
        for item in range(items):
            length = context_lengths[item] + step + 1
            best_open = finished[item].penalized(max(new_scores[item]), length)
            if finished[item].is_full() and finished[item].scores[-1] >= best_open:
                done[item] = True
        if all(done) or step + 1 == settings.max_gen_length:
            break
        row_index = torch.tensor(rows, device=device)
        decoder.reorder(row_index)
        last_tokens = torch.tensor([beam[-1] for item_beams in beams for beam in item_beams], device=device)
        logits = decoder.step(last_tokens, step).float()

    results = []
    for item in range(items):
        if not done[item]:
            for beam in range(k):
                finished[item].add(float(beam_scores[item, beam]), beams[item][beam], context_lengths[item] + len(beams[item][beam]))
        results.append(_strip_end(finished[item].beams[0], end_ids))
    return results
