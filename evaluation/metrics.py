"""Metrics: a registry of plain functions.

A metric takes the prediction records of one data file and that file's document
statistics (``words``, ``bytes`` for language modelling; empty otherwise) and returns a
float. Values are percentages for Accuracy/EM/F1 (as the GLM-130B harness printed them).
Adding a metric = one function + one registry line at the bottom.

For error bars and paired comparisons (``uncertainty.py``, ``evaluation/compare``) each
metric also says how it decomposes over items: per-item numerators and denominators with
``value = finish(sum(num) / sum(den))`` (an accuracy: 100 * correct over 1 each; a
perplexity: each window's loss over its share of the words, finished by ``exp``), and
whether its items are binary (0 or 100), which decides the interval used.

EM/F1 use SQuAD normalisation (lower case, strip punctuation and English articles,
collapse whitespace). Text with CJK characters is split into single characters (other
runs stay whole words), the usual convention for Chinese reading comprehension
(CMRC2018, DRCD), where whitespace tokens would make F1 meaningless.
"""

from __future__ import annotations

import math
import re
import string
import unicodedata
from collections import Counter
from dataclasses import dataclass
from typing import Callable, Mapping, Sequence

import numpy as np

Record = Mapping[str, object]
MetricFn = Callable[[Sequence[Record], Mapping[str, float]], float]

_ARTICLES = re.compile(r"\b(a|an|the)\b", re.UNICODE)
_CJK = re.compile(r"([\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff\u3040-\u30ff\uac00-\ud7af])")


def _is_punctuation(char: str) -> bool:
    return char in string.punctuation or unicodedata.category(char).startswith("P")


def normalize_answer(text: str) -> str:
    """SQuAD normalisation, with Unicode punctuation removed as well as ASCII."""
    text = unicodedata.normalize("NFKC", text).lower()  # fullwidth Ｌ１ and ㎝ match their ASCII forms
    text = "".join(ch for ch in text if not _is_punctuation(ch))
    text = _ARTICLES.sub(" ", text)
    return " ".join(text.split())


def answer_tokens(text: str) -> list[str]:
    """Normalised tokens: whitespace words, with every CJK character its own token."""
    return _CJK.sub(r" \1 ", normalize_answer(text)).split()


def exact_match_score(prediction: str, truth: str) -> float:
    return float(answer_tokens(prediction) == answer_tokens(truth))


def f1_score(prediction: str, truth: str) -> float:
    pred, gold = answer_tokens(prediction), answer_tokens(truth)
    common = Counter(pred) & Counter(gold)
    overlap = sum(common.values())
    if overlap == 0:
        return 0.0
    precision, recall = overlap / len(pred), overlap / len(gold)
    return 2 * precision * recall / (precision + recall)


def _best_over_targets(score: Callable[[str, str], float], records: Sequence[Record]) -> float:
    if not records:
        return 0.0
    total = sum(max(score(str(r["prediction"]), str(t)) for t in r["targets"]) for r in records)  # type: ignore[union-attr]
    return 100.0 * total / len(records)


def accuracy(records: Sequence[Record], stats: Mapping[str, float]) -> float:
    """Percentage of records marked correct by their task (argmax == label for mul)."""
    return 100.0 * sum(bool(r["correct"]) for r in records) / max(len(records), 1)


def exact_match(records: Sequence[Record], stats: Mapping[str, float]) -> float:
    return _best_over_targets(exact_match_score, records)


def f1(records: Sequence[Record], stats: Mapping[str, float]) -> float:
    return _best_over_targets(f1_score, records)


def _total_loss(records: Sequence[Record]) -> float:
    return float(sum(float(r["loss"]) for r in records))  # type: ignore[arg-type]


def perplexity(records: Sequence[Record], stats: Mapping[str, float]) -> float:
    """exp(total NLL / whitespace words of the raw text): comparable across tokenizers.
    Unlike the reference, not capped at exp(20)."""
    try:
        return math.exp(_total_loss(records) / stats["words"])
    except OverflowError:
        return math.inf


