"""Loading original-GLM weights from the two layouts users have.

* **THUDM/GLM's released Megatron/DeepSpeed layout**: ``latest_checkpointed_iteration.txt`` (or
  ``latest``) naming the iteration, then ``<iter>/mp_rank_00_model_states.pt`` holding
  ``{"module": state_dict}`` with THUDM/GLM's key names (``word_embeddings.weight``,
  ``transformer.position_embeddings.weight``, ``transformer.block_position_embeddings.weight``,
  ``transformer.layers.N...``, ``transformer.final_layernorm...``).
* **The Hugging Face Hub layout of ``THUDM/glm-*``**: ``config.json`` (``model_type: glm``) and
  ``pytorch_model.bin`` or ``model.safetensors`` (or their sharded ``*.index.json``), keys
  prefixed ``glm.``. Read with ``torch.load(weights_only=True)`` / safetensors: the Hub repos'
  remote code is never imported or run.

Every key is checked against the model's before anything is copied: a missing or unexpected
key, or a shape that disagrees with the config, is an error that names the key and the file.
Checkpoints saved tensor-parallel (several ``mp_rank_XX``) are merged by THUDM/GLM's rules
(``glm_original_sharding.py``: [q0; q1; k0; k1; v0; v1] for ``query_key_value``), then cut
into the shard a tensor-parallel rank needs; the whole checkpoint is in memory once while
that happens (the released original-GLM checkpoints are at most 10B parameters, single-shard).
"""

from __future__ import annotations

import json
from pathlib import Path

import torch

from .checkpoint import CheckpointError, checkpoint_shards, read_shard
from .glm_original import OriginalGLMConfig, OriginalGLMModel
from .glm_original_sharding import merge_original_states, original_shard_slice, shard_sized_original, split_original_state

HF_PREFIX = "glm."
HF_WEIGHT_FILES = ("model.safetensors", "pytorch_model.bin")


def is_hf_layout(folder: Path) -> bool:
    return (folder / "config.json").is_file() and not any((folder / name).is_file() for name in ("latest", "latest_checkpointed_iteration.txt"))


def hf_config(folder: Path) -> OriginalGLMConfig:
    """The network shape from a Hub ``config.json`` (``THUDM/glm-large`` and relatives)."""
    path = folder / "config.json"
    try:
        values = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as exc:
        raise CheckpointError(f"{path}: cannot be read as JSON: {exc}") from None
    if values.get("model_type") != "glm":
        raise CheckpointError(f"{path}: model_type is {values.get('model_type')!r}, not 'glm' (an original-GLM Hub folder)")
    missing = [k for k in ("num_layers", "hidden_size", "num_attention_heads", "vocab_size", "max_sequence_length") if k not in values]
    if missing:
        raise CheckpointError(f"{path}: missing {missing}")
    if values.get("relative_encoding"):
        raise CheckpointError(f"{path}: relative_encoding (Transformer-XL style) is not implemented")
    return OriginalGLMConfig(num_layers=values["num_layers"], hidden_size=values["hidden_size"],
                             num_attention_heads=values["num_attention_heads"], vocab_size=values["vocab_size"],
                             max_sequence_length=values["max_sequence_length"],
                             block_position_encoding=bool(values.get("block_position_encoding", True)))


def _hf_weight_files(folder: Path) -> list[Path]:
    for name in HF_WEIGHT_FILES:
        index = folder / f"{name}.index.json"
        if index.is_file():
            try:
                weight_map = json.loads(index.read_text(encoding="utf-8"))["weight_map"]
            except (json.JSONDecodeError, KeyError, TypeError) as exc:
                raise CheckpointError(f"{index}: not a weight index (a JSON object with 'weight_map'): {exc}") from None
            files = sorted({folder / f for f in weight_map.values()})
            missing = [str(f) for f in files if not f.is_file()]
            if missing:
                raise CheckpointError(f"{index} names weight files that do not exist: {missing[:3]}")
            return files
        if (folder / name).is_file():
            return [folder / name]
    raise CheckpointError(f"{folder}: no {' or '.join(HF_WEIGHT_FILES)} (nor a sharded *.index.json)")


def _read_hf_file(path: Path) -> dict[str, torch.Tensor]:
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            return load_file(str(path))
        state = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
    except Exception as exc:  # corrupt files raise several types
        raise CheckpointError(f"{path}: cannot be read as weights: {exc}") from exc
    if not isinstance(state, dict):
        raise CheckpointError(f"{path}: expected a state dict")
    return state


