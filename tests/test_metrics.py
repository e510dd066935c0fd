"""Metric functions: SQuAD-style EM/F1 (English and Chinese), accuracy, PPL, BPB."""

from __future__ import annotations

import math

import pytest

from evaluation.metrics import METRICS, answer_tokens, exact_match_score, f1_score


def test_squad_normalisation() -> None:
    assert exact_match_score("The Eiffel Tower!", "eiffel tower") == 1.0
    assert exact_match_score("an apple", "apple pie") == 0.0
    assert f1_score("the big red dog", "red dog") == pytest.approx(2 * (2 / 3) * 1 / (2 / 3 + 1))


def test_chinese_is_scored_per_character() -> None:
    assert answer_tokens("北京市。") == ["北", "京", "市"]
    # Whitespace tokens would give 0 overlap here; characters give 2 of 3 / 2 of 2.
    assert f1_score("北京市", "北京") == pytest.approx(2 * (2 / 3) * 1.0 / (2 / 3 + 1.0))
    assert exact_match_score("北京，", "北京") == 1.0
    assert answer_tokens("GLM模型 2022年") == ["glm", "模", "型", "2022", "年"]


def test_generation_metrics_take_best_target() -> None:
    records = [
        {"prediction": "Paris", "targets": ["Lyon", "paris"], "correct": True},
        {"prediction": "Rome city", "targets": ["Rome"], "correct": False},
    ]
    assert METRICS["EM"].fn(records, {}) == pytest.approx(50.0)
    assert METRICS["F1"].fn(records, {}) == pytest.approx(100 * (1.0 + 2 / 3) / 2)
    assert METRICS["Accuracy"].fn(records, {}) == pytest.approx(50.0)


def test_perplexity_and_bits_per_byte() -> None:
    records = [{"loss": 10.0}, {"loss": 20.0}]
    stats = {"words": 15.0, "bytes": 60.0}
    assert METRICS["PPL"].fn(records, stats) == pytest.approx(math.exp(30 / 15))
    assert METRICS["BPB"].fn(records, stats) == pytest.approx(30 / (math.log(2) * 60))
    assert METRICS["PPL"].fn([{"loss": 1e6}], {"words": 1.0}) == math.inf
