"""The MMLU task class (overall line) and the shipped tasks/mmlu/*.yaml."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from evaluation.aggregation import FileScore, group_statistics
from evaluation.custom_tasks.mmlu import MMLU
from evaluation.task_config import load_tasks

ROOT = Path(__file__).resolve().parent.parent
RAW = Path(__file__).resolve().parents[2] / "shared" / "data"
YAMLS = sorted((ROOT / "tasks" / "mmlu").glob("*.yaml"))
GROUPS = ["stem", "social_sciences", "humanities", "other"]
needs_raw = pytest.mark.skipif(not (RAW / "mmlu" / "test").is_dir(), reason=f"raw MMLU data not found under {RAW}")


def test_overall_is_every_file_of_every_group_and_weighted_by_items() -> None:
    task = MMLU.__new__(MMLU)  # extra_groups needs no config, tokenizer or model
    groups = {
        "stem": [FileScore("MMLU_paper/mul/stem/a.jsonl", 100, {"Accuracy": 50.0}),
                 FileScore("MMLU_paper/mul/stem/b.jsonl", 300, {"Accuracy": 30.0})],
        "humanities": [FileScore("MMLU_paper/mul/humanities/c.jsonl", 1600, {"Accuracy": 60.0})],
    }
    extra = task.extra_groups(groups)
    assert list(extra) == ["overall"]
    assert [s.file for s in extra["overall"]] == [s.file for g in groups.values() for s in g]
    stats = group_statistics(extra["overall"])["Accuracy"]
    assert stats["average"] == pytest.approx((50 + 90 + 960) / 2000 * 100)  # accuracy over all items
    assert stats["max"] == 60.0 and stats["median"] == 50.0
    # A file matched by two globs is counted once; no groups -> no overall line.
    twice = task.extra_groups({"a": groups["stem"], "b": groups["stem"]})
    assert len(twice["overall"]) == 2
    assert task.extra_groups({}) == {}


def test_shipped_yamls() -> None:
    assert [p.name for p in YAMLS] == ["mmlu_0shot.yaml", "mmlu_5shot.yaml", "mmlu_lm_eval_0shot.yaml", "mmlu_lm_eval_5shot.yaml"]


@pytest.fixture(scope="module")
def data_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from evaluation.prepare import mmlu
    from evaluation.prepare.common import write_suite

    out = tmp_path_factory.mktemp("mmlu-data")
    write_suite(out, "mmlu", mmlu.build(RAW), sample=1)
    return out


@needs_raw
def test_yamls_validate_and_find_57_subjects(data_path: Path) -> None:
    tasks, problems = load_tasks(YAMLS, data_path)
    assert problems == []
    assert len(tasks) == 4
    for task in tasks:
        assert task.task_class is MMLU
        assert list(task.files) == GROUPS
        assert [len(task.files[g]) for g in GROUPS] == [19, 12, 13, 13]
        prompt = task.config.groups()["stem"].split("/")[0]
        assert all(f.relative_to(task.data_root).parts[0] == prompt for files in task.files.values() for f in files)


@needs_raw
def test_five_shot_end_to_end_on_the_tiny_model(data_path: Path, tiny_glm_dir: Path, tmp_path: Path) -> None:
    from evaluation import cli

    from conftest import tiny_model_args

    argv = [str(ROOT / "tasks" / "mmlu" / "mmlu_5shot.yaml"), "--data-path", str(data_path),
            "--output-dir", str(tmp_path / "out"), "--run-name", "r", "--no-progress", *tiny_model_args(tiny_glm_dir)]
    assert cli.main(argv) == 0
    run = tmp_path / "out" / "r"
    entry = json.loads((run / "results.json").read_text())["tasks"]["mmlu-5shot"]
    assert list(entry["groups"]) == GROUPS + ["overall"]
    overall = entry["groups"]["overall"]
    assert len(overall["files"]) == 57 and sum(f["n"] for f in overall["files"].values()) == 57
    correct = sum(json.loads(line)["correct"] for p in (run / "predictions" / "mmlu-5shot").rglob("*.jsonl")
                  for line in p.read_text().splitlines())
    assert overall["Accuracy"]["average"] == pytest.approx(100 * correct / 57)
    log = (run / "console.log").read_text()
    assert "    Group overall Accuracy: max = " in log
    assert "Finish MMLU_paper/mul/humanities/professional_law.jsonl, Accuracy = " in log