def read_state(folder: Path) -> tuple[dict[str, torch.Tensor], str]:
    """(state dict with THUDM/GLM key names, where it came from)."""
    if is_hf_layout(folder):
        state: dict[str, torch.Tensor] = {}
        files = _hf_weight_files(folder)
        for path in files:
            for key, value in _read_hf_file(path).items():
                if not key.startswith(HF_PREFIX):
                    raise CheckpointError(f"{path}: key {key!r} lacks the Hub layout's {HF_PREFIX!r} prefix")
                state[key[len(HF_PREFIX):]] = value
        return state, ", ".join(str(p) for p in files)
    shards = checkpoint_shards(folder)
    if len(shards) == 1:
        return read_shard(shards[0]), str(shards[0])
    source = f"{shards[0].parent} ({len(shards)} tensor-parallel shards)"
    try:
        return merge_original_states([read_shard(p) for p in shards], source), source
    except ValueError as exc:
        raise CheckpointError(str(exc)) from None


def check_state(state: dict[str, torch.Tensor], model: OriginalGLMModel, source: str) -> None:
    target = model.state_dict()
    missing, unexpected = sorted(set(target) - set(state)), sorted(set(state) - set(target))
    if missing or unexpected:
        raise CheckpointError(f"{source}: keys do not match the original-GLM model of this config; "
                              f"missing {missing[:5]}{' ...' if len(missing) > 5 else ''}, "
                              f"unexpected {unexpected[:5]}{' ...' if len(unexpected) > 5 else ''}")
    for key, tensor in target.items():
        if tuple(state[key].shape) != tuple(tensor.shape):
            raise CheckpointError(f"{source}: {key} has shape {tuple(state[key].shape)}, the config gives {tuple(tensor.shape)} "
                                  "(check --num-layers / --hidden-size / --num-attention-heads / --vocab-size / --max-sequence-length)")


def load_original_glm(config: OriginalGLMConfig, folder: Path, dtype: torch.dtype = torch.float32,
                      device: str = "cpu", rank: int = 0, size: int = 1) -> OriginalGLMModel:
    """Build on the meta device and fill from ``folder`` (either layout, any number of shards);
    no random init. With ``size`` > 1 the model is rank ``rank``'s shard (shard-sized layers,
    no collectives yet: ``distributed/tensor_parallel.parallelize`` adds them)."""
    with torch.device("meta"):
        model = OriginalGLMModel(config)
    state, source = read_state(folder)
    check_state(state, model, source)
    shard_sized_original(model, size)
    model = model.to_empty(device="cpu")
    with torch.no_grad():
        for key, destination in model.state_dict().items():
            destination.copy_(original_shard_slice(state[key], key, rank, size))
    del state
    return model.to(device=device, dtype=dtype).eval()


def save_original_glm(model: OriginalGLMModel, folder: Path, layout: str = "thudm", iteration: str = "1",
                      tensor_parallel: int = 1) -> list[Path]:
    """Write ``model`` in THUDM/GLM's layout (``latest_checkpointed_iteration.txt`` +
    ``<iter>/mp_rank_XX_model_states.pt``, ``tensor_parallel`` shards split by THUDM/GLM's
    rules) or the Hub's (``config.json`` + ``pytorch_model.bin``, ``glm.`` keys): what the
    tests' tiny original-GLM is saved as."""
    folder.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().clone().contiguous() for k, v in model.state_dict().items()}
    if layout == "thudm":
        (folder / "latest_checkpointed_iteration.txt").write_text(iteration + "\n")
        (folder / iteration).mkdir(exist_ok=True)
        paths = []
        for rank, shard in enumerate(split_original_state(state, tensor_parallel)):
            path = folder / iteration / f"mp_rank_{rank:02d}_model_states.pt"
            torch.save({"module": shard, "iteration": int(iteration) if iteration.isdigit() else iteration}, path)
            paths.append(path)
        return paths
    if tensor_parallel != 1:
        raise ValueError("the Hub layout holds one full model; tensor_parallel applies to the thudm layout")
    if layout == "hf":
        c = model.config
        config = {"architectures": ["GLMModel"], "model_type": "glm", "num_layers": c.num_layers, "hidden_size": c.hidden_size,
                  "num_attention_heads": c.num_attention_heads, "vocab_size": c.vocab_size,
                  "max_sequence_length": c.max_sequence_length, "block_position_encoding": c.block_position_encoding,
                  "relative_encoding": False, "output_predict": True}
        (folder / "config.json").write_text(json.dumps(config, indent=2) + "\n")
        path = folder / "pytorch_model.bin"
        torch.save({HF_PREFIX + k: v for k, v in state.items()}, path)
        return [path]
    raise ValueError(f"unknown layout {layout!r} (thudm or hf)")
