"""GLM-130B architecture in plain PyTorch (our implementation, reference key names).

Why our own: SwissArmyTransformer's GLM130B is CUDA/fp16-bound (it calls
``torch.cuda.current_device()`` and casts attention probabilities to half), so it
cannot be the runtime on CPU. This module computes the same function:

* post-LN DeepNorm: ``x = LN(x); x = alpha*x + Attn(x); x = LN(x); x = alpha*x + MLP(x)``,
  alpha = sqrt(2 * num_layers), and a final LayerNorm;
* fused QKV laid out per head as contiguous ``(q, k, v)`` blocks of head_dim each;
* rotary embeddings over the full head dim (1D) or over each half (2D: position
  ids and block position ids), rotate-half pairing;
* GeGLU MLP: ``dense_h_to_4h`` gives 2*inner, ``x1 * gelu(x2)``;
* softmax in fp32, attention under an arbitrary boolean mask;
* logits tied to the word embeddings;
* a key/value cache for incremental decoding.

Parameter names equal the reference checkpoint keys, so ``state_dict()`` *is* the
``module`` dict of ``mp_rank_XX_model_states.pt``.
"""

from __future__ import annotations

import math
from typing import NamedTuple, Optional

import torch
import torch.nn.functional as F
from torch import nn

from ..scoring.scored_rows import full_vocab_log_probs
from .config import GLMConfig

# One (key, value) pair per layer, each [batch, heads, seq, head_dim], rotary applied.
KVCache = list[tuple[torch.Tensor, torch.Tensor]]


def rotary_cos_sin(positions: torch.Tensor, dim: int, base: float) -> tuple[torch.Tensor, torch.Tensor]:
    """cos/sin tables for integer ``positions`` [b, s] -> [b, 1, s, dim] in fp32."""
    inv_freq = 1.0 / (base ** (torch.arange(0, dim, 2, device=positions.device, dtype=torch.float32) / dim))
    freqs = positions.to(torch.float32).unsqueeze(-1) * inv_freq
    emb = torch.cat((freqs, freqs), dim=-1).unsqueeze(1)
    return emb.cos(), emb.sin()


class RotaryTables(NamedTuple):
    """One forward's rotary tables over the whole head dim, laid out [b, s, 1, head_dim] to
    broadcast over the heads of the QKV projection before its transpose.

    Built once per forward, not once per layer (every layer rotates by the same positions).
    The reference rotates GPT-NeoX style, ``x * cos + rotate_half(x) * sin`` with
    ``rotate_half(x) = cat(-x2, x1)`` (per half of the head dim in the 2D case).
    ``signed_sin`` carries that ``-x2``'s sign, so that rotating is
    ``x * cos + swap(x) * signed_sin``: the same IEEE products and sums
    (``(-a) * b == a * (-b)`` exactly), bit for bit, in one fewer pass and without the
    per-half ``cat`` of the 2D case (``tests/test_glm_forward.py`` keeps the reference rule).
    """

    cos: torch.Tensor
    signed_sin: torch.Tensor
    groups: int  # 1: rotary over the full head dim (1D); 2: over each half (2D)


def rotary_tables(position_ids: torch.Tensor, config: GLMConfig) -> RotaryTables:
    """Tables for ``position_ids`` [b, s] (1D) or [b, 2, s] (2D: position, block position)."""
    if not config.position_encoding_2d:
        parts = [rotary_cos_sin(position_ids, config.head_dim, config.rotary_base)]
    else:
        half = config.head_dim // 2
        parts = [rotary_cos_sin(position_ids[:, 0], half, config.rotary_base),
                 rotary_cos_sin(position_ids[:, 1], half, config.rotary_base)]
    cos = torch.cat([c for c, _ in parts], dim=-1)
    signed_sin = torch.cat([torch.cat((-s.chunk(2, dim=-1)[0], s.chunk(2, dim=-1)[1]), dim=-1) for _, s in parts], dim=-1)
    return RotaryTables(cos.transpose(1, 2), signed_sin.transpose(1, 2), len(parts))


