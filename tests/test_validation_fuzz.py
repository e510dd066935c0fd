"""Validation never crashes: a few hundred seeded random mutations of task YAMLs and data lines
go through ``evaluate.py --validate-only`` in this process, and every one ends in exit code 0
(the mutation happened to stay valid) or 2 with the mutated file named, never a traceback."""

from __future__ import annotations

import contextlib
import io
import json
import random
import shutil
from pathlib import Path

import pytest

from evaluation.cli import main as evaluate_main

from conftest import tiny_model_args

SEED = 20261201
MUTATIONS = 300

YAMLS = {
    "quiz.yaml": "name: quiz\ntype: mul\npath: toy/quiz\nfile-pattern:\n  validation: '**/validation.jsonl'\nmicro-batch-size: 2\n",
    "capitals.yaml": "name: capitals\ntype: gen\npath: toy/capitals\nuse_task_mask: true\nsampling_strategy: BeamSearchStrategy\n"
                     "num_beams: 2\nmax_gen_length: 4\n",
    "text.yaml": "name: text\ntype: lm\npath: toy/text\nmetrics: [PPL, BPB]\nmax-seq-length: 64\ngeneration-length: 16\n"
                 "file-pattern: '*.txt'\n",
    "cont.yaml": "name: cont\ntype: continuation\npath: toy/cont\nuse_task_mask: true\nunidirectional: true\n",
}
DATA = {
    "toy/quiz/Plain/mul/validation.jsonl": [{"inputs_pretokenized": "Is the sky blue?", "choices_pretokenized": ["yes", "no"], "label": 0},
                                            {"inputs_pretokenized": "Do fish fly?", "choices_pretokenized": ["yes", "no"], "label": 1}],
    "toy/capitals/Capital/gen/test.jsonl": [{"inputs_pretokenized": "The capital of France is", "targets_pretokenized": ["Paris"]}],
    "toy/cont/Plain/continuation/test.jsonl": [{"inputs_pretokenized": "The capital of Italy is", "targets_pretokenized": " Rome"}],
}
TEXT = "toy/text/wiki.test.txt"

JUNK = ["", " ", "x" * 300, "../" * 40, "/", "**", "[", "\x00", "ünïcödé 汉字", "-1", "0", "1e400", "nan", "null", "[]", "{}",
        "[[[", "'", "\"", "*" * 5, "a/" * 150, "~", "$HOME", "{a: [b, {c: d}]}", "- - -", "yes", "9" * 40]

PATTERNS = ['""', '"/abs/*.jsonl"', '"' + "a" * 300 + '"', '{g: ""}', "[x]", "{g: [1]}", "'**/' ", "{'': x}"]
# (Not "/" or "../..": valid absolute or relative folders whose recursive globs would read the whole disk.)
PATHS = ['"' + "p" * 300 + '"', '"' + "a/" * 200 + '"', '""', "[a]", "toy/quiz/Plain/mul/validation.jsonl", "toy/nothing", "{x: 1}"]


def junk_value(rng: random.Random):
    return rng.choice([rng.choice(JUNK), rng.randint(-10**20, 10**20), rng.random() * 1e6, None, True, [], {},
                       [rng.choice(JUNK)], {"k": rng.choice(JUNK)}, float("inf")])


def mutate_yaml(text: str, rng: random.Random) -> str:
    lines = text.splitlines()
    kind = rng.randrange(7)
    i = rng.randrange(len(lines))
    if kind == 0 and ":" in lines[i]:  # replace a value
        key = lines[i].split(":", 1)[0]
        value = junk_value(rng)
        lines[i] = f"{key}: {json.dumps(value) if not isinstance(value, str) else value}"
    elif kind == 1:  # drop a line
        del lines[i]
    elif kind == 2:  # duplicate a line
        lines.insert(i, lines[i])
    elif kind == 3:  # an unknown or misspelt key
        lines.append(f"{rng.choice(['micro-bach-size', 'pth', 'nmae', 'file_pattern', 'metrics', 'type'])}: {rng.choice(JUNK)}")
    elif kind == 4:  # break the YAML syntax
        lines[i] = lines[i][: rng.randrange(len(lines[i]) + 1)] + rng.choice([":", "  :", "\t", "{", "- ", "\"", "&a *a"])
    elif kind == 5:  # file-pattern oddities, including the empty glob
        lines = [ln for ln in lines if not ln.startswith(("file-pattern", "  validation"))]
        lines.append("file-pattern: " + rng.choice(PATTERNS))
    else:  # path oddities, including a 300-character name
        lines = [ln for ln in lines if not ln.startswith("path")]
        lines.append("path: " + rng.choice(PATHS))
    return "\n".join(lines) + ("\n" if rng.random() < 0.8 else "")


