"""Reading data files with errors that name the file and line.

jsonl items follow the GLM-130B harness: text fields ``*_pretokenized`` or
pre-tokenized id fields (``inputs``, ``choices``, ``targets``). Helpers here only
parse and check shapes; each task type decides which fields it needs.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Callable, Iterator, Optional

from .errors import InputError, Problem

MAX_PROBLEMS_PER_FILE = 20


class ItemError(Exception):
    """A problem with one field of one item; the reader adds file and line."""

    def __init__(self, message: str, field: Optional[str] = None) -> None:
        super().__init__(message)
        self.field = field


def read_jsonl(path: Path) -> Iterator[tuple[int, dict[str, Any]]]:
    """Yield (line number, object) for every non-blank line; malformed lines raise ItemError
    through ``parse_items`` with their line number."""
    with path.open(encoding="utf-8") as handle:
        for number, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            try:
                value = json.loads(line)
            except json.JSONDecodeError as exc:
                yield number, ItemError(f"malformed JSON: {exc.msg} (column {exc.colno})")  # type: ignore[misc]
                continue
            if not isinstance(value, dict):
                yield number, ItemError(f"expected a JSON object, got {type(value).__name__}")  # type: ignore[misc]
                continue
            yield number, value


def parse_items(path: Path, parse: Callable[[dict[str, Any]], Any]) -> list[tuple[int, Any]]:
    """Apply ``parse`` to every item; collect problems (up to a limit) and raise them together."""
    problems: list[Problem] = []
    items: list[tuple[int, Any]] = []
    try:
        for number, raw in read_jsonl(path):
            try:
                if isinstance(raw, ItemError):
                    raise raw
                items.append((number, parse(raw)))
            except ItemError as exc:
                problems.append(Problem(path, str(exc), number, exc.field))
                if len(problems) >= MAX_PROBLEMS_PER_FILE:
                    problems.append(Problem(path, f"stopping after {MAX_PROBLEMS_PER_FILE} problems"))
                    break
    except UnicodeDecodeError as exc:
        problems.append(Problem(path, f"not UTF-8 text: {exc}"))
    if not problems and not items:
        problems.append(Problem(path, "contains no items"))
    if problems:
        raise InputError(problems)
    return items


def require(item: dict[str, Any], key: str) -> Any:
    if key not in item:
        raise ItemError("missing", key)
    return item[key]


def text_or_ids(item: dict[str, Any], name: str, tokenize: Callable[[str], list[int]], vocab: int) -> list[int]:
    """``<name>_pretokenized`` (text, tokenized here) or ``<name>`` (ids)."""
    text_key = f"{name}_pretokenized"
    if text_key in item:
        value = item[text_key]
        if not isinstance(value, str):
            raise ItemError(f"must be a string, got {type(value).__name__}", text_key)
        return tokenize(value)
    if name in item:
        return check_ids(item[name], name, vocab)
    raise ItemError(f"missing (give '{text_key}' as text or '{name}' as token ids)", text_key)


def check_ids(value: Any, key: str, vocab: int) -> list[int]:
    if not isinstance(value, list) or not all(isinstance(i, int) and not isinstance(i, bool) for i in value):
        raise ItemError("must be a list of token ids (integers)", key)
    bad = [i for i in value if not 0 <= i < vocab]
    if bad:
        raise ItemError(f"token id {bad[0]} outside the vocabulary [0, {vocab})", key)
    return list(value)


def list_of_texts_or_ids(item: dict[str, Any], name: str, tokenize: Callable[[str], list[int]], vocab: int, allow_single: bool = False) -> list[list[int]] | list[str]:
    """``<name>_pretokenized`` as a list of strings (returned as strings) or ``<name>`` as a
    list of id lists (returned as id lists)."""
    text_key = f"{name}_pretokenized"
    if text_key in item:
        value = item[text_key]
        if allow_single and isinstance(value, str):
            value = [value]
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise ItemError("must be a list of strings", text_key)
        return value
    if name in item:
        value = item[name]
        if not isinstance(value, list):
            raise ItemError("must be a list of token-id lists", name)
        return [check_ids(v, name, vocab) for v in value]
    raise ItemError(f"missing (give '{text_key}' as text or '{name}' as token ids)", text_key)
