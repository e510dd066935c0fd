"""Per-item records on disk: append-only JSON lines, one file per writer.

A record is ``{"k": key, "r": result}``: the key of a scorer request (``identity.py``) and
what the scorer returned for it (a list of choice log-probabilities, a (log-likelihood,
greedy) pair, a (loss, tokens) pair or generated ids). Floats go through ``json`` as their
shortest repr, so they come back bit for bit.

Why this shape:

* one file per writer (a rank of one attempt of a run, or of a run writing to a cache),
  so no two processes ever write to one file and nothing needs a lock (SQLite caches
  lock up under several ranks);
* keys are content digests, not positions, so the files form one logical store whatever
  world size, batch size or order wrote them: any reader merges every file it finds;
* each batch is written and flushed as it finishes (a killed process loses at most the
  batch in flight) and fsync'd every ``fsync_interval`` seconds and on close (a power cut
  loses at most that long);
* a torn line (the process died mid-write) cannot be parsed; readers drop it, say so, and
  go on.
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Optional

RECORD_SUFFIX = ".jsonl"


class RecordsError(RuntimeError):
    """Records could not be written (full disk, vanished folder): the message says what to do."""


class RecordWriter:
    """Appends records to one file of its own (created on the first write)."""

    def __init__(self, path: Path, fsync_interval: float = 5.0) -> None:
        self.path = path
        self.fsync_interval = fsync_interval
        self._handle: Optional[Any] = None
        self._last_sync = time.monotonic()
        self.written = 0

    def append(self, items: Iterable[tuple[str, Any]]) -> None:
        lines = "".join(json.dumps({"k": key, "r": result}, separators=(",", ":")) + "\n" for key, result in items)
        if not lines:
            return
        try:
            if self._handle is None:
                self.path.parent.mkdir(parents=True, exist_ok=True)
                self._handle = self.path.open("a", encoding="utf-8")
            self._handle.write(lines)
            self._handle.flush()
            if time.monotonic() - self._last_sync >= self.fsync_interval:
                os.fsync(self._handle.fileno())
                self._last_sync = time.monotonic()
        except OSError as exc:
            raise RecordsError(f"cannot write per-item records to {self.path}: {exc}. The items finished before this "
                               "are on disk; free space (or fix the folder) and continue with --resume RUN_DIR") from None
        self.written += lines.count("\n")

    def close(self) -> None:
        if self._handle is not None:
            try:
                self._handle.flush()
                os.fsync(self._handle.fileno())
            except OSError:
                pass
            self._handle.close()
            self._handle = None


@dataclass
class LoadedRecords:
    """Every record found in some folders, and what was dropped on the way."""

    results: dict[str, Any] = field(default_factory=dict)
    files: int = 0
    lines: int = 0
    dropped: list[str] = field(default_factory=list)  # "file:line: why" of each unreadable line


def read_records(folders: Iterable[Path], loaded: Optional[LoadedRecords] = None) -> LoadedRecords:
    """Merge the record files of ``folders`` (missing folders are empty). Unreadable lines
    (a torn last line, anything else malformed) are dropped and listed, never fatal."""
    loaded = loaded or LoadedRecords()
    for folder in folders:
        if not folder.is_dir():
            continue
        for path in sorted(folder.glob("*" + RECORD_SUFFIX)):
            loaded.files += 1
            with path.open("rb") as handle:
                data = handle.read()
            lines = data.split(b"\n")
            for number, raw in enumerate(lines, start=1):
                if not raw.strip():
                    continue
                try:
                    record = json.loads(raw)
                    key, result = record["k"], record["r"]
                except (ValueError, KeyError, TypeError):
                    torn = number == len(lines) and not data.endswith(b"\n")
                    loaded.dropped.append(f"{path}:{number}: {'torn last line (the writer stopped mid-line)' if torn else 'unreadable line'}")
                    continue
                loaded.results[key] = result
                loaded.lines += 1
    return loaded
