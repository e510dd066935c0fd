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
from typing import Optional

import torch
import torch.nn.functional as F
from torch import nn

from ..scoring.scored_rows import full_vocab_log_probs
from .config import GLMConfig

# One (key, value) pair per layer, each [batch, heads, seq, head_dim], rotary applied.
KVCache = list[tuple[torch.Tensor, torch.Tensor]]


def rotate_half(x: torch.Tensor) -> torch.Tensor:
    """GPT-NeoX style rotation: pairs dimension i with i + d/2."""
    x1, x2 = x.chunk(2, dim=-1)
    return torch.cat((-x2, x1), dim=-1)


def rotary_cos_sin(positions: torch.Tensor, dim: int, base: float) -> tuple[torch.Tensor, torch.Tensor]:
    """cos/sin tables for integer ``positions`` [b, s] -> [b, 1, s, dim] in fp32."""
    inv_freq = 1.0 / (base ** (torch.arange(0, dim, 2, device=positions.device, dtype=torch.float32) / dim))
    freqs = positions.to(torch.float32).unsqueeze(-1) * inv_freq
    emb = torch.cat((freqs, freqs), dim=-1).unsqueeze(1)
    return emb.cos(), emb.sin()


def apply_rotary(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    return (x * cos.to(x.dtype)) + (rotate_half(x) * sin.to(x.dtype))


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

    def _rotary(self, q: torch.Tensor, k: torch.Tensor, position_ids: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        cfg = self.config
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

    def forward(
        self,
        hidden: torch.Tensor,
        position_ids: torch.Tensor,
        attention_mask: torch.Tensor,
        past: Optional[tuple[torch.Tensor, torch.Tensor]] = None,
    ) -> tuple[torch.Tensor, tuple[torch.Tensor, torch.Tensor]]:
        cfg = self.config
        b, s, _ = hidden.shape
        mixed = self.query_key_value(hidden).view(b, s, self.num_heads, 3 * cfg.head_dim)
        q, k, v = (t.transpose(1, 2) for t in mixed.split(cfg.head_dim, dim=-1))  # [b, h, s, d]
        q, k = self._rotary(q, k, position_ids)
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
        return self.dense_4h_to_h(x1 * F.gelu(x2))


class GLMBlock(nn.Module):
    def __init__(self, config: GLMConfig, layer_id: int) -> None:
        super().__init__()
        self.alpha = config.deepnorm_alpha
        self.input_layernorm = nn.LayerNorm(config.hidden_size, eps=config.layernorm_epsilon)
        self.attention = SelfAttention(config, layer_id)
        self.post_attention_layernorm = nn.LayerNorm(config.hidden_size, eps=config.layernorm_epsilon)
        self.mlp = GeGLUMLP(config)

    def forward(self, hidden, position_ids, attention_mask, past=None):
        attention_input = self.input_layernorm(hidden)
        attention_output, kv = self.attention(attention_input, position_ids, attention_mask, past)
        hidden = attention_input * self.alpha + attention_output
        mlp_input = self.post_attention_layernorm(hidden)
        return mlp_input * self.alpha + self.mlp(mlp_input), kv


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
        new_cache: KVCache = []
        for i, layer in enumerate(self.transformer.layers):
            hidden, kv = layer(hidden, position_ids, attention_mask, None if past is None else past[i])
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
