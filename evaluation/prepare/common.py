"""Shared pieces of the suite converters: raw-file lookup, prompt templates, writing.

A converter returns :class:`TaskData` objects (records in memory); :func:`write_suite`
turns them into ``DATA_PATH/<suite>/<task>/<PromptName>/<type>/<split>.jsonl`` files and
a ``MANIFEST.json``. Keeping converters free of I/O makes them easy to test on the real
raw files and makes the byte-for-byte determinism a property of one writer.
"""

from __future__ import annotations

import csv
import hashlib
import json
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Mapping, Optional, Union

import yaml

PROMPTS_DIR = Path(__file__).with_name("prompts")
MANIFEST = "MANIFEST.json"
RECIPE_ROOTS = (Path(__file__).parent, Path(__file__).parent.parent / "tools" / "make_demo_data.py",
                Path(__file__).parent.parent / "tools" / "tiny_corpus.txt")

FileContent = Union[list[dict[str, Any]], str]


class PrepareError(Exception):
    """A problem with the raw data or a converter's output; the message names the suite and file."""


@dataclass
class TaskData:
    """One task of a suite: its files (relative to ``<suite>/<task>/``) and expected counts.

    ``files`` maps a relative path such as ``Question_Answer/mul/test.jsonl`` to its records
    (or, for raw-text language modelling, to the text). ``expected`` maps a split name (the
    file's stem, e.g. ``test``) to the published item count that every file of that split
    must hold; a split missing from ``expected`` is written unchecked and reported as such.
    """

    task: str
    files: dict[str, FileContent]
    expected: dict[str, int] = field(default_factory=dict)
    source: str = ""

    def count(self, relative: str) -> int:
        content = self.files[relative]
        return len(content) if isinstance(content, list) else len(content.splitlines())


def raw_path(raw_dir: Path, relative: str, suite: str) -> Path:
    """The raw file ``relative`` under ``raw_dir``, or a PrepareError naming file and suite."""
    path = raw_dir / relative
    if not path.exists():
        raise PrepareError(f"suite {suite!r} needs the raw file {path}, which does not exist "
                           f"(--raw must point at a folder laid out as ../shared/data)")
    return path


def check_raw_files(raw_dir: Path, suite: str, patterns: Iterable[str]) -> list[str]:
    """Problems for every required raw file (or glob) that is missing; checked before any work."""
    problems = []
    for pattern in patterns:
        if any(ch in pattern for ch in "*?["):
            if not any(raw_dir.glob(pattern)):
                problems.append(f"suite {suite!r}: no raw file matches {raw_dir / pattern}")
        elif not (raw_dir / pattern).exists():
            problems.append(f"suite {suite!r}: raw file {raw_dir / pattern} not found")
    return problems


def read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise PrepareError(f"{path}:{exc.lineno}: malformed JSON: {exc.msg}") from None


def read_jsonl_lines(path: Path) -> list[tuple[int, dict[str, Any]]]:
    """(line number, object) of every non-blank line of ``path``; a malformed line or one that
    is not a JSON object is an error naming file and line."""
    records = []
    with path.open(encoding="utf-8") as handle:
        for number, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            try:
                value = json.loads(line)
            except json.JSONDecodeError as exc:
                raise PrepareError(f"{path}:{number}: malformed JSON: {exc.msg}") from None
            if not isinstance(value, dict):
                raise PrepareError(f"{path}:{number}: expected a JSON object, got {type(value).__name__}")
            records.append((number, value))
    return records


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    """Every non-blank line of ``path`` as an object (see ``read_jsonl_lines``)."""
    return [record for _, record in read_jsonl_lines(path)]


def read_csv(path: Path, header: bool = True) -> list[list[str]]:
    with path.open(encoding="utf-8", newline="") as handle:
        rows = list(csv.reader(handle))
    return rows[1:] if header else rows


def load_prompts(name: str) -> Any:
    """The prompt templates ``prompts/<name>.yaml`` (templates are data, not code)."""
    path = PROMPTS_DIR / f"{name}.yaml"
    if not path.is_file():
        raise PrepareError(f"prompt templates {path} not found")
    return yaml.safe_load(path.read_text(encoding="utf-8"))


def render(template: str, fields: Mapping[str, Any], where: str = "") -> str:
    """``str.format_map`` with an error that names the template and the missing field."""
    try:
        return template.format_map(fields)
    except KeyError as exc:
        raise PrepareError(f"prompt template {where or template!r} uses field {exc.args[0]!r}, "
                           f"which the item does not have (fields: {sorted(fields)})") from None


