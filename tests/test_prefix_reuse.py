"""Shared-prefix reuse on the Hugging Face backend (``scoring/prefix_reuse.py``): the grouping
rule by hand, and scores with reuse equal to scores without it (within 1e-5 relative, the
project's same-results tolerance: only float summation order differs) on few-shot requests
whose shared prefixes have different lengths, for every request type that uses it."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("transformers")

from evaluation.scoring.glm_scorer import EncodingOptions  # noqa: E402
from evaluation.scoring.hf_scorer import HFScorer  # noqa: E402
from evaluation.scoring.prefix_reuse import common_prefix_length, group_by_prefix  # noqa: E402

OPTIONS = EncodingOptions(max_seq_length=2048)
TOLERANCE = 1e-5


def ids(*values: int) -> np.ndarray:
    return np.asarray(values, dtype=np.int64)


def test_common_prefix_length() -> None:
    assert common_prefix_length(ids(1, 2, 3), ids(1, 2, 4, 5)) == 2
    assert common_prefix_length(ids(1, 2), ids(1, 2, 3)) == 2
    assert common_prefix_length(ids(9), ids(1)) == 0


def test_groups_keep_long_prefixes_apart_from_short_ones() -> None:
    long_shots, short_shots = list(range(100, 140)), list(range(100, 120))
    tokens = [ids(*long_shots, 7, i) for i in range(5)] + [ids(*short_shots, 9, i) for i in range(3)] + [ids(1, 2, 3)]
    groups, alone = group_by_prefix(tokens, [len(t) - 1 for t in tokens], min_length=16, forward_cost=0)
    lengths = sorted((g.length, sorted(g.members)) for g in groups)
    # the five long-prefix requests keep their 41 shared ids; the three others share 21
    assert lengths == [(21, [5, 6, 7]), (41, [0, 1, 2, 3, 4])]
    assert alone == [8]


def test_limits_and_the_minimum_length_are_respected() -> None:
    tokens = [ids(*range(30), i) for i in range(3)]
    groups, alone = group_by_prefix(tokens, [10, 31, 31], min_length=5, forward_cost=0)
    # request 0 may share 10 ids only: leaving it alone saves more (30) than a 10-id group of three (20)
    assert [(g.length, sorted(g.members)) for g in groups] == [(30, [1, 2])] and alone == [0]
    groups, alone = group_by_prefix(tokens, [10, 10, 31], min_length=5, forward_cost=0)
    assert [(g.length, sorted(g.members)) for g in groups] == [(10, [0, 1, 2])] and alone == []
    groups, alone = group_by_prefix(tokens, [31] * 3, min_length=40, forward_cost=0)
    assert groups == [] and alone == [0, 1, 2]


def test_groups_that_save_less_than_their_extra_forwards_are_not_made() -> None:
    pair = [ids(*range(30), i) for i in range(2)]  # saves 30 tokens, costs two forwards
    many = [ids(*range(100, 130), i) for i in range(5)]  # saves 4 x 30 = 120
    groups, alone = group_by_prefix(pair + many, [31] * 7, forward_cost=32)
    assert [(g.length, sorted(g.members)) for g in groups] == [(30, [2, 3, 4, 5, 6])] and alone == [0, 1]
    groups, _ = group_by_prefix(pair + many, [31] * 7, forward_cost=0)
    assert sorted(len(g.members) for g in groups) == [2, 5]
    # a long run whose short common prefix does not pay is cut into the parts that do
    # (all five share 20: 4 x 20 - 64 = 16; the first three share 60: 2 x 60 - 64 = 56; the last
    # two share 61, which does not pay for a pair)
    long_a, long_b = [ids(*range(200, 260), i) for i in range(3)], [ids(*range(200, 220), 7, *range(40), i) for i in range(2)]
    groups, alone = group_by_prefix(long_a + long_b, [100] * 5, forward_cost=32)
    assert sorted((g.length, sorted(g.members)) for g in groups) == [(60, [0, 1, 2])] and alone == [3, 4]


def few_shot_requests(tok, rng: np.random.Generator) -> list[tuple[list[int], list[list[int]]]]:
    """Three few-shot 'files' mixed: 4-, 2- and 1-example prompts (prefixes of different
    lengths), multi- and single-token choices, one request with no shared prefix."""
    examples = [tok.encode(f"Question {k}: what is {k} plus {k}? Answer: {2 * k}\n\n") for k in range(1, 5)]
    requests = []
    for shots in (4, 2, 1):
        prefix = [t for e in examples[:shots] for t in e]
        for q in range(4):
            question = tok.encode(f"Question {q + 10}: what is {q} times {shots}? Answer:")
            choices = [tok.encode(f" {q * shots + d}") for d in range(3)] + [tok.encode(" none of these numbers")]
            requests.append((prefix + question, choices))
    requests.append((tok.encode("A lonely request"), [tok.encode(" yes"), tok.encode(" no")]))
    order = rng.permutation(len(requests))
    return [requests[i] for i in order]


@pytest.fixture(scope="module")
def scorers(hf_model) -> tuple[HFScorer, HFScorer]:
    model, tok = hf_model
    # forward_cost 0: group every shared prefix, so the few-shot files below each form a group
    quiet = dict(max_batch_tokens=128, log=lambda *_: None, prefix_forward_cost=0)
    return HFScorer(model, tok, prefix_reuse=False, **quiet), HFScorer(model, tok, prefix_cache_mb=1, **quiet)


def assert_close(plain: np.ndarray, reused: np.ndarray) -> None:
    assert np.all(np.abs(plain - reused) <= TOLERANCE * np.maximum(np.abs(plain), 1.0)), np.abs(plain - reused).max()


def test_multiple_choice_with_reuse_equals_without(hf_model, scorers) -> None:
    _, tok = hf_model
    plain_scorer, reuse_scorer = scorers
    assert reuse_scorer.prefix_reuse and reuse_scorer.kv_bytes_per_token > 0
    requests = few_shot_requests(tok, np.random.default_rng(0))
    plain = np.array([x for r in plain_scorer.cond_log_prob(requests, OPTIONS) for x in r])
    before = reuse_scorer.prefix_stats.groups
    reused = np.array([x for r in reuse_scorer.cond_log_prob(requests, OPTIONS) for x in r])
    assert reuse_scorer.prefix_stats.groups - before == 3  # one group per few-shot prefix
    assert_close(plain, reused)


def test_continuations_and_greedy_flags_with_reuse_equal_without(hf_model, scorers) -> None:
    _, tok = hf_model
    plain_scorer, reuse_scorer = scorers
    requests = [(context, choices[0]) for context, choices in few_shot_requests(tok, np.random.default_rng(1))]
    plain = plain_scorer.continuation_scores(requests, OPTIONS)
    reused = reuse_scorer.continuation_scores(requests, OPTIONS)
    assert [g for _, g in plain] == [g for _, g in reused]
    assert_close(np.array([s for s, _ in plain]), np.array([s for s, _ in reused]))


def test_the_cache_budget_splits_batches_and_reports_its_peak(hf_model, scorers) -> None:
    _, reuse_scorer = scorers
    stats = reuse_scorer.prefix_stats.as_dict()
    assert stats["requests"] > 0 and stats["prefix_tokens_saved"] > 0
    assert 0 < stats["peak_cache_mb"] <= 1.0 or stats["peak_cache_mb"] <= reuse_scorer.kv_bytes_per_token * 200 / 2**20
    assert "prefix_reuse_stats" in reuse_scorer.describe()


def test_language_model_windows_never_reuse_a_scored_row(hf_model, scorers) -> None:
    """Rolling windows score rows from the start; two documents with the same opening must
    not have those rows replaced by a cache (they are read, not skipped)."""
    _, tok = hf_model
    plain_scorer, reuse_scorer = scorers
    opening = tok.encode("The same opening words of two documents, long enough to be worth sharing. " * 2)
    docs = [opening + tok.encode(" First ending."), opening + tok.encode(" Second, other ending.")]
    windows = [w for d in docs for w in reuse_scorer.lm_windows(d, OPTIONS, 512)]
    assert all(w.reusable_prefix() == 0 for w in windows)
    plain = [loss for loss, _ in plain_scorer.calculate_loss(windows)]
    reused = [loss for loss, _ in reuse_scorer.calculate_loss(windows)]
    assert_close(np.array(plain), np.array(reused))
