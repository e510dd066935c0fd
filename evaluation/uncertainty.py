"""Error bars on every score: a standard error and a 95 % interval beside each value.

The items of a data file are treated as a sample from the population of items the task
stands for (Miller 2024, "Adding Error Bars to Evals"). Per metric (``metrics.py`` says how
each decomposes over items):

* **Binary items** (Accuracy, EM: each item 0 or 100): standard error = sample standard
  deviation / sqrt(n), as lm-evaluation-harness's ``acc_stderr``; interval = Wilson's score
  interval (what ``scipy.stats.binomtest(...).proportion_ci(method="wilson")`` gives, in
  closed form), which stays honest on the small files of CLUE/FewCLUE, where the normal
  approximation is too narrow.
* **Other metrics** (F1, PPL, BPB, ContinuationPPL): a BCa bootstrap of the metric itself
  (``scipy.stats.bootstrap``, 2,000 resamples, fixed seed, so reruns give the same numbers);
  the standard error is the sample one for a mean (F1), the bootstrap's for a ratio (PPL).
* **Confusion-table metrics** (MCC, macro-F1, micro precision / recall / F1): no sum over
  items gives them, so the bootstrap resamples items (or clusters) and recomputes the
  statistic on each resample (BCa, the same seed and count).
* **Clustered items** (several questions on one passage, e.g. C3 with ``cluster-by:
  passage_id``; the subjects of MMLU's overall line): the clustered standard error
  sqrt(C / (C - 1) * sum over clusters of (sum of the cluster's deviations from the mean)^2) / n,
  a normal interval for binary metrics, and a bootstrap that resamples whole clusters for
  the others. Questions that share a context are not independent; counting them as if
  they were makes intervals too narrow.

Groups (max / median / average over a group's files): only the **average** gets an
interval. It is the mean over the group's items, so its interval is that of the pooled
items, with clusters chosen so that dependent items stay together: the task's own
clusters when it has them; otherwise, when the files are prompt variants of the same items
(same path below the prompt folder, same item count), the item position (a question under
several prompts is one cluster); otherwise each file (MMLU: each subject). The max and the
median over prompt files have no interval (the max is a biased choice of the best prompt,
and there are too few prompts for a median's interval). Ratio metrics (PPL, BPB,
ContinuationPPL) and confusion-table metrics (MCC, macro-F1, ...) get a group interval only
when the group has one file; their group average is an average of per-file values, which
the pooled items do not give.
"""

from __future__ import annotations

import math
import functools
import statistics
import warnings
from dataclasses import dataclass
from pathlib import PurePosixPath
from typing import Any, Optional, Sequence

import numpy as np

from .metrics import Metric

SEED = 20261201
RESAMPLES = 2000
CONFIDENCE = 0.95
Z = statistics.NormalDist().inv_cdf(0.5 + CONFIDENCE / 2)


@functools.cache
def _scipy_stats():  # type: ignore[no-untyped-def]
    """scipy.stats, imported when the first interval is made: importing it costs 60 MB of
    resident memory, which would otherwise sit beside the model for the whole run."""
    from scipy import stats

    return stats


@dataclass(frozen=True)
class Interval:
    """Standard error and 95 % interval of one value, and how they were made."""

    stderr: float
    low: float
    high: float
    method: str


@dataclass
class FileItems:
    """One file's per-item contributions to one metric, and the cluster of each item."""

    file: str
    num: np.ndarray
    den: np.ndarray
    clusters: Optional[list[Any]] = None


def sample_se(values: np.ndarray) -> float:
    n = len(values)
    return float(np.std(values, ddof=1) / math.sqrt(n)) if n > 1 else math.nan


def clustered_se(values: np.ndarray, clusters: Sequence[Any]) -> float:
    """Clustered standard error of the mean of ``values`` (small-sample factor C / (C - 1))."""
    n = len(values)
    deviations = values - values.mean()
    sums: dict[Any, float] = {}
    for cluster, deviation in zip(clusters, deviations):
        sums[cluster] = sums.get(cluster, 0.0) + float(deviation)
    count = len(sums)
    if count < 2:
        return math.nan
    return math.sqrt(count / (count - 1) * sum(s * s for s in sums.values())) / n


