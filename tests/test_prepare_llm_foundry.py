"""The ``llm-foundry`` suite converter on the real MosaicML Eval Gauntlet files in ../shared/data:
published counts, the first item of every task field by field against its raw line, the
Gauntlet's prompt text, determinism, errors that name the raw file and line, and the shipped
YAMLs of tasks/llm-foundry validating against the prepared data."""

from __future__ import annotations

import dataclasses
import json
import re
import shutil
from pathlib import Path
from typing import Callable

import pytest
import yaml

from evaluation.prepare import llm_foundry
from evaluation.prepare.__main__ import main as prepare_main
from evaluation.prepare.common import PrepareError, TaskData, check_counts, encode_records

ROOT = Path(__file__).resolve().parents[1]
RAW = Path(__file__).resolve().parents[2] / "shared" / "data"
ICL = RAW / "llm_foundry_icl"
TASKS = ROOT / "tasks" / "llm-foundry"

pytestmark = pytest.mark.skipif(not ICL.is_dir(), reason=f"raw Eval Gauntlet files not found at {ICL}")

RAW_FILE = {"triviaqa": llm_foundry.TRIVIAQA, "jeopardy": llm_foundry.JEOPARDY, "gsm8k": llm_foundry.GSM8K,
            "svamp": llm_foundry.SVAMP, "wsc273": llm_foundry.WSC}
# EVAL_GAUNTLET.md's own wording of each count.
GAUNTLET_WORDING = {"triviaqa": "contain 3,000 questions", "jeopardy": "consists of 2,117 Jeopardy questions",
                    "gsm8k": "consists of 1,319 short", "svamp": "consists of 300 short", "wsc273": "consists of 273 scenarios"}


@pytest.fixture(scope="module")
def built() -> dict[str, TaskData]:
    return {t.task: t for t in llm_foundry.build(RAW)}


def lines_of(path: Path) -> list[str]:
    """The file's lines, each ending in "\\n" (str.splitlines would also split at the U+2028
    characters inside some of the raw JSON strings)."""
    with path.open(encoding="utf-8", newline="") as handle:
        return list(handle)


def raw_lines(task: str) -> list[dict]:
    return [json.loads(line) for line in lines_of(ICL / RAW_FILE[task]) if line.strip()]


def records(built: dict[str, TaskData], task: str) -> list[dict]:
    """Every record of a task (Jeopardy: its category files), in raw order."""
    found = [r for content in built[task].files.values() for r in content]
    return sorted(found, key=lambda r: r["id"])


def source_md_counts() -> dict[str, int]:
    counts = {}
    for line in (ICL / "SOURCE.md").read_text(encoding="utf-8").splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) == 4 and cells[0].endswith(".jsonl") and cells[2].isdigit():
            counts[cells[0]] = int(cells[2])
    return counts


# ------------------------------------------------------------------------ counts and layout
def test_counts_are_the_published_ones(built: dict[str, TaskData]) -> None:
    assert set(built) == set(llm_foundry.PUBLISHED)
    assert check_counts("llm-foundry", list(built.values())) == []
    gauntlet = (ICL / "EVAL_GAUNTLET.md").read_text(encoding="utf-8")
    source = source_md_counts()
    for task, published in llm_foundry.PUBLISHED.items():
        assert GAUNTLET_WORDING[task] in gauntlet and f"{published:,}" in GAUNTLET_WORDING[task], task
        assert source[RAW_FILE[task]] == published == len(raw_lines(task)) == len(records(built, task)), task
        assert [r["id"] for r in records(built, task)] == list(range(published)), task  # raw order, every item once
    # Jeopardy: one file per category, each checked against its pinned count; together the published 2,117.
    jeopardy = built["jeopardy"]
    assert sorted(jeopardy.files) == [f"Gauntlet/gen/{c}.jsonl" for c in sorted(llm_foundry.JEOPARDY_CATEGORIES)]
    assert jeopardy.expected == llm_foundry.JEOPARDY_CATEGORIES and sum(jeopardy.expected.values()) == 2117
    for relative, content in jeopardy.files.items():
        assert {r["category"] for r in content} == {Path(relative).stem}
    for task in ("triviaqa", "gsm8k", "svamp", "wsc273"):
        kind = "mul" if task == "wsc273" else "gen"
        prompt = "Q_A" if task == "svamp" else "Gauntlet"
        assert list(built[task].files) == [f"{prompt}/{kind}/test.jsonl"] and built[task].expected == {"test": llm_foundry.PUBLISHED[task]}


