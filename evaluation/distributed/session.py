"""The life of one rank in a multi-process run: meet, agree, work, leave together.

``begin`` joins the rendezvous, starts the failure watchdog and runs the one exchange of the
start-up (validation problems and input fingerprints, ``agreement.py``) before any model
loads; only when every rank agrees are the model- and data-parallel groups formed. ``end``
stops the heartbeats on every rank before any rank leaves (rank 0 may host the rendezvous
store), then takes the process groups down. In between, any exception of a rank goes to
``faults.fail``, which ends this rank and names the one that failed.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Mapping, Optional

from .agreement import agree
from .environment import ProcessLayout
from .faults import Watchdog, fail
from .groups import ParallelContext, join


@dataclass
class Session:
    """This rank's context and watchdog (no watchdog in a one-process run)."""

    context: ParallelContext
    watchdog: Optional[Watchdog] = None

    def fail(self, exc: BaseException, traceback_too: bool = True) -> None:
        fail(self.context, self.watchdog, exc, traceback_too)

    def end(self) -> None:
        if not self.context.distributed:
            return
        self.context.barrier()
        if self.watchdog is not None:
            self.watchdog.stop()
        self.context.barrier()
        self.context.close()


def begin(layout: ProcessLayout, timeout_s: float, device_type: str, model_parallel_size: int, problems: list[str],
          fingerprint: Callable[[], Mapping[str, str]]) -> tuple[Session, list[str], list[str]]:
    """Meet the other ranks and agree (see the module doc). Returns the session and, the same
    on every rank, (validation problems of the run, ways ranks differ); when either is
    non-empty the groups are not formed and the caller reports (rank 0) and ends the session.
    ``fingerprint`` is called only when this rank's inputs are valid."""
    context = join(layout, timeout_s, device_type)
    watchdog = Watchdog(context, stale_after=min(timeout_s, 60.0))
    watchdog.start()
    session = Session(context, watchdog)
    try:
        reported, mismatches = agree(context, problems, fingerprint() if not problems else {})
        if not reported and not mismatches:
            context.form_groups(model_parallel_size)
    except BaseException as exc:  # noqa: BLE001 - a rank failing here must still end every rank
        session.fail(exc)
    return session, reported, mismatches
