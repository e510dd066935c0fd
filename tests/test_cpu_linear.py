"""oneDNN-packed linear layers (``evaluation/model/cpu_linear.py``): each layer equals
``F.linear`` to fp32 rounding, only plain fp32 CPU ``nn.Linear`` layers are replaced, the
flag resolves as documented, and the tiny GLM scores and generates the same with packed
layers as without (the HF backend's check is in ``test_hf_backend.py``)."""

from __future__ import annotations

import argparse
import copy
import json
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from evaluation.cli import main as evaluate_main
from evaluation.model import cpu_linear
from evaluation.model.cpu_linear import OneDNNLinear, onednn_available, pack_linear_layers, resolve_cpu_linear
from evaluation.model.loader import ModelSpec, add_model_arguments
from evaluation.model.quantization import QuantizedLinear
from evaluation.scoring.decoding import DecodingSettings
from evaluation.scoring.glm_scorer import EncodingOptions, GLMScorer

from conftest import tiny_model_args

pytestmark = pytest.mark.skipif(not cpu_linear._linear_ops_present(), reason="this torch build has no oneDNN linear ops")


def relative_error(got: torch.Tensor, expected: torch.Tensor) -> float:
    got, expected = got.detach().double(), expected.detach().double()
    return float((got - expected).abs().max() / expected.abs().max())


@pytest.mark.parametrize("bias", [True, False])
@pytest.mark.parametrize("shape", [(1, 64), (7, 64), (3, 9, 64), (2, 3, 4, 64)])
def test_packed_layer_equals_f_linear(shape: tuple[int, ...], bias: bool) -> None:
    generator = torch.Generator().manual_seed(1)
    weight = torch.randn(48, 64, generator=generator)
    b = torch.randn(48, generator=generator) if bias else None
    inputs = torch.randn(*shape, generator=generator)
    got = OneDNNLinear(weight, b)(inputs)
    expected = F.linear(inputs, weight, b)
    assert got.shape == expected.shape and got.dtype == torch.float32
    assert relative_error(got, expected) < 1e-6  # fp32 rounding, not reduced precision (bf16 would be ~1e-3)


def test_packed_layer_takes_non_contiguous_inputs_and_refuses_other_dtypes() -> None:
    weight = torch.randn(16, 32)
    layer = OneDNNLinear(weight, None)
    inputs = torch.randn(32, 5).t()  # a transposed view
    assert not inputs.is_contiguous()
    assert relative_error(layer(inputs), F.linear(inputs, weight)) < 1e-6
    with pytest.raises(TypeError, match="fp32"):
        layer(inputs.double())
    with pytest.raises(ValueError, match="fp32 CPU weight"):
        OneDNNLinear(weight.double(), None)


def test_onednn_check_passes_on_this_build() -> None:
    # The pinned torch (2.13.0 CPU wheel) ships oneDNN: 'auto' must pick it here.
    assert onednn_available()


