"""Every shipped task YAML validates against data built by ``python -m evaluation.prepare``
from the real raw files in ../shared/data, and runs 5 items end to end on the tiny GLM."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from evaluation.cli import main as evaluate_main
from evaluation.prepare.suites import SUITE_MODULES

ROOT = Path(__file__).resolve().parent.parent
RAW = ROOT.parent / "shared" / "data"
SUITES = sorted(p.name for p in (ROOT / "tasks").iterdir() if p.is_dir() and any(p.glob("*.yaml")))

pytestmark = pytest.mark.skipif(not RAW.is_dir(), reason=f"raw datasets not found at {RAW}")


def test_every_task_folder_has_a_converter() -> None:
    assert set(SUITES) <= set(SUITE_MODULES), f"task folders without a converter: {set(SUITES) - set(SUITE_MODULES)}"


def test_every_shipped_yaml_validates(sample_data: Path, tiny_glm_dir: Path, capsys: pytest.CaptureFixture) -> None:
    from conftest import tiny_model_args

    code = evaluate_main([str(ROOT / "tasks"), "--data-path", str(sample_data), "--validate-only", *tiny_model_args(tiny_glm_dir)])
    out, err = capsys.readouterr()
    assert code == 0, err
    yamls = sorted((ROOT / "tasks").rglob("*.yaml"))
    assert f"> Successfully load {len(yamls)} task" in out


@pytest.mark.parametrize("suite", SUITES)
def test_suite_runs_five_items_on_the_tiny_model(suite: str, sample_data: Path, tiny_glm_dir: Path, tmp_path: Path,
                                                 capsys: pytest.CaptureFixture) -> None:
    from conftest import tiny_model_args

    code = evaluate_main([str(ROOT / "tasks" / suite), "--data-path", str(sample_data), "--output-dir", str(tmp_path),
                          "--run-name", "run", "--limit", "5", "--no-progress", *tiny_model_args(tiny_glm_dir)])
    out, err = capsys.readouterr()
    assert code == 0, err
    results = json.loads((tmp_path / "run" / "results.json").read_text())
    assert len(results["tasks"]) == len(list((ROOT / "tasks" / suite).glob("*.yaml")))


def test_the_comparison_examples_validate(sample_data: Path, tiny_glm_dir: Path, capsys: pytest.CaptureFixture) -> None:
    """examples/compare-mmlu-formats reuse the quick start's task name, so each validates alone."""
    from conftest import tiny_model_args

    for yaml in sorted((ROOT / "examples" / "compare-mmlu-formats").glob("*.yaml")):
        code = evaluate_main([str(yaml), "--data-path", str(sample_data), "--validate-only", *tiny_model_args(tiny_glm_dir)])
        assert code == 0, capsys.readouterr().err