def wilson(correct: int, n: int) -> tuple[float, float]:
    """Wilson's score interval (no continuity correction), in percent: scipy's
    ``binomtest(correct, n).proportion_ci(method="wilson")``, written out as scipy computes it
    (``tests/test_uncertainty.py`` compares the two). Why not call scipy: accuracy intervals
    are made after each data file, while the model is loaded, and importing scipy.stats
    there added 61 MB to the run's peak memory (the bootstrap of other metrics still uses it)."""
    p = correct / n
    denominator = 2 * (n + Z * Z)
    centre = (2 * n * p + Z * Z) / denominator
    half = Z * math.sqrt(4 * n * p * (1 - p) + Z * Z) / denominator
    return 100.0 * max(0.0, centre - half), 100.0 * min(1.0, centre + half)


def _aggregate(num: np.ndarray, den: np.ndarray, clusters: Optional[Sequence[Any]]) -> tuple[np.ndarray, np.ndarray]:
    """Per-cluster sums (the units a cluster bootstrap resamples); items themselves without clusters."""
    if clusters is None:
        return num, den
    index: dict[Any, int] = {}
    for cluster in clusters:
        index.setdefault(cluster, len(index))
    ids = np.asarray([index[c] for c in clusters])
    return np.bincount(ids, weights=num, minlength=len(index)), np.bincount(ids, weights=den, minlength=len(index))


def bootstrap(num: np.ndarray, den: np.ndarray, finish: Any, clusters: Optional[Sequence[Any]] = None) -> tuple[float, float, float]:
    """(standard error, low, high) of finish(sum(num) / sum(den)) by a BCa bootstrap over items
    (or whole clusters), fixed seed; a constant sample gives a zero-width interval."""
    units_num, units_den = _aggregate(num, den, clusters)
    value = finish(units_num.sum() / units_den.sum())
    ratios = units_num / np.where(units_den == 0, 1.0, units_den)
    if len(units_num) < 2 or np.ptp(ratios) == 0 and np.ptp(units_den) == 0:
        return 0.0 if len(units_num) >= 2 else math.nan, value, value

    def statistic(n: np.ndarray, d: np.ndarray, axis: int = -1) -> np.ndarray:
        with np.errstate(over="ignore"):
            return np.vectorize(finish, otypes=[float])(n.sum(axis=axis) / d.sum(axis=axis))

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # BCa's degenerate-distribution warnings: handled below
        result = _scipy_stats().bootstrap((units_num, units_den), statistic, paired=True, vectorized=True, n_resamples=RESAMPLES,
                                 method="BCa", confidence_level=CONFIDENCE, rng=np.random.default_rng(SEED), batch=250)
        low, high = float(result.confidence_interval.low), float(result.confidence_interval.high)
        if not (math.isfinite(low) and math.isfinite(high)):
            result = _scipy_stats().bootstrap((units_num, units_den), statistic, paired=True, vectorized=True, n_resamples=RESAMPLES,
                                     method="percentile", confidence_level=CONFIDENCE, rng=np.random.default_rng(SEED), batch=250)
            low, high = float(result.confidence_interval.low), float(result.confidence_interval.high)
    return float(result.standard_error), low, high


def is_mean(metric: Metric, den: np.ndarray) -> bool:
    return metric.statistic is None and metric.finish is float and bool(np.all(den == 1.0))


def unit_members(n: int, clusters: Optional[Sequence[Any]]) -> list[np.ndarray]:
    """The item positions of each resampling unit: every item alone, or each cluster's items."""
    if clusters is None:
        return [np.asarray([i]) for i in range(n)]
    members: dict[Any, list[int]] = {}
    for position, cluster in enumerate(clusters):
        members.setdefault(cluster, []).append(position)
    return [np.asarray(m) for m in members.values()]


