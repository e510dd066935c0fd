"""Turn tokenized items into GLM input sequences: tokens, position ids, attention masks.

This is where GLM's scoring semantics live (see docs of the GLM-130B harness):

* Multiple choice: context + ``[MASK]``/``[gMASK]`` (bidirectional), then one block per
  choice, ``sop + choice[:-1]``, causal within itself, seeing the whole context and
  never the other choices. With ``[gMASK]`` block positions continue linearly from
  the context end; with ``[MASK]`` every choice token takes the mask's position.
  If every choice is one token, a single ``sop`` block serves all of them.
* Generation: context + mask + ``sop``; the context is bidirectional, generated
  tokens causal. Unidirectional mode is ``[gMASK] sop context`` fully causal.
* Language modelling: non-overlapping windows of ``generation_length`` scored
  tokens with up to ``max_seq_length - 1`` tokens of bidirectional prompt.

Masks here are boolean with **True = may attend** (PyTorch's convention); the
reference used the opposite (True = masked). Positions are [s] for 1D models and
[2, s] (position, block position) for 2D models.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Sequence

import numpy as np


@dataclass(frozen=True)
class SpecialIds:
    """The token ids the packing rules need, taken from the tokenizer once."""

    mask: int
    gmask: int
    sop: int
    pad: int
    eos: int = -1  # only read with context_eos (THUDM/GLM's add_eos)


@dataclass
class PackedSequence:
    """One model input row plus where to read which target ids."""

    tokens: np.ndarray  # [s] int64
    positions: np.ndarray  # [s] or [2, s] int64
    mask: np.ndarray  # [s, s] bool, True = may attend
    target_rows: list[np.ndarray] = field(default_factory=list)  # per scored unit: rows whose logits are read
    target_ids: list[np.ndarray] = field(default_factory=list)  # per scored unit: ids read at those rows

    def __len__(self) -> int:
        return int(self.tokens.shape[0])


def _block_diag_mask(context_len: int, block_lens: Sequence[int], causal_context: bool) -> np.ndarray:
    total = context_len + sum(block_lens)
    mask = np.zeros((total, total), dtype=bool)
    mask[:, :context_len] = True
    if causal_context:
        mask[:context_len, :context_len] = np.tril(np.ones((context_len, context_len), dtype=bool))
    start = context_len
    for length in block_lens:
        mask[start : start + length, start : start + length] = np.tril(np.ones((length, length), dtype=bool))
        start += length
    mask[:context_len, context_len:] = False
    return mask


def _positions(first: np.ndarray, second: np.ndarray | None) -> np.ndarray:
    return first if second is None else np.stack([first, second])


def truncate_left(ids: Sequence[int], budget: int) -> list[int]:
    """Keep the last ``budget`` ids (GLM truncates contexts from the left)."""
    ids = list(ids)
    return ids[len(ids) - budget :] if len(ids) > budget else ids


def build_multiple_choice(
    context: Sequence[int],
    choices: Sequence[Sequence[int]],
    ids: SpecialIds,
    *,
    use_task_mask: bool,
    unidirectional: bool,
    use_multitask_encoding: bool,
    max_seq_length: int,
    position_2d: bool,
    unidirectional_prefix: int = 0,
    context_eos: bool = False,
) -> PackedSequence:
    """Pack all choices of one item into a single sequence (reference semantics).

    ``unidirectional_prefix`` N > 0 (unidirectional mode only) is THUDM/GLM's
    ``--unidirectional`` layout for the original GLM: the first N context tokens and the
    mask stay in front, bidirectional among themselves, at positions 0..N; everything
    after (``sop``, the rest of the context, the choice blocks) is one causal blank at the
    mask's position with block positions 1, 2, ... (``tasks/language_model/dataset.py``,
    ``LambadaDataset``: ``[CLS]`` + the first passage token before ``[gMASK]``, N = 2).

    ``context_eos`` puts the tokenizer's eos right after the mask, in the bidirectional part
    (position mask + 1, block position 0), as THUDM/GLM's ``build_input_from_ids`` does by
    default (``add_eos``): its LAMBADA rows are ``[CLS] passage [gMASK] <eos> | <sop> word``."""
    if unidirectional_prefix:
        return _build_multiple_choice_prefixed(context, choices, ids, use_task_mask=use_task_mask,
                                               max_seq_length=max_seq_length, position_2d=position_2d,
                                               prefix_length=unidirectional_prefix, context_eos=context_eos)
    if context_eos and (unidirectional or ids.eos < 0):
        raise ValueError("context_eos needs the bidirectional layout (or unidirectional_prefix) and an eos id")
    single_token = all(len(c) == 1 for c in choices)
    target_length = 1 if single_token else sum(len(c) for c in choices)
    if target_length + 2 >= max_seq_length:
        raise ValueError(f"choices take {target_length} tokens, more than max_seq_length {max_seq_length} allows")
    context = truncate_left(context, max_seq_length - target_length - 2 - int(context_eos))
    mask_id = ids.gmask if use_task_mask else ids.mask
    blank_filling = mask_id in context

    if unidirectional:
        # Fully causal: [gMASK] sop context; each choice block restarts from the last
        # context token, so that row predicts the choice's first token.
        full = [mask_id, ids.sop, *context]
        prefix, block_start = full[:-1], full[-1]
        mask_position = len(prefix)
    else:
        prefix = list(context) if blank_filling else [*context, mask_id]
        if context_eos:
            prefix.append(ids.eos)
        block_start = ids.sop
        mask_position = prefix.index(mask_id)
    division = len(prefix)

    # One sop block serves all single-token choices; otherwise one block per choice.
    block_choices: list[Sequence[int]] = [[]] if single_token else list(choices)
    block_lens = [1] if single_token else [len(c) for c in choices]
    tokens: list[int] = list(prefix)
    pos1: list[int] = list(range(division))
    pos2: list[int] = [0] * division
    target_rows: list[np.ndarray] = []
    for choice, length in zip(block_choices, block_lens):
        start = len(tokens)
        target_rows.append(np.arange(start, start + length))
        tokens.extend([block_start, *list(choice)[:-1]])
        if position_2d:
            pos1.extend([mask_position] * length)
            pos2.extend(range(1, length + 1))
        elif use_task_mask or unidirectional or (use_multitask_encoding and not blank_filling):
            first = division if (use_task_mask or unidirectional) else mask_position
            pos1.extend(range(first, first + length))
        else:
            pos1.extend([mask_position] * length)

    if single_token:
        target_rows = [target_rows[0]] * len(choices)
    packed = PackedSequence(
        tokens=np.asarray(tokens, dtype=np.int64),
        positions=_positions(np.asarray(pos1, dtype=np.int64), np.asarray(pos2, dtype=np.int64) if position_2d else None),
        mask=_block_diag_mask(division, block_lens, causal_context=unidirectional),
        target_rows=target_rows,
        target_ids=[np.asarray(c, dtype=np.int64) for c in choices],
    )
    return packed


def _build_multiple_choice_prefixed(
    context: Sequence[int],
    choices: Sequence[Sequence[int]],
    ids: SpecialIds,
    *,
    use_task_mask: bool,
    max_seq_length: int,
    position_2d: bool,
    prefix_length: int,
    context_eos: bool = False,
) -> PackedSequence:
    """THUDM/GLM's unidirectional layout (see ``build_multiple_choice``):
    ``c[:N] mask | sop c[N:-1] | c[-1] choice_1[:-1] | c[-1] choice_2[:-1] ...``; every
    choice block sees the front part and the shared causal part, never another choice."""
    target_length = sum(len(c) for c in choices)
    if target_length + prefix_length + 3 >= max_seq_length:
        raise ValueError(f"choices take {target_length} tokens, more than max_seq_length {max_seq_length} allows")
    context = list(context)
    front, rest = context[:prefix_length], context[prefix_length:]
    rest = truncate_left(rest, max_seq_length - target_length - len(front) - 3)
    mask_id = ids.gmask if use_task_mask else ids.mask
    shared = [ids.sop, *rest]  # the blank's causal part before the choices
    head = [*front, mask_id, *([ids.eos] if context_eos else [])]
    division = len(head) + len(shared) - 1  # the last shared token starts every choice block
    block_start = shared[-1]
    tokens = [*head, *shared[:-1]]
    mask_position = len(front)
    pos1 = list(range(len(head))) + [mask_position] * (len(shared) - 1)
    pos2 = [0] * len(head) + list(range(1, len(shared)))
    block_lens = [len(c) for c in choices]
    target_rows: list[np.ndarray] = []
    for choice, length in zip(choices, block_lens):
        start = len(tokens)
        target_rows.append(np.arange(start, start + length))
        tokens.extend([block_start, *list(choice)[:-1]])
        pos1.extend([mask_position] * length)
        pos2.extend(range(len(shared), len(shared) + length))
    mask = _block_diag_mask(division, block_lens, causal_context=True)
    mask[: len(head), : len(head)] = True
    return PackedSequence(
        tokens=np.asarray(tokens, dtype=np.int64),
        positions=_positions(np.asarray(pos1, dtype=np.int64), np.asarray(pos2, dtype=np.int64) if position_2d else None),
        mask=mask,
        target_rows=target_rows,
        target_ids=[np.asarray(c, dtype=np.int64) for c in choices],
    )


@dataclass
class GenerationContext:
    """The prompt part of a generation request and how to position what follows."""

    tokens: np.ndarray  # [c], ends with sop
    positions: np.ndarray  # [c] or [2, c]
    mask: np.ndarray  # [c, c] bool
    gmask: bool
    mask_position: int
    position_2d: bool

    def generated_position(self, step: int) -> tuple[int, int]:
        """(position, block position) of the ``step``-th generated token (0-based)."""
        context_length = len(self.tokens)
        if self.position_2d:
            return self.mask_position, step + 2
        if self.gmask:
            return context_length + step, 0
        return self.mask_position, 0


def build_generation_context(
    context: Sequence[int],
    ids: SpecialIds,
    *,
    use_task_mask: bool,
    unidirectional: bool,
    max_seq_length: int,
    max_gen_length: int,
    position_2d: bool,
) -> GenerationContext:
    """Context + mask + sop with the reference's positions and mask."""
    context = truncate_left(context, max_seq_length - max_gen_length - 2)
    mask_id = ids.gmask if use_task_mask else ids.mask
    blank_filling = mask_id in context
    if blank_filling:
        if unidirectional:
            raise ValueError("unidirectional generation does not support blank filling (a mask token inside the context)")
        mask_position = list(context).index(mask_id)
        tokens = [*context, ids.sop]
    else:
        mask_position = len(context)
        tokens = [mask_id, ids.sop, *context] if unidirectional else [*context, mask_id, ids.sop]
    c = len(tokens)
    pos1 = np.arange(c, dtype=np.int64)
    pos2 = np.zeros(c, dtype=np.int64)
    if position_2d:
        pos1[c - 1 :] = mask_position
        pos2[c - 1] = 1
    elif not use_task_mask:
        pos1[c - 1 :] = mask_position
    mask = np.tril(np.ones((c, c), dtype=bool))
    if not unidirectional:
        mask[: c - 1, : c - 1] = True
    return GenerationContext(
        tokens=np.asarray(tokens, dtype=np.int64),
        positions=_positions(pos1, pos2 if position_2d else None),
        mask=mask,
        gmask=use_task_mask,
        mask_position=mask_position,
        position_2d=position_2d,
    )


