"""The run folder's side of persistence: where records go, what may be resumed, the cache.

    RUN_DIR/records/identity.json                     what the run evaluates (identity.run_identity)
    RUN_DIR/records/<attempt>-rank<NNN>.jsonl         per-item records, one file per rank and attempt
    RUN_DIR/.lock                                     pid and host of the process writing the folder
    CACHE/<namespace>/identity.json                   the model the records belong to (for people)
    CACHE/<namespace>/<host>-<attempt>-rank<NNN>.jsonl

Checks here run on rank 0 before any model loads and return problems in words: an output
path that is a file or not writable, a nearly full disk, a folder that another live
process holds, a folder holding an interrupted run that was not asked to be resumed, and a
resume whose inputs differ from the interrupted run's.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
from pathlib import Path
from typing import Any, Optional

from .identity import describe_changes
from .lock import RunLock
from .records import LoadedRecords, RecordWriter, read_records

RECORDS_DIR = "records"
IDENTITY_FILE = "identity.json"
MIN_FREE_BYTES = 10 * 2**20
LOW_FREE_BYTES = 200 * 2**20


def records_dir(run_dir: Path) -> Path:
    return run_dir / RECORDS_DIR


def identity_path(run_dir: Path) -> Path:
    return records_dir(run_dir) / IDENTITY_FILE


def _existing_ancestor(path: Path) -> Path:
    path = path.absolute()
    while not path.exists() and path != path.parent:
        path = path.parent
    return path


def check_writable(folder: Path, what: str) -> tuple[list[str], list[str]]:
    """(problems, notes) about writing into ``folder`` (created later if missing)."""
    ancestor = _existing_ancestor(folder)
    if not ancestor.is_dir():
        return [f"{what} {folder}: {ancestor} is a file, not a folder"], []
    if not os.access(ancestor, os.W_OK | os.X_OK):
        return [f"{what} {folder}: {ancestor} is not writable"], []
    free = shutil.disk_usage(ancestor).free
    if free < MIN_FREE_BYTES:
        return [f"{what} {folder}: the disk is full ({free / 2**20:.1f} MB free); free some space first"], []
    if free < LOW_FREE_BYTES:
        return [], [f"only {free / 2**20:.0f} MB free on the disk of {folder}: results and records may not fit"]
    return [], []


def check_run_folder(run_dir: Path, resume: bool) -> list[str]:
    """Problems with using ``run_dir`` for this run (new, or resumed)."""
    problems, _ = check_writable(run_dir, "--resume" if resume else "run folder")
    if problems:
        return problems
    if resume:
        if not identity_path(run_dir).is_file():
            return [f"--resume {run_dir}: nothing to resume there (no {RECORDS_DIR}/{IDENTITY_FILE}: not a run folder of this "
                    "harness, or one written with --no-records)"]
    elif run_finished(run_dir):
        return [f"{run_dir} already holds results.json; choose another --run-name or --output-dir "
                f"(or --resume {run_dir} to recompute its results from its records)"]
    elif records_dir(run_dir).is_dir():
        return [f"{run_dir} holds the records of an interrupted run: continue it with --resume {run_dir}, "
                "or choose another --run-name"]
    elif (run_dir / "results.json").exists():
        return [f"{run_dir} already holds results.json; choose another --run-name or --output-dir"]
    holder = RunLock(run_dir).holder() if run_dir.is_dir() else None
    if holder is not None:
        return [RunLock(run_dir).describe_holder(holder)]
    return []


def run_finished(run_dir: Path) -> bool:
    """results.json says the run got to its end (``finished``, written last)."""
    try:
        return "finished" in json.loads((run_dir / "results.json").read_text())
    except (OSError, ValueError):
        return False


def resume_changes(run_dir: Path, identity: dict[str, Any]) -> list[str]:
    """How this run's inputs differ from the interrupted run's (empty: it may resume)."""
    try:
        saved = json.loads(identity_path(run_dir).read_text())
    except (OSError, ValueError) as exc:
        return [f"{identity_path(run_dir)}: unreadable ({exc})"]
    normalized = json.loads(json.dumps(identity, default=str))
    return describe_changes(saved, normalized)


def write_identity(run_dir: Path, identity: dict[str, Any]) -> None:
    path = identity_path(run_dir)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(identity, indent=1, default=str) + "\n")
    tmp.replace(path)


def cache_folder(cache_dir: Path, namespace: str, model_identity: dict[str, Any]) -> Path:
    """The cache's folder for one model namespace (its identity written beside, for people)."""
    folder = cache_dir / namespace
    folder.mkdir(parents=True, exist_ok=True)
    readme = folder / IDENTITY_FILE
    if not readme.exists():
        readme.write_text(json.dumps(model_identity, indent=1, default=str) + "\n")
    return folder


def open_writers(run_dir: Optional[Path], cache: Optional[Path], attempt: str, rank: int) -> list[RecordWriter]:
    """This rank's record files: in the run folder (unless --no-records) and in the cache."""
    name = f"{attempt}-rank{rank:03d}.jsonl"
    writers = []
    if run_dir is not None:
        writers.append(RecordWriter(records_dir(run_dir) / name))
    if cache is not None:
        writers.append(RecordWriter(cache / f"{socket.gethostname()}-{name}"))
    return writers


def load_known(run_dir: Optional[Path], cache: Optional[Path]) -> tuple[LoadedRecords, LoadedRecords]:
    """(this run's earlier records, the cache's records) for rank 0's lookups."""
    return (read_records([records_dir(run_dir)]) if run_dir is not None else LoadedRecords(),
            read_records([cache]) if cache is not None else LoadedRecords())
