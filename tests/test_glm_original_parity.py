"""Our original-GLM network against THUDM/GLM's own ``GLMModel`` (fixtures recorded by
``scripts/reference/make_glm_fixtures.py`` in a throwaway environment; see
``tests/fixtures/glm_parity/README.md``): the weights load from THUDM/GLM's checkpoint layout
and from the Hub layout, and every case's logits agree within 1e-4 in fp32: one row per
choice (their multi-token cloze), the choices packed in one row (what our scorer sends), the
fast-decode encoder + decoder on its memory, a [gMASK] generation prefix, one incremental step."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from evaluation.model.glm_original import OriginalGLMConfig
from evaluation.model.glm_original_checkpoint import load_original_glm, save_original_glm
from evaluation.model.glm import reorder_cache

FIXTURES = Path(__file__).parent / "fixtures" / "glm_parity"
TOLERANCE = 1e-4


def fixture_config(variant: str) -> OriginalGLMConfig:
    values = json.loads((FIXTURES / variant / "model_config.json").read_text())
    return OriginalGLMConfig(num_layers=values["num_layers"], hidden_size=values["hidden_size"],
                             num_attention_heads=values["num_attention_heads"], vocab_size=values["vocab_size"],
                             max_sequence_length=values["max_sequence_length"],
                             block_position_encoding=values["block_position_encoding"],
                             layernorm_epsilon=values["layernorm_epsilon"])


def largest_deviation(variant: str, model) -> dict[str, float]:
    cases = torch.load(FIXTURES / variant / "cases.pt", weights_only=True)
    out: dict[str, float] = {}
    with torch.no_grad():
        for name in ("mc", "mc_packed"):
            case = cases[name]
            hidden, _ = model(case["input_ids"], case["position_ids"], case["may_attend"])
            out[name] = float((model.logits(hidden) - case["logits"]).abs().max())
        fast = cases["mc_fast"]
        hidden, cache = model(fast["enc_input_ids"], fast["enc_position_ids"], fast["enc_may_attend"])
        out["mc_fast encoder"] = float((model.logits(hidden) - fast["enc_logits"]).abs().max())
        rows = fast["dec_input_ids"].shape[0]
        cache = reorder_cache(cache, torch.zeros(rows, dtype=torch.long))
        hidden, _ = model(fast["dec_input_ids"], fast["dec_position_ids"], fast["dec_may_attend"], cache)
        out["mc_fast decoder"] = float((model.logits(hidden) - fast["dec_logits"]).abs().max())
        prefix, step = cases["prefix"], cases["step"]
        hidden, cache = model(prefix["input_ids"], prefix["position_ids"], prefix["may_attend"])
        out["prefix"] = float((model.logits(hidden) - prefix["logits"]).abs().max())
        hidden, _ = model(step["input_ids"], step["position_ids"], step["may_attend"], cache)
        out["step"] = float((model.logits(hidden) - step["logits"]).abs().max())
    return out


@pytest.mark.parametrize("variant", ["block", "noblock"])
def test_logits_match_thudm_glm(variant: str) -> None:
    model = load_original_glm(fixture_config(variant), FIXTURES / variant)
    deviations = largest_deviation(variant, model)
    print(variant, {k: f"{v:.1e}" for k, v in deviations.items()})
    assert max(deviations.values()) < TOLERANCE, deviations


def test_the_hub_layout_loads_the_same_weights(tmp_path: Path) -> None:
    config = fixture_config("block")
    thudm = load_original_glm(config, FIXTURES / "block")
    save_original_glm(thudm, tmp_path / "hub", layout="hf")
    hub = load_original_glm(config, tmp_path / "hub")
    for (key, a), (_, b) in zip(thudm.state_dict().items(), hub.state_dict().items()):
        assert torch.equal(a, b), key
    assert max(largest_deviation("block", hub).values()) < TOLERANCE


def test_a_wrong_config_or_key_is_named(tmp_path: Path) -> None:
    from evaluation.model.checkpoint import CheckpointError

    wrong = OriginalGLMConfig(**{**fixture_config("block").__dict__, "hidden_size": 48})
    with pytest.raises(CheckpointError, match=r"word_embeddings.weight has shape \(128, 40\), the config gives \(128, 48\)"):
        load_original_glm(wrong, FIXTURES / "block")
    with pytest.raises(CheckpointError, match="missing \\['transformer.block_position_embeddings.weight'\\]"):
        load_original_glm(fixture_config("block"), _without(tmp_path, "transformer.block_position_embeddings.weight"))


def _without(tmp_path: Path, key: str) -> Path:
    payload = torch.load(FIXTURES / "block" / "1" / "mp_rank_00_model_states.pt", weights_only=True)
    del payload["module"][key]
    (tmp_path / "ckpt" / "1").mkdir(parents=True)
    (tmp_path / "ckpt" / "latest_checkpointed_iteration.txt").write_text("1")
    torch.save(payload, tmp_path / "ckpt" / "1" / "mp_rank_00_model_states.pt")
    return tmp_path / "ckpt"


def test_a_broken_hub_weight_index_is_named(tmp_path: Path) -> None:
    from evaluation.model.checkpoint import CheckpointError

    hub = tmp_path / "hub"
    save_original_glm(load_original_glm(fixture_config("block"), FIXTURES / "block"), hub, layout="hf")
    (hub / "pytorch_model.bin").rename(hub / "part-1.bin")
    (hub / "pytorch_model.bin.index.json").write_text('{"weight_map": {"glm.word_embeddings.weight": "part-2.bin"}}')
    with pytest.raises(CheckpointError, match="names weight files that do not exist"):
        load_original_glm(fixture_config("block"), hub)
    (hub / "pytorch_model.bin.index.json").write_text("{not json")
    with pytest.raises(CheckpointError, match="not a weight index"):
        load_original_glm(fixture_config("block"), hub)
