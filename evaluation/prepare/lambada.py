"""LAMBADA test (5153 passages) in two layouts, for the two ways it is scored.

Raw: ``lambada/lambada_test.jsonl``, OpenAI's detokenized LAMBADA test set (as published
for GPT-2, github.com/cybertronai/bflm), one ``{"text": passage}`` per line; the target
is the passage's last word. No prompt templates: the passage is the prompt.

``lambada/last_word/gen/test.jsonl`` (GLM-130B protocol, ``tasks/lambada/lambada*.yaml``)
    ``inputs_pretokenized`` = the passage up to its last whitespace-separated word, with
    the whitespace before that word removed (as THUDM/GLM's LAMBADA reader did:
    ``text[:text.rfind(word)].strip()``); ``targets_pretokenized`` = ``[word]``. Leading
    punctuation of the word (an opening quote: ``"Nadia``, 36 passages) stays at the end
    of the context and the target is the bare word, because the protocol bans punctuation
    as the first generated token and would otherwise never match those targets.
``lambada_openai/last_word/continuation/test.jsonl`` (lm-evaluation-harness ``lambada_openai``)
    ``inputs_pretokenized`` = ``text.rsplit(" ", 1)[0]``, ``targets_pretokenized`` =
    ``" " + text.rsplit(" ", 1)[1]``, exactly the harness's split (7 passages differ from a
    whitespace split, e.g. ``"...kind of\\n\\nPower"`` whose target is ``" of\\n\\nPower"``).

Every record keeps ``id``, the passage's 0-based position in the raw file (its line - 1).
"""

from __future__ import annotations

import json
import re
import string
import unicodedata
from pathlib import Path
from typing import Any

from .common import PrepareError, TaskData, raw_path

SUITE = "lambada"
RAW_FILE = "lambada/lambada_test.jsonl"
RAW_FILES: tuple[str, ...] = (RAW_FILE,)
TEST_ITEMS = 5153  # Paperno et al. 2016; the same 5153 in OpenAI's detokenized release
SOURCE = ("LAMBADA test (Paperno et al. 2016, CC BY 4.0), OpenAI's detokenized lambada_test.jsonl "
          "from github.com/cybertronai/bflm @620fff70 (sha256 4aa8d02c...)")
LAST_WORD = re.compile(r"\S+$")


def is_punctuation(char: str) -> bool:
    """ASCII ``string.punctuation`` (which includes symbols such as ``$+<=>^`|~``) or any
    Unicode punctuation (categories P*: quotes, dashes, ellipsis, ...)."""
    return char in string.punctuation or unicodedata.category(char).startswith("P")


def strip_punctuation(word: str) -> str:
    """``word`` without leading and trailing punctuation (inner punctuation stays: ``don't``)."""
    start, end = 0, len(word)
    while start < end and is_punctuation(word[start]):
        start += 1
    while end > start and is_punctuation(word[end - 1]):
        end -= 1
    return word[start:end]


def passages(raw_dir: Path) -> list[tuple[int, str]]:
    """(line number, ``text``) of every non-blank line of the raw file, checked."""
    path = raw_path(raw_dir, RAW_FILE, SUITE)
    texts = []
    with path.open(encoding="utf-8") as handle:
        lines = [(number, line) for number, line in enumerate(handle, start=1) if line.strip()]
    for number, line in lines:
        try:
            row = json.loads(line)
        except json.JSONDecodeError as exc:
            raise PrepareError(f"{path}:{number}: malformed JSON: {exc.msg}") from None
        text = row.get("text") if isinstance(row, dict) else None
        if not isinstance(text, str) or not text.strip():
            raise PrepareError(f"{path}:{number}: expected a non-empty string field 'text'")
        if " " not in text:
            raise PrepareError(f"{path}:{number}: the passage has no space, so no last word to predict")
        texts.append((number, text))
    return texts


def glm_record(index: int, text: str, where: str) -> dict[str, Any]:
    """GLM-130B protocol: context without the last word (no trailing space), target word."""
    text = text.rstrip()
    match = LAST_WORD.search(text)
    assert match is not None  # a non-empty stripped text ends in a non-space run
    word, start = match.group(), match.start()
    target = strip_punctuation(word)
    if not target:
        raise PrepareError(f"{where}: the last word {word!r} is only punctuation")
    lead = 0
    while is_punctuation(word[lead]):
        lead += 1
    inputs = text[: start + lead] if lead else text[:start].rstrip()
    return {"inputs_pretokenized": inputs, "targets_pretokenized": [target], "id": index}


def openai_record(index: int, text: str) -> dict[str, Any]:
    """lm-evaluation-harness ``lambada_openai``: split at the last space."""
    context, word = text.rsplit(" ", 1)
    return {"inputs_pretokenized": context, "targets_pretokenized": " " + word, "id": index}


def build(raw_dir: Path) -> list[TaskData]:
    texts = passages(raw_dir)
    where = str(raw_dir / RAW_FILE)
    glm = [glm_record(i, text, f"{where}:{number}") for i, (number, text) in enumerate(texts)]
    openai = [openai_record(i, text) for i, (_, text) in enumerate(texts)]
    expected = {"test": TEST_ITEMS}
    return [
        TaskData("lambada", {"last_word/gen/test.jsonl": glm}, expected, SOURCE),
        TaskData("lambada_openai", {"last_word/continuation/test.jsonl": openai}, expected, SOURCE),
    ]