# ------------------------------------------------------------------------ first items, from the raw lines
def test_triviaqa_items(built: dict[str, TaskData]) -> None:
    raw = raw_lines("triviaqa")
    first = raw[0]
    aliases = [a for a in first["aliases"] if a != first["answer"]]
    assert first["answer"] in first["aliases"] and first["aliases"][0] != first["answer"]  # the answer is moved first
    assert records(built, "triviaqa")[0] == {"inputs_pretokenized": first["context"],
                                             "targets_pretokenized": [first["answer"], *aliases], "id": 0}
    for item, line in zip(records(built, "triviaqa"), raw):
        assert item["inputs_pretokenized"] == line["context"]
        assert item["targets_pretokenized"][0] == line["answer"].strip()
        assert set(item["targets_pretokenized"]) == {a.strip() for a in [line["answer"], *line["aliases"]]}
        assert len(set(item["targets_pretokenized"])) == len(item["targets_pretokenized"])  # duplicates removed
    # Stripped as llm-foundry's loader strips: raw alias "one thousand, nine hundred and eighty-seven  ".
    assert "one thousand, nine hundred and eighty-seven" in records(built, "triviaqa")[1043]["targets_pretokenized"]


def test_triviaqa_stop_strings_leave_37_items_without_a_reachable_exact_answer(built: dict[str, TaskData]) -> None:
    """The README's figure: with lm-eval's stops ("\\n", ".", ",") a generation never contains
    them, so an item whose every target contains one cannot be an exact match."""
    config = yaml.safe_load((TASKS / "triviaqa.yaml").read_text(encoding="utf-8"))
    stops = config["until"]
    blocked = [r for r in records(built, "triviaqa") if all(any(s in t for s in stops) for t in r["targets_pretokenized"])]
    assert len(blocked) == 37


def test_jeopardy_items(built: dict[str, TaskData]) -> None:
    raw = raw_lines("jeopardy")
    first = raw[0]
    assert built["jeopardy"].files[f"Gauntlet/gen/{first['category']}.jsonl"][0] == {
        "inputs_pretokenized": first["context"] + "\nAnswer:", "targets_pretokenized": [first["continuation"]],
        "category": first["category"], "id": 0}
    # The Gauntlet's prompt: the stripped context (llm-foundry strip_data) + continuation_delimiter
    # "\nAnswer: ", rstripped (its tokenize_example); one raw context ends in a space.
    for item, line in zip(records(built, "jeopardy"), raw):
        assert item["inputs_pretokenized"] == (line["context"].strip() + "\nAnswer: ").rstrip()
        assert item["targets_pretokenized"] == [line["continuation"].strip()] and item["category"] == line["category"]
    assert records(built, "jeopardy")[428]["targets_pretokenized"] == ["Robert F. Kennedy"]  # raw "Robert F. Kennedy "


def test_gsm8k_items(built: dict[str, TaskData]) -> None:
    raw = raw_lines("gsm8k")
    plain = [json.loads(line) for line in lines_of(ICL / "symbolic_problem_solving" / "gsm8k.jsonl")]
    assert records(built, "gsm8k")[0] == {"inputs_pretokenized": raw[0]["context"] + "\n\nA:",
                                          "targets_pretokenized": [raw[0]["answer"]], "id": 0}
    for item, line, question in zip(records(built, "gsm8k"), raw, plain):
        text = item["inputs_pretokenized"]
        assert text == line["context"] + "\n\nA:"
        assert text.endswith("\n\nQ: " + question["context"] + "\n\nA:")  # the test question is the last one
        assert text.count("\n\nA: ") == 8 and text.count("The answer is ") == 8
        assert item["targets_pretokenized"] == [line["answer"]] == [question["answer"]]
    with_commas = [r["targets_pretokenized"][0] for r in records(built, "gsm8k") if "," in r["targets_pretokenized"][0]]
    assert len(with_commas) == 14 and "2,125" in with_commas  # written as in the raw file


def test_svamp_items(built: dict[str, TaskData]) -> None:
    raw = raw_lines("svamp")
    assert records(built, "svamp")[0] == {"inputs_pretokenized": "Q: " + raw[0]["context"] + "\nA:",
                                          "targets_pretokenized": [raw[0]["answer"]], "id": 0}
    assert [r["targets_pretokenized"] for r in records(built, "svamp")] == [[line["answer"]] for line in raw]