def encode_records(records: list[dict[str, Any]]) -> bytes:
    """One JSON object per line, UTF-8, keys in the converter's order: stable bytes."""
    return "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records).encode("utf-8")


def check_counts(suite: str, tasks: list[TaskData]) -> list[str]:
    """Mismatches between written item counts and the published ones."""
    problems = []
    for task in tasks:
        if not task.files:
            problems.append(f"suite {suite!r}, task {task.task!r}: the converter produced no file")
        for relative in task.files:
            split = Path(relative).stem.split(".")[0]
            expected = task.expected.get(split)
            got = task.count(relative)
            if expected is not None and got != expected:
                problems.append(f"suite {suite!r}, task {task.task!r}, file {relative}: {got} items, "
                                f"the published count is {expected}")
    return problems


def recipe_fingerprint() -> str:
    """sha256 over the converter code and prompt templates that decide a suite's bytes.

    Stored in every ``MANIFEST.json`` so that a prepared folder built by older converter
    code (another MMLU subject list, a changed prompt) is recognised as stale and rebuilt,
    rather than evaluated against task YAMLs that expect the new files. It covers the
    whole ``evaluation/prepare`` package (coarse on purpose: a rebuild takes seconds, a
    silently stale data set costs a wrong or failed evaluation).
    """
    digest = hashlib.sha256()
    for root in RECIPE_ROOTS:
        paths = sorted(p for p in root.rglob("*") if p.is_file()) if root.is_dir() else [root]
        for path in paths:
            if path.suffix in {".py", ".yaml", ".txt"} and "__pycache__" not in path.parts:
                digest.update(path.relative_to(root.parent).as_posix().encode("utf-8") + b"\0")
                digest.update(path.read_bytes() + b"\0")
    return digest.hexdigest()


def suite_is_current(out_dir: Path, suite: str, sample: Optional[int] = None) -> bool:
    """True when ``out_dir/<suite>`` was written by this converter code with the same ``sample``
    and every file listed in its manifest is still there with its recorded sha256."""
    manifest_path = out_dir / suite / MANIFEST
    try:
        manifest = json.loads(manifest_path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    if not isinstance(manifest, dict) or manifest.get("recipe") != recipe_fingerprint() or manifest.get("sample") != sample:
        return False
    entries = manifest.get("files")
    if not isinstance(entries, list) or not entries:
        return False  # a hand-edited or truncated manifest: rebuild rather than trust it
    for entry in entries:
        if not isinstance(entry, dict) or not isinstance(entry.get("file"), str) or "sha256" not in entry:
            return False
        path = out_dir / suite / entry["file"]
        if not path.is_file() or hashlib.sha256(path.read_bytes()).hexdigest() != entry["sha256"]:
            return False
    return True


def write_suite(out_dir: Path, suite: str, tasks: list[TaskData], sample: Optional[int] = None) -> dict[str, Any]:
    """Write a suite to ``out_dir/<suite>`` (replacing an earlier build) and return its manifest.

    The suite is written to a sibling temporary folder first and moved into place, so an
    interrupted build never leaves a half-written suite that globs would pick up. With
    ``sample`` only the first N items of each file (N lines of raw text) are written.
    """
    target = out_dir / suite
    staging = out_dir / f".{suite}.partial"
    if target.exists() and not (target / MANIFEST).is_file():
        raise PrepareError(f"{target} exists but was not written by this command (no {MANIFEST}); "
                           "move it away or choose another --out")
    if staging.exists():
        shutil.rmtree(staging)
    entries = []
    for task in sorted(tasks, key=lambda t: t.task):
        for relative in sorted(task.files):
            content = task.files[relative]
            if isinstance(content, list):
                data = encode_records(content[:sample] if sample else content)
                count = len(content[:sample] if sample else content)
            else:
                text = "".join(content.splitlines(keepends=True)[:sample]) if sample else content
                data, count = text.encode("utf-8"), len(text.splitlines())
            path = staging / task.task / relative
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(data)
            entries.append({"file": f"{task.task}/{relative}", "items": count,
                            "sha256": hashlib.sha256(data).hexdigest()})
    manifest = {"suite": suite, "sample": sample, "recipe": recipe_fingerprint(), "files": entries,
                "sources": {t.task: t.source for t in sorted(tasks, key=lambda t: t.task) if t.source}}
    (staging / MANIFEST).write_text(json.dumps(manifest, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
    if target.exists():
        shutil.rmtree(target)
    staging.rename(target)
    return manifest