def table_bootstrap(metric: Metric, targets: np.ndarray, predictions: np.ndarray,
                    clusters: Optional[Sequence[Any]] = None) -> tuple[float, float, float]:
    """(standard error, low, high) of a confusion-table metric (MCC, macro-F1): a BCa
    bootstrap that resamples items (or whole clusters) and recomputes the statistic, fixed seed."""
    assert metric.statistic is not None
    members = unit_members(len(targets), clusters)
    value = float(metric.statistic(targets, predictions))
    if len(members) < 2:
        return math.nan, value, value

    def statistic(units: np.ndarray) -> float:
        chosen = np.concatenate([members[int(u)] for u in units])
        return float(metric.statistic(targets[chosen], predictions[chosen]))  # type: ignore[misc]

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        result = _scipy_stats().bootstrap((np.arange(len(members)),), statistic, vectorized=False, n_resamples=RESAMPLES,
                                 method="BCa", confidence_level=CONFIDENCE, rng=np.random.default_rng(SEED))
        low, high = float(result.confidence_interval.low), float(result.confidence_interval.high)
        if not (math.isfinite(low) and math.isfinite(high)):
            result = _scipy_stats().bootstrap((np.arange(len(members)),), statistic, vectorized=False, n_resamples=RESAMPLES,
                                     method="percentile", confidence_level=CONFIDENCE, rng=np.random.default_rng(SEED))
            low, high = float(result.confidence_interval.low), float(result.confidence_interval.high)
    if not (math.isfinite(low) and math.isfinite(high)):  # every resample the same value
        low = high = value
    return float(result.standard_error), low, high


def metric_interval(metric: Metric, num: np.ndarray, den: np.ndarray, clusters: Optional[Sequence[Any]] = None) -> Optional[Interval]:
    """The interval of one metric over some items (see the module doc); None for fewer than 2."""
    n = len(num)
    if n < 2:
        return None
    if clusters is not None and len(set(clusters)) == n:
        clusters = None  # every item its own cluster: the plain formulas
    if metric.statistic is not None:
        se, low, high = table_bootstrap(metric, num, den, clusters)
        return Interval(se, low, high, "cluster-bootstrap-bca" if clusters is not None else "bootstrap-bca")
    mean_type = is_mean(metric, den)
    if metric.binary and mean_type:
        mean = float(num.mean())
        if clusters is None:
            low, high = wilson(int(round(num.sum() / 100.0)), n)
            return Interval(sample_se(num), low, high, "wilson")
        se = clustered_se(num, clusters)
        if not math.isfinite(se):
            return None
        return Interval(se, max(0.0, mean - Z * se), min(100.0, mean + Z * se), "clustered-normal")
    se, low, high = bootstrap(num, den, metric.finish, clusters)
    if mean_type:
        se = sample_se(num) if clusters is None else clustered_se(num, clusters)
    return Interval(se, low, high, "cluster-bootstrap-bca" if clusters is not None else "bootstrap-bca")


def prompt_variants(files: Sequence[FileItems]) -> bool:
    """Files that are prompts of the same items: one path below the prompt folder
    (``<Prompt>/<type>/<split>.jsonl``) and the same number of items."""
    if len(files) < 2 or len({len(f.num) for f in files}) != 1:
        return False
    tails = {PurePosixPath(f.file).parts[1:] for f in files}
    return len(tails) == 1 and all(len(PurePosixPath(f.file).parts) > 1 for f in files)


def group_interval(metric: Metric, files: Sequence[FileItems]) -> Optional[Interval]:
    """The interval of a group's average (see the module doc)."""
    if len(files) == 1:
        only = files[0]
        return metric_interval(metric, only.num, only.den, only.clusters)
    num = np.concatenate([f.num for f in files])
    den = np.concatenate([f.den for f in files])
    if not is_mean(metric, den):
        return None
    if all(f.clusters is not None for f in files):
        clusters: list[Any] = [c for f in files for c in f.clusters]  # the task's own, shared across prompts
    elif prompt_variants(files):
        clusters = [i for f in files for i in range(len(f.num))]
    else:
        clusters = [f.file for f in files for _ in range(len(f.num))]
    return metric_interval(metric, num, den, clusters)


def as_json(interval: Optional[Interval]) -> tuple[Optional[float], Optional[list[float]]]:
    """(stderr, [low, high]) for results.json; (None, None) when there is no interval."""
    if interval is None:
        return None, None
    se = interval.stderr if math.isfinite(interval.stderr) else None
    return se, [interval.low, interval.high]