def test_wsc273_items(built: dict[str, TaskData]) -> None:
    raw = raw_lines("wsc273")
    assert records(built, "wsc273")[0] == {"contexts_pretokenized": raw[0]["context_options"],
                                           "continuation_pretokenized": " " + raw[0]["continuation"],
                                           "label": raw[0]["gold"], "id": 0}
    labels = [r["label"] for r in records(built, "wsc273")]
    assert labels == [line["gold"] for line in raw] and [labels.count(0), labels.count(1)] == [137, 136]
    assert all(r["continuation_pretokenized"].startswith(" ") and not r["continuation_pretokenized"].startswith("  ")
               for r in records(built, "wsc273"))


def test_number_answers_score_under_number_em(built: dict[str, TaskData]) -> None:
    """Every GSM8K / SVAMP target is read as a number by the NumberEM metric, "2,125" included."""
    metrics = pytest.importorskip("evaluation.metrics")
    score = getattr(metrics, "number_match_score", None)
    if score is None:
        pytest.skip("evaluation.metrics has no number_match_score (NumberEM) yet")
    for task in ("gsm8k", "svamp"):
        for item in records(built, task):
            target = item["targets_pretokenized"][0]
            assert score(f" So the total is 7. The answer is {target}.", target) == 1.0, (task, target)
            assert score(f" The answer is {target}1.", target) == 0.0, (task, target)


# ------------------------------------------------------------------------ few-shot settings of the YAMLs
def _gauntlet_prompt(shots: list[tuple[str, str]], context: str, example_delimiter: str = "\n",
                     continuation_delimiter: str = " ") -> str:
    """llm-foundry's InContextLearningDataset.construct_context over the shots, then the test
    context, rstripped (llmfoundry/eval/datasets/in_context_learning_evaluation.py, 8c8dd48f)."""
    text = ""
    for shot_context, answer in shots:
        text += (example_delimiter if text else "") + shot_context + continuation_delimiter + answer
    return text + (example_delimiter if text else "") + (context + continuation_delimiter).rstrip()


def _render(config: dict, shots: list[dict], item: dict) -> str:
    """The documented few-shot rule: example = inputs + target_delimiter + targets[0], joined
    and followed by fewshot_separator, then the item's inputs."""
    examples = [s["inputs_pretokenized"] + config["target-delimiter"] + s["targets_pretokenized"][0] for s in shots]
    return "".join(e + config["fewshot-separator"] for e in examples) + item["inputs_pretokenized"]


def test_three_shot_yamls_reproduce_the_gauntlet_prompt(built: dict[str, TaskData]) -> None:
    trivia = records(built, "triviaqa")
    raw = raw_lines("triviaqa")
    config = yaml.safe_load((TASKS / "triviaqa_3shot.yaml").read_text(encoding="utf-8"))
    assert _render(config, trivia[1:4], trivia[0]) == _gauntlet_prompt(
        [(r["context"], r["answer"]) for r in raw[1:4]], raw[0]["context"])

    jeopardy = built["jeopardy"].files["Gauntlet/gen/science.jsonl"]
    raw = [r for r in raw_lines("jeopardy") if r["category"] == "science"]
    config = yaml.safe_load((TASKS / "jeopardy_3shot.yaml").read_text(encoding="utf-8"))
    assert _render(config, jeopardy[1:4], jeopardy[0]) == _gauntlet_prompt(
        [(r["context"], r["continuation"]) for r in raw[1:4]], raw[0]["context"], continuation_delimiter="\nAnswer: ")

    # Schema (WSC): shots = right context + " " + continuation; the item's contexts follow "\n".
    wsc = records(built, "wsc273")
    config = yaml.safe_load((TASKS / "wsc273_3shot.yaml").read_text(encoding="utf-8"))
    shots = "".join(s["contexts_pretokenized"][s["label"]] + config["target-delimiter"] + s["continuation_pretokenized"]
                    + config["fewshot-separator"] for s in wsc[2:5])
    raw = raw_lines("wsc273")
    gauntlet = "\n".join(r["context_options"][r["gold"]] + " " + r["continuation"] for r in raw[2:5])
    assert shots == gauntlet + "\n"

    svamp = records(built, "svamp")
    config = yaml.safe_load((TASKS / "svamp.yaml").read_text(encoding="utf-8"))
    assert _render(config, svamp[1:2], svamp[0]) == f"Q: {svamp[1]['inputs_pretokenized'][3:-3]}\nA: 587\n\n" + svamp[0]["inputs_pretokenized"]


