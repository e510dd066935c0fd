"""Process groups as the reference forms them, and the few collectives the harness needs.

SwissArmyTransformer's ``mpu/initialize.py`` (which GLM-130B runs on) puts consecutive ranks
in one model-parallel (tensor-parallel) group, ``[k * mp, (k + 1) * mp)``, and strides the
data-parallel groups across them, ``range(i, world, mp)``. With 16 nodes x 8 GPUs and
mp = 8 that is one model replica per node, and every data-parallel group has one member
per node. All ranks of a model-parallel group see the same items; the data-parallel group
of a rank is where its share of the results is gathered.

Backend: NCCL on CUDA, gloo on CPU. The same timeout bounds the rendezvous and every
collective, so a peer that never arrives ends the run instead of hanging it.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from typing import Any, Optional

from .environment import ProcessLayout, export_for_torch


def parallel_group_ranks(world_size: int, model_parallel_size: int) -> tuple[list[list[int]], list[list[int]]]:
    """(model-parallel groups, data-parallel groups) as lists of global ranks."""
    if model_parallel_size < 1 or world_size % model_parallel_size:
        raise ValueError(f"{world_size} processes cannot be split into model-parallel groups of {model_parallel_size}: "
                         f"the number of processes must be a multiple of MP_SIZE")
    mp = model_parallel_size
    model_groups = [list(range(k * mp, (k + 1) * mp)) for k in range(world_size // mp)]
    data_groups = [list(range(i, world_size, mp)) for i in range(mp)]
    return model_groups, data_groups


@dataclass
class ParallelContext:
    """This rank's place in the model-parallel x data-parallel layout."""

    layout: ProcessLayout = field(default_factory=ProcessLayout)
    model_parallel_size: int = 1
    backend: Optional[str] = None
    model_group: Any = None  # torch ProcessGroup; None in a one-process run
    data_group: Any = None
    store: Any = None  # the rendezvous store (a PrefixStore of our own)
    hostnames: list[str] = field(default_factory=list)  # per global rank
    node_ranks: list[Optional[int]] = field(default_factory=list)  # per global rank, as the launcher numbers nodes
    timeout_s: float = 1800.0

    def form_groups(self, model_parallel_size: int) -> None:
        """Create the model- and data-parallel groups (every rank, same order: it is collective)."""
        if not self.distributed:
            if model_parallel_size != 1:
                raise ValueError(f"--model-parallel-size {model_parallel_size} needs {model_parallel_size} processes per "
                                 f"model replica, but this is a single process: launch through scripts/evaluate.sh with "
                                 f"MP_SIZE={model_parallel_size} (or torchrun / the DeepSpeed launcher)")
            return
        import torch.distributed as dist

        model_groups, data_groups = parallel_group_ranks(self.world_size, model_parallel_size)
        timeout = dt.timedelta(seconds=self.timeout_s)
        for kind, groups in (("model", model_groups), ("data", data_groups)):
            for ranks in groups:
                group = dist.new_group(ranks, timeout=timeout)
                if self.rank in ranks:
                    setattr(self, f"{kind}_group", group)
        self.model_parallel_size = model_parallel_size

    @property
    def rank(self) -> int:
        return self.layout.rank

    @property
    def world_size(self) -> int:
        return self.layout.world_size

    @property
    def distributed(self) -> bool:
        return self.layout.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.layout.rank == 0

    @property
    def data_parallel_size(self) -> int:
        return self.layout.world_size // self.model_parallel_size

    @property
    def model_parallel_rank(self) -> int:
        return self.layout.rank % self.model_parallel_size

    @property
    def data_parallel_rank(self) -> int:
        return self.layout.rank // self.model_parallel_size

    @property
    def nodes(self) -> list[str]:
        """One hostname per node, in rank order. Nodes are the launcher's (so a two-node run
        simulated on one machine has two), else distinct hostnames."""
        hosts = self.hostnames or [self.layout.hostname]
        nodes = self.node_ranks if self.node_ranks and None not in self.node_ranks else hosts
        first: dict[Any, str] = {}
        for node, host in zip(nodes, hosts):
            first.setdefault(node, host)
        return list(first.values())

    def describe(self) -> dict[str, Any]:
        """The layout for results.json."""
        return {"world_size": self.world_size, "tensor_parallel": self.model_parallel_size,
                "data_parallel": self.data_parallel_size, "num_nodes": len(self.nodes), "nodes": self.nodes,
                "launcher": self.layout.launcher, "backend": self.backend}

    def rank_name(self, rank: int) -> str:
        host = self.hostnames[rank] if rank < len(self.hostnames) else "?"
        return f"rank {rank} (host {host})"

    # -- collectives ---------------------------------------------------------------------------
    def gather_data_parallel(self, obj: Any) -> list[Any]:
        """Every data-parallel peer's ``obj``, in data-parallel rank order, on every peer."""
        if self.data_parallel_size == 1:
            return [obj]
        import torch.distributed as dist

        gathered: list[Any] = [None] * self.data_parallel_size
        dist.all_gather_object(gathered, obj, group=self.data_group)
        return gathered

    def gather_world(self, obj: Any) -> list[Any]:
        """Every rank's ``obj``, in rank order, on every rank."""
        if not self.distributed:
            return [obj]
        import torch.distributed as dist

        gathered: list[Any] = [None] * self.world_size
        dist.all_gather_object(gathered, obj)
        return gathered

    def broadcast_from_main(self, obj: Any) -> Any:
        """Rank 0's ``obj`` on every rank (``obj`` of the other ranks is ignored)."""
        if not self.distributed:
            return obj
        import torch.distributed as dist

        holder = [obj if self.is_main else None]
        dist.broadcast_object_list(holder, src=0)
        return holder[0]

    def barrier(self) -> None:
        if self.distributed:
            import torch.distributed as dist

            dist.barrier()

    def close(self) -> None:
        if self.distributed:
            import torch.distributed as dist

            if dist.is_initialized():
                dist.destroy_process_group()


def join(layout: ProcessLayout, timeout_s: float, device_type: str) -> ParallelContext:
    """Meet the other ranks (env:// rendezvous through MASTER_ADDR:MASTER_PORT) and learn
    their hostnames; a no-op context for a single process. The model-parallel groups are
    formed afterwards (:meth:`ParallelContext.form_groups`), once the ranks have checked that
    they agree on the layout: ``new_group`` is itself collective, and ranks disagreeing
    on the group sizes would wait on each other forever."""
    if not layout.distributed:
        return ParallelContext(layout, 1, timeout_s=timeout_s)
    import torch.distributed as dist

    export_for_torch(layout)
    backend = "nccl" if device_type == "cuda" else "gloo"
    if device_type == "cuda":
        import torch

        torch.cuda.set_device(layout.local_rank)
    dist.init_process_group(backend, init_method="env://", rank=layout.rank, world_size=layout.world_size,
                            timeout=dt.timedelta(seconds=timeout_s))
    store = dist.PrefixStore("glm_eval/", dist.distributed_c10d._get_default_store())
    context = ParallelContext(layout, 1, backend, store=store, timeout_s=timeout_s)
    gathered = context.gather_world((layout.hostname, layout.node_rank))
    context.hostnames = [str(host) for host, _ in gathered]
    context.node_ranks = [node for _, node in gathered]
    return context
