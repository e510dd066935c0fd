"""scripts/evaluate.sh on the tiny GLM over a mul + gen + lm task set written here."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def write_task_set(base: Path) -> tuple[Path, Path]:
    """Tasks and data like a user would write them: two prompts for mul, one gen, one lm."""
    data, tasks = base / "data", base / "tasks"
    (tasks / "nested").mkdir(parents=True)
    for prompt, template in {"Plain": "{q}", "Question": "Question: {q} Answer:"}.items():
        folder = data / "toy" / "quiz" / prompt / "mul"
        folder.mkdir(parents=True)
        rows = [
            {"inputs_pretokenized": template.format(q="Is the sky blue?"), "choices_pretokenized": ["yes", "no"], "label": 0},
            {"inputs_pretokenized": template.format(q="Do fish have legs?"), "choices_pretokenized": ["yes", "no"], "label": 1},
            {"inputs_pretokenized": template.format(q="Which animal says moo?"), "choices_pretokenized": ["the cow", "the dog barks", "a bird"], "label": 0},
        ][: 3 if prompt == "Plain" else 2]
        (folder / "validation.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    gen = data / "toy" / "capitals" / "Capital" / "gen"
    gen.mkdir(parents=True)
    gen_rows = [{"inputs_pretokenized": f"The capital of {c} is", "targets_pretokenized": [t]} for c, t in [("France", "Paris"), ("Italy", "Rome")]]
    (gen / "test.jsonl").write_text("".join(json.dumps(r) + "\n" for r in gen_rows))
    lm = data / "toy" / "text"
    lm.mkdir(parents=True)
    (lm / "wiki.test.txt").write_text("The sky is blue and the grass is green. " * 40)
    (tasks / "quiz.yaml").write_text("name: quiz\ntype: mul\npath: toy/quiz\nfile-pattern:\n  validation: '**/validation.jsonl'\nmicro-batch-size: 2\n")
    (tasks / "nested" / "capitals.yaml").write_text(
        "name: capitals\ntype: gen\npath: toy/capitals\nuse_task_mask: true\nsampling_strategy: BeamSearchStrategy\n"
        "num_beams: 2\nmax_gen_length: 4\nfile_pattern: '**/test.jsonl'\n"
    )
    (tasks / "nested" / "text.yaml").write_text(
        "name: text\ntype: lm\npath: toy/text\nmetrics: [PPL, BPB]\nmax-seq-length: 128\ngeneration-length: 32\nfile-pattern: '*.txt'\n"
    )
    return tasks, data


def run_evaluate(args: list[str], tiny_glm_dir: Path, data: Path, output: Path) -> subprocess.CompletedProcess:
    env = {
        **os.environ,
        "PYTHON": sys.executable,
        "MODEL_CONFIG": str(ROOT / "configs" / "model_glm_tiny.sh"),
        "TINY_GLM_PATH": str(tiny_glm_dir),
        "DATA_PATH": str(data),
        "OUTPUT_DIR": str(output),
    }
    return subprocess.run(["bash", str(ROOT / "scripts" / "evaluate.sh"), *args, "--no-progress"],
                          capture_output=True, text=True, env=env, timeout=300)


def test_evaluate_sh_end_to_end(tmp_path: Path, tiny_glm_dir: Path) -> None:
    tasks, data = write_task_set(tmp_path)
    output = tmp_path / "out"
    result = run_evaluate([str(tasks / "quiz.yaml"), str(tasks / "nested")], tiny_glm_dir, data, output)
    assert result.returncode == 0, result.stderr
    out = result.stdout
    # Reference-format lines.
    assert "> Successfully load 3 tasks" in out
    assert re.search(r"^        Finish Plain/mul/validation\.jsonl, Accuracy = \d+\.\d{3}$", out, re.M)
    assert re.search(r"^    Group validation Accuracy: max = \d+\.\d{3}, median = \d+\.\d{3}, average = \d+\.\d{3}$", out, re.M)
    assert re.search(r"^        Finish Capital/gen/test\.jsonl, EM = \d+\.\d{3}, F1 = \d+\.\d{3}$", out, re.M)
    assert re.search(r"^    Group all:\n        Metric EM: max = .*\n        Metric F1: max = ", out, re.M)
    assert re.search(r"^        Finish wiki\.test\.txt, PPL = \d+\.\d{3}, BPB = \d+\.\d{3}$", out, re.M)
    assert re.search(r"^Finish task quiz in \d+\.\ds\.$", out, re.M)
    assert re.search(r"^Finish 3 tasks in \d+\.\ds$", out, re.M)
    # Task order: the file argument first, then the directory's YAMLs sorted.
    assert out.index("Evaluating task quiz") < out.index("Evaluating task capitals") < out.index("Evaluating task text")

    (run_dir,) = list(output.iterdir())
    results = json.loads((run_dir / "results.json").read_text())
    assert set(results) >= {"harness", "model", "created", "tasks"}
    assert isinstance(results["harness"]["version"], str) and "git_commit" in results["harness"]
    assert results["model"]["config"].endswith("model_glm_tiny.sh")
    assert results["model"]["args"]["num_layers"] == 2
    assert re.match(r"\d{4}-\d{2}-\d{2}T", results["created"])
    quiz = results["tasks"]["quiz"]
    assert quiz["type"] == "mul" and quiz["yaml"].endswith("quiz.yaml") and quiz["seconds"] > 0
    assert quiz["config"]["micro_batch_size"] == 2 and quiz["config"]["metrics"] == ["Accuracy"]
    group = quiz["groups"]["validation"]
    files = group["files"]
    assert files["Plain/mul/validation.jsonl"]["n"] == 3 and files["Question/mul/validation.jsonl"]["n"] == 2
    # Group statistics agree with the per-file numbers, and per-file numbers with the predictions.
    values = {f: v["Accuracy"] for f, v in files.items()}
    assert group["Accuracy"]["max"] == pytest.approx(max(values.values()))
    weighted = (3 * values["Plain/mul/validation.jsonl"] + 2 * values["Question/mul/validation.jsonl"]) / 5
    assert group["Accuracy"]["average"] == pytest.approx(weighted)
    predictions = [json.loads(line) for line in (run_dir / "predictions" / "quiz" / "Plain/mul/validation.jsonl").read_text().splitlines()]
    assert len(predictions) == 3
    assert all(p["prediction"] == max(range(len(p["scores"])), key=p["scores"].__getitem__) for p in predictions)
    assert 100 * sum(p["correct"] for p in predictions) / 3 == pytest.approx(values["Plain/mul/validation.jsonl"])
    assert predictions[2]["item"]["choices_pretokenized"] == ["the cow", "the dog barks", "a bird"]
    gen_predictions = (run_dir / "predictions" / "capitals" / "Capital/gen/test.jsonl").read_text().splitlines()
    assert {"prediction", "targets", "correct", "generated_ids"} <= set(json.loads(gen_predictions[0]))
    text = results["tasks"]["text"]["groups"]["all"]
    assert set(text) == {"PPL", "BPB", "files"}
    assert text["files"]["wiki.test.txt"]["PPL"] > 1.0
    # The console log was tee'd into the run folder.
    assert "Finish 3 tasks in" in (run_dir / "console.log").read_text()


def test_bad_yaml_fails_fast_without_loading_the_model(tmp_path: Path, tiny_glm_dir: Path) -> None:
    tasks, data = write_task_set(tmp_path)
    bad = tasks / "bad.yaml"
    bad.write_text("name: bad\ntype: mul\npath: toy/quiz\nmicro-bach-size: 4\n")
    missing = tasks / "missing.yaml"
    missing.write_text("name: missing\ntype: mul\npath: toy/quiz\nfile-pattern: '**/nothing-here.jsonl'\n")
    output = tmp_path / "out"
    start = time.time()
    result = run_evaluate([str(tasks)], tiny_glm_dir, data, output)
    assert time.time() - start < 60
    assert result.returncode == 2
    assert f"{bad}:4: field 'micro-bach-size': unknown key (did you mean 'micro_batch_size'?)" in result.stderr
    assert f"{missing}:4: field 'file-pattern'" in result.stderr and "matches no file" in result.stderr
    assert "Loading model" not in result.stdout
    assert not output.exists()


def test_runs_in_the_same_second_get_their_own_folders(tmp_path: Path, tiny_glm_dir: Path) -> None:
    from evaluation import cli

    from conftest import tiny_model_args

    tasks, data = write_task_set(tmp_path)
    argv = [str(tasks / "quiz.yaml"), "--data-path", str(data), "--output-dir", str(tmp_path / "out"), "--no-progress",
            *tiny_model_args(tiny_glm_dir)]
    assert cli.main(argv) == 0 and cli.main(argv) == 0
    runs = sorted((tmp_path / "out").iterdir())
    assert len(runs) == 2 and all((r / "results.json").is_file() for r in runs)


def test_custom_task_class_from_module(tmp_path: Path, tiny_glm_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """`module:` loads a user's task class (with its own config field) by dotted path."""
    from evaluation import cli

    from conftest import tiny_model_args

    _, data = write_task_set(tmp_path)
    package = tmp_path / "mytasks"
    package.mkdir()
    (package / "custom.py").write_text(
        "from dataclasses import dataclass\n"
        "from evaluation.tasks import MultiChoiceTask\n"
        "from evaluation.task_config import MultiChoiceTaskConfig\n\n"
        "@dataclass\nclass PrefixConfig(MultiChoiceTaskConfig):\n    prefix: str = ''\n\n"
        "class PrefixTask(MultiChoiceTask):\n    config_class = PrefixConfig\n\n"
        "    def load_item(self, raw):\n"
        "        raw = {**raw, 'inputs_pretokenized': self.config.prefix + raw['inputs_pretokenized']}\n"
        "        return super().load_item(raw)\n"
    )
    yaml_path = tmp_path / "custom.yaml"
    yaml_path.write_text("name: custom\ntype: mul\nmodule: mytasks.custom.PrefixTask\nprefix: 'Quiz: '\npath: toy/quiz\n")
    monkeypatch.chdir(tmp_path)
    argv = [str(yaml_path), "--data-path", str(data), "--output-dir", str(tmp_path / "out"), "--run-name", "r", "--no-progress",
            *tiny_model_args(tiny_glm_dir)]
    assert cli.main(argv) == 0
    results = json.loads((tmp_path / "out" / "r" / "results.json").read_text())
    assert results["tasks"]["custom"]["config"]["prefix"] == "Quiz: "
    first = json.loads((tmp_path / "out" / "r" / "predictions" / "custom" / "Plain/mul/validation.jsonl").read_text().splitlines()[0])
    assert first["item"]["inputs_pretokenized"].startswith("Quiz: ")


def test_missing_checkpoint_is_reported_before_any_data_is_read(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    from conftest import tiny_model_args
    from evaluation.cli import main as evaluate_main

    code = evaluate_main([str(ROOT / "tasks" / "demo"), "--data-path", str(tmp_path / "no-data"), "--validate-only",
                          *tiny_model_args(tmp_path / "no-checkpoint")])
    err = capsys.readouterr().err
    assert code == 2
    assert "--load" in err and "no-checkpoint" in err and "latest" in err
    assert "no-data" not in err  # stopped at the model arguments, before the tasks' data