# ------------------------------------------------------------------------ determinism
def test_build_is_deterministic(built: dict[str, TaskData], tmp_path: Path) -> None:
    again = {t.task: t for t in llm_foundry.build(RAW)}
    for task, data in built.items():
        assert sorted(again[task].files) == sorted(data.files)
        for relative, content in data.files.items():
            assert encode_records(again[task].files[relative]) == encode_records(content), relative
    for out in ("a", "b"):
        assert prepare_main(["--raw", str(RAW), "--out", str(tmp_path / out), "llm-foundry"]) == 0
    files_a = sorted(p.relative_to(tmp_path / "a") for p in (tmp_path / "a").rglob("*") if p.is_file())
    files_b = sorted(p.relative_to(tmp_path / "b") for p in (tmp_path / "b").rglob("*") if p.is_file())
    assert files_a == files_b and len(files_a) == 10  # 9 data files + MANIFEST.json
    for relative in files_a:
        assert (tmp_path / "a" / relative).read_bytes() == (tmp_path / "b" / relative).read_bytes(), relative
    manifest = json.loads((tmp_path / "a" / "llm-foundry" / "MANIFEST.json").read_text(encoding="utf-8"))
    assert sum(e["items"] for e in manifest["files"]) == sum(llm_foundry.PUBLISHED.values())
    assert set(manifest["sources"]) == set(llm_foundry.PUBLISHED)


# ------------------------------------------------------------------------ errors
@pytest.fixture()
def raw_copy(tmp_path: Path) -> Path:
    """A copy of the five raw files this suite reads (temporary, never in git)."""
    raw = tmp_path / "raw"
    for relative in llm_foundry.RAW_FILES:
        (raw / relative).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(RAW / relative, raw / relative)
    return raw


def _edit_line(raw: Path, task: str, number: int, edit: Callable[[str], str]) -> Path:
    path = raw / llm_foundry.RAW_FOLDER / RAW_FILE[task]
    lines = lines_of(path)
    lines[number - 1] = edit(lines[number - 1])
    path.write_text("".join(lines), encoding="utf-8")
    return path


def _set_field(key: str, value: object) -> Callable[[str], str]:
    def edit(line: str) -> str:
        record = json.loads(line)
        if value is KeyError:
            del record[key]
        else:
            record[key] = value
        return json.dumps(record, ensure_ascii=False) + "\n"
    return edit


@pytest.mark.parametrize("task, number, edit, message", [
    ("svamp", 5, lambda line: line[:-10] + "\n", r"svamp\.jsonl:5: malformed JSON"),
    ("triviaqa", 3, _set_field("answer", KeyError), r"triviaqa_sm_sub\.jsonl:3: field 'answer' must be a non-empty string, got missing"),
    ("triviaqa", 7, _set_field("aliases", "Onion"), r"triviaqa_sm_sub\.jsonl:7: field 'aliases' must be a non-empty list"),
    ("jeopardy", 12, _set_field("category", "sports"), r"jeopardy_all\.jsonl:12: unknown category 'sports'"),
    ("jeopardy", 13, _set_field("context", "SCIENCE: a clue"), r"jeopardy_all\.jsonl:13: 'context' should read 'WORLD HISTORY: clue'"),
    ("gsm8k", 100, _set_field("answer", "eighteen"), r"gsm8k_prepended_8shot\.jsonl:100: field 'answer' must be a number"),
    ("gsm8k", 2, _set_field("context", "Q: just a question?"), r"gsm8k_prepended_8shot\.jsonl:2: 'context' should hold 8 shots"),
    ("wsc273", 273, _set_field("gold", 2), r"winograd_wsc\.jsonl:273: 'gold' must be 0 or 1"),
    ("wsc273", 9, lambda line: "[1, 2]\n", r"winograd_wsc\.jsonl:9: expected a JSON object"),
])
def test_malformed_raw_line_is_named(raw_copy: Path, tmp_path: Path, capsys: pytest.CaptureFixture,
                                     task: str, number: int, edit, message: str) -> None:
    _edit_line(raw_copy, task, number, edit)
    with pytest.raises(PrepareError, match=message):
        llm_foundry.build(raw_copy)
    out = tmp_path / "out"
    assert prepare_main(["--raw", str(raw_copy), "--out", str(out), "llm-foundry"]) == 2
    err = capsys.readouterr().err
    assert re.search(message, err) and str(raw_copy) in err
    assert not (out / "llm-foundry").exists()  # nothing half-written


