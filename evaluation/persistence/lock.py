"""One process writes a run folder at a time: a lock file holding the writer's pid and host.

Two runs writing one folder would interleave their records and overwrite each other's
results.json. The lock is created atomically (``O_EXCL``) by rank 0 and removed when the run
ends. A run killed outright leaves it behind; it is *stale* when it names this host and a
process that no longer exists (or is no longer an evaluation), and is then taken over with
a note. A lock of another host cannot be checked from here: the message says how to clear it.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import socket
from pathlib import Path
from typing import Any, Optional

LOCK_NAME = ".lock"


class RunLockedError(RuntimeError):
    """Another live process holds the run folder."""


def process_alive(pid: int) -> bool:
    """True when ``pid`` runs and (where /proc says) is an evaluate.py process."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        return b"evaluate" in Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return True


class RunLock:
    def __init__(self, run_dir: Path) -> None:
        self.path = run_dir / LOCK_NAME
        self.owned = False

    def holder(self) -> Optional[dict[str, Any]]:
        """Who holds the lock, or None when nobody does or the lock is stale."""
        try:
            info = json.loads(self.path.read_text())
        except FileNotFoundError:
            return None
        except (OSError, ValueError):
            return {"pid": None, "host": "?", "started": "?", "unreadable": True}
        if info.get("host") == socket.gethostname() and isinstance(info.get("pid"), int) and not process_alive(info["pid"]):
            return None
        return info

    def describe_holder(self, info: dict[str, Any]) -> str:
        return (f"{self.path.parent} is being written by pid {info.get('pid')} on host {info.get('host')} (since "
                f"{info.get('started')}); wait for it, or if that run is gone, delete {self.path}")

    def acquire(self) -> Optional[str]:
        """Take the lock; returns a note when a stale lock was taken over. Raises
        :class:`RunLockedError` when a live process holds it."""
        note = None
        for _ in range(2):
            try:
                handle = os.open(self.path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
            except FileExistsError:
                info = self.holder()
                if info is not None:
                    raise RunLockedError(self.describe_holder(info)) from None
                stale = self.path.read_text(errors="replace").strip()
                self.path.unlink(missing_ok=True)
                note = f"took over the stale lock of {self.path.parent} ({stale}: that process is gone)"
                continue
            with os.fdopen(handle, "w") as out:
                json.dump({"pid": os.getpid(), "host": socket.gethostname(),
                           "started": dt.datetime.now().isoformat(timespec="seconds")}, out)
            self.owned = True
            return note
        raise RunLockedError(f"{self.path}: could not be created")

    def release(self) -> None:
        if self.owned:
            self.path.unlink(missing_ok=True)
            self.owned = False