def rotate(x: torch.Tensor, tables: RotaryTables) -> torch.Tensor:
    """Rotary embedding of ``x`` [b, s, heads, head_dim], per group of the head dim, computed
    as ``x * cos + swap(x) * signed_sin`` (see :class:`RotaryTables`)."""
    groups = tables.groups
    swapped = x.unflatten(-1, (groups, 2, x.shape[-1] // (2 * groups))).flip(-2).flatten(-3)
    out = x * tables.cos.to(x.dtype)
    return out.add_(swapped * tables.signed_sin.to(x.dtype))


class SelfAttention(nn.Module):
    def __init__(self, config: GLMConfig, layer_id: int) -> None:
        super().__init__()
        self.config = config
        self.layer_id = layer_id
        # Heads held by this module: all of them, or a tensor-parallel shard's share (the
        # projections are then shard-sized; see evaluation/distributed/tensor_parallel.py).
        self.num_heads = config.num_attention_heads
        self.query_key_value = nn.Linear(config.hidden_size, 3 * config.hidden_size)
        self.dense = nn.Linear(config.hidden_size, config.hidden_size)

    def forward(
        self,
        hidden: torch.Tensor,
        rotary: RotaryTables,
        attention_mask: torch.Tensor,
        past: Optional[tuple[torch.Tensor, torch.Tensor]] = None,
    ) -> tuple[torch.Tensor, tuple[torch.Tensor, torch.Tensor]]:
        cfg = self.config
        b, s, _ = hidden.shape
        mixed = self.query_key_value(hidden).view(b, s, self.num_heads, 3 * cfg.head_dim)
        q, k, v = mixed.split(cfg.head_dim, dim=-1)  # [b, s, h, d]
        # Rotated in the projection's own layout, then viewed as [b, h, s, d].
        q, k, v = rotate(q, rotary).transpose(1, 2), rotate(k, rotary).transpose(1, 2), v.transpose(1, 2)
        if past is not None:
            k = torch.cat((past[0], k), dim=2)
            v = torch.cat((past[1], v), dim=2)
        mask = attention_mask.unsqueeze(1)  # [b, 1, s, total]
        if q.dtype == torch.float32:
            context = F.scaled_dot_product_attention(q, k, v, attn_mask=mask)
        else:
            context = self._fp32_softmax_attention(q, k, v, mask)
        context = context.transpose(1, 2).reshape(b, s, self.num_heads * cfg.head_dim)
        return self.dense(context), (k, v)

    def _fp32_softmax_attention(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """Half-precision path of the reference: scores scaled down by (layer+1) before the
        16-bit matmul, scaled back and soft-maxed in fp32, so large layers do not overflow."""
        coeff = float(self.layer_id + 1)
        scores = torch.matmul(q / (math.sqrt(self.config.head_dim) * coeff), k.transpose(-1, -2))
        scores = scores.float() * coeff
        scores = scores.masked_fill(~mask, float("-inf"))
        probs = torch.softmax(scores, dim=-1).to(v.dtype)
        return torch.matmul(probs, v)


class GeGLUMLP(nn.Module):
    def __init__(self, config: GLMConfig) -> None:
        super().__init__()
        self.dense_h_to_4h = nn.Linear(config.hidden_size, 2 * config.inner_hidden_size)
        self.dense_4h_to_h = nn.Linear(config.inner_hidden_size, config.hidden_size)

    def forward(self, hidden: torch.Tensor) -> torch.Tensor:
        x1, x2 = self.dense_h_to_4h(hidden).chunk(2, dim=-1)
        # gelu(x2) * x1 in place of x1 * gelu(x2): the same products, one [b, s, inner]
        # buffer fewer per layer.
        return self.dense_4h_to_h(F.gelu(x2).mul_(x1))


class GLMBlock(nn.Module):
    def __init__(self, config: GLMConfig, layer_id: int) -> None:
        super().__init__()
        self.alpha = config.deepnorm_alpha
        self.input_layernorm = nn.LayerNorm(config.hidden_size, eps=config.layernorm_epsilon)
        self.attention = SelfAttention(config, layer_id)
        self.post_attention_layernorm = nn.LayerNorm(config.hidden_size, eps=config.layernorm_epsilon)
        self.mlp = GeGLUMLP(config)

    def forward(self, hidden, rotary: RotaryTables, attention_mask, past=None):
        # DeepNorm residuals, ``alpha * x + f(x)``, summed into the scaled buffer (addition
        # commutes exactly, so this is bit-identical and allocates one tensor fewer).
        attention_input = self.input_layernorm(hidden)
        attention_output, kv = self.attention(attention_input, rotary, attention_mask, past)
        hidden = (attention_input * self.alpha).add_(attention_output)
        mlp_input = self.post_attention_layernorm(hidden)
        return (mlp_input * self.alpha).add_(self.mlp(mlp_input)), kv


class GLMTransformer(nn.Module):
    def __init__(self, config: GLMConfig) -> None:
        super().__init__()
        self.word_embeddings = nn.Embedding(config.vocab_size, config.hidden_size)
        self.layers = nn.ModuleList(GLMBlock(config, i) for i in range(config.num_layers))
        self.final_layernorm = nn.LayerNorm(config.hidden_size, eps=config.layernorm_epsilon)


class GLMModel(nn.Module):
    """GLM-130B network. ``forward`` returns final hidden states; ``logits`` maps them to
    the vocabulary, so callers project only the positions they score."""

    def __init__(self, config: GLMConfig) -> None:
        super().__init__()
        self.config = config
        self.transformer = GLMTransformer(config)

    def forward(
        self,
        input_ids: torch.Tensor,
        position_ids: torch.Tensor,
        attention_mask: torch.Tensor,
        past: Optional[KVCache] = None,
    ) -> tuple[torch.Tensor, KVCache]:
        """Run the stack.

        input_ids: [b, s]. position_ids: [b, s] (1D) or [b, 2, s] (2D: position, block
        position). attention_mask: bool [b, s, past_len + s], True where a query may attend
        to a key; every row needs at least one True. past: cache from an earlier call.
        Returns (hidden [b, s, hidden], new cache including these tokens).
        """
        expected = 3 if self.config.position_encoding_2d else 2
        if position_ids.dim() != expected:
            raise ValueError(f"position_ids must have {expected} dims for this model, got shape {tuple(position_ids.shape)}")
        hidden = self.transformer.word_embeddings(input_ids)
        rotary = rotary_tables(position_ids, self.config)
        new_cache: KVCache = []
        for i, layer in enumerate(self.transformer.layers):
            hidden, kv = layer(hidden, rotary, attention_mask, None if past is None else past[i])
            new_cache.append(kv)
        return self.transformer.final_layernorm(hidden), new_cache

    def logits(self, hidden: torch.Tensor) -> torch.Tensor:
        """Tied output projection, computed in fp32 for stable log-softmax."""
        weight = self.transformer.word_embeddings.weight
        return F.linear(hidden, weight).float()

    def target_log_probs(self, rows: torch.Tensor, target: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """log p(target) [R] and whether target is the argmax [R] at hidden rows [R, d]."""
        return full_vocab_log_probs(self.logits)(rows, target)


def reorder_cache(cache: KVCache, index: torch.Tensor) -> KVCache:
    """Select/reorder batch rows of a cache (beam search bookkeeping)."""
    return [(k.index_select(0, index), v.index_select(0, index)) for k, v in cache]
