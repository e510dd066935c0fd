"""Checkpoint layout, loading errors, tokenizer ids, tiny-model determinism."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest
import torch

from evaluation.model.checkpoint import CheckpointError, checkpoint_shards, load_checkpoint, save_checkpoint
from evaluation.model.config import GLMConfig
from evaluation.model.glm import GLMModel
from evaluation.tokenization import GLM130BTokenizer
from evaluation.tools.make_tiny_glm import TINY_CONFIG, make_tiny_glm


def test_real_checkpoint_layout(tiny_glm_dir: Path) -> None:
    assert (tiny_glm_dir / "latest").read_text().strip() == "1"
    shards = checkpoint_shards(tiny_glm_dir)
    assert [s.name for s in shards] == ["mp_rank_00_model_states.pt"]
    state = torch.load(shards[0], weights_only=True)["module"]
    expected = {
        "transformer.word_embeddings.weight",
        "transformer.final_layernorm.weight",
        "transformer.final_layernorm.bias",
        "transformer.layers.0.input_layernorm.weight",
        "transformer.layers.0.attention.query_key_value.weight",
        "transformer.layers.0.attention.query_key_value.bias",
        "transformer.layers.0.attention.dense.weight",
        "transformer.layers.0.post_attention_layernorm.bias",
        "transformer.layers.1.mlp.dense_h_to_4h.weight",
        "transformer.layers.1.mlp.dense_4h_to_h.bias",
    }
    assert expected <= set(state)
    h, inner = TINY_CONFIG.hidden_size, TINY_CONFIG.inner_hidden_size
    assert state["transformer.layers.0.attention.query_key_value.weight"].shape == (3 * h, h)
    assert state["transformer.layers.0.mlp.dense_h_to_4h.weight"].shape == (2 * inner, h)


def test_tiny_model_is_deterministic(tmp_path: Path, tiny_glm_dir: Path) -> None:
    again = make_tiny_glm(tmp_path / "again")
    for relative in ("ice_text.model", "1/mp_rank_00_model_states.pt"):
        digest = [hashlib.sha256((d / relative).read_bytes()).hexdigest() for d in (tiny_glm_dir, again)]
        assert digest[0] == digest[1], relative


def test_checkpoint_round_trip(tmp_path: Path) -> None:
    config = GLMConfig(num_layers=1, hidden_size=32, inner_hidden_size=48, num_attention_heads=2, vocab_size=100)
    model = GLMModel(config)
    save_checkpoint(model, tmp_path, iteration="release")
    other = GLMModel(config)
    load_checkpoint(other, tmp_path)
    for (name, a), (_, b) in zip(model.state_dict().items(), other.state_dict().items()):
        assert torch.equal(a, b), name


def test_checkpoint_errors_name_the_problem(tmp_path: Path, tiny_glm_dir: Path) -> None:
    with pytest.raises(CheckpointError, match="latest"):
        checkpoint_shards(tmp_path)
    (tmp_path / "latest").write_text("7\n")
    with pytest.raises(CheckpointError, match="iteration '7'"):
        checkpoint_shards(tmp_path)
    wrong = GLMModel(GLMConfig(**{**TINY_CONFIG.to_dict(), "hidden_size": 32, "inner_hidden_size": 64}))
    with pytest.raises(CheckpointError, match="shape"):
        load_checkpoint(wrong, tiny_glm_dir)


def test_tokenizer_layout(tiny_glm_dir: Path) -> None:
    tok = GLM130BTokenizer(tiny_glm_dir / "ice_text.model")
    text_vocab = tok.num_text_tokens
    assert tok.get_command("[MASK]") == 20000 + text_vocab
    assert [tok.get_command(t) for t in ("[gMASK]", "[sMASK]", "eod", "sop", "eop")] == [20000 + text_vocab + i for i in range(1, 6)]
    assert tok.eos_id == 20002 and tok.pad_id == 0
    ids = tok.tokenize("What is two plus three?")
    assert all(20000 <= i < 20000 + text_vocab for i in ids)
    assert tok.detokenize(ids) == "What is two plus three?"
    assert tok.detokenize([*ids, tok.eop_id]) == "What is two plus three?"
    # Unseen characters still encode (byte fallback) and round-trip.
    assert tok.detokenize(tok.tokenize("zebra 你好")) == "zebra 你好"


def test_tokenizer_needs_no_torchvision() -> None:
    import subprocess
    import sys

    code = "import sys, evaluation.tokenization, evaluation.cli; print('torchvision' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=Path(__file__).parent.parent)
    assert out.stdout.strip() == "False"


def test_tiny_model_is_rebuilt_only_when_its_recipe_changed(tmp_path) -> None:
    from evaluation.tools.make_tiny_glm import RECIPE_FILE, main as make_main

    folder = tmp_path / "tiny"
    assert make_main([str(folder), "--if-stale"]) == 0
    shard = folder / "1" / "mp_rank_00_model_states.pt"
    first = shard.stat().st_mtime_ns
    assert make_main([str(folder), "--if-stale"]) == 0
    assert shard.stat().st_mtime_ns == first  # up to date: untouched
    (folder / RECIPE_FILE).write_text("built by older code\n")
    assert make_main([str(folder), "--if-stale"]) == 0
    assert shard.stat().st_mtime_ns != first  # stale: rebuilt
