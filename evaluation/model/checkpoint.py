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
from .sharding import copy_shard_into, split_state

SHARD_PATTERN = re.compile(r"^mp_rank_(\d{2})_model_states\.pt$")


class CheckpointError(RuntimeError):
    """A checkpoint folder that does not have the expected layout or contents."""


def checkpoint_shards(checkpoint_path: str | Path) -> list[Path]:
    """Shard files of the iteration named in ``latest``, in rank order."""
    root = Path(checkpoint_path)
    latest = root / "latest"
    if not latest.is_file():
        raise CheckpointError(f"{latest}: missing; a GLM checkpoint folder needs a 'latest' file naming the iteration")
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


def load_checkpoint(model: GLMModel, checkpoint_path: str | Path) -> None:
    """Load a checkpoint of any tensor-parallel size into ``model`` in place.

    Shards are memory-mapped and copied into the parameters one at a time (merged by the
    reference sharding rules), so beyond the model only one shard is resident."""
    shards = checkpoint_shards(checkpoint_path)
    full = model.state_dict()  # tensors share storage with the parameters
    for rank, shard in enumerate(shards):
        state = read_shard(shard)
        try:
            copy_shard_into(full, state, rank, len(shards), shard)
        except ValueError as exc:
            raise CheckpointError(str(exc)) from None
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