def build_language_model_windows(
    tokens: Sequence[int],
    ids: SpecialIds,
    *,
    use_task_mask: bool,
    unidirectional: bool,
    max_seq_length: int,
    generation_length: int,
    position_2d: bool,
) -> list[PackedSequence]:
    """Non-overlapping scored windows over a whole document (reference rule).

    Window 0 scores the first ``max_seq_length - 1`` tokens; window i > 0 scores the next
    ``generation_length`` tokens with the preceding ``max_seq_length - 1 - generation_length``
    tokens as bidirectional prompt. Every token is scored exactly once.
    """
    if generation_length >= max_seq_length - 1:
        raise ValueError(f"generation_length {generation_length} must be < max_seq_length - 1 ({max_seq_length - 1})")
    tokens = list(tokens)
    if not tokens:
        raise ValueError("cannot score an empty document")
    mask_id = ids.gmask if use_task_mask else ids.mask
    count = max(-(-max(len(tokens) - (max_seq_length - 1), 0) // generation_length) + 1, 1)
    windows = []
    for index in range(count):
        start = index * generation_length
        chunk = tokens[start : start + max_seq_length - 1]
        if index == 0:
            prompt, text = [], chunk
        else:
            prompt_length = max_seq_length - 1 - generation_length
            prompt, text = chunk[:prompt_length], chunk[prompt_length:]
        seq_len = len(prompt) + len(text) + 1
        mask = np.tril(np.ones((seq_len, seq_len), dtype=bool))
        if not unidirectional:
            # The reference re-scored whole windows in unidirectional mode (tokens counted
            # several times); here the prompt is merely causal and windows stay disjoint.
            mask[: len(prompt) + 1, : len(prompt) + 1] = True
        input_ids = [*prompt, mask_id, ids.sop, *text[:-1]]
        pos1 = np.arange(seq_len, dtype=np.int64)
        windows.append(
            PackedSequence(
                tokens=np.asarray(input_ids, dtype=np.int64),
                positions=_positions(pos1, np.zeros(seq_len, dtype=np.int64) if position_2d else None),
                mask=mask,
                target_rows=[np.arange(len(prompt) + 1, seq_len)],
                target_ids=[np.asarray(text, dtype=np.int64)],
            )
        )
    return windows


def build_language_model_windows_glm(
    tokens: Sequence[int],
    ids: SpecialIds,
    cls_id: int,
    *,
    use_task_mask: bool,
    unidirectional: bool,
    max_seq_length: int,
    generation_length: int,
    position_2d: bool,
) -> list[PackedSequence]:
    """THUDM/GLM's language-modelling windows for the original GLM (``zero_wikitext.sh``,
    ``zero_lm.sh``: ``tasks/language_model/dataset.py``, ``LMDataset`` with ``--block-lm``).

    ``max_seq_length`` is their ``--seq-length``: a window holds ``L = max_seq_length - 1``
    document tokens, window i starting at token ``i * generation_length`` (their
    ``--overlapping-eval``). Window 0 keeps only the document's first token as prompt and
    scores the other ``L - 1`` (so the first token is never scored); window i > 0 keeps its
    first ``L - generation_length`` tokens as prompt and scores the rest. The row is
    ``[CLS] prompt mask | sop text[:-1]``, the prompt bidirectional, the blank causal at the
    mask's position with block positions 1, 2, .... Unidirectional (their
    ``--unidirectional``): every window keeps only its first token as prompt, the blank
    holds the rest, and windows i > 0 score only their last ``generation_length`` tokens.
    Every document token but the first is scored exactly once."""
    length = max_seq_length - 1
    if not 1 <= generation_length < length:
        raise ValueError(f"generation_length {generation_length} must be in [1, {length}) for max_seq_length {max_seq_length}")
    tokens = list(tokens)
    if len(tokens) < 2:
        raise ValueError("a document needs at least two tokens (the first is never scored)")
    mask_id = ids.gmask if use_task_mask else ids.mask
    count = max(-(-max(len(tokens) - length, 0) // generation_length) + 1, 1)
    windows = []
    for index in range(count):
        chunk = tokens[index * generation_length : index * generation_length + length]
        cut = 1 if index == 0 or unidirectional else length - generation_length
        prompt, text = chunk[:cut], chunk[cut:]
        head = [cls_id, *prompt, mask_id]
        # THUDM/GLM masks all but the last ``generation_length`` entries of a row padded to
        # full length, so a short last window scores its last len(chunk) - (L - g) tokens.
        scored = len(text) if index == 0 or not unidirectional else len(chunk) - (length - generation_length)
        seq_len = len(head) + len(text)
        mask = np.tril(np.ones((seq_len, seq_len), dtype=bool))
        mask[:, : len(head)] = True
        mask_position = len(head) - 1
        pos1 = np.concatenate([np.arange(len(head)), np.full(len(text), mask_position)]).astype(np.int64)
        pos2 = np.concatenate([np.zeros(len(head)), np.arange(1, len(text) + 1)]).astype(np.int64)
        windows.append(
            PackedSequence(
                tokens=np.asarray([*head, ids.sop, *text[:-1]], dtype=np.int64),
                positions=_positions(pos1, pos2 if position_2d else None),
                mask=mask,
                target_rows=[np.arange(seq_len - scored, seq_len)],
                target_ids=[np.asarray(text[len(text) - scored :], dtype=np.int64)],
            )
        )
    return windows
