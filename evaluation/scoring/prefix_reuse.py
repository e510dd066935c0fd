"""Shared-prefix reuse for causal models: find requests whose token ids start alike, so that
the common part (few-shot examples, an instruction) is computed once and its key/value cache
reused for each request's own tokens.

Why in token space: every request is first encoded by the usual rule (lm-eval's joint
context + continuation encoding, BOS policy, left truncation), and only then are the ids
compared. A text prefix shared by two prompts need not be a token prefix (BPE merges across
the boundary), and the cache of a token prefix is exactly what a full forward computes for
those positions in a causal model, so reuse changes nothing but the floating-point order of
the sums (measured in ``tests/test_prefix_reuse.py``).

Why not for GLM: GLM's context is bidirectional (every context token attends to later
context tokens), so the states of a shared beginning depend on what follows it; there is
no reusable prefix cache, and the GLM scorer keeps its packed path.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Sequence

import numpy as np

MIN_PREFIX_TOKENS = 16  # shorter shared prefixes are never grouped, whatever the cost rule below says
# What one extra forward call costs, in tokens of work. Measured on SmolLM2-135M, fp32, 2
# threads: a forward of 1 token takes 40 ms (reading every weight once, plus Python), a
# forward of 1,024 tokens 1.2 ms per token, so the fixed part is about 33 tokens. A group
# adds two calls that its members would not have made in the shared batches: the prefix's,
# and at least one batch of the members' own tokens. WSC273 (pairs sharing 16-30 tokens)
# ran 1.17x slower with reuse before this was counted.
FORWARD_COST_TOKENS = 32


def common_prefix_length(a: np.ndarray, b: np.ndarray) -> int:
    """How many leading ids ``a`` and ``b`` share."""
    n = min(len(a), len(b))
    if n == 0:
        return 0
    differ = np.flatnonzero(a[:n] != b[:n])
    return int(differ[0]) if differ.size else n


@dataclass
class PrefixGroup:
    """Requests (indices into the caller's list) that share their first ``length`` ids."""

    length: int
    members: list[int] = field(default_factory=list)


def group_by_prefix(tokens: Sequence[np.ndarray], limits: Sequence[int], min_length: int = MIN_PREFIX_TOKENS,
                    forward_cost: int = FORWARD_COST_TOKENS) -> tuple[list[PrefixGroup], list[int]]:
    """Groups of at least two requests sharing at least ``min_length`` leading ids, and the
    requests left alone. ``limits[i]`` caps the prefix of request i (the scorer keeps at
    least one context token after it, whose row predicts the first target).

    Requests are sorted by their ids, so that any set sharing a prefix is a run of
    neighbours, and ``shared[k]`` (the prefix neighbours k and k + 1 share, capped by both
    limits) says how long. A run's common prefix is its smallest ``shared``. A group saves
    ``(members - 1) x prefix`` recomputed tokens and costs two extra forward calls
    (``2 x forward_cost`` tokens); only groups that save more than they cost are made. A run
    is cut where ``shared`` is shortest whenever its parts together save more than the
    whole: four-shot prompts keep their long prefix even when one-shot prompts of the same
    examples sort next to them."""
    order = sorted(range(len(tokens)), key=lambda i: tuple(tokens[i].tolist()))
    shared = [min(common_prefix_length(tokens[a], tokens[b]), limits[a], limits[b]) for a, b in zip(order, order[1:])]
    groups: list[PrefixGroup] = []

    def best(lo: int, hi: int, depth: int = 0) -> tuple[list[tuple[int, int]], int]:
        """Runs (first, last sorted position) covering lo..hi that save the most, and the saving."""
        if lo == hi:
            return [], 0
        prefix = min(shared[lo:hi])
        whole = max(0, (hi - lo) * prefix - 2 * forward_cost) if prefix >= min_length else 0
        if depth > 200 or (prefix >= min_length and all(value == prefix for value in shared[lo:hi])):
            return ([(lo, hi)] if whole else []), whole
        runs, saving, start = [], 0, lo
        for k in range(lo, hi + 1):
            if k == hi or shared[k] == prefix:
                part_runs, part_saving = best(start, k, depth + 1)
                runs.extend(part_runs)
                saving += part_saving
                start = k + 1
        if whole and whole >= saving:
            return [(lo, hi)], whole
        return runs, saving

    runs, _ = best(0, len(order) - 1) if order else ([], 0)
    grouped: set[int] = set()
    for lo, hi in runs:
        members = [order[k] for k in range(lo, hi + 1)]
        groups.append(PrefixGroup(min(shared[lo:hi]), members))
        grouped.update(members)
    return groups, sorted(set(range(len(tokens))) - grouped)


@dataclass
class PrefixStats:
    """What reuse did in this process: for results.json and the benchmark."""

    groups: int = 0
    requests: int = 0
    prefix_tokens_saved: int = 0  # tokens not recomputed
    peak_cache_bytes: int = 0  # most cache one batch needed at once (the prefix, plus its rows' keys and values: see HFScorer._run_group)

    def as_dict(self) -> dict[str, float]:
        return {"groups": self.groups, "requests": self.requests, "prefix_tokens_saved": self.prefix_tokens_saved,
                "peak_cache_mb": round(self.peak_cache_bytes / 2**20, 1)}
