"""The language-modeling converter on the real WikiText test file (../shared/data/wikitext):
counts (lines, words, the published 245,569 tokens), line ends, known lines, what the lm
task measures on the written file, determinism, errors."""

from __future__ import annotations

from pathlib import Path

import pytest

from evaluation.prepare import language_modeling as lm
from evaluation.prepare.common import PrepareError, check_counts, check_raw_files, write_suite
from evaluation.task_config import LanguageModelTaskConfig
from evaluation.tasks import LanguageModelTask

RAW = Path(__file__).resolve().parents[2] / "shared" / "data"
RAW_FILE = RAW / "wikitext" / "wiki.test.raw"
pytestmark = pytest.mark.skipif(not RAW_FILE.is_file(), reason=f"raw WikiText not found at {RAW_FILE}")
FILE = "raw/lm/test.txt"


@pytest.fixture(scope="module")
def task() -> lm.TaskData:
    (only,) = lm.build(RAW)
    return only


def test_counts(task) -> None:
    assert task.task == "wikitext" and list(task.files) == [FILE]
    text = task.files[FILE]
    assert task.expected == {"test": 2891} and task.count(FILE) == 2891 == text.count("\n")
    assert len(text.split()) == 241_211 == lm.TEST_WORDS
    # The published WikiText-2/-103 test size counts one <eos> per line of the original
    # file, including the 1467 empty lines this copy lacks.
    assert lm.TEST_WORDS + lm.TEST_LINES + lm.EMPTY_LINES_ABSENT == lm.PUBLISHED_TEST_TOKENS == 245_569
    assert check_counts("language-modeling", [task]) == []


def test_line_ends_and_known_lines(task) -> None:
    raw = RAW_FILE.read_bytes()
    text = task.files[FILE]
    assert raw.count(b"\r\n") == 2891 and "\r" not in text
    assert text.encode("utf-8") == raw.replace(b"\r\n", b"\n")
    assert len(text.encode("utf-8")) == 1_287_656
    lines = text.splitlines(keepends=True)
    assert lines[0] == " = Robert Boulter = \n"
    assert lines[1].startswith(" Robert Boulter is an English film , television and theatre actor .")
    assert lines[3] == " = = Career = = \n"
    assert lines[-1].startswith(" The Hustler is credited with sparking a resurgence in the popularity of pool")
    assert text.endswith("Eddie Pelkey . \n")


def test_the_lm_task_measures_the_checked_counts(task, tokenizer, tmp_path: Path) -> None:
    write_suite(tmp_path, "language-modeling", [task])
    path = tmp_path / "language-modeling" / "wikitext" / FILE
    config = LanguageModelTaskConfig(name="WikiText", type="lm", path="language-modeling/wikitext", use_task_mask=True)
    data = LanguageModelTask(config, tokenizer).load_file(path)
    assert data.stats["words"] == 241_211 and data.stats["bytes"] == 1_287_656


def test_deterministic_bytes(task, tmp_path: Path) -> None:
    (again,) = lm.build(RAW)
    assert again.files == task.files
    first = write_suite(tmp_path / "a", "language-modeling", [task])
    second = write_suite(tmp_path / "b", "language-modeling", [again])
    assert first == second
    sample = write_suite(tmp_path / "c", "language-modeling", [task], sample=5)
    assert sample["files"][0]["items"] == 5


def test_missing_raw_file_is_named(tmp_path: Path) -> None:
    assert check_raw_files(tmp_path, "language-modeling", lm.RAW_FILES) == [
        f"suite 'language-modeling': raw file {tmp_path / 'wikitext' / 'wiki.test.raw'} not found"]
    with pytest.raises(PrepareError, match=r"suite 'language-modeling' needs the raw file .*wiki\.test\.raw"):
        lm.build(tmp_path)


@pytest.mark.parametrize("content, message", [
    (b" = A = \r\n some words . \r\n", "6 whitespace-separated words, expected 241211"),
    (b"\xff\xfe", "not UTF-8"),
    (b"a\rb\n", "carriage return"),
])
def test_bad_raw_file_is_an_error(tmp_path: Path, content: bytes, message: str) -> None:
    (tmp_path / "wikitext").mkdir()
    (tmp_path / "wikitext" / "wiki.test.raw").write_bytes(content)
    with pytest.raises(PrepareError, match=message) as info:
        lm.build(tmp_path)
    assert "wiki.test.raw" in str(info.value)