def mutate_data_line(rows: list[dict], rng: random.Random) -> str:
    lines = [json.dumps(r, ensure_ascii=False) for r in rows]
    i = rng.randrange(len(lines))
    kind = rng.randrange(6)
    row = dict(rows[i])
    if kind == 0 and row:
        row[rng.choice(list(row))] = junk_value(rng)
        lines[i] = json.dumps(row, ensure_ascii=False, allow_nan=True)
    elif kind == 1 and row:
        del row[rng.choice(list(row))]
        lines[i] = json.dumps(row)
    elif kind == 2:
        lines[i] = lines[i][: rng.randrange(len(lines[i]))]  # truncated line
    elif kind == 3:
        lines[i] = rng.choice(["[]", "1", "\"text\"", "null", "{", "\ufeff{}", "{\"label\": 1e999}"])
    elif kind == 4:
        row.update({"inputs": [rng.randint(-5, 10**9)], "choices": [[rng.randint(-5, 10**9)]]})
        lines[i] = json.dumps(row)
    else:
        lines.insert(i, "")
    return "\n".join(lines) + "\n"


@pytest.fixture(scope="module")
def base(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("fuzz-base")
    (root / "tasks").mkdir()
    for name, text in YAMLS.items():
        (root / "tasks" / name).write_text(text)
    for relative, rows in DATA.items():
        path = root / "data" / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    (root / "data" / TEXT).parent.mkdir(parents=True)
    (root / "data" / TEXT).write_text("The sky is blue. " * 20)
    return root


def validate(tasks: Path, data: Path, model: Path) -> tuple[int, str]:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = evaluate_main([str(tasks), "--data-path", str(data), "--validate-only", *tiny_model_args(model)])
    return code, err.getvalue()


def test_the_unmutated_set_is_valid(base: Path, tiny_glm_dir: Path) -> None:
    assert validate(base / "tasks", base / "data", tiny_glm_dir)[0] == 0


@pytest.mark.parametrize("yaml_text,expected", [
    (YAMLS["quiz.yaml"].replace("  validation: '**/validation.jsonl'", "  validation: ''"), "the pattern is empty"),
    ("name: q\ntype: mul\npath: " + "p" * 300 + "\n", "File name too long"),
])
def test_the_two_known_crashes_are_named_problems(tmp_path: Path, base: Path, tiny_glm_dir: Path, yaml_text: str, expected: str) -> None:
    tasks = tmp_path / "tasks"
    tasks.mkdir()
    (tasks / "bad.yaml").write_text(yaml_text)
    code, err = validate(tasks, base / "data", tiny_glm_dir)
    assert code == 2 and "bad.yaml" in err and expected in err, err


def test_random_mutations_never_crash_and_name_the_file(tmp_path: Path, base: Path, tiny_glm_dir: Path) -> None:
    rng = random.Random(SEED)
    outcomes = {0: 0, 2: 0}
    for trial in range(MUTATIONS):
        work = tmp_path / f"t{trial}"
        shutil.copytree(base, work)
        if rng.random() < 0.6:
            name = rng.choice(sorted(YAMLS))
            target = work / "tasks" / name
            target.write_text(mutate_yaml(YAMLS[name], rng))
        else:
            relative = rng.choice(sorted(DATA))
            target = work / "data" / relative
            target.write_text(mutate_data_line(DATA[relative], rng))
        try:
            code, err = validate(work / "tasks", work / "data", tiny_glm_dir)
        except BaseException as exc:  # noqa: BLE001 - exactly what must not happen
            pytest.fail(f"trial {trial}: validation raised {type(exc).__name__}: {exc}\n--- {target}:\n{target.read_text()}")
        assert code in (0, 2), (trial, code, err)
        if code == 2:
            assert str(target) in err, f"trial {trial}: {target} not named in:\n{err}"
        outcomes[code] += 1
        shutil.rmtree(work)
    print(f"{MUTATIONS} mutations: {outcomes[2]} reported as problems, {outcomes[0]} still valid")
    assert outcomes[2] > MUTATIONS // 2  # the mutations mostly break something, so the test exercises the checks
