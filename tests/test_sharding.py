"""Tensor-parallel checkpoints: reference sharding rules, conversion, direct loading."""

from __future__ import annotations

import json
from pathlib import Path

import torch

from evaluation.model.checkpoint import checkpoint_shards, load_checkpoint, save_checkpoint
from evaluation.model.config import GLMConfig
from evaluation.model.glm import GLMModel
from evaluation.tools.convert_tp import main as convert_main


def load(folder: Path) -> GLMModel:
    model = GLMModel(GLMConfig.from_dict(json.loads((folder / "model_config.json").read_text())))
    load_checkpoint(model, folder)
    return model.eval()


@torch.no_grad()
def logits(model: GLMModel) -> torch.Tensor:
    tokens = torch.tensor([[20010, 20020, 20030, 20500, 20504, 20040]])
    positions = torch.arange(6)[None]
    mask = torch.ones(1, 6, 6, dtype=torch.bool).tril()
    hidden, _ = model(tokens, positions, mask)
    return model.logits(hidden)


def test_convert_1_to_4_to_1_is_bit_identical(tmp_path: Path, tiny_glm_dir: Path) -> None:
    assert convert_main([str(tiny_glm_dir), str(tmp_path / "tp4"), "--tensor-parallel", "4"]) == 0
    assert [p.name for p in checkpoint_shards(tmp_path / "tp4")] == [f"mp_rank_{r:02d}_model_states.pt" for r in range(4)]
    assert convert_main([str(tmp_path / "tp4"), str(tmp_path / "tp1"), "--tensor-parallel", "1"]) == 0
    original = torch.load(checkpoint_shards(tiny_glm_dir)[0], weights_only=True)["module"]
    back = torch.load(checkpoint_shards(tmp_path / "tp1")[0], weights_only=True)["module"]
    assert original.keys() == back.keys()
    for key in original:
        assert torch.equal(original[key], back[key]), key
    base = logits(load(tiny_glm_dir))
    assert torch.equal(logits(load(tmp_path / "tp1")), base)
    assert torch.equal(logits(load(tmp_path / "tp4")), base)  # loaded directly from 4 shards


def test_shards_follow_the_reference_rules(tmp_path: Path, tiny_glm_dir: Path) -> None:
    convert_main([str(tiny_glm_dir), str(tmp_path / "tp2"), "--tensor-parallel", "2"])
    full = torch.load(checkpoint_shards(tiny_glm_dir)[0], weights_only=True)["module"]
    shard0, shard1 = (torch.load(p, weights_only=True)["module"] for p in checkpoint_shards(tmp_path / "tp2"))
    key = "transformer.layers.0.mlp.dense_h_to_4h.weight"
    x1, x2 = full[key].chunk(2)
    inner = x1.shape[0]
    # Each shard keeps matching halves of x1 and x2 (GeGLU stays computable per shard).
    assert torch.equal(shard1[key], torch.cat((x1[inner // 2 :], x2[inner // 2 :])))
    dense = "transformer.layers.1.attention.dense.weight"
    assert torch.equal(shard0[dense], full[dense][:, : full[dense].shape[1] // 2])  # row-parallel: dim 1
    qkv = "transformer.layers.0.attention.query_key_value.weight"
    assert torch.equal(shard1[qkv], full[qkv][full[qkv].shape[0] // 2 :])  # column-parallel: whole heads
    for replicated in ("transformer.layers.0.input_layernorm.weight", "transformer.layers.0.attention.dense.bias",
                       "transformer.layers.1.mlp.dense_4h_to_h.bias"):
        assert torch.equal(shard0[replicated], full[replicated]) and torch.equal(shard1[replicated], full[replicated])
    emb = "transformer.word_embeddings.weight"
    assert shard0[emb].shape[0] == full[emb].shape[0] // 2  # vocab-parallel


def test_save_checkpoint_can_shard_and_split_must_divide(tmp_path: Path) -> None:
    config = GLMConfig(num_layers=1, hidden_size=32, inner_hidden_size=48, num_attention_heads=2, vocab_size=100)
    model = GLMModel(config)
    save_checkpoint(model, tmp_path / "two", tensor_parallel=2)
    other = GLMModel(config)
    load_checkpoint(other, tmp_path / "two")
    for (name, a), (_, b) in zip(model.state_dict().items(), other.state_dict().items()):
        assert torch.equal(a, b), name
    try:
        save_checkpoint(model, tmp_path / "five", tensor_parallel=5)
    except ValueError as exc:
        assert "cannot be split 5 ways" in str(exc)
    else:
        raise AssertionError("splitting 2 heads 5 ways must fail")
