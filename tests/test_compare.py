"""python -m evaluation.compare: the statistics by hand and by simulation, the refusals, the
reports, and the CI gate (scripts/ci_regression.sh) catching a real regression."""

from __future__ import annotations

import json
import math
import os
import random
import shutil
import subprocess
import sys
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pytest
from scipy import stats

from evaluation.compare.statistics import MIN_FLIPS, compare_binary, compare_general, holm
from evaluation.metrics import METRICS
from evaluation.tools.make_tiny_glm import make_tiny_glm

from test_distributed import evaluate_sh, glm_env

ROOT = Path(__file__).resolve().parent.parent
ACCURACY, F1 = METRICS["Accuracy"], METRICS["F1"]

# -- statistics ---------------------------------------------------------------------------------


def test_mcnemar_by_hand() -> None:
    base = np.array([100.0] * 5 + [0.0] * 10 + [100.0] * 2 + [0.0] * 3)   # items 15, 16: right -> wrong
    new = np.array([100.0] * 5 + [100.0] * 8 + [0.0] * 2 + [0.0] * 2 + [0.0] * 3)  # items 5..12: wrong -> right
    c = compare_binary(ACCURACY, base, new)
    assert (c.right_to_wrong, c.wrong_to_right) == ([15, 16], list(range(5, 13)))
    assert c.delta == pytest.approx(100 * (8 - 2) / 20)
    assert c.p == pytest.approx(2 * sum(math.comb(10, k) for k in range(0, 3)) / 2**10)  # exact two-sided, b=2 of 10
    exact = stats.beta.ppf([0.025, 0.975], [8, 9], [3, 2])  # Clopper-Pearson for 8 of 10
    assert (c.low, c.high) == pytest.approx(tuple(100 * 10 / 20 * (2 * exact - 1)))
    assert c.mde >= 100 * MIN_FLIPS / 20 and MIN_FLIPS == 6


def test_paired_general_by_hand_when_nothing_changes() -> None:
    values = np.linspace(0, 100, 25)
    c = compare_general(F1, values, np.ones(25), values.copy(), np.ones(25))
    assert (c.delta, c.low, c.high, c.p) == (0.0, 0.0, 0.0, 1.0)


def test_holm_by_hand() -> None:
    assert holm([0.01, 0.04, 0.03, 0.5]) == pytest.approx([0.04, 0.09, 0.09, 0.5])


