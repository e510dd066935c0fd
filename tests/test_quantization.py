"""INT8 / INT4 weight-only quantization: packing, error bounds, load paths, agreement with fp32."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from evaluation.model.checkpoint import checkpoint_shards, load_checkpoint
from evaluation.model.config import GLMConfig
from evaluation.model.glm import GLMModel
from evaluation.model.quantization import (QuantizedLinear, dequantize_weight, load_quantized_model, model_bytes,
                                           pack_int4, quantize_model, quantize_weight, quantized_layer_names, unpack_int4)
from evaluation.scoring.glm_scorer import EncodingOptions, GLMScorer
from evaluation.tokenization import GLM130BTokenizer
from evaluation.tools.convert_tp import main as convert_main


def tiny_config(folder: Path) -> GLMConfig:
    return GLMConfig.from_dict(json.loads((folder / "model_config.json").read_text()))


def float_model(folder: Path) -> GLMModel:
    model = GLMModel(tiny_config(folder))
    load_checkpoint(model, folder)
    return model.eval()


@torch.no_grad()
def logits(model: GLMModel) -> torch.Tensor:
    tokens = torch.tensor([[20010, 20020, 20030, 20500, 20504, 20040, 20100, 20200]])
    mask = torch.ones(1, 8, 8, dtype=torch.bool).tril()
    hidden, _ = model(tokens, torch.arange(8)[None], mask)
    return model.logits(hidden)


def test_int4_packing_matches_the_reference_nibble_order() -> None:
    values = torch.tensor([[1, -2, -7, 7, 0, -1]], dtype=torch.int8)
    packed = pack_int4(values)
    # int4WeightCompression: out = (in[2j] << 4) | (in[2j+1] & 0xF)
    assert packed.view(torch.uint8).tolist() == [[0x1E, 0x97, 0x0F]]
    every = torch.arange(-7, 8, dtype=torch.int8).repeat(2)[None, :30]
    assert torch.equal(unpack_int4(pack_int4(every)), every)


@pytest.mark.parametrize("bits, max_relative_error", [(8, 0.01), (4, 0.2)])
def test_reconstruction_error_is_bounded_by_half_a_step(bits: int, max_relative_error: float) -> None:
    weight = torch.randn(96, 256, generator=torch.Generator().manual_seed(bits)) * 0.05
    weight[3] = 0.0  # an all-zero row must not produce NaN
    q, scale = quantize_weight(weight, bits)
    assert q.dtype == torch.int8 and q.shape == (96, 256 * bits // 8)
    assert scale.shape == (96,) and scale[3] == 0
    restored = dequantize_weight(q, scale, bits)
    step = scale[:, None]
    assert torch.all((restored - weight).abs() <= step / 2 * (1 + 1e-3) + 1e-12)
    levels = unpack_int4(q) if bits == 4 else q
    assert levels.abs().max() == 2 ** (bits - 1) - 1  # the row maximum uses the top level
    relative = ((restored - weight).norm() / weight.norm()).item()
    assert relative < max_relative_error
    print(f"INT{bits}: relative Frobenius error {relative:.4f}, max abs error / step {((restored - weight).abs() / step.clamp_min(1e-12)).max():.3f}")


def test_quantized_linear_computes_with_the_dequantized_weight() -> None:
    linear = torch.nn.Linear(64, 48)
    layer = QuantizedLinear.from_linear(linear, 8)
    x = torch.randn(3, 64)
    expected = torch.nn.functional.linear(x, dequantize_weight(layer.weight, layer.weight_scale, 8), linear.bias)
    assert torch.equal(layer(x), expected)
    assert torch.allclose(layer(x), linear(x), atol=0.02)


@pytest.mark.parametrize("bits", [8, 4])
def test_quantize_on_load_equals_quantizing_the_loaded_float_model(tiny_glm_dir: Path, bits: int) -> None:
    loaded = load_quantized_model(tiny_config(tiny_glm_dir), tiny_glm_dir, bits).eval()
    reference = quantize_model(float_model(tiny_glm_dir), bits)
    assert sorted(quantized_layer_names(loaded)) == sorted(quantized_layer_names(reference))
    assert len(quantized_layer_names(loaded)) == 4 * tiny_config(tiny_glm_dir).num_layers
    assert all(isinstance(loaded.get_submodule(n), QuantizedLinear) for n in quantized_layer_names(loaded))
    assert torch.equal(logits(loaded), logits(reference))
    # Embeddings and norms are untouched by quantization.
    assert torch.equal(loaded.transformer.word_embeddings.weight, reference.transformer.word_embeddings.weight)


def test_float_checkpoint_without_bits_is_not_quantized(tiny_glm_dir: Path) -> None:
    assert load_quantized_model(tiny_config(tiny_glm_dir), tiny_glm_dir, None) is None


@pytest.mark.parametrize("bits", [8, 4])
def test_prequantized_checkpoint_loads_to_the_same_model(tmp_path: Path, tiny_glm_dir: Path, bits: int) -> None:
    out = tmp_path / f"int{bits}"
    assert convert_main([str(tiny_glm_dir), str(out), "--tensor-parallel", "1", "--quantization-bit-width", str(bits)]) == 0
    state = torch.load(checkpoint_shards(out)[0], weights_only=True)["module"]
    key = "transformer.layers.0.mlp.dense_h_to_4h.weight"
    assert state[key].dtype == torch.int8 and state[key + "_scale"].dtype == torch.float16  # reference layout
    assert state["transformer.word_embeddings.weight"].dtype == torch.float32
    from_prequantized = load_quantized_model(tiny_config(out), out, None).eval()  # width detected from the file
    on_load = load_quantized_model(tiny_config(tiny_glm_dir), tiny_glm_dir, bits).eval()
    assert torch.equal(logits(from_prequantized), logits(on_load))
    with pytest.raises(ValueError, match=f"pre-quantized to INT{bits}"):
        load_quantized_model(tiny_config(out), out, 12 - bits)


def test_two_way_prequantized_checkpoint_keeps_per_shard_scales(tmp_path: Path, tiny_glm_dir: Path) -> None:
    out = tmp_path / "int8-tp2"
    assert convert_main([str(tiny_glm_dir), str(out), "--tensor-parallel", "2", "--quantization-bit-width", "8"]) == 0
    model = load_quantized_model(tiny_config(out), out, 8).eval()
    full = float_model(tiny_glm_dir).state_dict()
    name = "transformer.layers.1.mlp.dense_4h_to_h"  # row-parallel: each shard quantized its half of the inputs
    layer = model.get_submodule(name)
    assert layer.groups == 2
    halves = full[name + ".weight"].chunk(2, dim=1)
    expected = torch.cat([dequantize_weight(*quantize_weight(h, 8), 8) for h in halves], dim=1)
    assert torch.equal(dequantize_weight(layer.weight, layer.weight_scale, 8), expected)
    qkv = model.get_submodule("transformer.layers.0.attention.query_key_value")  # column-parallel: whole rows
    assert qkv.groups == 1
    assert torch.equal(dequantize_weight(qkv.weight, qkv.weight_scale, 8),
                       dequantize_weight(*quantize_weight(full["transformer.layers.0.attention.query_key_value.weight"], 8), 8))
    assert convert_main([str(out), str(tmp_path / "again"), "--tensor-parallel", "1"]) == 2  # refuses to re-shard


def synthetic_items(count: int, seed: int = 0) -> list[tuple[list[int], list[list[int]]]]:
    rng = np.random.default_rng(seed)
    items = []
    for _ in range(count):
        context = rng.integers(20003, 20500, size=int(rng.integers(8, 40))).tolist()
        choices = [rng.integers(20003, 20500, size=int(rng.integers(1, 4))).tolist() for _ in range(4)]
        items.append((context, choices))
    return items


def predictions(model: GLMModel, tokenizer: GLM130BTokenizer, items) -> np.ndarray:
    scorer = GLMScorer(model, tokenizer, "cpu")
    scores = scorer.cond_log_prob(items, EncodingOptions(False, False, False, 512), 50)
    return np.array([int(np.argmax(s)) for s in scores])


def test_int8_multiple_choice_agrees_with_fp32_on_99_percent(tiny_glm_dir: Path) -> None:
    tokenizer = GLM130BTokenizer(tiny_glm_dir / "ice_text.model")
    items = synthetic_items(200)
    fp32 = predictions(float_model(tiny_glm_dir), tokenizer, items)
    int8 = predictions(load_quantized_model(tiny_config(tiny_glm_dir), tiny_glm_dir, 8).eval(), tokenizer, items)
    int4 = predictions(load_quantized_model(tiny_config(tiny_glm_dir), tiny_glm_dir, 4).eval(), tokenizer, items)
    agree8, agree4 = float((fp32 == int8).mean()), float((fp32 == int4).mean())
    print(f"agreement with fp32 on 200 items: INT8 {agree8:.3f}, INT4 {agree4:.3f}")
    assert agree8 >= 0.99
    assert len(set(fp32.tolist())) > 1  # the set is not degenerate (all one answer)


def test_quantized_layers_take_a_quarter_and_an_eighth_of_fp32(tiny_glm_dir: Path) -> None:
    fp32 = float_model(tiny_glm_dir)
    linear_fp32 = sum(model_bytes(fp32.get_submodule(n)) for n in quantized_layer_names(fp32))
    for bits in (8, 4):
        model = load_quantized_model(tiny_config(tiny_glm_dir), tiny_glm_dir, bits)
        layers = [model.get_submodule(n) for n in quantized_layer_names(model)]
        weights = sum(layer.weight.numel() for layer in layers)
        params = sum(layer.in_features * layer.out_features for layer in layers)
        assert weights * 8 == params * bits
        assert sum(model_bytes(layer) for layer in layers) < linear_fp32 * (bits / 32 + 0.1)


def test_evaluate_runs_int8_from_the_command_line(tmp_path: Path, tiny_glm_dir: Path, capsys: pytest.CaptureFixture) -> None:
    from conftest import ROOT, tiny_model_args
    from evaluation.cli import main as evaluate_main
    from evaluation.tools.make_demo_data import make_demo_data

    make_demo_data(tmp_path / "data")
    args = [str(ROOT / "tasks" / "demo" / "arithmetic.yaml"), "--data-path", str(tmp_path / "data"), "--output-dir", str(tmp_path),
            "--run-name", "int8", "--no-progress", "--quantization-bit-width", "8", *tiny_model_args(tiny_glm_dir)]
    assert evaluate_main(args) == 0, capsys.readouterr().err
    results = json.loads((tmp_path / "int8" / "results.json").read_text())
    assert results["model"]["args"]["quantization_bit_width"] == 8
    assert "Group test Accuracy" in capsys.readouterr().out