def test_count_mismatch_is_an_error(raw_copy: Path) -> None:
    svamp = raw_copy / llm_foundry.RAW_FOLDER / llm_foundry.SVAMP
    svamp.write_text("".join(lines_of(svamp)[:10]), encoding="utf-8")
    problems = check_counts("llm-foundry", llm_foundry.build(raw_copy))
    assert problems == ["suite 'llm-foundry', task 'svamp', file Q_A/gen/test.jsonl: 10 items, the published count is 300"]
    jeopardy = raw_copy / llm_foundry.RAW_FOLDER / llm_foundry.JEOPARDY
    jeopardy.write_text("".join(lines_of(jeopardy)[:-1]), encoding="utf-8")
    with pytest.raises(PrepareError, match=r"jeopardy_all\.jsonl: 2116 items, the published count is 2117"):
        llm_foundry.build(raw_copy)


def test_missing_raw_file_is_named(raw_copy: Path, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    (raw_copy / llm_foundry.RAW_FOLDER / llm_foundry.WSC).unlink()
    assert prepare_main(["--raw", str(raw_copy), "--out", str(tmp_path / "out"), "llm-foundry"]) == 2
    err = capsys.readouterr().err
    assert "suite 'llm-foundry'" in err and "language_understanding/winograd_wsc.jsonl" in err
    assert not (tmp_path / "out" / "llm-foundry").exists()


# ------------------------------------------------------------------------ shipped YAMLs
def test_task_yamls_match_the_built_tasks(built: dict[str, TaskData]) -> None:
    seen = set()
    for path in sorted(TASKS.glob("*.yaml")):
        text = path.read_text(encoding="utf-8")
        assert text.startswith("# ") and "python -m evaluation.prepare --raw RAW --out DATA_PATH llm-foundry" in text, path.name
        config = yaml.safe_load(text)
        task = path.stem.removesuffix("_3shot")
        assert config["name"] == "llm-foundry-" + path.stem.replace("_", "-") and config["path"] == f"llm-foundry/{task}"
        kind = next(iter(built[task].files)).split("/")[1]
        pattern = "*/gen/*.jsonl" if task == "jeopardy" else f"*/{kind}/test.jsonl"
        assert config["type"] == kind and config["file-pattern"] == {"test": pattern}, path.name
        assert config.get("num-fewshot", 0) == (3 if path.stem.endswith("_3shot") or task == "svamp" else 0), path.name
        seen.add(task)
    assert seen == set(built)


def test_shipped_yamls_validate_against_prepared_data(tmp_path: Path) -> None:
    from evaluation.metrics import METRICS
    from evaluation.task_config import GenerationTaskConfig, MultiChoiceTaskConfig, load_tasks

    missing = [name for name, cls in (("partial_scoring", MultiChoiceTaskConfig), ("until", GenerationTaskConfig),
                                      ("num_fewshot", GenerationTaskConfig))
               if name not in {f.name for f in dataclasses.fields(cls)}]
    if missing or "NumberEM" not in METRICS:
        pytest.skip(f"task config fields {missing} / metric NumberEM not in this checkout yet")
    assert prepare_main(["--raw", str(RAW), "--out", str(tmp_path), "llm-foundry"]) == 0
    yamls = sorted(TASKS.glob("*.yaml"))
    tasks, problems = load_tasks(yamls, tmp_path)
    assert problems == [] and len(tasks) == len(yamls) == 8
    by_name = {t.config.name: t for t in tasks}
    assert len(by_name["llm-foundry-jeopardy"].files["test"]) == 5
    assert by_name["llm-foundry-wsc273"].config.partial_scoring is True
    assert by_name["llm-foundry-gsm8k"].config.until == ["\n\n", "Q:"] and by_name["llm-foundry-gsm8k"].config.max_gen_length == 256
    svamp = by_name["llm-foundry-svamp"].config
    assert (svamp.num_fewshot, svamp.fewshot_source, svamp.fewshot_sampler, svamp.fewshot_seed,
            svamp.fewshot_separator, svamp.target_delimiter) == (3, "self", "random", 1234, "\n\n", " ")
