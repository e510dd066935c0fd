"""Saving a run: ``results.json``, per-file prediction jsonl and the console log.

``results.json`` is rewritten after every task, so a crash in task 7 keeps tasks 1-6.
Layout of one run folder::

    OUTPUT_DIR/<run name>/results.json
    OUTPUT_DIR/<run name>/console.log
    OUTPUT_DIR/<run name>/predictions/<task name>/<data file, relative to the task path>.jsonl
"""

from __future__ import annotations

import datetime as dt
import json
import math
import subprocess
import sys
from pathlib import Path
from typing import Any, Mapping, Optional, TextIO

from . import __version__

PROJECT_ROOT = Path(__file__).resolve().parent.parent


def git_commit() -> Optional[str]:
    """Commit of the harness checkout, or None outside a git checkout."""
    try:
        out = subprocess.run(["git", "-C", str(PROJECT_ROOT), "rev-parse", "HEAD"], capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() or None if out.returncode == 0 else None


def default_run_name() -> str:
    return dt.datetime.now().strftime("%Y%m%d-%H%M%S")


def safe_name(name: str) -> str:
    """A task name usable as a folder name."""
    return "".join(ch if ch.isalnum() or ch in "-_." else "_" for ch in name) or "task"


def _json_safe(value: Any) -> Any:
    """Replace non-finite floats by strings so results.json stays strict JSON."""
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    if isinstance(value, dict):
        return {k: _json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_safe(v) for v in value]
    return value


class Tee:
    """Write console output to the terminal and to the run's console.log."""

    def __init__(self, stream: TextIO, log_path: Path) -> None:
        self.stream = stream
        self.log = log_path.open("a", encoding="utf-8")

    def write(self, text: str) -> int:
        self.stream.write(text)
        self.log.write(text)
        self.log.flush()
        return len(text)

    def flush(self) -> None:
        self.stream.flush()
        self.log.flush()

    def isatty(self) -> bool:
        return self.stream.isatty()

    def close(self) -> None:
        self.log.close()


class RunRecorder:
    """Owns one run folder and its results.json."""

    def __init__(self, run_dir: Path, model: Mapping[str, Any], run: Mapping[str, Any]) -> None:
        self.run_dir = run_dir
        run_dir.mkdir(parents=True, exist_ok=True)
        self.results: dict[str, Any] = {
            "harness": {"version": __version__, "git_commit": git_commit(), "python": sys.version.split()[0]},
            "model": dict(model),
            "run": dict(run),
            "created": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
            "tasks": {},
        }
        self.write()

    @property
    def results_path(self) -> Path:
        return self.run_dir / "results.json"

    def predictions_path(self, task_name: str, relative_file: str) -> Path:
        name = relative_file if relative_file.endswith(".jsonl") else relative_file + ".jsonl"
        return self.run_dir / "predictions" / safe_name(task_name) / name

    def save_predictions(self, task_name: str, relative_file: str, records: list[dict[str, Any]]) -> Path:
        path = self.predictions_path(task_name, relative_file)
        path.parent.mkdir(parents=True, exist_ok=True)
        with path.open("w", encoding="utf-8") as handle:
            for index, record in enumerate(records):
                handle.write(json.dumps(_json_safe({"index": index, **record}), ensure_ascii=False) + "\n")
        return path

    def add_task(self, name: str, entry: Mapping[str, Any]) -> None:
        self.results["tasks"][name] = dict(entry)
        self.write()

    def write(self) -> None:
        tmp = self.results_path.with_suffix(".json.tmp")
        tmp.write_text(json.dumps(_json_safe(self.results), indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
        tmp.replace(self.results_path)
