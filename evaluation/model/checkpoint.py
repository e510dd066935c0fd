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
    """Load a single-shard checkpoint into ``model`` in place, checking every key and shape."""
    shards = checkpoint_shards(checkpoint_path)
    if len(shards) > 1:
        raise CheckpointError(
            f"{checkpoint_path}: checkpoint is {len(shards)}-way tensor parallel; this build loads "
            "1-way checkpoints only (merging/splitting tensor-parallel shards is not supported yet)"
        )
    state = read_shard(shards[0])
    expected = model.state_dict()
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    if missing or unexpected:
        raise CheckpointError(
            f"{shards[0]}: keys do not match the model config; missing {missing[:5]}{'...' if len(missing) > 5 else ''}, "
            f"unexpected {unexpected[:5]}{'...' if len(unexpected) > 5 else ''}"
        )
    for key, tensor in state.items():
        if tuple(tensor.shape) != tuple(expected[key].shape):
            raise CheckpointError(
                f"{shards[0]}: {key} has shape {tuple(tensor.shape)}, model config expects {tuple(expected[key].shape)}"
            )
    model.load_state_dict(state, strict=True)


def save_checkpoint(model: GLMModel, checkpoint_path: str | Path, iteration: str = "1") -> Path:
    """Write ``model`` as a 1-way checkpoint in the reference layout; returns the shard path."""
    root = Path(checkpoint_path)
    folder = root / iteration
    folder.mkdir(parents=True, exist_ok=True)
    shard = folder / "mp_rank_00_model_states.pt"
    torch.save({"module": {k: v.detach().clone() for k, v in model.state_dict().items()}}, shard)
    (root / "latest").write_text(iteration + "\n")
    return shard
