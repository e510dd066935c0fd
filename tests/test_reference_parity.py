"""Numerical parity with the reference: SwissArmyTransformer's GLM130B class.

The fixtures in ``tests/fixtures/sat_parity/<rotary_1d|rotary_2d>/`` hold a tiny seeded
checkpoint (our layout) and the reference's fp32 logits for (a) a packed multiple-choice
batch, (b) a ``[gMASK]`` generation prefix with its key/value memory, (c) one incremental
decoding step on that memory. They come from ``scripts/reference/make_sat_fixtures.py``
(run by hand in a throwaway SAT environment; see ``tests/fixtures/sat_parity/README.md``).
Our model must reproduce every one within 1e-4 in fp32.

``python tests/test_reference_parity.py`` prints the largest deviation of every fixture for
fp32 on CPU and, where CUDA is present, fp32/fp16/bf16 on the GPU (the fp16/bf16 tests below
do the same under pytest and are skipped without CUDA).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from evaluation.model.checkpoint import load_checkpoint
from evaluation.model.config import GLMConfig
from evaluation.model.glm import GLMModel

FIXTURES = Path(__file__).resolve().parent / "fixtures" / "sat_parity"
KINDS = ("rotary_1d", "rotary_2d")
TOLERANCE = 1e-4
# What each fixture compares (all max absolute differences against the reference).
CHECKS = (
    "mc_logits",  # (a) packed multiple choice, block-diagonal mask
    "prefix_logits",  # (b) [gMASK] generation prefix
    "prefix_kv",  # (b) our cache vs SAT's key/value memory (rotary applied to keys)
    "step_logits",  # (c) one step on our own cache from (b)
    "step_logits_on_reference_kv",  # (c) one step on SAT's memory converted to our cache
    "step_kv",  # (c) the cache entry the step appends
)


def load_fixture(kind: str, device: str = "cpu", dtype: torch.dtype = torch.float32) -> tuple[GLMModel, dict]:
    folder = FIXTURES / kind
    config = GLMConfig.from_dict(json.loads((folder / "model_config.json").read_text()))
    model = GLMModel(config)
    load_checkpoint(model, folder)
    cases = torch.load(folder / "cases.pt", map_location="cpu", weights_only=True)
    return model.to(device=device, dtype=dtype).eval(), cases


def reference_cache(mems: torch.Tensor, num_heads: int) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """SAT memory [layers, b, s, (k, v) x heads x head_dim] -> our cache of [b, heads, s, head_dim]."""
    layers, b, s, width = mems.shape
    split = mems.view(layers, b, s, 2, num_heads, width // (2 * num_heads)).permute(0, 3, 1, 4, 2, 5)
    return [(split[i, 0], split[i, 1]) for i in range(layers)]


def _max_diff(ours: torch.Tensor, ref: torch.Tensor) -> float:
    return (ours.float().cpu() - ref.float()).abs().max().item()


def _kv_diff(cache, ref_cache) -> float:
    return max(max(_max_diff(k, rk), _max_diff(v, rv)) for (k, v), (rk, rv) in zip(cache, ref_cache))


@torch.no_grad()
def deviations(model: GLMModel, cases: dict) -> dict[str, float]:
    """Largest absolute deviation from the reference for every check in CHECKS."""
    device = next(model.parameters()).device
    heads = model.config.num_attention_heads

    def run(case: dict, past=None):
        hidden, cache = model(
            case["input_ids"].to(device), case["position_ids"].to(device), case["attention_mask"].to(device), past
        )
        return model.logits(hidden), cache

    out: dict[str, float] = {}
    mc = cases["mc"]
    out["mc_logits"] = _max_diff(run(mc)[0], mc["logits"])

    prefix, step = cases["prefix"], cases["step"]
    logits, cache = run(prefix)
    out["prefix_logits"] = _max_diff(logits, prefix["logits"])
    out["prefix_kv"] = _kv_diff(cache, reference_cache(prefix["mems"], heads))

    logits, new_cache = run(step, cache)
    out["step_logits"] = _max_diff(logits, step["logits"])
    appended = [(k[:, :, -1:], v[:, :, -1:]) for k, v in new_cache]
    out["step_kv"] = _kv_diff(appended, reference_cache(step["mems_after"], heads))

    dtype = next(model.parameters()).dtype
    ref_past = [(k.to(device, dtype), v.to(device, dtype)) for k, v in reference_cache(prefix["mems"], heads)]
    out["step_logits_on_reference_kv"] = _max_diff(run(step, ref_past)[0], step["logits"])
    return out


@pytest.fixture(scope="module", params=KINDS)
def fp32_deviations(request) -> tuple[str, dict[str, float]]:
    model, cases = load_fixture(request.param)
    return request.param, deviations(model, cases)


@pytest.mark.parametrize("check", CHECKS)
def test_matches_reference_in_fp32(fp32_deviations, check: str, record_property) -> None:
    kind, devs = fp32_deviations
    record_property(f"{kind}.{check}", devs[check])
    print(f"{kind} {check}: max abs deviation {devs[check]:.3e}")
    assert devs[check] <= TOLERANCE, f"{kind} {check}: {devs[check]:.3e} > {TOLERANCE} (our GLMModel differs from SAT GLM130B)"


def test_fixtures_are_small_and_complete() -> None:
    files = [p for p in FIXTURES.rglob("*") if p.is_file()]
    assert sum(p.stat().st_size for p in files) < 1_000_000
    for kind in KINDS:
        cases = torch.load(FIXTURES / kind / "cases.pt", weights_only=True)
        assert {"mc", "prefix", "step"} <= set(cases)
        assert all(v.dtype == torch.float32 for case in ("mc", "prefix", "step") for k, v in cases[case].items() if "logits" in k)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bfloat16], ids=["fp32", "fp16", "bf16"])
@pytest.mark.parametrize("kind", KINDS)
def test_precision_on_cuda(kind: str, dtype: torch.dtype, record_property) -> None:
    """Reports (does not bound, except fp32) the deviation of GPU runs from the fp32 reference."""
    model, cases = load_fixture(kind, device="cuda", dtype=dtype)
    devs = deviations(model, cases)
    for check, value in devs.items():
        record_property(f"{kind}.{check}", value)
        print(f"cuda {kind} {str(dtype).removeprefix('torch.')} {check}: max abs deviation {value:.3e}")
    assert all(v == v and v != float("inf") for v in devs.values()), devs
    if dtype == torch.float32:
        # Same bound as on CPU (torch keeps TF32 matmuls off by default).
        assert max(devs.values()) <= TOLERANCE, devs


def main() -> None:
    settings = [("cpu", torch.float32)]
    if torch.cuda.is_available():
        settings += [("cuda", d) for d in (torch.float32, torch.float16, torch.bfloat16)]
    print(f"{'device':6} {'dtype':8} {'fixture':10} " + " ".join(f"{c:>28}" for c in CHECKS))
    for device, dtype in settings:
        for kind in KINDS:
            devs = deviations(*load_fixture(kind, device, dtype))
            print(f"{device:6} {str(dtype).removeprefix('torch.'):8} {kind:10} " + " ".join(f"{devs[c]:28.3e}" for c in CHECKS))


if __name__ == "__main__":
    main()
