"""The LAMBADA converter on the real raw file (../shared/data/lambada): counts, known items,
both layouts, the cross-check against MosaicML's lambada_openai.jsonl, determinism, errors."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from evaluation.prepare import lambada
from evaluation.prepare.__main__ import main as prepare_main
from evaluation.prepare.common import PrepareError, check_counts, check_raw_files, encode_records, write_suite

RAW = Path(__file__).resolve().parents[2] / "shared" / "data"
RAW_FILE = RAW / "lambada" / "lambada_test.jsonl"
FOUNDRY = RAW / "llm_foundry_icl" / "language_understanding" / "lambada_openai.jsonl"
pytestmark = pytest.mark.skipif(not RAW_FILE.is_file(), reason=f"raw LAMBADA not found at {RAW_FILE}")

GLM = "last_word/gen/test.jsonl"
OPENAI = "last_word/continuation/test.jsonl"


@pytest.fixture(scope="module")
def tasks() -> dict[str, lambada.TaskData]:
    return {t.task: t for t in lambada.build(RAW)}


@pytest.fixture(scope="module")
def texts() -> list[str]:
    return [json.loads(line)["text"] for line in RAW_FILE.read_text(encoding="utf-8").splitlines()]


def test_counts(tasks) -> None:
    assert sorted(tasks) == ["lambada", "lambada_openai"]
    assert list(tasks["lambada"].files) == [GLM] and list(tasks["lambada_openai"].files) == [OPENAI]
    assert len(tasks["lambada"].files[GLM]) == len(tasks["lambada_openai"].files[OPENAI]) == 5153
    assert all(t.expected == {"test": 5153} for t in tasks.values())
    assert check_counts("lambada", list(tasks.values())) == []


def test_first_item(tasks) -> None:
    context = ("In my palm is a clear stone, and inside it is a small ivory statuette. A guardian angel.\n\n"
               "\"Figured if you're going to be out at night getting hit by cars, you might as well have some backup.\"\n\n"
               "I look at him, feeling stunned. Like this is some sort of sign. But as I stare at Harlin, his mouth "
               "curved in a confident grin, I don't care about")
    assert tasks["lambada"].files[GLM][0] == {"inputs_pretokenized": context, "targets_pretokenized": ["signs"], "id": 0}
    assert tasks["lambada_openai"].files[OPENAI][0] == {"inputs_pretokenized": context, "targets_pretokenized": " signs", "id": 0}


def test_leading_quote_goes_to_the_glm_context(tasks) -> None:
    glm, openai = tasks["lambada"].files[GLM][70], tasks["lambada_openai"].files[OPENAI][70]
    assert glm["inputs_pretokenized"].endswith('he managed to whisper, "') and glm["targets_pretokenized"] == ["Nadia"]
    assert openai["inputs_pretokenized"].endswith("he managed to whisper,") and openai["targets_pretokenized"] == ' "Nadia'
    curly = tasks["lambada"].files[GLM][1053]  # "...it'll be–”\n“Sal": whitespace split at the newline
    assert curly["inputs_pretokenized"].endswith("be\u2013\u201d\n\u201c") and curly["targets_pretokenized"] == ["Sal"]


def test_newline_before_last_word(tasks) -> None:
    # No space before the last word: lm-eval's rsplit(" ", 1) takes "of\n\nPower", GLM's whitespace split "Power".
    glm, openai = tasks["lambada"].files[GLM][426], tasks["lambada_openai"].files[OPENAI][426]
    assert glm["inputs_pretokenized"].endswith("some kind of") and glm["targets_pretokenized"] == ["Power"]
    assert openai["inputs_pretokenized"].endswith("some kind") and openai["targets_pretokenized"] == " of\n\nPower"


def test_every_record_rebuilds_its_passage(tasks, texts) -> None:
    for record, text in zip(tasks["lambada_openai"].files[OPENAI], texts):
        assert record["inputs_pretokenized"] + record["targets_pretokenized"] == text
    changed = 0
    for index, (record, text) in enumerate(zip(tasks["lambada"].files[GLM], texts)):
        inputs, (target,) = record["inputs_pretokenized"], record["targets_pretokenized"]
        assert record["id"] == index and text.startswith(inputs) and text.endswith(target) and target
        assert not inputs.endswith((" ", "\n"))
        gap = text[len(inputs) : len(text) - len(target)]
        assert gap.isspace() or gap == ""  # only the whitespace before the word is dropped
        changed += target != text.split()[-1]
    assert changed == 36  # leading punctuation moved to the context


@pytest.mark.skipif(not FOUNDRY.is_file(), reason=f"{FOUNDRY} not found")
def test_same_items_as_mosaicml_lambada_openai(tasks) -> None:
    """llm-foundry's lambada_openai.jsonl holds the same 5153 passages in the same order,
    split the same way (its continuation lacks the leading space, which it adds at run time)."""
    foundry = [json.loads(line) for line in FOUNDRY.read_text(encoding="utf-8").splitlines()]
    ours = tasks["lambada_openai"].files[OPENAI]
    assert len(foundry) == len(ours) == 5153
    for a, b in zip(ours, foundry):
        assert a["inputs_pretokenized"] == b["context"]
        assert a["targets_pretokenized"] == " " + b["continuation"]


def test_deterministic_bytes(tasks, tmp_path: Path) -> None:
    again = {t.task: t for t in lambada.build(RAW)}
    for name, task in tasks.items():
        for relative, records in task.files.items():
            assert encode_records(records) == encode_records(again[name].files[relative])
    first = write_suite(tmp_path / "a", "lambada", list(tasks.values()))
    second = write_suite(tmp_path / "b", "lambada", list(again.values()))
    assert first == second
    for entry in first["files"]:
        assert (tmp_path / "a" / "lambada" / entry["file"]).read_bytes() == (tmp_path / "b" / "lambada" / entry["file"]).read_bytes()


def test_missing_raw_file_is_named(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    assert check_raw_files(tmp_path, "lambada", lambada.RAW_FILES) == [
        f"suite 'lambada': raw file {tmp_path / 'lambada' / 'lambada_test.jsonl'} not found"]
    with pytest.raises(PrepareError, match=r"suite 'lambada' needs the raw file .*lambada_test\.jsonl"):
        lambada.build(tmp_path)
    assert prepare_main(["--raw", str(tmp_path), "--out", str(tmp_path / "out"), "lambada"]) == 2
    assert "lambada_test.jsonl" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("line, message", [
    ('{"txt": "a b"}', "non-empty string field 'text'"),
    ('{"text": "oneword"}', "no space"),
    ('{"text": "a b', "malformed JSON"),
    ('{"text": "he said \\"?!"}', "only punctuation"),
])
def test_bad_raw_lines_name_file_and_line(tmp_path: Path, line: str, message: str) -> None:
    folder = tmp_path / "lambada"
    folder.mkdir()
    (folder / "lambada_test.jsonl").write_text('{"text": "fine text"}\n\n' + line + "\n", encoding="utf-8")
    with pytest.raises(PrepareError, match=message) as info:
        lambada.build(tmp_path)
    assert "lambada_test.jsonl:3:" in str(info.value)  # the blank line 2 is counted
