"""A failed rank ends the whole run quickly, and every rank says which one failed.

Launchers already kill the siblings of a process that exits non-zero on the same node
(torchrun, the DeepSpeed launcher), but not across nodes started one by one (DeepSpeed's
``--no_ssh``, Slurm steps), and a collective waiting on a dead peer may otherwise block
until its timeout. So each rank runs a :class:`Watchdog` thread over the rendezvous store:

* it bumps a heartbeat counter of its own every ``interval`` seconds;
* it ends the process when another rank has posted a failure (``report``), printing that
  rank's message;
* it ends the process when a peer's counter has not moved for ``stale_after`` seconds
  (a rank killed with SIGKILL, out of memory, or on a node that went away), naming it;
* it ends the process when the store itself is gone (the process that hosted it died).

Counters, not timestamps, so clocks of different nodes never matter. A rank whose own code
raises posts ``rank k (host h) failed: <error>`` and exits 1; a rank whose collective failed
because of a peer waits briefly for that peer's message and exits 1 naming it. Before each
gather, ranks record how far they got (``mark``), so a rank that hangs instead of dying is
named too when the collective times out.

``GLM_EVAL_TEST_FAULT=RANK:BATCHES:MODE`` (MODE ``raise``, ``kill`` or ``hang``) makes rank
RANK fail after BATCHES scored batches: the tests' way of killing a rank mid-run.
"""

from __future__ import annotations

import os
import signal
import sys
import threading
import time
import traceback
from typing import Any, NoReturn, Optional

EXIT_FAILED = 1
FAILED_KEY = "failed"
DONE_KEY = "done"  # how many ranks have finished normally
FAULT_VARIABLE = "GLM_EVAL_TEST_FAULT"


def _flush() -> None:
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):
            pass


def exit_now(message: str, code: int = EXIT_FAILED) -> NoReturn:
    """Print ``message`` on stderr and end the process at once: ``os._exit`` skips the
    interpreter's shutdown, which could wait on a collective that will never finish."""
    print(message, file=sys.stderr)
    _flush()
    os._exit(code)


def is_collective_failure(exc: BaseException) -> bool:
    """True for errors of torch.distributed itself (a peer vanished, a collective timed out)."""
    try:
        from torch.distributed import DistError
    except ImportError:  # pragma: no cover - torch without distributed
        DistError = ()  # type: ignore[assignment]
    if isinstance(exc, DistError):
        return True
    text = str(exc)
    return isinstance(exc, RuntimeError) and any(s in text for s in ("Connection closed by peer", "Connection reset by peer",
                                                                     "Timed out", "timed out", "gloo", "NCCL", "Broken pipe"))


class Watchdog:
    """Heartbeats and failure notices over the rendezvous store (see the module doc)."""

    def __init__(self, context: Any, interval: float = 1.0, stale_after: float = 30.0) -> None:
        self.context = context
        self.store = context.store
        self.rank = context.rank
        self.interval = interval
        self.stale_after = max(stale_after, 3 * interval)
        self._stop = threading.Event()
        self._thread: Optional[threading.Thread] = None
        self._mark_count = 0

    # -- life cycle ------------------------------------------------------------------------------
    def start(self) -> None:
        """Call on every rank after the rendezvous; returns once every rank has a heartbeat."""
        self.store.add(f"hb/{self.rank}", 1)
        self.context.barrier()  # every heartbeat key exists before anyone reads them
        if threading.current_thread() is threading.main_thread():
            signal.signal(signal.SIGTERM, self._terminated)
        self._thread = threading.Thread(target=self._run, name="glm-eval-watchdog", daemon=True)
        self._thread.start()

    def _terminated(self, signum: int, frame: Any) -> None:
        """A launcher (torchrun, DeepSpeed) ends the siblings of a failed rank with SIGTERM:
        say why, naming the failed rank when it has posted its failure."""
        message = self.posted_failure()
        reason = f"stopping because {message}" if message else "terminated by the launcher (SIGTERM)"
        exit_now(f"error: {self.context.rank_name(self.rank)}: {reason}", 128 + signum)

    def stop(self) -> None:
        """A rank that finished normally is not a failed one: say so, then stop beating."""
        try:
            self.store.add(DONE_KEY, 1)
        except Exception:  # noqa: BLE001 - the store may be gone at shutdown; nothing to report then
            pass
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5 * self.interval)

    # -- what ranks say ----------------------------------------------------------------------------
    def report(self, message: str) -> None:
        """Post the first failure of the run (later ones keep the first message)."""
        try:
            self.store.compare_set(FAILED_KEY, "", message)
        except Exception:  # noqa: BLE001 - the store is gone: the local message is all there is
            pass

    def mark(self, label: str) -> None:
        """Record that this rank reached collective number n (``label`` says which)."""
        self._mark_count += 1
        try:
            self.store.set(f"mark/{self.rank}", f"{self._mark_count}\t{label}")
        except Exception:  # noqa: BLE001 - a dead store shows up in the watchdog loop
            pass

    def posted_failure(self, wait: float = 0.0) -> Optional[str]:
        deadline = time.monotonic() + wait
        while True:
            try:
                if self.store.check([FAILED_KEY]):
                    return self.store.get(FAILED_KEY).decode("utf-8", "replace")
            except Exception:  # noqa: BLE001
                return None
            if time.monotonic() >= deadline:
                return None
            time.sleep(min(0.2, self.interval))

    def silent_peers(self, wait: float) -> list[int]:
        """Peers whose heartbeat does not move within ``wait`` seconds (several beats):
        after a peer vanished mid-collective, these are the ranks that died."""
        peers = [peer for peer in range(self.context.world_size) if peer != self.rank]

        def counts() -> dict[int, int]:
            return dict(zip(peers, (int(v) for v in self.store.multi_get([f"hb/{p}" for p in peers]))))

        try:
            before = counts()
            time.sleep(wait)
            after = counts()
        except Exception:  # noqa: BLE001 - the store went with its host, rank 0 (or the launcher)
            return [0] if self.rank != 0 else []
        return [peer for peer, count in before.items() if after.get(peer, count) == count]

    def laggards(self) -> str:
        """Which ranks are behind in the collectives (for a collective that timed out)."""
        marks = {}
        for rank in range(self.context.world_size):
            try:
                value = self.store.get(f"mark/{rank}").decode() if self.store.check([f"mark/{rank}"]) else "0\tnothing yet"
            except Exception:  # noqa: BLE001
                return ""
            count, _, label = value.partition("\t")
            marks[rank] = (int(count), label)
        best = max(count for count, _ in marks.values())
        behind = [f"{self.context.rank_name(r)} is at collective {c} ({label})" for r, (c, label) in marks.items() if c < best]
        return "; ".join(behind)

    # -- the thread --------------------------------------------------------------------------------
    def _run(self) -> None:
        peers = [peer for peer in range(self.context.world_size) if peer != self.rank]
        keys = [f"hb/{peer}" for peer in peers]
        last: dict[int, tuple[int, float]] = {}
        checks_every = max(1, int(round(2.0 / self.interval)))
        tick = 0
        while not self._stop.wait(self.interval):
            tick += 1
            try:
                self.store.add(f"hb/{self.rank}", 1)
                message = self.posted_failure()
                if message is not None and not self._stop.is_set():
                    exit_now(f"error: {self.context.rank_name(self.rank)}: stopping because {message}")
                # Every 2 s, one round trip reads every peer's counter. Once a rank has
                # finished, the run is ending: the closing barriers (bounded by the
                # collective timeout) take over, and finished ranks stop beating.
                if tick % checks_every or not keys or self.store.check([DONE_KEY]):
                    continue
                now = time.monotonic()
                for peer, value in zip(peers, self.store.multi_get(keys)):
                    count = int(value)
                    seen = last.get(peer)
                    if seen is None or seen[0] != count:
                        last[peer] = (count, now)
                    elif now - seen[1] > self.stale_after and not self._stop.is_set():
                        message = (f"{self.context.rank_name(peer)} stopped responding: no heartbeat for "
                                   f"{now - seen[1]:.0f} s (killed, out of memory, or its node went away)")
                        self.report(message)
                        exit_now(f"error: {self.context.rank_name(self.rank)}: stopping because {message}")
            except Exception as exc:  # noqa: BLE001 - the store is unreachable
                if self._stop.is_set():
                    return
                layout = self.context.layout
                exit_now(f"error: {self.context.rank_name(self.rank)}: stopping because the rendezvous store at "
                         f"{layout.master_addr}:{layout.master_port} is unreachable ({type(exc).__name__}: {exc}); "
                         "the process hosting it (rank 0, or the launcher) has probably failed")