def test_only_plain_fp32_linear_layers_are_replaced() -> None:
    class Net(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.embed = nn.Embedding(10, 8)
            self.inner = nn.Sequential(nn.Linear(8, 8), nn.GELU(), nn.Linear(8, 8, bias=False))
            self.quantized = QuantizedLinear(8, 8, 8)
            self.kept = nn.Linear(8, 8)
            self.in_float64 = nn.Linear(8, 8).double()
            self.head = nn.Linear(8, 10, bias=False)
            self.head.weight = self.embed.weight  # tied

    net = Net()
    tied = net.embed.weight
    replaced = pack_linear_layers(net, keep=lambda name, layer: name == "kept")
    assert replaced == 3
    assert isinstance(net.inner[0], OneDNNLinear) and isinstance(net.inner[2], OneDNNLinear)
    assert isinstance(net.head, OneDNNLinear) and net.embed.weight is tied  # the embedding keeps its weight
    assert type(net.kept) is nn.Linear and type(net.in_float64) is nn.Linear and isinstance(net.quantized, QuantizedLinear)
    ids = torch.tensor([[1, 2, 3]])
    assert relative_error(net.head(net.embed(ids)), F.linear(net.embed(ids), tied)) < 1e-6


def test_flag_resolution() -> None:
    assert resolve_cpu_linear("auto", "cpu", "fp32") == "onednn"
    assert resolve_cpu_linear("auto", "cpu", "bf16") == "torch"
    assert resolve_cpu_linear("auto", "cuda", "fp16") == "torch"
    assert resolve_cpu_linear("torch", "cpu", "fp32") == "torch"
    assert resolve_cpu_linear("onednn", "cpu", "fp32") == "onednn"
    with pytest.raises(ValueError, match="--cpu-linear onednn applies to fp32 on CPU only"):
        resolve_cpu_linear("onednn", "cpu", "bf16")
    with pytest.raises(ValueError, match="--cpu-linear"):
        resolve_cpu_linear("fast", "cpu", "fp32")


def test_auto_falls_back_visibly_when_the_ops_are_missing(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture) -> None:
    """A torch without the private ops (or with ones that disagree) must not fail or slow down silently."""
    from evaluation.model import cpu_linear

    monkeypatch.setattr(cpu_linear, "onednn_available", lambda: False)
    assert cpu_linear.resolve_cpu_linear("auto", "cpu", "fp32") == "torch"
    assert "using F.linear" in capsys.readouterr().err
    assert cpu_linear.resolve_cpu_linear("auto", "cpu", "bf16") == "torch"
    assert capsys.readouterr().err == "", "no notice where oneDNN would not apply anyway"
    with pytest.raises(ValueError, match="no working oneDNN linear"):
        cpu_linear.resolve_cpu_linear("onednn", "cpu", "fp32")


def spec_for(folder: Path, *flags: str) -> ModelSpec:
    parser = argparse.ArgumentParser()
    add_model_arguments(parser)
    cpu_linear.add_cpu_linear_argument(parser)
    return ModelSpec.from_namespace(parser.parse_args([*tiny_model_args(folder), *flags]))


def test_glm_scores_and_generation_unchanged_by_packing(tiny_glm_dir: Path) -> None:
    plain_spec, packed_spec = spec_for(tiny_glm_dir, "--cpu-linear", "torch"), spec_for(tiny_glm_dir)
    assert (plain_spec.cpu_linear, packed_spec.cpu_linear) == ("torch", "onednn")
    plain_model, packed_model = plain_spec.load_model(), packed_spec.load_model()
    assert not any(isinstance(m, OneDNNLinear) for m in plain_model.modules())
    assert sum(isinstance(m, OneDNNLinear) for m in packed_model.modules()) == 4 * plain_spec.config.num_layers
    tokenizer = plain_spec.load_tokenizer()
    plain, packed = GLMScorer(plain_model, tokenizer), GLMScorer(packed_model, tokenizer)
    contexts = ["The river was wide and", "Once upon a time there was a", "She said that the old man"]
    requests = [(tokenizer.tokenize(c), [tokenizer.tokenize(w) for w in (" cold", " very deep indeed", " it")]) for c in contexts]
    options = EncodingOptions(max_seq_length=256)
    expected, got = plain.cond_log_prob(requests, options), packed.cond_log_prob(requests, options)
    for e, g in zip(expected, got):
        assert g == pytest.approx(e, abs=1e-4)
    settings = DecodingSettings(max_gen_length=6, end_ids=())
    assert packed.generate_text([r[0] for r in requests], options, settings) == plain.generate_text([r[0] for r in requests], options, settings)


def test_results_record_the_linear_path(tiny_glm_dir: Path, sample_data: Path, tmp_path: Path) -> None:
    code = evaluate_main(["tasks/demo", "--data-path", str(sample_data), "--output-dir", str(tmp_path), "--run-name", "r",
                          "--limit", "2", "--no-progress", *tiny_model_args(tiny_glm_dir)])
    assert code == 0
    record = json.loads((tmp_path / "r" / "results.json").read_text())
    assert record["model"]["args"]["cpu_linear"] == "onednn"


def test_explicit_onednn_on_bf16_is_refused_before_loading(tiny_glm_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    code = evaluate_main(["tasks/demo", "--output-dir", str(tmp_path), *tiny_model_args(tiny_glm_dir), "--bf16", "--cpu-linear", "onednn"])
    assert code != 0
    assert "--cpu-linear onednn applies to fp32 on CPU only" in capsys.readouterr().err


def test_deep_copy_of_a_packed_model_still_works(tiny_glm_dir: Path) -> None:
    # Benchmarks and tests copy models; the packed (opaque) weights must survive it.
    model = spec_for(tiny_glm_dir).load_model()
    clone = copy.deepcopy(model)
    ids = torch.tensor([[5, 6, 7, 8]])
    layer, twin = model.transformer.layers[0].attention.query_key_value, clone.transformer.layers[0].attention.query_key_value
    hidden = model.transformer.word_embeddings(ids)
    assert torch.equal(layer(hidden), twin(hidden))
