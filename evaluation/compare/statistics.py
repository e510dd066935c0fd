"""Paired comparison of two runs on the same items: Δ, its 95 % interval, a p-value, flips,
the minimum detectable effect, and a verdict.

Pairs are the same item scored by both runs, so the comparison uses the per-item
differences (Var(A - B) = Var(A) + Var(B) - 2 Cov(A, B): correlated runs give much tighter
intervals than two separate error bars suggest).

* **Binary metrics** (Accuracy, EM) on independent items: exact McNemar test on the
  discordant pairs, ``scipy.stats.binomtest(c, b + c, 0.5)`` with b = right -> wrong and
  c = wrong -> right; the interval for Δ = (c - b) / n is the exact (Clopper-Pearson)
  interval for c / (b + c), scaled by (b + c) / n (it conditions on the number of
  discordant pairs, like the test; simulated coverage 95-97 %).
* **Binary metrics on clustered items** (a group of prompt variants, MMLU's subjects, C3's
  passages; the clusters of ``uncertainty.py``): Δ with the clustered standard error of
  the per-item differences, a normal interval and test.
* **Other metrics** (F1, PPL, BPB, ContinuationPPL): a paired BCa bootstrap of Δ (pairs, or
  whole clusters, resampled together; fixed seed) and a paired permutation test for p
  (each pair's two values swapped at random; ``scipy.stats.permutation_test``).
* **Confusion-table metrics** (MCC, macro-F1, micro P/R/F1): the same paired bootstrap and
  permutation test, resampling (swapping) whole items or clusters and recomputing the
  statistic of each run on the resample.
* **Minimum detectable effect** (α = 0.05 two-sided, power 0.8): (z_0.975 + z_0.8) x the
  standard error of Δ; for McNemar at least the smallest count of one-directional flips
  that the exact test can call significant (6 at α = 0.05), as a share of n.
* **Verdict**: with the Holm-adjusted p below α, *improved* or *regressed* (direction per
  metric: lower perplexity is better); otherwise *underpowered* when the minimum detectable
  effect exceeds the margin (this sample could not have shown a change of that size), else
  *no detectable change*.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass, field
from typing import Any, Optional, Sequence

import numpy as np
from scipy import stats

from ..metrics import Metric, value_of
from ..uncertainty import CONFIDENCE, RESAMPLES, SEED, Z, clustered_se, unit_members

ALPHA = 0.05
POWER = 0.8
VERDICTS = ("regressed", "improved", "no detectable change", "underpowered")


@dataclass
class Comparison:
    """Baseline against one other run on one unit and metric."""

    baseline: float
    new: float
    delta: float
    low: float
    high: float
    p: float
    mde: float
    method: str
    n: int
    right_to_wrong: list[int] = field(default_factory=list)  # item positions in the unit, binary metrics only
    wrong_to_right: list[int] = field(default_factory=list)
    p_holm: float = math.nan
    verdict: str = ""
    beyond_margin: bool = False


def smallest_significant_flips(alpha: float = ALPHA) -> int:
    """Least c with binomtest(c, c) below alpha: McNemar's floor when nothing else flips."""
    count = 1
    while stats.binomtest(count, count, 0.5).pvalue >= alpha:
        count += 1
    return count


MIN_FLIPS = smallest_significant_flips()


def _value(metric: Metric, num: np.ndarray, den: np.ndarray) -> float:
    return value_of(metric, num, den)


