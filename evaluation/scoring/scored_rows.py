"""Log-probabilities at the scored rows only: the step both backends share.

A packed sample names, per scored unit (a choice, a continuation, an LM window), the rows
whose next-token distribution is read and the target ids there. Gathering those rows
before the output projection means logits and log-softmax are computed for [rows, vocab],
never for [batch, length, vocab] -- the largest single saving over a naive scorer.
"""

from __future__ import annotations

from typing import Callable, Protocol, Sequence, Tuple

import numpy as np
import torch


class ScoredSample(Protocol):
    target_rows: Sequence[np.ndarray]
    target_ids: Sequence[np.ndarray]


# (selected rows [R, d], target ids [R]) -> (log p(target) [R] float32, target is the row's argmax [R] bool)
TargetLogProbs = Callable[[torch.Tensor, torch.Tensor], Tuple[torch.Tensor, torch.Tensor]]


# Rows projected to the vocabulary at once: [64, vocab] fp32 logits and their log-softmax are
# 2 x 12.6 MB for SmolLM2 (49,152 ids), 2 x 38 MB for GLM-130B (150,528).
HEAD_CHUNK_ROWS = 64


def head_chunks(rows: int, limit: int = HEAD_CHUNK_ROWS) -> list[tuple[int, int]]:
    """(start, end) of balanced chunks of at most ``limit`` rows. Balanced, so that no chunk is
    a small remainder: a matmul of a few rows runs another kernel (a matrix-vector one) whose
    sums differ in the last bits, while from 16 rows up each row's result does not depend on
    how many rows share the call (``tests/test_scored_rows.py``)."""
    if rows <= 0:
        return [(0, 0)]
    count = -(-rows // limit)
    base, extra = divmod(rows, count)
    bounds = [0]
    for index in range(count):
        bounds.append(bounds[-1] + base + (index < extra))
    return list(zip(bounds[:-1], bounds[1:]))


def full_vocab_log_probs(project: Callable[[torch.Tensor], torch.Tensor]) -> TargetLogProbs:
    """The one-process rule: project the rows to the whole vocabulary, log-softmax in fp32,
    read the target column; ``argmax`` breaks ties towards the lower id. (A tensor-parallel
    model computes the same from vocabulary shards without gathering them.)

    In chunks of rows (``head_chunks``): a language-modelling window scores every one of its
    rows, and 1,024 rows at once were 2 x 200 MB of logits and log-probs for SmolLM2."""

    def target_log_probs(rows: torch.Tensor, target: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        picked, greedy = [], []
        for start, end in head_chunks(rows.shape[0]):
            log_probs = torch.log_softmax(project(rows[start:end]).float(), dim=-1)
            chunk_target = target[start:end]
            picked.append(log_probs.gather(1, chunk_target.unsqueeze(1)).squeeze(1))
            greedy.append(log_probs.argmax(dim=-1) == chunk_target)
            del log_probs
        if len(picked) == 1:
            return picked[0], greedy[0]
        return torch.cat(picked), torch.cat(greedy)

    return target_log_probs


def score_target_rows(states: torch.Tensor, samples: Sequence[ScoredSample], log_probs_fn: TargetLogProbs
                      ) -> list[list[tuple[np.ndarray, np.ndarray]]]:
    """``states`` [batch, length, d] (hidden states, or logits with an identity projection).
    Returns per sample and unit: log p(target id) at each target row (float32 array) and
    whether that id is the row's argmax (the greedy check of continuations)."""
    batch_index, row_index, target_index, spans = [], [], [], []
    for i, sample in enumerate(samples):
        unit_spans = []
        for rows, targets in zip(sample.target_rows, sample.target_ids):
            start = len(row_index)
            batch_index.extend([i] * len(rows))
            row_index.extend(rows.tolist())
            target_index.extend(targets.tolist())
            unit_spans.append((start, len(row_index)))
        spans.append(unit_spans)
    device = states.device
    selected = states[torch.tensor(batch_index, device=device), torch.tensor(row_index, device=device)]
    picked_t, greedy_t = log_probs_fn(selected, torch.tensor(target_index, device=device))
    picked, greedy = picked_t.float().cpu().numpy(), greedy_t.cpu().numpy()
    return [[(picked[a:b], greedy[a:b]) for a, b in unit_spans] for unit_spans in spans]
