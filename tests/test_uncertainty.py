"""Error bars: each formula against a hand computation, coverage on simulated data, the group
rules, and the fields results.json and the console carry."""

from __future__ import annotations

import json
import math
import re
from pathlib import Path

import numpy as np
import pytest

from evaluation.metrics import METRICS
from evaluation.uncertainty import (FileItems, bootstrap, clustered_se, group_interval, metric_interval, prompt_variants,
                                    sample_se, wilson)

from test_distributed import evaluate_sh, glm_env, write_task_set


def test_wilson_and_sample_se_by_hand() -> None:
    k, n, z = 7, 20, 1.959963984540054
    p = k / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z / (1 + z * z / n) * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n))
    low, high = wilson(k, n)
    assert low == pytest.approx(100 * (centre - half), abs=1e-9) and high == pytest.approx(100 * (centre + half), abs=1e-9)
    values = np.array([100.0] * k + [0.0] * (n - k))
    assert sample_se(values) == pytest.approx(100 * math.sqrt(p * (1 - p) * n / (n - 1) / n))  # lm-eval's acc_stderr


def test_wilson_is_scipys_interval() -> None:
    """The closed form (no scipy import while the model is loaded) against scipy itself."""
    from scipy import stats

    for n in (1, 2, 7, 30, 57, 300, 1531):
        for k in sorted({0, 1, n // 3, n // 2, n - 1, n}):
            expected = stats.binomtest(k, n).proportion_ci(confidence_level=0.95, method="wilson")
            low, high = wilson(k, n)
            assert low == pytest.approx(100 * expected.low, abs=1e-10) and high == pytest.approx(100 * expected.high, abs=1e-10)


def test_accuracy_intervals_do_not_import_scipy() -> None:
    """scipy.stats costs 61 MB of resident memory; an accuracy file's interval must not need it."""
    import subprocess
    import sys

    code = ("import sys, numpy as np; from evaluation.metrics import METRICS; from evaluation.uncertainty import metric_interval; "
            "metric_interval(METRICS['Accuracy'], np.array([100.0, 0, 100, 0, 100]), np.ones(5)); "
            "print('scipy.stats' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         cwd=Path(__file__).resolve().parents[1])
    assert out.stdout.strip() == "False"


def test_clustered_se_by_hand() -> None:
    values = np.array([1.0, 0.0, 1.0, 1.0, 0.0, 0.0])
    clusters = ["a", "a", "b", "b", "c", "c"]
    mean = 0.5
    sums = [(1 - mean) + (0 - mean), (1 - mean) + (1 - mean), (0 - mean) + (0 - mean)]  # 0, 1, -1
    expected = math.sqrt(3 / 2 * sum(s * s for s in sums)) / 6
    assert clustered_se(values, clusters) == pytest.approx(expected)
    assert math.isnan(clustered_se(values, ["a"] * 6))  # a single cluster: undefined


def test_accuracy_interval_is_wilson_and_clustered_when_asked() -> None:
    accuracy = METRICS["Accuracy"]
    num, den = np.array([100.0, 0, 100, 100, 0, 100, 0, 100]), np.ones(8)
    plain = metric_interval(accuracy, num, den)
    assert plain.method == "wilson" and (plain.low, plain.high) == pytest.approx(wilson(5, 8))
    clustered = metric_interval(accuracy, num, den, ["p", "p", "q", "q", "r", "r", "s", "s"])
    assert clustered.method == "clustered-normal"
    assert clustered.stderr == pytest.approx(clustered_se(num, ["p", "p", "q", "q", "r", "r", "s", "s"]))
    assert metric_interval(accuracy, num[:1], den[:1]) is None  # one item: no interval


def test_bootstrap_is_reproducible_and_brackets_the_value() -> None:
    rng = np.random.default_rng(3)
    loss, words = rng.exponential(2.0, 300), rng.integers(3, 9, 300).astype(float)
    first = bootstrap(loss, words, math.exp)
    assert first == bootstrap(loss, words, math.exp)  # fixed seed
    se, low, high = first
    assert low < math.exp(loss.sum() / words.sum()) < high and se > 0
    assert bootstrap(np.full(10, 2.0), np.ones(10), float) == (0.0, 2.0, 2.0)  # constant: zero width


def test_wilson_coverage_on_simulated_data() -> None:
    rng = np.random.default_rng(7)
    accuracy = METRICS["Accuracy"]
    for p, n in ((0.3, 40), (0.8, 200)):
        hits = 0
        for _ in range(300):
            num = 100.0 * (rng.random(n) < p)
            interval = metric_interval(accuracy, num, np.ones(n))
            hits += interval.low <= 100 * p <= interval.high
        assert 0.91 <= hits / 300 <= 0.99, (p, n, hits)


def test_bootstrap_coverage_of_a_mean_on_simulated_data() -> None:
    rng = np.random.default_rng(11)
    f1 = METRICS["F1"]
    hits = 0
    for _ in range(200):
        num = rng.beta(2, 3, 150) * 100  # mean 40
        interval = metric_interval(f1, num, np.ones(150))
        hits += interval.low <= 40.0 <= interval.high
    assert 0.90 <= hits / 200 <= 0.99, hits


def test_group_clusters_follow_the_layout() -> None:
    accuracy = METRICS["Accuracy"]
    rng = np.random.default_rng(5)
    same = 100.0 * (rng.random(30) < 0.5)
    variants = [FileItems(f"{prompt}/mul/test.jsonl", same.copy(), np.ones(30)) for prompt in ("A", "B", "C")]
    assert prompt_variants(variants)
    pooled = group_interval(accuracy, variants)
    # three prompts that agree item by item are one sample of 30 questions, not of 90
    assert pooled.stderr == pytest.approx(clustered_se(np.concatenate([same] * 3), list(range(30)) * 3))
    assert pooled.stderr > sample_se(np.concatenate([same] * 3)) * 1.5
    subjects = [FileItems(f"LM_eval/mul/stem/{s}.jsonl", 100.0 * (rng.random(20) < 0.5), np.ones(20)) for s in "abcd"]
    assert not prompt_variants(subjects)
    interval = group_interval(accuracy, subjects)
    values = np.concatenate([f.num for f in subjects])
    assert interval.stderr == pytest.approx(clustered_se(values, [f.file for f in subjects for _ in range(20)]))
    ppl = METRICS["PPL"]
    assert group_interval(ppl, [FileItems("a.txt", np.ones(5), np.ones(5)), FileItems("b.txt", np.ones(5), np.ones(5))]) is None


def test_results_json_carries_intervals_and_the_console_keeps_its_format(tmp_path: Path, tiny_glm_dir: Path) -> None:
    tasks, data = write_task_set(tmp_path / "set")
    env = glm_env(data, tmp_path / "out", tiny_glm_dir)
    plain = evaluate_sh("plain", tasks, env)
    assert plain.returncode == 0, plain.stderr
    assert "±" not in plain.stdout
    assert re.search(r"^        Finish Plain/mul/validation\.jsonl, Accuracy = \d+\.\d{3}$", plain.stdout, re.M)
    results = json.loads((tmp_path / "out" / "plain" / "results.json").read_text())
    for task, entry in results["tasks"].items():
        for group, stats in entry["groups"].items():
            for name, values in stats.items():
                if name == "files":
                    continue
                assert {"max", "median", "average", "average_stderr", "average_ci95"} <= set(values), (task, group, name)
            for file, file_entry in stats["files"].items():
                for name in (k for k in file_entry if k not in ("n", "stats") and not k.endswith(("_stderr", "_ci95"))):
                    assert f"{name}_stderr" in file_entry and f"{name}_ci95" in file_entry, (task, file, name)
                    low, high = file_entry[f"{name}_ci95"]
                    assert low <= file_entry[name] <= high or not math.isfinite(file_entry[name]), (task, file, name)
    with_se = evaluate_sh("se", tasks, env, "--show-stderr")
    assert re.search(r"^        Finish Plain/mul/validation\.jsonl, Accuracy = \d+\.\d{3} ± \d+\.\d{3}$", with_se.stdout, re.M)
    assert re.search(r"average = \d+\.\d{3} ± \d+\.\d{3}$", with_se.stdout, re.M)