def compare_table(metric: Metric, targets: np.ndarray, base: np.ndarray, new: np.ndarray,
                  clusters: Optional[Sequence[Any]] = None) -> Comparison:
    """Δ of a confusion-table metric: ``targets`` are the items' labels, ``base`` / ``new``
    each run's predictions of the same items in the same order."""
    statistic_of = metric.statistic
    assert statistic_of is not None
    baseline, value = float(statistic_of(targets, base)), float(statistic_of(targets, new))
    delta = value - baseline
    n = len(targets)
    members = unit_members(n, clusters if clusters is not None and len(set(clusters)) < n else None)
    method = "paired cluster bootstrap" if len(members) < n else "paired bootstrap"
    if len(members) < 2 or np.array_equal(base, new):
        return Comparison(baseline, value, delta, delta, delta, 1.0 if delta == 0 else 0.0, 0.0, method, n)
    owner = np.empty(n, dtype=np.int64)
    for unit, positions in enumerate(members):
        owner[positions] = unit

    def resampled(units: np.ndarray) -> float:
        chosen = np.concatenate([members[int(u)] for u in units])
        return float(statistic_of(targets[chosen], new[chosen]) - statistic_of(targets[chosen], base[chosen]))

    m = len(members)

    def swapped(x: np.ndarray, y: np.ndarray) -> float:
        # x / y hold, per unit, u (take the baseline's predictions) or u + m (the new run's)
        def side(codes: np.ndarray) -> np.ndarray:
            return np.where((codes >= m)[owner], new, base)
        return float(statistic_of(targets, side(y)) - statistic_of(targets, side(x)))

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        result = stats.bootstrap((np.arange(m),), resampled, vectorized=False, n_resamples=RESAMPLES, method="BCa",
                                 confidence_level=CONFIDENCE, rng=np.random.default_rng(SEED))
        low, high = float(result.confidence_interval.low), float(result.confidence_interval.high)
        if not (math.isfinite(low) and math.isfinite(high)):
            result = stats.bootstrap((np.arange(m),), resampled, vectorized=False, n_resamples=RESAMPLES, method="percentile",
                                     confidence_level=CONFIDENCE, rng=np.random.default_rng(SEED))
            low, high = float(result.confidence_interval.low), float(result.confidence_interval.high)
        se = float(result.standard_error)
        test = stats.permutation_test((np.arange(m), np.arange(m) + m), swapped, permutation_type="samples", vectorized=False,
                                      n_resamples=RESAMPLES, alternative="two-sided", rng=np.random.default_rng(SEED))
    z_power = Z + float(stats.norm.ppf(POWER))
    return Comparison(baseline, value, delta, low, high, float(test.pvalue), z_power * se, method, n)


def compare_binary(metric: Metric, base: np.ndarray, new: np.ndarray, clusters: Optional[Sequence[Any]] = None) -> Comparison:
    """``base``/``new``: per-item 0 or 100 of the same items, in the same order."""
    n = len(base)
    right_to_wrong = [int(i) for i in np.flatnonzero((base > 0) & (new == 0))]
    wrong_to_right = [int(i) for i in np.flatnonzero((base == 0) & (new > 0))]
    b, c = len(right_to_wrong), len(wrong_to_right)
    delta = float(new.mean() - base.mean())
    z_power = Z + float(stats.norm.ppf(POWER))
    if clusters is not None and len(set(clusters)) < n:
        se = clustered_se(new - base, clusters)
        if not math.isfinite(se):
            se = 0.0
        p = (1.0 if delta == 0 else 0.0) if se == 0 else float(2 * stats.norm.sf(abs(delta) / se))
        return Comparison(float(base.mean()), float(new.mean()), delta, delta - Z * se, delta + Z * se, p,
                          max(z_power * se, 100.0 * MIN_FLIPS / n), "clustered paired normal", n, right_to_wrong, wrong_to_right)
    discordant = b + c
    if discordant == 0:
        low = high = 0.0
        p = 1.0
    else:
        interval = stats.binomtest(c, discordant).proportion_ci(confidence_level=CONFIDENCE, method="exact")
        scale = 100.0 * discordant / n
        low, high = scale * (2 * interval.low - 1), scale * (2 * interval.high - 1)
        p = float(stats.binomtest(c, discordant, 0.5).pvalue)
    differences = (new - base) / 100.0
    se = float(np.std(differences, ddof=1) / math.sqrt(n)) * 100.0 if n > 1 else math.inf
    mde = max(z_power * se, 100.0 * MIN_FLIPS / n)
    return Comparison(float(base.mean()), float(new.mean()), delta, float(low), float(high), p, mde, "exact McNemar", n,
                      right_to_wrong, wrong_to_right)


def _per_cluster(arrays: Sequence[np.ndarray], clusters: Optional[Sequence[Any]]) -> list[np.ndarray]:
    if clusters is None:
        return list(arrays)
    index: dict[Any, int] = {}
    for cluster in clusters:
        index.setdefault(cluster, len(index))
    ids = np.asarray([index[c] for c in clusters])
    return [np.bincount(ids, weights=a, minlength=len(index)) for a in arrays]


