"""Where this process sits in a multi-process run, read from its launcher's environment.

Launchers and what they set (read once, at start-up, before anything else happens):

* ``torchrun`` and the DeepSpeed launcher: ``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``,
  ``MASTER_ADDR``, ``MASTER_PORT``; torchrun adds ``LOCAL_WORLD_SIZE``, DeepSpeed
  ``LOCAL_SIZE`` (and ``--local_rank=N`` on the command line, which is accepted and ignored:
  the variable says the same); the node index is ``GROUP_RANK`` (torchrun) or ``CROSS_RANK``
  (DeepSpeed).
* Slurm's ``srun``: ``SLURM_PROCID``, ``SLURM_NTASKS``, ``SLURM_LOCALID``,
  ``SLURM_NTASKS_PER_NODE`` and ``SLURM_NNODES``; ``MASTER_ADDR``/``MASTER_PORT`` must be
  exported by the job script when the job spans several nodes (srun does not set them).
* Nothing of the above: a single process.

Every malformed value is an error that names the variable, raised before any process
group is formed.
"""

from __future__ import annotations

import os
import re
import socket
from dataclasses import dataclass
from typing import Mapping, Optional

DEFAULT_MASTER_PORT = 29500  # torch.distributed's own default


@dataclass(frozen=True)
class ProcessLayout:
    """Rank and world of this process, and how to reach rank 0's rendezvous store."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    local_world_size: int = 1
    master_addr: str = "127.0.0.1"
    master_port: int = DEFAULT_MASTER_PORT
    launcher: str = "none"  # 'none', 'env' (torchrun / DeepSpeed / any RANK-WORLD_SIZE launcher) or 'slurm'
    node_rank: Optional[int] = None  # the launcher's node index, when it says (GROUP_RANK, CROSS_RANK, SLURM_NODEID)

    @property
    def distributed(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        """Rank 0 prints, writes results.json and the predictions."""
        return self.rank == 0

    @property
    def hostname(self) -> str:
        return socket.gethostname()


def _int(environ: Mapping[str, str], name: str, default: Optional[int] = None, minimum: int = 0) -> int:
    text = environ.get(name)
    if text is None or text == "":
        if default is None:
            raise ValueError(f"environment variable {name} is not set")
        return default
    match = re.match(r"^\s*(\d+)", text)  # SLURM_NTASKS_PER_NODE may read '8(x2)'
    if not match:
        raise ValueError(f"environment variable {name}={text!r}: expected an integer")
    value = int(match.group(1))
    if value < minimum:
        raise ValueError(f"environment variable {name}={value}: must be >= {minimum}")
    return value


def layout_from_environment(environ: Mapping[str, str] = os.environ) -> ProcessLayout:
    """This process's layout (see the module doc for the launchers understood)."""
    if "RANK" in environ or "WORLD_SIZE" in environ:
        world = _int(environ, "WORLD_SIZE", minimum=1)
        rank = _int(environ, "RANK")
        local_rank = _int(environ, "LOCAL_RANK", default=0)
        local_world = _int(environ, "LOCAL_WORLD_SIZE", default=_int(environ, "LOCAL_SIZE", default=1, minimum=1), minimum=1)
        node = next((_int(environ, name) for name in ("GROUP_RANK", "CROSS_RANK") if environ.get(name)), None)
        layout = ProcessLayout(rank, world, local_rank, local_world, environ.get("MASTER_ADDR") or "127.0.0.1",
                               _int(environ, "MASTER_PORT", default=DEFAULT_MASTER_PORT, minimum=1), "env", node)
    elif "SLURM_PROCID" in environ and _int(environ, "SLURM_NTASKS", default=1, minimum=1) > 1:
        nodes = _int(environ, "SLURM_NNODES", default=1, minimum=1)
        if nodes > 1 and not environ.get("MASTER_ADDR"):
            raise ValueError("a Slurm job over several nodes needs MASTER_ADDR (the first node's address) exported "
                             "by the job script, e.g. MASTER_ADDR=$(scontrol show hostnames $SLURM_JOB_NODELIST | head -n1)")
        layout = ProcessLayout(_int(environ, "SLURM_PROCID"), _int(environ, "SLURM_NTASKS", minimum=1),
                               _int(environ, "SLURM_LOCALID", default=0),
                               _int(environ, "SLURM_NTASKS_PER_NODE", default=1, minimum=1),
                               environ.get("MASTER_ADDR") or "127.0.0.1",
                               _int(environ, "MASTER_PORT", default=DEFAULT_MASTER_PORT, minimum=1), "slurm",
                               _int(environ, "SLURM_NODEID", default=0))
    else:
        return ProcessLayout()
    if not 0 <= layout.rank < layout.world_size:
        raise ValueError(f"rank {layout.rank} is outside the world of {layout.world_size} processes (RANK / WORLD_SIZE)")
    return layout


def export_for_torch(layout: ProcessLayout, environ: "os._Environ[str]" = os.environ) -> None:
    """Make the env:// rendezvous see the layout (Slurm sets none of its variables)."""
    environ.setdefault("RANK", str(layout.rank))
    environ.setdefault("WORLD_SIZE", str(layout.world_size))
    environ.setdefault("LOCAL_RANK", str(layout.local_rank))
    environ.setdefault("MASTER_ADDR", layout.master_addr)
    environ.setdefault("MASTER_PORT", str(layout.master_port))
