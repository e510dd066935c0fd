"""The GLM-130B forward's lean form is bit-identical to the rule as the reference writes it.

``evaluation.model.glm`` builds the rotary tables once per forward, rotates q and k with a
signed-sine table instead of ``rotate_half``'s ``neg`` + ``cat`` per half, and sums the
DeepNorm residuals and GeGLU products into buffers it already holds. Each of these is meant
to change no bit. ``reference_forward`` below is the forward as it was written before
(and as SAT writes it): per-layer tables, :func:`apply_rotary` per half, ``x1 * gelu(x2)``,
``alpha * x + f(x)``. It runs on the same modules' weights, so any difference is the
arithmetic's. The SAT fixtures (``test_reference_parity.py``) bound the distance to the
reference at 1e-4; these tests require equality.
"""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from evaluation.model.config import GLMConfig
from evaluation.model.glm import GLMModel, RotaryTables, rotary_cos_sin, rotary_tables, rotate


def rotate_half(x: torch.Tensor) -> torch.Tensor:
    """The reference's GPT-NeoX rotation: pairs dimension i with i + d/2."""
    x1, x2 = x.chunk(2, dim=-1)
    return torch.cat((-x2, x1), dim=-1)


def apply_rotary(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    return (x * cos.to(x.dtype)) + (rotate_half(x) * sin.to(x.dtype))


def reference_rotary(q: torch.Tensor, k: torch.Tensor, position_ids: torch.Tensor, cfg: GLMConfig):
    """q, k [b, h, s, d]: the reference's rotary, tables built here (once per layer)."""
    if not cfg.position_encoding_2d:
        cos, sin = rotary_cos_sin(position_ids, cfg.head_dim, cfg.rotary_base)
        return apply_rotary(q, cos, sin), apply_rotary(k, cos, sin)
    half = cfg.head_dim // 2
    q1, q2 = q.chunk(2, dim=-1)
    k1, k2 = k.chunk(2, dim=-1)
    cos1, sin1 = rotary_cos_sin(position_ids[:, 0], half, cfg.rotary_base)
    cos2, sin2 = rotary_cos_sin(position_ids[:, 1], half, cfg.rotary_base)
    q = torch.cat((apply_rotary(q1, cos1, sin1), apply_rotary(q2, cos2, sin2)), dim=-1)
    k = torch.cat((apply_rotary(k1, cos1, sin1), apply_rotary(k2, cos2, sin2)), dim=-1)
    return q, k


@torch.no_grad()
def reference_forward(model: GLMModel, input_ids, position_ids, attention_mask, past=None):
    cfg = model.config
    hidden = model.transformer.word_embeddings(input_ids)
    cache = []
    for i, layer in enumerate(model.transformer.layers):
        attn = layer.attention
        x = layer.input_layernorm(hidden)
        b, s, _ = x.shape
        mixed = attn.query_key_value(x).view(b, s, attn.num_heads, 3 * cfg.head_dim)
        q, k, v = (t.transpose(1, 2) for t in mixed.split(cfg.head_dim, dim=-1))
        q, k = reference_rotary(q, k, position_ids, cfg)
        if past is not None:
            k = torch.cat((past[i][0], k), dim=2)
            v = torch.cat((past[i][1], v), dim=2)
        mask = attention_mask.unsqueeze(1)
        if q.dtype == torch.float32:
            context = F.scaled_dot_product_attention(q, k, v, attn_mask=mask)
        else:
            context = attn._fp32_softmax_attention(q, k, v, mask)
        context = context.transpose(1, 2).reshape(b, s, attn.num_heads * cfg.head_dim)
        hidden = x * layer.alpha + attn.dense(context)
        mlp_input = layer.post_attention_layernorm(hidden)
        x1, x2 = layer.mlp.dense_h_to_4h(mlp_input).chunk(2, dim=-1)
        hidden = mlp_input * layer.alpha + layer.mlp.dense_4h_to_h(x1 * F.gelu(x2))
        cache.append((k, v))
    return model.transformer.final_layernorm(hidden), cache


def _model(two_d: bool, dtype: torch.dtype) -> GLMModel:
    torch.manual_seed(0)
    config = GLMConfig(num_layers=3, hidden_size=64, inner_hidden_size=96, num_attention_heads=4, vocab_size=200,
                       position_encoding_2d=two_d)
    model = GLMModel(config)
    with torch.no_grad():
        for parameter in model.parameters():
            parameter.normal_(0.0, 0.3)  # large enough that rounding differences would show
    return model.to(dtype).eval()


def _inputs(batch: int, length: int, two_d: bool, offset: int = 0):
    generator = torch.Generator().manual_seed(batch * 100 + length)
    ids = torch.randint(0, 200, (batch, length), generator=generator)
    positions = torch.arange(offset, offset + length).expand(batch, length)
    if two_d:
        block = torch.randint(0, 5, (batch, length), generator=generator)
        positions = torch.stack([positions, block], dim=1)
    # GLM-shaped masks: a bidirectional context of a different length per row, causal after it.
    total = offset + length
    causal = torch.ones(total, total, dtype=torch.bool).tril()[offset:]
    mask = causal.expand(batch, length, total).clone()
    for row in range(batch):
        context = min(total, 3 + 2 * row)
        mask[row, : max(0, context - offset), :context] = True
    return ids, positions, mask


@pytest.mark.parametrize("two_d", [False, True], ids=["rotary_1d", "rotary_2d"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16], ids=["fp32", "bf16"])
def test_forward_and_cache_are_bit_identical_to_the_reference_rule(two_d: bool, dtype: torch.dtype) -> None:
    model = _model(two_d, dtype)
    ids, positions, mask = _inputs(3, 11, two_d)
    with torch.no_grad():
        hidden, cache = model(ids, positions, mask)
    ref_hidden, ref_cache = reference_forward(model, ids, positions, mask)
    assert torch.equal(hidden, ref_hidden)
    for (k, v), (rk, rv) in zip(cache, ref_cache):
        assert torch.equal(k, rk) and torch.equal(v, rv)

    # An incremental step of two tokens on that cache.
    step_ids, step_positions, step_mask = _inputs(3, 2, two_d, offset=11)
    with torch.no_grad():
        step_hidden, step_cache = model(step_ids, step_positions, step_mask, past=cache)
    ref_step_hidden, ref_step_cache = reference_forward(model, step_ids, step_positions, step_mask, past=ref_cache)
    assert torch.equal(step_hidden, ref_step_hidden)
    assert all(torch.equal(k, rk) for (k, _), (rk, _) in zip(step_cache, ref_step_cache))


@pytest.mark.parametrize("two_d", [False, True], ids=["rotary_1d", "rotary_2d"])
def test_rotate_equals_apply_rotary_per_group(two_d: bool) -> None:
    config = GLMConfig(num_layers=1, hidden_size=128, inner_hidden_size=96, num_attention_heads=2, vocab_size=10,
                       position_encoding_2d=two_d)
    generator = torch.Generator().manual_seed(3)
    positions = torch.randint(0, 2000, (2, 2, 9) if two_d else (2, 9), generator=generator)
    x = torch.randn(2, 9, 2, config.head_dim, generator=generator) * 10  # [b, s, h, d]
    tables = rotary_tables(positions, config)
    assert isinstance(tables, RotaryTables) and tables.cos.shape == (2, 9, 1, config.head_dim)
    expected, _ = reference_rotary(x.transpose(1, 2), x.transpose(1, 2), positions, config)
    assert torch.equal(rotate(x, tables).transpose(1, 2), expected)
    # The swap pairs dimension i with i + d/2 (1D) or within each half (2D): a wrong pairing
    # would still be a rotation of the same norm, so check one element by hand.
    quarter = config.head_dim // (4 if two_d else 2)
    cos, sin = tables.cos[0, 0, 0, 0].item(), -tables.signed_sin[0, 0, 0, 0].item()
    want = x[0, 0, 0, 0].item() * cos - x[0, 0, 0, quarter].item() * sin
    assert math.isclose(rotate(x, tables)[0, 0, 0, 0].item(), want, rel_tol=1e-5, abs_tol=1e-5)