def compare_general(metric: Metric, base_num: np.ndarray, base_den: np.ndarray, new_num: np.ndarray, new_den: np.ndarray,
                    clusters: Optional[Sequence[Any]] = None) -> Comparison:
    """Paired bootstrap interval and permutation p-value of Δ of any metric."""
    baseline, new = _value(metric, base_num, base_den), _value(metric, new_num, new_den)
    delta = new - baseline
    units = _per_cluster([base_num, base_den, new_num, new_den], clusters if clusters is not None and len(set(clusters)) < len(base_num) else None)
    n = len(base_num)
    if len(units[0]) < 2 or (np.array_equal(units[0], units[2]) and np.array_equal(units[1], units[3])):
        return Comparison(baseline, new, delta, delta, delta, 1.0 if delta == 0 else 0.0, 0.0, "paired bootstrap", n)

    def statistic(bn: np.ndarray, bd: np.ndarray, nn: np.ndarray, nd: np.ndarray, axis: int = -1) -> np.ndarray:
        finish = np.vectorize(metric.finish, otypes=[float])
        with np.errstate(over="ignore", invalid="ignore"):
            return finish(nn.sum(axis=axis) / nd.sum(axis=axis)) - finish(bn.sum(axis=axis) / bd.sum(axis=axis))

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        result = stats.bootstrap(tuple(units), statistic, paired=True, vectorized=True, n_resamples=RESAMPLES, method="BCa",
                                 confidence_level=CONFIDENCE, rng=np.random.default_rng(SEED), batch=250)
        low, high = float(result.confidence_interval.low), float(result.confidence_interval.high)
        if not (math.isfinite(low) and math.isfinite(high)):
            result = stats.bootstrap(tuple(units), statistic, paired=True, vectorized=True, n_resamples=RESAMPLES,
                                     method="percentile", confidence_level=CONFIDENCE, rng=np.random.default_rng(SEED), batch=250)
            low, high = float(result.confidence_interval.low), float(result.confidence_interval.high)
        se = float(result.standard_error)

        # Swap the two runs' values within random pairs: the pair (num, den) of each run moves together.
        base_pairs = np.stack([units[0], units[1]])
        new_pairs = np.stack([units[2], units[3]])

        def paired_statistic(x: np.ndarray, y: np.ndarray, axis: int = -1) -> np.ndarray:
            return statistic(x[..., 0, :], x[..., 1, :], y[..., 0, :], y[..., 1, :], axis)

        test = stats.permutation_test((base_pairs, new_pairs), paired_statistic, permutation_type="samples", vectorized=True,
                                      n_resamples=RESAMPLES, alternative="two-sided", rng=np.random.default_rng(SEED), axis=-1)
        p = float(test.pvalue)
    z_power = Z + float(stats.norm.ppf(POWER))
    return Comparison(baseline, new, delta, low, high, p, z_power * se,
                      "paired cluster bootstrap" if clusters is not None else "paired bootstrap", n)


def holm(pvalues: Sequence[float]) -> list[float]:
    """Holm's step-down adjustment (scipy has Benjamini-Hochberg, not Holm): controls the
    family-wise error over every unit compared, whatever their dependence."""
    order = sorted(range(len(pvalues)), key=lambda i: pvalues[i])
    adjusted = [1.0] * len(pvalues)
    running = 0.0
    m = len(pvalues)
    for rank, index in enumerate(order):
        running = max(running, min(1.0, (m - rank) * pvalues[index]))
        adjusted[index] = running
    return adjusted


def decide(comparison: Comparison, metric: Metric, margin: float, alpha: float = ALPHA) -> None:
    """Fill in the verdict (see the module doc); ``p_holm`` must be set."""
    worse = comparison.delta < 0 if metric.higher_is_better else comparison.delta > 0
    if comparison.p_holm < alpha and comparison.delta != 0:
        comparison.verdict = "regressed" if worse else "improved"
        comparison.beyond_margin = abs(comparison.delta) > margin
    elif comparison.mde > margin:
        comparison.verdict = "underpowered"
    else:
        comparison.verdict = "no detectable change"
