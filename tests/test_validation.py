"""Input validation: every bad task YAML, data file or task argument is reported with the
file, line and field at fault, all at once, with exit code 2 and before any model is loaded."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any, Optional

import pytest

from evaluation import cli
from evaluation.task_config import load_tasks

from conftest import tiny_model_args

EXIT_INPUT_ERROR = 2


# ---------------------------------------------------------------------------- helpers
@pytest.fixture(autouse=True)
def no_model_loading(monkeypatch: pytest.MonkeyPatch) -> None:
    """Validation must finish before the model is loaded: loading it fails the test."""

    def forbidden(*args: Any, **kwargs: Any) -> None:
        raise AssertionError("the model was loaded although validation should have stopped the run")

    monkeypatch.setattr(cli, "load_model", forbidden)


def write_jsonl(path: Path, items: list[Any]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join((i if isinstance(i, str) else json.dumps(i)) + "\n" for i in items), encoding="utf-8")
    return path


def write_yaml(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path


MUL_ITEMS = [
    {"inputs_pretokenized": "one plus one is", "choices_pretokenized": ["two", "three", "four"], "label": 0},
    {"inputs_pretokenized": "two plus two is", "choices_pretokenized": ["two", "three", "four"], "label": 2},
    {"inputs_pretokenized": "one plus two is", "choices_pretokenized": ["two", "three", "four"], "label": 1},
]
GEN_ITEMS = [
    {"inputs_pretokenized": "The capital of France is", "targets_pretokenized": ["Paris"]},
    {"inputs_pretokenized": "The capital of Italy is", "targets_pretokenized": ["Rome"]},
]


def mul_task(tmp_path: Path, name: str = "arith", extra: str = "", items: Optional[list[Any]] = None,
             yaml_name: Optional[str] = None, data_dir: Optional[str] = None) -> tuple[Path, Path]:
    """A valid mul task YAML (name, type, path on lines 1-3, then ``extra``) and its data.

    Returns (yaml path, data file path)."""
    data_dir = data_dir or name
    data_file = write_jsonl(tmp_path / "data" / data_dir / "test.jsonl", MUL_ITEMS if items is None else items)
    yaml_path = write_yaml(tmp_path / "tasks" / (yaml_name or f"{name}.yaml"),
                           f"name: {name}\ntype: mul\npath: {data_dir}\n{extra}")
    return yaml_path, data_file


def run_cli(tmp_path: Path, glm_dir: Path, *tasks: Any, extra: tuple[str, ...] = ()) -> int:
    argv = [*(str(t) for t in tasks), "--data-path", str(tmp_path / "data"), "--output-dir", str(tmp_path / "out"),
            "--validate-only", "--no-progress", *extra, *tiny_model_args(glm_dir)]
    return cli.main(argv)


def problem_lines(capsys: pytest.CaptureFixture[str]) -> list[str]:
    err = capsys.readouterr().err
    lines = err.splitlines()
    assert lines, "nothing was printed to stderr"
    match = re.match(r"error: (\d+) problem\(s\) found", lines[0])
    assert match, f"unexpected stderr header: {lines[0]!r}"
    problems = [line.strip() for line in lines[1:] if line.strip()]
    assert int(match.group(1)) == len(problems), err
    return problems


def find_problem(problems: list[str], file: Path | str, field: Optional[str] = None, line: Optional[int] = None,
                 contains: tuple[str, ...] = ()) -> str:
    """The one reported problem for ``file`` (and ``field``/``line``/substrings), in the documented
    ``FILE:LINE: field 'FIELD': message`` format."""
    prefix = f"{file}:{line}: " if line is not None else f"{file}"
    candidates = [p for p in problems if p.startswith(prefix)]
    if field is not None:
        candidates = [p for p in candidates if f"field '{field}': " in p]
    candidates = [p for p in candidates if all(s in p for s in contains)]
    assert candidates, f"no problem for {prefix!r} field={field!r} containing {contains!r} in:\n" + "\n".join(problems)
    return candidates[0]


def expect_problem(tmp_path: Path, glm_dir: Path, capsys: pytest.CaptureFixture[str], tasks: list[Any],
                   file: Path | str, field: Optional[str] = None, line: Optional[int] = None,
                   contains: tuple[str, ...] = ()) -> list[str]:
    code = run_cli(tmp_path, glm_dir, *tasks)
    assert code == EXIT_INPUT_ERROR
    problems = problem_lines(capsys)
    find_problem(problems, file, field, line, contains)
    return problems


# ---------------------------------------------------------------------------- config errors
def test_unknown_key_with_hint_and_line(tmp_path, tiny_glm_dir, capsys):
    yaml_path, _ = mul_task(tmp_path, extra="use-task-mask: false\nmicro-bach-size: 2\n")
    problems = expect_problem(tmp_path, tiny_glm_dir, capsys, [yaml_path], yaml_path, field="micro-bach-size", line=5,
                              contains=("unknown key", "did you mean 'micro_batch_size'"))
    assert len(problems) == 1


@pytest.mark.parametrize(("extra", "field", "contains"), [
    ('max-seq-length: "long"\n', "max-seq-length", ("must be int", "'long'")),
    ('use-task-mask: "yes"\n', "use-task-mask", ("must be bool", "'yes'")),
])
def test_wrong_type(tmp_path, tiny_glm_dir, capsys, extra, field, contains):
    yaml_path, _ = mul_task(tmp_path, extra="micro-batch-size: 2\n" + extra)
    expect_problem(tmp_path, tiny_glm_dir, capsys, [yaml_path], yaml_path, field=field, line=5, contains=contains)


@pytest.mark.parametrize("missing", ["name", "path"])
def test_missing_required_field(tmp_path, tiny_glm_dir, capsys, missing):
    write_jsonl(tmp_path / "data" / "arith" / "test.jsonl", MUL_ITEMS)
    fields = {"name": "name: arith\n", "type": "type: mul\n", "path": "path: arith\n"}
    del fields[missing]
    yaml_path = write_yaml(tmp_path / "tasks" / "arith.yaml", "".join(fields.values()))
    expect_problem(tmp_path, tiny_glm_dir, capsys, [yaml_path], yaml_path, field=missing,
                   contains=("missing required field",))


def test_missing_type_field(tmp_path, tiny_glm_dir, capsys):
    yaml_path = write_yaml(tmp_path / "tasks" / "arith.yaml", "name: arith\npath: arith\n")
    expect_problem(tmp_path, tiny_glm_dir, capsys, [yaml_path], yaml_path, field="type",
                   contains=("missing required field",))


def test_path_does_not_exist(tmp_path, tiny_glm_dir, capsys):
    (tmp_path / "data").mkdir()
    yaml_path = write_yaml(tmp_path / "tasks" / "arith.yaml", "name: arith\ntype: mul\npath: no/such/folder\n")
    expect_problem(tmp_path, tiny_glm_dir, capsys, [yaml_path], yaml_path, field="path", line=3,
                   contains=("no/such/folder", "does not exist"))


def test_group_glob_matches_no_file(tmp_path, tiny_glm_dir, capsys):
    yaml_path, _ = mul_task(tmp_path, extra='file-pattern:\n  good: "test.jsonl"\n  missing_group: "nothing-*.jsonl"\n')
    code = run_cli(tmp_path, tiny_glm_dir, yaml_path)
    assert code == EXIT_INPUT_ERROR
    problems = problem_lines(capsys)
    assert len(problems) == 1
    # The field is reported as the YAML spells it or in its normalised form.
    problem = problems[0]
    assert problem.startswith(f"{yaml_path}:4: ")
    assert "field 'file-pattern'" in problem or "field 'file_pattern'" in problem
    assert "'missing_group'" in problem and "nothing-*.jsonl" in problem
    assert "'good'" not in problem


def test_duplicate_task_name_names_second_yaml(tmp_path, tiny_glm_dir, capsys):
    first, _ = mul_task(tmp_path, name="arith", yaml_name="a_first.yaml")
    second, _ = mul_task(tmp_path, name="arith", yaml_name="b_second.yaml")
    problems = expect_problem(tmp_path, tiny_glm_dir, capsys, [first, second], second, field="name", line=1,
                              contains=("duplicate task name 'arith'", str(first)))
    assert not any(p.startswith(f"{first}:") or p.startswith(f"{first}: ") for p in problems)
    assert len(problems) == 1


def test_unknown_metric_with_hint(tmp_path, tiny_glm_dir, capsys):
    yaml_path, _ = mul_task(tmp_path, extra="metrics: [Acuracy]\n")
    expect_problem(tmp_path, tiny_glm_dir, capsys, [yaml_path], yaml_path, field="metrics", line=4,
                   contains=("unknown metric 'Acuracy'", "did you mean 'Accuracy'"))


def test_metric_not_applicable_to_task_type(tmp_path, tiny_glm_dir, capsys):
    yaml_path, _ = mul_task(tmp_path, extra="metrics: [Accuracy, PPL]\n")
    problems = expect_problem(tmp_path, tiny_glm_dir, capsys, [yaml_path], yaml_path, field="metrics", line=4,
                              contains=("'PPL'", "does not apply to 'mul'"))
    assert len(problems) == 1  # Accuracy is fine on mul


def test_positional_txt_file_is_rejected(tmp_path, tiny_glm_dir, capsys):
    yaml_path, _ = mul_task(tmp_path)
    notes = tmp_path / "tasks" / "notes.txt"
    notes.write_text("not a task\n")
    problems = expect_problem(tmp_path, tiny_glm_dir, capsys, [yaml_path, notes], notes, contains=("not a task YAML",))
    assert len(problems) == 1


def test_positional_missing_path_is_rejected(tmp_path, tiny_glm_dir, capsys):
    yaml_path, _ = mul_task(tmp_path)
    missing = tmp_path / "tasks" / "typo.yaml"
    problems = expect_problem(tmp_path, tiny_glm_dir, capsys, [yaml_path, missing], missing,
                              contains=("no such file or directory",))
    assert len(problems) == 1


def test_positional_directory_without_yaml_is_rejected(tmp_path, tiny_glm_dir, capsys):
    empty = tmp_path / "empty_tasks"
    empty.mkdir()
    (empty / "README.txt").write_text("nothing here\n")
    expect_problem(tmp_path, tiny_glm_dir, capsys, [empty], empty, contains=("contains no task YAML",))


def test_no_task_given(tmp_path, tiny_glm_dir, capsys):
    (tmp_path / "data").mkdir()
    code = run_cli(tmp_path, tiny_glm_dir)
    assert code == EXIT_INPUT_ERROR
    find_problem(problem_lines(capsys), "<command line>", contains=("no task given",))


def test_unidirectional_needs_task_mask(tmp_path, tiny_glm_dir, capsys):
    yaml_path, _ = mul_task(tmp_path, extra="unidirectional: true\n")
    expect_problem(tmp_path, tiny_glm_dir, capsys, [yaml_path], yaml_path, field="unidirectional", line=4,
                   contains=("use_task_mask",))


def test_unidirectional_with_task_mask_is_valid(tmp_path, tiny_glm_dir, capsys):
    yaml_path, _ = mul_task(tmp_path, extra="unidirectional: true\nuse-task-mask: true\n")
    assert run_cli(tmp_path, tiny_glm_dir, yaml_path) == 0


def test_type_other_without_module(tmp_path, tiny_glm_dir, capsys):
    write_jsonl(tmp_path / "data" / "custom" / "test.jsonl", MUL_ITEMS)
    yaml_path = write_yaml(tmp_path / "tasks" / "custom.yaml", "name: custom\ntype: other\npath: custom\n")
    expect_problem(tmp_path, tiny_glm_dir, capsys, [yaml_path], yaml_path, field="module", contains=("'other'",))


def test_module_that_cannot_be_imported(tmp_path, tiny_glm_dir, capsys):
    write_jsonl(tmp_path / "data" / "custom" / "test.jsonl", MUL_ITEMS)
    yaml_path = write_yaml(tmp_path / "tasks" / "custom.yaml",
                           "name: custom\ntype: other\npath: custom\nmodule: no_such_package_xyz.tasks.MyTask\n")
    expect_problem(tmp_path, tiny_glm_dir, capsys, [yaml_path], yaml_path, field="module", line=4,
                   contains=("cannot import", "no_such_package_xyz.tasks.MyTask"))


def test_module_that_is_not_a_task_class(tmp_path, tiny_glm_dir, capsys):
    write_jsonl(tmp_path / "data" / "custom" / "test.jsonl", MUL_ITEMS)
    yaml_path = write_yaml(tmp_path / "tasks" / "custom.yaml",
                           "name: custom\ntype: other\npath: custom\nmodule: pathlib.Path\n")
    expect_problem(tmp_path, tiny_glm_dir, capsys, [yaml_path], yaml_path, field="module", line=4,
                   contains=("not a subclass",))


def test_invalid_yaml_syntax(tmp_path, tiny_glm_dir, capsys):
    write_jsonl(tmp_path / "data" / "arith" / "test.jsonl", MUL_ITEMS)
    yaml_path = write_yaml(tmp_path / "tasks" / "broken.yaml", "name: arith\ntype: mul\n  path: arith\n")
    problems = expect_problem(tmp_path, tiny_glm_dir, capsys, [yaml_path], yaml_path, line=3, contains=("invalid YAML",))
    assert len(problems) == 1


def test_yaml_that_is_not_a_mapping(tmp_path, tiny_glm_dir, capsys):
    yaml_path = write_yaml(tmp_path / "tasks" / "list.yaml", "- name: arith\n- type: mul\n")
    expect_problem(tmp_path, tiny_glm_dir, capsys, [yaml_path], yaml_path, contains=("must be a mapping",))


# ---------------------------------------------------------------------------- data errors
def test_malformed_json_line(tmp_path, tiny_glm_dir, capsys):
    yaml_path, data_file = mul_task(tmp_path, items=[MUL_ITEMS[0], '{"inputs_pretokenized": "x", ', MUL_ITEMS[2]])
    problems = expect_problem(tmp_path, tiny_glm_dir, capsys, [yaml_path], data_file, line=2,
                              contains=("malformed JSON",))
    assert len(problems) == 1


def test_json_line_that_is_not_an_object(tmp_path, tiny_glm_dir, capsys):
    yaml_path, data_file = mul_task(tmp_path, items=[MUL_ITEMS[0], "[1, 2, 3]"])
    expect_problem(tmp_path, tiny_glm_dir, capsys, [yaml_path], data_file, line=2, contains=("expected a JSON object",))


def test_label_outside_choices(tmp_path, tiny_glm_dir, capsys):
    bad = {"inputs_pretokenized": "two plus two is", "choices_pretokenized": ["two", "three", "four"], "label": 5}
    yaml_path, data_file = mul_task(tmp_path, items=[MUL_ITEMS[0], MUL_ITEMS[1], bad])
    problems = expect_problem(tmp_path, tiny_glm_dir, capsys, [yaml_path], data_file, field="label", line=3,
                              contains=("5", "3 choices"))
    assert len(problems) == 1


def test_line_numbers_count_blank_lines(tmp_path, tiny_glm_dir, capsys):
    bad = {"inputs_pretokenized": "x", "choices_pretokenized": ["a", "b"], "label": 2}
    yaml_path, data_file = mul_task(tmp_path, items=[MUL_ITEMS[0], "", bad])
    expect_problem(tmp_path, tiny_glm_dir, capsys, [yaml_path], data_file, field="label", line=3)


def test_empty_choice_list(tmp_path, tiny_glm_dir, capsys):
    bad = {"inputs_pretokenized": "two plus two is", "choices_pretokenized": [], "label": 0}
    yaml_path, data_file = mul_task(tmp_path, items=[bad, MUL_ITEMS[1]])
    expect_problem(tmp_path, tiny_glm_dir, capsys, [yaml_path], data_file, field="choices_pretokenized", line=1,
                   contains=("empty choice list",))


def test_missing_inputs(tmp_path, tiny_glm_dir, capsys):
    bad = {"choices_pretokenized": ["two", "three"], "label": 0}
    yaml_path, data_file = mul_task(tmp_path, items=[MUL_ITEMS[0], bad])
    expect_problem(tmp_path, tiny_glm_dir, capsys, [yaml_path], data_file, field="inputs_pretokenized", line=2,
                   contains=("missing",))


def gen_task(tmp_path: Path, items: list[Any], name: str = "capitals") -> tuple[Path, Path]:
    data_file = write_jsonl(tmp_path / "data" / name / "test.jsonl", items)
    yaml_path = write_yaml(tmp_path / "tasks" / f"{name}.yaml",
                           f"name: {name}\ntype: gen\npath: {name}\nuse-task-mask: true\nmax-gen-length: 8\n")
    return yaml_path, data_file


@pytest.mark.parametrize(("bad", "field"), [
    ({"inputs_pretokenized": "The capital of Spain is", "targets_pretokenized": []}, "targets_pretokenized"),
    ({"inputs_pretokenized": "The capital of Spain is"}, "targets_pretokenized"),
])
def test_gen_item_without_targets(tmp_path, tiny_glm_dir, capsys, bad, field):
    yaml_path, data_file = gen_task(tmp_path, [GEN_ITEMS[0], bad, GEN_ITEMS[1]])
    problems = expect_problem(tmp_path, tiny_glm_dir, capsys, [yaml_path], data_file, field=field, line=2)
    assert len(problems) == 1


def test_token_ids_outside_vocabulary(tmp_path, tiny_glm_dir, capsys):
    bad = {"inputs": [99999999], "choices_pretokenized": ["two", "three"], "label": 0}
    yaml_path, data_file = mul_task(tmp_path, items=[MUL_ITEMS[0], bad])
    expect_problem(tmp_path, tiny_glm_dir, capsys, [yaml_path], data_file, field="inputs", line=2,
                   contains=("99999999", "outside the vocabulary"))


def test_valid_token_ids_are_accepted(tmp_path, tiny_glm_dir, capsys):
    item = {"inputs": [20010, 20011], "choices": [[20012], [20013, 20014]], "label": 1}
    yaml_path, _ = mul_task(tmp_path, items=[item])
    assert run_cli(tmp_path, tiny_glm_dir, yaml_path) == 0


def test_empty_data_file(tmp_path, tiny_glm_dir, capsys):
    yaml_path, data_file = mul_task(tmp_path, items=[])
    expect_problem(tmp_path, tiny_glm_dir, capsys, [yaml_path], data_file, contains=("contains no items",))


def test_data_problems_of_every_task_and_file_are_reported_together(tmp_path, tiny_glm_dir, capsys):
    bad_label = {"inputs_pretokenized": "x", "choices_pretokenized": ["a", "b"], "label": 7}
    yaml_mul, mul_file = mul_task(tmp_path, items=[MUL_ITEMS[0], bad_label, "{oops"])
    yaml_gen, gen_file = gen_task(tmp_path, [{"inputs_pretokenized": "x", "targets_pretokenized": []}])
    problems = expect_problem(tmp_path, tiny_glm_dir, capsys, [yaml_mul, yaml_gen], mul_file, field="label", line=2)
    find_problem(problems, mul_file, line=3, contains=("malformed JSON",))
    find_problem(problems, gen_file, field="targets_pretokenized", line=1)
    assert len(problems) == 3


# ---------------------------------------------------------------------------- all at once / success
def test_all_problems_of_two_bad_yamls_in_one_run(tmp_path, tiny_glm_dir, capsys):
    first, _ = mul_task(tmp_path, name="first", extra='micro-bach-size: 2\nmax-seq-length: "long"\n')
    second, _ = mul_task(tmp_path, name="second", extra="metrics: [Acuracy]\nunidirectional: true\n")
    code = run_cli(tmp_path, tiny_glm_dir, first, second)
    assert code == EXIT_INPUT_ERROR
    problems = problem_lines(capsys)
    find_problem(problems, first, field="micro-bach-size", line=4)
    find_problem(problems, first, field="max-seq-length", line=5)
    find_problem(problems, second, field="metrics", line=4)
    find_problem(problems, second, field="unidirectional", line=5)
    assert len(problems) == 4


def test_valid_mul_gen_lm_tasks_pass_validate_only(tmp_path, tiny_glm_dir, capsys):
    yaml_mul, _ = mul_task(tmp_path, extra="micro-batch-size: 2\n")
    yaml_gen, _ = gen_task(tmp_path, GEN_ITEMS)
    (tmp_path / "data" / "wiki").mkdir(parents=True)
    (tmp_path / "data" / "wiki" / "wiki.test.txt").write_text("The cat sat on the mat.\nIt was a sunny day.\n")
    yaml_lm = write_yaml(tmp_path / "tasks" / "wiki.yaml",
                         'name: wiki\ntype: lm\npath: wiki\nuse-task-mask: true\nmax-seq-length: 256\n'
                         'generation-length: 64\nmetrics: [PPL, BPB]\nfile-pattern:\n  test: "*.test.txt"\n')
    code = run_cli(tmp_path, tiny_glm_dir, tmp_path / "tasks")  # a directory: all three YAMLs
    captured = capsys.readouterr()
    assert code == 0, captured.err
    assert "> Successfully load 3 tasks" in captured.out
    for name, yaml_path in (("arith", yaml_mul), ("capitals", yaml_gen), ("wiki", yaml_lm)):
        assert f"Task {name} loaded from config {yaml_path}" in captured.out
    assert "error" not in captured.err
    assert not (tmp_path / "out").exists()  # --validate-only creates no run folder


def test_kebab_and_snake_case_keys_are_both_accepted(tmp_path, tiny_glm_dir, capsys):
    kebab, _ = mul_task(tmp_path, name="kebab", extra="micro-batch-size: 2\nuse-task-mask: true\n")
    snake, _ = mul_task(tmp_path, name="snake", extra="micro_batch_size: 2\nuse_task_mask: true\n")
    code = run_cli(tmp_path, tiny_glm_dir, kebab, snake)
    captured = capsys.readouterr()
    assert code == 0, captured.err
    assert "> Successfully load 2 tasks" in captured.out
    loaded, problems = load_tasks([kebab, snake], tmp_path / "data")
    assert problems == []
    assert [t.config.micro_batch_size for t in loaded] == [2, 2]
    assert [t.config.use_task_mask for t in loaded] == [True, True]


def test_both_spellings_of_one_key_is_an_error(tmp_path, tiny_glm_dir, capsys):
    yaml_path, _ = mul_task(tmp_path, extra="micro-batch-size: 2\nmicro_batch_size: 4\n")
    code = run_cli(tmp_path, tiny_glm_dir, yaml_path)
    assert code == EXIT_INPUT_ERROR
    problems = problem_lines(capsys)
    problem = find_problem(problems, yaml_path, contains=("given twice",))
    assert "micro_batch_size" in problem or "micro-batch-size" in problem
    assert problem.startswith(f"{yaml_path}:5: ")


def test_file_pattern_string_is_one_group_named_all(tmp_path):
    yaml_path, data_file = mul_task(tmp_path, extra='file-pattern: "*.jsonl"\n')
    (data_file.parent / "validation.jsonl").write_text(data_file.read_text())
    loaded, problems = load_tasks([yaml_path], tmp_path / "data")
    assert problems == []
    assert len(loaded) == 1
    assert list(loaded[0].files) == ["all"]
    assert [p.name for p in loaded[0].files["all"]] == ["test.jsonl", "validation.jsonl"]


def test_default_file_pattern_is_one_group_named_all(tmp_path):
    yaml_path, data_file = mul_task(tmp_path)
    write_jsonl(data_file.parent / "sub" / "more.json", MUL_ITEMS)
    (data_file.parent / "notes.txt").write_text("ignored\n")
    loaded, problems = load_tasks([yaml_path], tmp_path / "data")
    assert problems == []
    assert list(loaded[0].files) == ["all"]
    assert sorted(p.name for p in loaded[0].files["all"]) == ["more.json", "test.jsonl"]


# ---------------------------------------------------------------------------- repeated keys and command-line values
def test_same_key_twice_is_an_error(tmp_path, tiny_glm_dir, capsys):
    yaml_path, _ = mul_task(tmp_path, extra="micro-batch-size: 2\nmicro-batch-size: 4\n")
    expect_problem(tmp_path, tiny_glm_dir, capsys, [yaml_path], yaml_path, field="micro-batch-size", line=5)


def test_micro_batch_size_override_must_be_positive(tmp_path, tiny_glm_dir, capsys):
    yaml_path, _ = mul_task(tmp_path)
    with pytest.raises(SystemExit) as exit_info:  # argparse rejects it while parsing
        run_cli(tmp_path, tiny_glm_dir, yaml_path, extra=("--micro-batch-size", "0"))
    assert exit_info.value.code == EXIT_INPUT_ERROR
    assert "micro-batch-size" in capsys.readouterr().err


@pytest.mark.parametrize("value", ["-1", "0"])
def test_non_positive_limit_is_rejected(tmp_path, tiny_glm_dir, capsys, value):
    yaml_path, _ = mul_task(tmp_path)
    with pytest.raises(SystemExit) as exit_info:
        run_cli(tmp_path, tiny_glm_dir, yaml_path, extra=("--limit", value))
    assert exit_info.value.code == EXIT_INPUT_ERROR
    assert "limit" in capsys.readouterr().err


def test_lengths_are_checked_against_the_models_positions(tmp_path, tiny_glm_dir, capsys):
    # The YAML allows 2048 tokens, but the tiny model has 512 positions: the cap applies.
    yaml_path, _ = mul_task(tmp_path, extra="max-gen-length: 600\n")
    yaml_path.write_text(yaml_path.read_text().replace("type: mul", "type: gen"))
    expect_problem(tmp_path, tiny_glm_dir, capsys, [yaml_path], yaml_path, field="max-gen-length",
                   contains=("sequence of 512",))
