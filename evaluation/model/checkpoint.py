"""Checkpoints in the GLM-130B / SwissArmyTransformer layout.

    CHECKPOINT_PATH/latest                            -> "49300" (an iteration) or "release"
    CHECKPOINT_PATH/<iter>/mp_rank_00_model_states.pt -> {"module": state_dict, ...}
    CHECKPOINT_PATH/<iter>/mp_rank_01_model_states.pt ...   (one per tensor-parallel rank)

The state-dict keys are the reference names (``transformer.layers.N.attention.
query_key_value.weight`` ...), which are also our module's parameter names.
"""

from __future__ import annotations

import re
from pathlib import Path

import torch

from .glm import GLMModel
from .sharding import copy_part_into, resplit_part, split_state

SHARD_PATTERN = re.compile(r"^mp_rank_(\d{2})_model_states\.pt$")
TRACKER = "latest_checkpointed_iteration.txt"


class CheckpointError(RuntimeError):
    """A checkpoint folder that does not have the expected layout or contents."""


def checkpoint_shards(checkpoint_path: str | Path) -> list[Path]:
    """Shard files of the iteration named in ``latest``, in rank order."""
    root = Path(checkpoint_path)
    latest = root / "latest"
    if not latest.is_file() and (root / TRACKER).is_file():
        latest = root / TRACKER  # THUDM/GLM (Megatron) names it so
    if not latest.is_file():
        raise CheckpointError(f"{latest}: missing; a GLM checkpoint folder needs a 'latest' (or {TRACKER}) file naming the iteration")
    iteration = latest.read_text().strip()
    if not iteration:
        raise CheckpointError(f"{latest}: empty; expected an iteration number or 'release'")
    folder = root / iteration
    if not folder.is_dir():
        raise CheckpointError(f"{latest} names iteration {iteration!r} but {folder} does not exist")
    shards = sorted((p for p in folder.iterdir() if SHARD_PATTERN.match(p.name)), key=lambda p: p.name)
    if not shards:
        raise CheckpointError(f"{folder}: no mp_rank_XX_model_states.pt files")
    ranks = [int(SHARD_PATTERN.match(p.name).group(1)) for p in shards]
    if ranks != list(range(len(ranks))):
        raise CheckpointError(f"{folder}: shard ranks {ranks} are not 0..{len(ranks) - 1}")
    return shards


def read_shard(path: Path) -> dict[str, torch.Tensor]:
    """The ``module`` state dict of one shard, memory-mapped so loading stays lean."""
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
    except Exception as exc:  # torch raises several types for corrupt files
        raise CheckpointError(f"{path}: cannot be read as a torch checkpoint: {exc}") from exc
    if not isinstance(payload, dict) or "module" not in payload:
        raise CheckpointError(f"{path}: expected a dict with a 'module' state dict (the SAT layout)")
    return payload["module"]


class CheckpointParts:
    """The tensors one tensor-parallel rank needs, served key by key from the shards.

    ``rank`` of ``size`` is the layout of the model being filled (0 of 1: one process).
    A checkpoint saved ``size``-way opens only shard ``rank``; any other layout opens every
    shard (memory-mapped, so only the slices read are paged in) and re-splits by the
    reference rules (``sharding.resplit_part``)."""

    def __init__(self, checkpoint_path: str | Path, rank: int = 0, size: int = 1) -> None:
        self.paths = checkpoint_shards(checkpoint_path)
        self.rank, self.size = rank, size
        self.source_size = len(self.paths)
        if self.source_size == size:
            self.states = [read_shard(self.paths[rank])]
        else:
            self.states = [read_shard(path) for path in self.paths]

    @property
    def first_path(self) -> Path:
        return self.paths[self.rank if self.source_size == self.size else 0]

    def keys(self) -> set[str]:
        return set(self.states[0])

    def part(self, key: str) -> torch.Tensor:
        if self.source_size == self.size:
            return self.states[0][key]
        return resplit_part(key, [state[key] for state in self.states], self.rank, self.size)

    def parts(self, key: str) -> list[torch.Tensor]:
        """Every source shard's tensor for ``key`` (pre-quantized merging needs them all)."""
        return [state[key] for state in self.states]


def load_checkpoint(model: GLMModel, checkpoint_path: str | Path, rank: int = 0, size: int = 1) -> None:
    """Fill ``model`` (full-size, or shard-sized for rank ``rank`` of ``size``) from a checkpoint
    of any tensor-parallel size, in place.

    A checkpoint saved ``size``-way opens only shard ``rank``. Any other layout goes through
    the shards one at a time, each memory-mapped and released before the next, copying the
    slices this rank needs (``sharding.copy_part_into``): beyond the model, one shard's pages
    are resident at a time."""
    paths = checkpoint_shards(checkpoint_path)
    target = model.state_dict()  # tensors share storage with the parameters
    sources = [(rank, paths[rank])] if len(paths) == size else list(enumerate(paths))
    with torch.no_grad():
        for source_rank, path in sources:
            state = read_shard(path)
            missing, unexpected = sorted(set(target) - set(state)), sorted(set(state) - set(target))
            if missing or unexpected:
                raise CheckpointError(f"{path}: keys do not match the model; missing {missing[:5]}, unexpected {unexpected[:5]}")
            for key, destination in target.items():
                try:
                    copy_part_into(destination, state[key], key, source_rank, len(paths), rank, size)
                except ValueError as exc:
                    raise CheckpointError(f"{path}: {exc}") from None
            del state


def save_checkpoint(model: GLMModel, checkpoint_path: str | Path, iteration: str = "1", tensor_parallel: int = 1) -> list[Path]:
    """Write ``model`` in the reference layout, split ``tensor_parallel`` ways; returns the shard paths."""
    return save_state(model.state_dict(), checkpoint_path, iteration, tensor_parallel)


def shard_path(folder: Path, rank: int) -> Path:
    return folder / f"mp_rank_{rank:02d}_model_states.pt"


def save_state(state: dict[str, torch.Tensor], checkpoint_path: str | Path, iteration: str = "1", tensor_parallel: int = 1) -> list[Path]:
    """Write a full state dict as ``tensor_parallel`` shards plus the ``latest`` file."""
    root = Path(checkpoint_path)
    folder = root / iteration
    folder.mkdir(parents=True, exist_ok=True)
    for stale in folder.glob("mp_rank_*_model_states.pt"):
        stale.unlink()
    paths = []
    for rank, part in enumerate(split_state(state, tensor_parallel)):
        paths.append(shard_path(folder, rank))
        torch.save({"module": part}, paths[-1])
    (root / "latest").write_text(iteration + "\n")
    return paths
