"""WikiText test (raw) as one language-modelling document.

Raw: ``wikitext/wiki.test.raw``, the ``test`` split of Hugging Face ``Salesforce/wikitext``
``wikitext-2-raw-v1`` with its rows joined by ``""`` (see its SOURCE.md). WikiText-2 and
WikiText-103 share this test set. Two properties of that copy matter:

* Lines end in ``\\r\\n``; they are written with ``\\n`` (the harness reads text files
  with universal newlines anyway, so the bytes it scores and counts are the same).
* The 1467 empty rows of the split (``" \\n"`` lines of the original ``wiki.test.raw``,
  between paragraphs and around headings) are absent: 2891 lines instead of 4358.

Counts checked: 2891 lines (the split's 4358 rows minus its 1467 empty ones) and 241,211
whitespace-separated words; words + one ``<eos>`` per original line = 241,211 + 4358 =
245,569, the published WikiText-2/-103 test token count (Merity et al. 2016, "Pointer
Sentinel Mixture Models", Table 1). The harness's ``PPL`` divides the total NLL by the
whitespace words of the scored text (241,211 here), ``BPB`` by its UTF-8 bytes.
"""

from __future__ import annotations

from pathlib import Path

from .common import PrepareError, TaskData, raw_path

SUITE = "language-modeling"
RAW_FILE = "wikitext/wiki.test.raw"
RAW_FILES: tuple[str, ...] = (RAW_FILE,)
PUBLISHED_TEST_TOKENS = 245_569  # Merity et al. 2016, Table 1: words + <eos> per line
ORIGINAL_LINES = 4358  # lines of the original wiki.test.raw / rows of the HF test split
EMPTY_LINES_ABSENT = 1467  # empty rows dropped when the rows were joined
TEST_LINES = ORIGINAL_LINES - EMPTY_LINES_ABSENT  # 2891
TEST_WORDS = PUBLISHED_TEST_TOKENS - ORIGINAL_LINES  # 241,211
SOURCE = ("WikiText-2/-103 raw test split (Merity et al. 2016, CC BY-SA 3.0 / GFDL), Hugging Face "
          "Salesforce/wikitext wikitext-2-raw-v1 rows joined, via github.com/Tylogi/TyloQuant @7989d038 "
          "data/wikitext-2-raw/wiki.test.raw (sha256 4f3e427e...); CRLF written as LF")


def wikitext_test(raw_dir: Path) -> str:
    """The test text with ``\\n`` line ends, its word and line counts checked."""
    path = raw_path(raw_dir, RAW_FILE, SUITE)
    try:
        text = path.read_bytes().decode("utf-8")
    except UnicodeDecodeError as exc:
        raise PrepareError(f"{path}: not UTF-8 text: {exc}") from None
    text = text.replace("\r\n", "\n")
    if "\r" in text:
        raise PrepareError(f"{path}: a carriage return outside a \\r\\n line end")
    words = len(text.split())
    if words != TEST_WORDS:
        raise PrepareError(f"{path}: {words} whitespace-separated words, expected {TEST_WORDS} "
                           f"(= {PUBLISHED_TEST_TOKENS} published test tokens - {ORIGINAL_LINES} <eos>, one per line)")
    if not text.endswith("\n"):
        raise PrepareError(f"{path}: the last line has no line end (truncated file?)")
    return text


def build(raw_dir: Path) -> list[TaskData]:
    text = wikitext_test(raw_dir)
    return [TaskData("wikitext", {"raw/lm/test.txt": text}, {"test": TEST_LINES}, SOURCE)]
