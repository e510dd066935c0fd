"""THUDM/GLM's tensor-parallel rules for the original GLM: the stride-3 ``query_key_value``
([q_r; k_r; v_r] per rank, merged as [q0; q1; k0; k1; v0; v1]), column / row / replicated
parameters, and a sharded checkpoint that loads to the same network as the 1-way one."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from evaluation.model.checkpoint import CheckpointError
from evaluation.model.glm_original import OriginalGLMConfig, OriginalGLMModel
from evaluation.model.glm_original_checkpoint import load_original_glm, save_original_glm
from evaluation.model.glm_original_sharding import (original_merge_parts, original_shard_kind, original_shard_slice,
                                                    split_original_state)

CONFIG = OriginalGLMConfig(num_layers=2, hidden_size=16, num_attention_heads=4, vocab_size=64, max_sequence_length=32)


def seeded_model() -> OriginalGLMModel:
    torch.manual_seed(0)
    model = OriginalGLMModel(CONFIG)
    with torch.no_grad():
        for parameter in model.parameters():
            parameter.normal_()
    return model.eval()


def test_query_key_value_shards_hold_their_heads_q_k_and_v() -> None:
    hidden = CONFIG.hidden_size
    q, k, v = (torch.full((hidden, 3), float(i)) + torch.arange(hidden).unsqueeze(1) * 10 for i in range(3))
    full = torch.cat([q, k, v])  # Megatron's [all q; all k; all v]
    parts = [original_shard_slice(full, "transformer.layers.0.attention.query_key_value.weight", r, 2) for r in range(2)]
    half = hidden // 2
    assert torch.equal(parts[1], torch.cat([q[half:], k[half:], v[half:]]))
    assert torch.equal(original_merge_parts("transformer.layers.0.attention.query_key_value.weight", parts), full)
    # a plain split would be wrong: rank 0 would get all of q and half of k
    assert not torch.equal(parts[0], full.chunk(2)[0])


@pytest.mark.parametrize("key, kind", [("word_embeddings.weight", "column"), ("transformer.layers.1.mlp.dense_h_to_4h.bias", "column"),
                                       ("transformer.layers.0.attention.dense.weight", "row"),
                                       ("transformer.layers.0.mlp.dense_4h_to_h.weight", "row"),
                                       ("transformer.layers.0.attention.dense.bias", "replicated"),
                                       ("transformer.position_embeddings.weight", "replicated"),
                                       ("transformer.block_position_embeddings.weight", "replicated"),
                                       ("transformer.final_layernorm.weight", "replicated")])
def test_kinds_follow_megatron(key: str, kind: str) -> None:
    assert original_shard_kind(key) == kind


@pytest.mark.parametrize("size", [2, 4])
def test_split_then_merge_is_the_identity(size: int) -> None:
    state = seeded_model().state_dict()
    shards = split_original_state(state, size)
    assert shards[0]["transformer.layers.0.attention.query_key_value.weight"].shape == (3 * 16 // size, 16)
    for key, tensor in state.items():
        assert torch.equal(original_merge_parts(key, [s[key] for s in shards]), tensor), key


def test_sharded_checkpoint_loads_to_the_same_network(tmp_path: Path) -> None:
    model = seeded_model()
    save_original_glm(model, tmp_path / "one")
    paths = save_original_glm(model, tmp_path / "two", tensor_parallel=2)
    assert [p.name for p in paths] == ["mp_rank_00_model_states.pt", "mp_rank_01_model_states.pt"]
    merged = load_original_glm(CONFIG, tmp_path / "two")
    for key, tensor in model.state_dict().items():
        assert torch.equal(merged.state_dict()[key], tensor), key
    rank1 = load_original_glm(CONFIG, tmp_path / "one", rank=1, size=2)
    assert rank1.transformer.layers[0].attention.num_heads == 2
    assert torch.equal(rank1.word_embeddings.weight, model.word_embeddings.weight[32:])


def test_a_shard_with_other_keys_is_named(tmp_path: Path) -> None:
    save_original_glm(seeded_model(), tmp_path, tensor_parallel=2)
    shard = tmp_path / "1" / "mp_rank_01_model_states.pt"
    state = torch.load(shard, weights_only=True)
    state["module"].pop("transformer.final_layernorm.bias")
    torch.save(state, shard)
    with pytest.raises(CheckpointError, match="shard 1 has other keys than shard 0.*final_layernorm.bias"):
        load_original_glm(CONFIG, tmp_path)