def bits_per_byte(records: Sequence[Record], stats: Mapping[str, float]) -> float:
    """Total NLL in bits / UTF-8 bytes of the raw text."""
    return _total_loss(records) / (math.log(2) * stats["bytes"])


def continuation_perplexity(records: Sequence[Record], stats: Mapping[str, float]) -> float:
    """exp(mean over items of the NLL of each item's target continuation): per item, not
    per token, as lm-evaluation-harness's ``perplexity`` for ``lambada_openai``."""
    if not records:
        return math.nan
    try:
        return math.exp(-math.fsum(float(r["loglikelihood"]) for r in records) / len(records))  # type: ignore[arg-type]
    except OverflowError:
        return math.inf


# -- per-item decompositions ----------------------------------------------------------------
ItemsFn = Callable[[Sequence[Record], Mapping[str, float]], tuple[np.ndarray, np.ndarray]]


def _ones(values: list[float]) -> tuple[np.ndarray, np.ndarray]:
    array = np.asarray(values, dtype=np.float64)
    return array, np.ones_like(array)


def accuracy_items(records: Sequence[Record], stats: Mapping[str, float]) -> tuple[np.ndarray, np.ndarray]:
    return _ones([100.0 * bool(r["correct"]) for r in records])


def _best_items(score: Callable[[str, str], float]) -> ItemsFn:
    def items(records: Sequence[Record], stats: Mapping[str, float]) -> tuple[np.ndarray, np.ndarray]:
        return _ones([100.0 * max(score(str(r["prediction"]), str(t)) for t in r["targets"]) for r in records])  # type: ignore[union-attr]
    return items


def _window_items(total_key: str, scale: float = 1.0) -> ItemsFn:
    """Each window's loss over its share of the file's words (bytes): shares proportional to
    the tokens it scores, so the sums give exactly total loss / words (bytes)."""
    def items(records: Sequence[Record], stats: Mapping[str, float]) -> tuple[np.ndarray, np.ndarray]:
        loss = np.asarray([float(r["loss"]) for r in records], dtype=np.float64)  # type: ignore[arg-type]
        tokens = np.asarray([float(r["scored_tokens"]) for r in records], dtype=np.float64)  # type: ignore[arg-type]
        return loss, tokens / max(tokens.sum(), 1.0) * stats[total_key] * scale
    return items


def continuation_items(records: Sequence[Record], stats: Mapping[str, float]) -> tuple[np.ndarray, np.ndarray]:
    return _ones([-float(r["loglikelihood"]) for r in records])  # type: ignore[arg-type]


def _exp(value: float) -> float:
    try:
        return math.exp(value)
    except OverflowError:
        return math.inf


@dataclass(frozen=True)
class Metric:
    fn: MetricFn
    task_types: tuple[str, ...]  # the record kinds it understands: mul, gen, lm, continuation
    items: ItemsFn  # per-item (numerators, denominators); value = finish(sum(num) / sum(den))
    finish: Callable[[float], float] = float
    binary: bool = False  # items are 0 or 100: Wilson intervals and McNemar's test apply
    higher_is_better: bool = True


METRICS: dict[str, Metric] = {
    "Accuracy": Metric(accuracy, ("mul", "gen", "continuation"), accuracy_items, binary=True),
    "EM": Metric(exact_match, ("gen",), _best_items(exact_match_score), binary=True),
    "F1": Metric(f1, ("gen",), _best_items(f1_score)),
    "PPL": Metric(perplexity, ("lm",), _window_items("words"), _exp, higher_is_better=False),
    "BPB": Metric(bits_per_byte, ("lm",), _window_items("bytes", math.log(2)), higher_is_better=False),
    "ContinuationPPL": Metric(continuation_perplexity, ("continuation",), continuation_items, _exp, higher_is_better=False),
}
