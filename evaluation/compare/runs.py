"""Run folders as the comparison sees them, and how their items are paired.

A run folder holds ``results.json`` and ``predictions/<task>/<file>.jsonl`` (one record per
item, in data order). An item's identity is its ``id`` field when the data has one (the
prepared suites do: ``abstract_algebra/17``), else a digest of its content; an LM window is
(document, window). Pairing is per task:

* by (group, identity) when identities are unique within every group of every run, so the
  same questions asked through another prompt folder still pair (two MMLU prompt formats);
* else by (file, identity) (prompt variants inside one group share identities).

Runs must score the same items; a difference is refused (``CompareError``) unless the
caller asked for the intersection, which is then said loudly.
"""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

from ..digests import digest_of


class CompareError(ValueError):
    """Bad input: a missing folder, mismatched items, runs of different tasks (exit 2)."""


@dataclass
class FileResult:
    task: str
    file: str
    group: str
    records: list[dict[str, Any]]
    metrics: dict[str, float]
    stats: dict[str, float] = field(default_factory=dict)
    keys: list[tuple] = field(default_factory=list)


@dataclass
class Run:
    path: Path
    label: str
    results: dict[str, Any]
    files: dict[tuple[str, str], FileResult]  # (task, file) -> file
    groups: dict[str, dict[str, list[str]]]  # task -> group -> files (as results.json lists them)

    def task_config(self, task: str) -> dict[str, Any]:
        return self.results["tasks"][task].get("config", {})

    def task_type(self, task: str) -> str:
        return self.results["tasks"][task].get("type", "")


def item_identity(record: dict[str, Any]) -> tuple:
    item = record.get("item")
    if isinstance(item, dict):
        if isinstance(item.get("id"), (str, int)):
            return ("id", str(item["id"]))
        return ("content", digest_of(item)[:20])
    if "window" in record:
        return ("window", record.get("document"), record["window"])
    return ("index", record.get("index"))


def key_label(key: tuple, file: str, index: int) -> str:
    """A paired key for people: the item's id where it has one, else its file and position."""
    identity = key[1]
    return str(identity[1]) if identity[0] == "id" else f"{file}:{index}"


def _read_jsonl(path: Path) -> list[dict[str, Any]]:
    records = []
    with path.open(encoding="utf-8") as handle:
        for number, line in enumerate(handle, start=1):
            if line.strip():
                try:
                    records.append(json.loads(line))
                except ValueError as exc:
                    raise CompareError(f"{path}:{number}: not a JSON record ({exc})") from None
    return records


def load_run(path: Path, label: Optional[str] = None) -> Run:
    """A run folder, checked: results.json readable and every predictions file present."""
    path = Path(path)
    results_path = path / "results.json"
    if not path.is_dir():
        raise CompareError(f"{path}: no such run folder")
    try:
        results = json.loads(results_path.read_text())
    except FileNotFoundError:
        raise CompareError(f"{path}: no results.json (not a run folder, or the run has not written it yet)") from None
    except ValueError as exc:
        raise CompareError(f"{results_path}: not JSON ({exc})") from None
    if not results.get("tasks"):
        raise CompareError(f"{results_path}: no finished task")
    files: dict[tuple[str, str], FileResult] = {}
    groups: dict[str, dict[str, list[str]]] = {}
    from ..results import safe_name  # the predictions folder of a task

    for task, entry in results["tasks"].items():
        groups[task] = {}
        for group, group_entry in entry["groups"].items():
            groups[task][group] = list(group_entry["files"])
            for file, file_entry in group_entry["files"].items():
                if (task, file) in files:
                    continue  # a file in two groups (MMLU's overall repeats the categories' files)
                name = file if file.endswith(".jsonl") else file + ".jsonl"
                predictions = path / "predictions" / safe_name(task) / name
                if not predictions.is_file():
                    raise CompareError(f"{path}: results.json lists {task}/{file} but {predictions} is missing")
                records = _read_jsonl(predictions)
                metrics = {k: file_entry[k] for k in group_entry if k != "files" and k in file_entry}
                files[(task, file)] = FileResult(task, file, group, records, metrics, file_entry.get("stats", {}))
    return Run(path, label or path.name, results, files, groups)


def _keys(records: list[dict[str, Any]]) -> list[tuple]:
    """Identities, with a counter for repeated ones (identical lines in one file)."""
    seen: Counter = Counter()
    keys = []
    for record in records:
        identity = item_identity(record)
        seen[identity] += 1
        keys.append(identity if seen[identity] == 1 else (*identity, seen[identity]))
    return keys


@dataclass
class PairedTask:
    """One task's items, paired: ``positions[r][key] = (file, index)`` for run r."""

    task: str
    by_group: bool
    keys: list[tuple]  # the paired keys, in the baseline's order
    positions: list[dict[tuple, tuple[str, int]]]
    dropped: list[int]  # per run: the run's items left out (intersection only)
    missing: list[int]  # per run: baseline items the run lacks (intersection only)


def pair_task(runs: list[Run], task: str, intersection: bool) -> PairedTask:
    for run in runs:
        for (t, file), result in run.files.items():
            if t == task and not result.keys:
                result.keys = _keys(result.records)

    def unique_in_groups(run: Run) -> bool:
        for group, group_files in run.groups[task].items():
            identities = [k for f in group_files for k in run.files[(task, f)].keys]
            if len(identities) != len(set(identities)):
                return False
        return True

    by_group = all(unique_in_groups(run) for run in runs)
    positions = []
    for run in runs:
        table: dict[tuple, tuple[str, int]] = {}
        for group, group_files in run.groups[task].items():
            if group == "overall" and task_has_categories(run, task):
                continue  # MMLU's overall repeats the category files
            for f in group_files:
                for index, key in enumerate(run.files[(task, f)].keys):
                    table.setdefault(((group if by_group else f), key), (f, index))
        positions.append(table)
    baseline_keys = list(positions[0])
    dropped, missing = [0], [0]
    common = set(baseline_keys)
    for r, table in enumerate(positions[1:], start=1):
        lacking = [k for k in baseline_keys if k not in table]
        extra = [k for k in table if k not in positions[0]]
        if (lacking or extra) and not intersection:
            example = (lacking or extra)[0]
            raise CompareError(f"task {task}: {runs[r].label} did not score the same items as {runs[0].label}: "
                               f"{len(lacking)} of the baseline's items are missing from it and {len(extra)} are extra "
                               f"(first: {example[0]} {example[1][1]}); compare only the common items with --intersection")
        dropped.append(len(extra))
        missing.append(len(lacking))
        common &= set(table)
    keys = [k for k in baseline_keys if k in common]
    if not keys:
        raise CompareError(f"task {task}: no item in common between the runs")
    return PairedTask(task, by_group, keys, positions, dropped, missing)


def task_has_categories(run: Run, task: str) -> bool:
    """MMLU-style: an 'overall' group whose files are all in the other groups."""
    groups = run.groups[task]
    if "overall" not in groups or len(groups) < 2:
        return False
    others = {f for g, fs in groups.items() if g != "overall" for f in fs}
    return set(groups["overall"]) <= others