def fail(context: Any, watchdog: Optional[Watchdog], exc: BaseException, traceback_too: bool = True) -> NoReturn:
    """End this rank after ``exc``: name the root cause, whichever rank it was. Errors whose
    message says everything (a full disk, a locked folder) go without the traceback."""
    me = context.rank_name(context.rank)
    if watchdog is not None and is_collective_failure(exc):
        cause = watchdog.posted_failure(wait=3 * watchdog.interval)
        if cause is None:
            first_line = str(exc).splitlines()[0] if str(exc) else ""
            dead = watchdog.silent_peers(wait=3 * watchdog.interval)
            if dead:
                names = ", ".join(context.rank_name(r) for r in dead)
                cause = (f"{names} stopped responding (no heartbeat; killed, out of memory, or its node went away), "
                         f"so a collective failed: {type(exc).__name__}: {first_line}")
            else:
                behind = watchdog.laggards()
                cause = f"a collective failed ({type(exc).__name__}: {first_line})" + (f"; {behind}" if behind else "")
            watchdog.report(cause)
        exit_now(f"error: {me}: stopping because {cause}")
    if traceback_too:
        traceback.print_exception(type(exc), exc, exc.__traceback__, file=sys.stderr)
    message = f"{me} failed: {type(exc).__name__}: {exc}"
    if watchdog is not None:
        watchdog.report(message)
    exit_now(f"error: {message}")


class FaultInjector:
    """The test hook of ``GLM_EVAL_TEST_FAULT`` (see the module doc); inert when unset."""

    def __init__(self, rank: int, spec: Optional[str]) -> None:
        self.active = False
        self.batches = 0
        if not spec:
            return
        try:
            target, after, mode = spec.split(":")
            self.target, self.after, self.mode = int(target), int(after), mode
        except ValueError:
            raise ValueError(f"{FAULT_VARIABLE}={spec!r}: expected RANK:BATCHES:MODE, MODE one of raise, kill, hang") from None
        if self.mode not in ("raise", "kill", "hang"):
            raise ValueError(f"{FAULT_VARIABLE}={spec!r}: MODE must be raise, kill or hang")
        self.active = self.target == rank

    @classmethod
    def from_environment(cls, rank: int) -> "FaultInjector":
        return cls(rank, os.environ.get(FAULT_VARIABLE))

    def batch_done(self) -> None:
        if not self.active:
            return
        self.batches += 1
        if self.batches < self.after:
            return
        self.active = False
        if self.mode == "raise":
            raise RuntimeError(f"fault injected by {FAULT_VARIABLE} after {self.batches} batches")
        if self.mode == "kill":
            _flush()
            os.kill(os.getpid(), signal.SIGKILL)
        while True:  # hang: alive (heartbeats go on) but never reaching the next collective
            time.sleep(3600)
