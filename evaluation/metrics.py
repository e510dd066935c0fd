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

Some metrics are not sums over items: MCC, macro-F1 and the micro precision / recall / F1
are functions of the confusion table of a file. Their ``items`` give each item's (target,
prediction) and ``statistic`` computes the value from those two arrays; error bars and
comparisons then resample items (or clusters) and recompute the statistic.

EM/F1 use SQuAD normalisation (lower case, strip punctuation and English articles,
collapse whitespace). Text with CJK characters is split into single characters (other
runs stay whole words), the usual convention for Chinese reading comprehension
(CMRC2018, DRCD), where whitespace tokens would make F1 meaningless. ROUGE uses the same
rule through its own tokenizer (``CJKRougeTokenizer``).

The normalised accuracies (lm-evaluation-harness's ``acc_norm`` and ``acc_bytes``, and a
per-token variant) re-rank an item's choices by log-probability per character, UTF-8 byte
or token; the lengths are in every multiple-choice record (``tasks.choice_lengths``), so
they are computed from saved predictions without rescoring.
"""

from __future__ import annotations

import math
import re
import string
import unicodedata
from collections import Counter
from dataclasses import dataclass
from typing import Any, Callable, Mapping, Optional, Sequence

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


def _normalised_correct(records: Sequence[Record], length_key: str) -> list[bool]:
    """Per record: whether argmax of score / length is the target (a length of 0 counts as 1)."""
    out = []
    for r in records:
        scores = np.asarray(r["scores"], dtype=np.float64)  # type: ignore[arg-type]
        lengths = np.maximum(np.asarray(r[length_key], dtype=np.float64), 1.0)  # type: ignore[arg-type]
        out.append(int(np.argmax(scores / lengths)) == r["target"])
    return out


def _normalised_accuracy(length_key: str) -> MetricFn:
    def metric(records: Sequence[Record], stats: Mapping[str, float]) -> float:
        return 100.0 * sum(_normalised_correct(records, length_key)) / max(len(records), 1)
    metric.__doc__ = f"Accuracy of argmax(summed log-prob / {length_key}) (lm-eval's acc_norm family)."
    return metric


def _normalised_items(length_key: str) -> "ItemsFn":
    def items(records: Sequence[Record], stats: Mapping[str, float]) -> tuple[np.ndarray, np.ndarray]:
        return _ones([100.0 * c for c in _normalised_correct(records, length_key)])
    return items


_NUMBER = re.compile(r"-?\d[\d,]*(?:\.\d+)?|-?\.\d+")


def last_number(text: str) -> Optional[float]:
    """The last number written in ``text`` (thousands commas allowed), or None."""
    found = _NUMBER.findall(text)
    if not found:
        return None
    try:
        return float(found[-1].replace(",", ""))
    except ValueError:
        return None


def number_match_score(prediction: str, truth: str) -> float:
    """1 when the last number of the prediction equals the target's number (GSM8K, SVAMP:
    "... The answer is 18." scores against "18"; "18.0" and "1,800" are read as numbers)."""
    predicted, expected = last_number(prediction), last_number(truth)
    return float(predicted is not None and expected is not None and math.isclose(predicted, expected, rel_tol=0.0, abs_tol=1e-9))


class CJKRougeTokenizer:
    """rouge-score's default tokenizer keeps only ``[a-z0-9]`` runs, so Chinese text would
    score 0. This one lower-cases, splits every CJK character off as its own token and keeps
    other runs of letters or digits whole (``answer_tokens``' rule, without removing articles)."""

    _WORD = re.compile(r"[^\W_]+", re.UNICODE)

    def tokenize(self, text: str) -> list[str]:
        text = unicodedata.normalize("NFKC", text).lower()
        return [t for chunk in self._WORD.findall(_CJK.sub(r" \1 ", text)) for t in chunk.split()]


_ROUGE_SCORERS: dict[str, Any] = {}


def rouge_score(kind: str) -> Callable[[str, str], float]:
    """F-measure of ROUGE-``kind`` (``rouge1``, ``rouge2``, ``rougeL``) of one prediction."""
    def score(prediction: str, truth: str) -> float:
        if kind not in _ROUGE_SCORERS:
            from rouge_score import rouge_scorer  # the package's n-gram and LCS code; our tokenizer

            _ROUGE_SCORERS[kind] = rouge_scorer.RougeScorer([kind], tokenizer=CJKRougeTokenizer())
        return float(_ROUGE_SCORERS[kind].score(truth, prediction)[kind].fmeasure)
    return score


def _best_metric(score: Callable[[str, str], float]) -> MetricFn:
    def metric(records: Sequence[Record], stats: Mapping[str, float]) -> float:
        return _best_over_targets(score, records)
    return metric


# -- confusion-table metrics (single-label classification over an item's choices) ------------
def confusion(targets: np.ndarray, predictions: np.ndarray) -> np.ndarray:
    """[true class, predicted class] counts over the classes seen in either array."""
    targets, predictions = targets.astype(np.int64), predictions.astype(np.int64)
    size = int(max(targets.max(initial=0), predictions.max(initial=0))) + 1
    return np.bincount(targets * size + predictions, minlength=size * size).reshape(size, size).astype(np.float64)


def mcc_statistic(targets: np.ndarray, predictions: np.ndarray) -> float:
    """Matthews correlation x 100, multi-class (Gorodkin's R_K, scikit-learn's
    ``matthews_corrcoef``): 0 when a marginal is constant, as there."""
    table = confusion(targets, predictions)
    total, correct = table.sum(), np.trace(table)
    true, predicted = table.sum(axis=1), table.sum(axis=0)
    denominator = math.sqrt((total * total - predicted @ predicted) * (total * total - true @ true))
    return 0.0 if denominator == 0 else 100.0 * float(correct * total - true @ predicted) / denominator


def macro_f1_statistic(targets: np.ndarray, predictions: np.ndarray) -> float:
    """Unweighted mean of the per-class F1 x 100 over the classes that occur as a target or a
    prediction (scikit-learn's ``f1_score(average="macro")``)."""
    table = confusion(targets, predictions)
    tp = np.diag(table)
    present = (table.sum(axis=1) + table.sum(axis=0)) > 0
    denominator = table.sum(axis=1) + table.sum(axis=0)
    f1_per_class = np.divide(2 * tp, denominator, out=np.zeros_like(tp), where=denominator > 0)
    return 100.0 * float(f1_per_class[present].mean()) if present.any() else 0.0


def _micro(part: str) -> Callable[[np.ndarray, np.ndarray], float]:
    """Micro-averaged precision / recall / F1 x 100 over every class: summed true positives
    over summed predictions (or targets). With one label per item and every class counted,
    all three equal the accuracy (each wrong item is one false positive and one false
    negative); they are here because the GLM-130B harness reports them."""
    def statistic(targets: np.ndarray, predictions: np.ndarray) -> float:
        table = confusion(targets, predictions)
        tp = float(np.trace(table))
        precision = tp / max(float(table.sum(axis=0).sum()), 1.0)
        recall = tp / max(float(table.sum(axis=1).sum()), 1.0)
        if part == "precision":
            return 100.0 * precision
        if part == "recall":
            return 100.0 * recall
        return 0.0 if precision + recall == 0 else 100.0 * 2 * precision * recall / (precision + recall)
    return statistic


def _table_items(records: Sequence[Record], stats: Mapping[str, float]) -> tuple[np.ndarray, np.ndarray]:
    return (np.asarray([float(r["target"]) for r in records], dtype=np.float64),  # type: ignore[arg-type]
            np.asarray([float(r["prediction"]) for r in records], dtype=np.float64))  # type: ignore[arg-type]


def _table_metric(statistic: Callable[[np.ndarray, np.ndarray], float]) -> MetricFn:
    def metric(records: Sequence[Record], stats: Mapping[str, float]) -> float:
        return statistic(*_table_items(records, stats)) if records else 0.0
    metric.__doc__ = statistic.__doc__
    return metric


def _total_loss(records: Sequence[Record]) -> float:
    return float(sum(float(r["loss"]) for r in records))  # type: ignore[arg-type]


def perplexity(records: Sequence[Record], stats: Mapping[str, float]) -> float:
    """exp(total NLL / whitespace words of the raw text): comparable across tokenizers.
    Unlike the reference, not capped at exp(20)."""
    try:
        return math.exp(_total_loss(records) / stats["words"])
    except OverflowError:
        return math.inf


def adjusted_perplexity(records: Sequence[Record], stats: Mapping[str, float]) -> float:
    """THUDM/GLM's "adjusted ppl" (``tasks/language_model/finetune.py``, the figure its
    WikiText results quote): exp(total NLL / (original tokens - 1)), the original tokens
    being ``len(text.strip().split(" "))`` of the text before detokenization."""
    try:
        return math.exp(_total_loss(records) / stats["original_tokens"])
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
    # Confusion-table metrics: ``items`` gives (targets, predictions) and the value is
    # ``statistic(targets, predictions)``, not a ratio of sums (see the module doc).
    statistic: Optional[Callable[[np.ndarray, np.ndarray], float]] = None


def value_of(metric: Metric, num: np.ndarray, den: np.ndarray) -> float:
    """A metric's value from its per-item decomposition (``Metric.items``)."""
    if metric.statistic is not None:
        return float(metric.statistic(num, den)) if len(num) else 0.0
    return metric.finish(float(num.sum() / den.sum()))


def _table(statistic: Callable[[np.ndarray, np.ndarray], float]) -> Metric:
    return Metric(_table_metric(statistic), ("mul",), _table_items, statistic=statistic)


METRICS: dict[str, Metric] = {
    "Accuracy": Metric(accuracy, ("mul", "gen", "continuation"), accuracy_items, binary=True),
    "EM": Metric(exact_match, ("gen",), _best_items(exact_match_score), binary=True),
    "F1": Metric(f1, ("gen",), _best_items(f1_score)),
    "PPL": Metric(perplexity, ("lm",), _window_items("words"), _exp, higher_is_better=False),
    "AdjustedPPL": Metric(adjusted_perplexity, ("lm",), _window_items("original_tokens"), _exp, higher_is_better=False),
    "BPB": Metric(bits_per_byte, ("lm",), _window_items("bytes", math.log(2)), higher_is_better=False),
    "ContinuationPPL": Metric(continuation_perplexity, ("continuation",), continuation_items, _exp, higher_is_better=False),
    "AccuracyNorm": Metric(_normalised_accuracy("choice_chars"), ("mul",), _normalised_items("choice_chars"), binary=True),
    "AccuracyNormTokens": Metric(_normalised_accuracy("choice_tokens"), ("mul",), _normalised_items("choice_tokens"), binary=True),
    "AccuracyNormBytes": Metric(_normalised_accuracy("choice_bytes"), ("mul",), _normalised_items("choice_bytes"), binary=True),
    "NumberEM": Metric(_best_metric(number_match_score), ("gen",), _best_items(number_match_score), binary=True),
    "ROUGE-1": Metric(_best_metric(rouge_score("rouge1")), ("gen",), _best_items(rouge_score("rouge1"))),
    "ROUGE-2": Metric(_best_metric(rouge_score("rouge2")), ("gen",), _best_items(rouge_score("rouge2"))),
    "ROUGE-L": Metric(_best_metric(rouge_score("rougeL")), ("gen",), _best_items(rouge_score("rougeL"))),
    "MCC": _table(mcc_statistic),
    "MacroF1": _table(macro_f1_statistic),
    "MicroPrecision": _table(_micro("precision")),
    "MicroRecall": _table(_micro("recall")),
    "MicroF1": _table(_micro("f1")),
}