def test_paired_intervals_cover_a_known_difference() -> None:
    """Binary pairs with a true difference of +4 points, F1-like pairs with +3: both intervals
    cover the truth in about 95 % of a few hundred simulated comparisons."""
    rng = np.random.default_rng(20261201)
    hits_binary = hits_general = 0
    draws = 300
    for _ in range(draws):
        outcome = rng.choice(4, size=400, p=[0.55, 0.05, 0.09, 0.31])  # both right, right->wrong, wrong->right, both wrong
        base = 100.0 * np.isin(outcome, (0, 1))
        new = 100.0 * np.isin(outcome, (0, 2))
        c = compare_binary(ACCURACY, base, new)
        hits_binary += c.low <= 4.0 <= c.high
    def scores(size: int) -> tuple[np.ndarray, np.ndarray]:
        skill = rng.beta(2, 2, size) * 100
        return np.clip(skill + rng.normal(0, 8, size), 0, 100), np.clip(skill + 3 + rng.normal(0, 8, size), 0, 100)

    big_base, big_new = scores(2_000_000)
    truth = float(big_new.mean() - big_base.mean())  # about 3, a little less: the scores are clipped to [0, 100]
    for _ in range(draws // 3):
        base, new = scores(200)
        c = compare_general(F1, base, np.ones(200), new, np.ones(200))
        hits_general += c.low <= truth <= c.high
    assert 0.92 <= hits_binary / draws <= 0.99, hits_binary
    assert 0.88 <= hits_general / (draws // 3) <= 1.0, hits_general


# -- run folders --------------------------------------------------------------------------------


def self_labelled_set(base: Path, model_dir: Path, items: int = 160) -> tuple[Path, Path]:
    """Multiple-choice items made from the tiny corpus, labelled with the tiny GLM's own
    predictions: that model scores 100 %, and any model that predicts differently loses."""
    rng = random.Random(7)
    words = (ROOT / "evaluation" / "tools" / "tiny_corpus.txt").read_text().split()
    data, tasks = base / "data", base / "tasks"
    rows = [{"inputs_pretokenized": " ".join(rng.choice(words) for _ in range(8)),
             "choices_pretokenized": [rng.choice(words) for _ in range(4)], "label": 0, "id": f"q{i}"} for i in range(items)]
    for name in ("First", "Second"):  # two prompt files = a group of prompt variants
        path = data / "self" / "words" / name / "mul" / "test.jsonl"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("".join(json.dumps({**r, "inputs_pretokenized": f"{name}: {r['inputs_pretokenized']}"}) + "\n" for r in rows))
    tasks.mkdir(parents=True)
    (tasks / "words.yaml").write_text("name: words\ntype: mul\npath: self/words\nfile-pattern:\n  test: '**/test.jsonl'\n"
                                      "micro-batch-size: 16\n")
    probe = evaluate_sh("probe", tasks, glm_env(data, base / "probe", model_dir))
    assert probe.returncode == 0, probe.stderr
    for name in ("First", "Second"):
        predictions = base / "probe" / "probe" / "predictions" / "words" / name / "mul" / "test.jsonl"
        labelled = [{**r["item"], "label": r["prediction"]} for r in map(json.loads, predictions.read_text().splitlines())]
        (data / "self" / "words" / name / "mul" / "test.jsonl").write_text("".join(json.dumps(r) + "\n" for r in labelled))
    return tasks, data


@pytest.fixture(scope="module")
def other_seed(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_tiny_glm(tmp_path_factory.mktemp("glm-seed99"), seed=99)


@pytest.fixture(scope="module")
def labelled(tmp_path_factory: pytest.TempPathFactory, tiny_glm_dir: Path) -> tuple[Path, Path]:
    return self_labelled_set(tmp_path_factory.mktemp("self-labelled"), tiny_glm_dir)


@pytest.fixture(scope="module")
def baseline_run(tmp_path_factory: pytest.TempPathFactory, labelled, tiny_glm_dir: Path) -> Path:
    tasks, data = labelled
    output = tmp_path_factory.mktemp("compare-runs")
    assert evaluate_sh("baseline", tasks, glm_env(data, output, tiny_glm_dir)).returncode == 0
    return output / "baseline"


def compare(*arguments: str, out: Path) -> tuple[int, str]:
    result = subprocess.run([sys.executable, "-m", "evaluation.compare", *arguments, "--out", str(out)],
                            capture_output=True, text=True, cwd=ROOT, timeout=300)
    return result.returncode, result.stdout + result.stderr


def test_identical_runs_show_no_detectable_change(tmp_path: Path, labelled, tiny_glm_dir: Path, baseline_run: Path) -> None:
    tasks, data = labelled
    assert evaluate_sh("again", tasks, glm_env(data, tmp_path, tiny_glm_dir), "--micro-batch-size", "5").returncode == 0
    code, out = compare(str(baseline_run), str(tmp_path / "again"), "--margin", "10", out=tmp_path / "report")
    assert code == 0, out
    report = json.loads((tmp_path / "report" / "report.json").read_text())
    assert {c["verdict"] for u in report["units"] for c in u["comparisons"]} == {"no detectable change"}
    assert "no significant regression beyond the margin" in out


def test_another_model_is_a_regression_with_flips(tmp_path: Path, labelled, other_seed: Path, baseline_run: Path) -> None:
    tasks, data = labelled
    assert evaluate_sh("other", tasks, glm_env(data, tmp_path, other_seed, TINY_GLM_SEED="99")).returncode == 0
    code, out = compare(str(baseline_run), str(tmp_path / "other"), out=tmp_path / "report")
    assert code == 1, out
    report = json.loads((tmp_path / "report" / "report.json").read_text())
    group = next(u for u in report["units"] if u["level"] == "group")
    comparison = group["comparisons"][0]
    assert comparison["verdict"] == "regressed" and comparison["beyond_margin"] and comparison["delta"] < -10
    assert comparison["method"] == "clustered paired normal"  # two prompts of the same questions: clustered by question
    file_unit = next(u for u in report["units"] if u["level"] == "file")
    assert file_unit["comparisons"][0]["method"] == "exact McNemar"
    assert file_unit["comparisons"][0]["wrong_to_right"] == []  # the baseline is right everywhere
    assert len(file_unit["comparisons"][0]["right_to_wrong"]) == round(-file_unit["comparisons"][0]["delta"] * file_unit["n"] / 100)
    assert out.index("### Regressions") < out.index("### Groups")  # regressions first


class _Collector(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.ids: set[str] = set()
        self.tags: dict[str, int] = {}
        self.external: list[str] = []

    def handle_starttag(self, tag: str, attrs: list) -> None:
        self.tags[tag] = self.tags.get(tag, 0) + 1
        for name, value in attrs:
            if name == "id":
                self.ids.add(value)
            if name in ("src", "href") and value and "://" in value:
                self.external.append(value)


def test_the_html_report_is_self_contained_and_complete(tmp_path: Path, labelled, other_seed: Path, baseline_run: Path) -> None:
    tasks, data = labelled
    assert evaluate_sh("other", tasks, glm_env(data, tmp_path, other_seed, TINY_GLM_SEED="99")).returncode == 0
    code, _ = compare(str(baseline_run), str(tmp_path / "other"), out=tmp_path / "report")
    text = (tmp_path / "report" / "report.html").read_text()
    parser = _Collector()
    parser.feed(text)
    assert {"runs", "changes-1", "delta", "prompts", "units-1", "flips", "markdown"} <= parser.ids
    assert parser.tags.get("svg", 0) >= 2 and parser.tags.get("table", 0) >= 4 and parser.tags.get("details", 0) >= 2
    assert not parser.external  # opens offline
    assert "right → wrong" in text and "First: " in text  # the flip browser shows the items' text


def test_many_files_get_a_heatmap(tmp_path: Path, baseline_run: Path) -> None:
    """Eight files in one group (as MMLU's subjects): copy the baseline with regrouped files."""
    from evaluation.compare.plots import subject_heatmap
    from evaluation.compare.runs import load_run
    from evaluation.compare.units import build

    runs = [load_run(baseline_run), load_run(baseline_run, "copy")]
    result = build(runs, 1.0)
    assert subject_heatmap(result, minimum_files=2)  # two files suffice when asked
    assert subject_heatmap(result) == []  # the default needs eight


def test_bad_input_exits_2(tmp_path: Path, labelled, tiny_glm_dir: Path, baseline_run: Path) -> None:
    tasks, data = labelled
    code, out = compare(str(baseline_run), str(tmp_path / "absent"), out=tmp_path / "r1")
    assert code == 2 and "no such run folder" in out
    assert evaluate_sh("short", tasks, glm_env(data, tmp_path, tiny_glm_dir), "--limit", "20").returncode == 0
    code, out = compare(str(baseline_run), str(tmp_path / "short"), out=tmp_path / "r2")
    assert code == 2 and "did not score the same items" in out and "--intersection" in out
    code, out = compare(str(baseline_run), str(tmp_path / "short"), "--intersection", "--margin", "10", out=tmp_path / "r3")
    assert code == 0 and "ONLY THE COMMON ITEMS ARE COMPARED" in out
    other_tasks = tmp_path / "other-tasks"
    shutil.copytree(tasks, other_tasks)
    (other_tasks / "words.yaml").write_text((tasks / "words.yaml").read_text().replace("name: words", "name: renamed"))
    assert evaluate_sh("renamed", other_tasks, glm_env(data, tmp_path, tiny_glm_dir)).returncode == 0
    code, out = compare(str(baseline_run), str(tmp_path / "renamed"), out=tmp_path / "r4")
    assert code == 2 and "evaluated other tasks" in out


def test_the_ci_gate_passes_a_match_and_fails_a_regression(tmp_path: Path, labelled, tiny_glm_dir: Path, other_seed: Path) -> None:
    tasks, data = labelled
    env = {**glm_env(data, tmp_path / "runs", tiny_glm_dir), "BASELINE": str(tmp_path / "baseline"), "LIMIT": "120",
           "MARGIN": "10"}
    script = [str(ROOT / "scripts" / "ci_regression.sh"), str(tasks)]
    first = subprocess.run(["bash", *script], capture_output=True, text=True, env={**env, "UPDATE_BASELINE": "1"}, timeout=300)
    assert first.returncode == 0 and "is now the baseline" in first.stderr, first.stderr[-2000:]
    same = subprocess.run(["bash", *script], capture_output=True, text=True, env=env, timeout=300)
    assert same.returncode == 0, same.stdout[-2000:] + same.stderr[-2000:]
    worse = subprocess.run(["bash", *script], capture_output=True, text=True, timeout=300,
                           env={**env, "TINY_GLM_PATH": str(other_seed), "TINY_GLM_SEED": "99"})
    assert worse.returncode == 1, worse.stdout[-2000:] + worse.stderr[-2000:]
    assert "regression(s) beyond the margin" in worse.stdout
    reports = sorted((tmp_path / "runs").glob("ci-*/comparison/report.md"))
    assert len(reports) == 2 and all((r.parent / "report.html").is_file() for r in reports)
    assert os.environ.get("BASELINE") is None  # the tests leave the environment alone
