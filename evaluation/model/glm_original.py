"""The original GLM architecture (THUDM/GLM: GLM-Base, -Large, -2B, -10B, their Chinese and
RoBERTa variants), in plain PyTorch, behind the same interface as the GLM-130B network.

Facts read from THUDM/GLM (``model/modeling_glm.py``, ``mpu/transformer.py``) and checked
against fixtures made with its own ``GLMModel`` (``tests/fixtures/glm_parity``,
``tests/test_glm_original_parity.py``); the code is ours:

* pre-LN blocks: ``x = x + Attn(LN1(x)); x = x + MLP(LN2(x))``, LayerNorm eps 1e-5 (THUDM/GLM
  never passes another), a final LayerNorm, output tied to the word embeddings;
* learned absolute position embeddings and, with block position encoding (``--block-lm``;
  every released model), learned *block* position embeddings (the paper's 2D positions):
  input = word + position[pos] + block_position[block_pos]; the two tables have
  ``max_sequence_length + 1`` rows in block mode, ``max_sequence_length`` without;
* a fused ``query_key_value`` in Megatron's layout, [all q | all k | all v] along the output
  dimension (GLM-130B's is per head, (q, k, v) blocks of head_dim each: that is why the two
  shard differently under tensor parallelism, THUDM/GLM's ``change_mp.py`` merging shards as
  [q0; q1; k0; k1; v0; v1]);
* attention softmax(q k^T / sqrt(head_dim)) under the mask, then ``dense``;
* MLP ``dense_h_to_4h`` -> tanh-approximation GELU -> ``dense_4h_to_h`` (width 4h);
* incremental decoding: THUDM/GLM keeps each layer's *input* hidden states as memory and
  projects LN1(memory) to keys and values again at every step; keeping the projected keys
  and values instead is the same function (positions are added at the input, so nothing
  about a cached token changes later) and is what the shared decoder expects.

Where the rules differ from GLM-130B's, and what the scorer does about it: positions enter
as embeddings, not rotary, but the scorer's 2D position ids (context 0..n-1 with block
position 0; a blank's tokens at the mask position with block positions 1, 2, ...) are
exactly THUDM/GLM's cloze and generation positions, and its masks (bidirectional context,
causal blocks) are THUDM/GLM's ``sep`` masks, so ``GLMScorer`` runs this model unchanged.
THUDM/GLM scores multiple choice one row per choice; the scorer packs the choices of an item
into one row with a block mask, which gives the same log-probabilities (the fixtures'
``mc_packed`` case, 7e-7).

Parameter names are THUDM/GLM's checkpoint keys, so ``state_dict()`` is the ``module`` dict
of its ``mp_rank_00_model_states.pt``.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any, Optional

import torch
import torch.nn.functional as F
from torch import nn

from ..scoring.scored_rows import full_vocab_log_probs
from .glm import KVCache


@dataclass(frozen=True)
class OriginalGLMConfig:
    """Shape of an original-GLM network; defaults are GLM-10B's (config_tasks/model_blocklm_10B.sh)."""

    num_layers: int = 48
    hidden_size: int = 4096
    num_attention_heads: int = 64
    vocab_size: int = 50304
    max_sequence_length: int = 1024
    block_position_encoding: bool = True
    layernorm_epsilon: float = 1e-5

    architecture = "glm"

    def __post_init__(self) -> None:
        if self.hidden_size % self.num_attention_heads:
            raise ValueError(f"hidden_size {self.hidden_size} is not divisible by num_attention_heads {self.num_attention_heads}")

    @property
    def head_dim(self) -> int:
        return self.hidden_size // self.num_attention_heads

    @property
    def inner_hidden_size(self) -> int:
        return 4 * self.hidden_size

    @property
    def position_encoding_2d(self) -> bool:
        """What the scorer asks: whether position ids are (position, block position) pairs."""
        return self.block_position_encoding

    @property
    def position_table_rows(self) -> int:
        return self.max_sequence_length + (1 if self.block_position_encoding else 0)

    def to_dict(self) -> dict[str, Any]:
        return {"architecture": self.architecture, **asdict(self)}

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> "OriginalGLMConfig":
        values = {k: v for k, v in values.items() if k != "architecture"}
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise ValueError(f"unknown original-GLM config keys: {unknown}")
        return cls(**values)

    def save(self, path: Path) -> None:
        path.write_text(json.dumps(self.to_dict(), indent=2) + "\n")


class OriginalSelfAttention(nn.Module):
    def __init__(self, config: OriginalGLMConfig) -> None:
        super().__init__()
        self.config = config
        self.num_heads = config.num_attention_heads
        self.query_key_value = nn.Linear(config.hidden_size, 3 * config.hidden_size)
        self.dense = nn.Linear(config.hidden_size, config.hidden_size)

    def forward(self, hidden: torch.Tensor, attention_mask: torch.Tensor,
                past: Optional[tuple[torch.Tensor, torch.Tensor]] = None) -> tuple[torch.Tensor, tuple[torch.Tensor, torch.Tensor]]:
        b, s, _ = hidden.shape
        d = self.config.head_dim
        q, k, v = (t.view(b, s, self.num_heads, d).transpose(1, 2) for t in self.query_key_value(hidden).chunk(3, dim=-1))
        if past is not None:
            k = torch.cat((past[0], k), dim=2)
            v = torch.cat((past[1], v), dim=2)
        mask = attention_mask.unsqueeze(1)  # [b, 1, s, total], True = may attend
        if q.dtype == torch.float32:
            context = F.scaled_dot_product_attention(q, k, v, attn_mask=mask)
        else:  # half precision: softmax in fp32
            scores = torch.matmul(q, k.transpose(-1, -2)).float() / d ** 0.5
            context = torch.matmul(torch.softmax(scores.masked_fill(~mask, float("-inf")), dim=-1).to(v.dtype), v)
        return self.dense(context.transpose(1, 2).reshape(b, s, self.num_heads * d)), (k, v)


class OriginalMLP(nn.Module):
    def __init__(self, config: OriginalGLMConfig) -> None:
        super().__init__()
        self.dense_h_to_4h = nn.Linear(config.hidden_size, config.inner_hidden_size)
        self.dense_4h_to_h = nn.Linear(config.inner_hidden_size, config.hidden_size)

    def forward(self, hidden: torch.Tensor) -> torch.Tensor:
        return self.dense_4h_to_h(F.gelu(self.dense_h_to_4h(hidden), approximate="tanh"))


class OriginalGLMLayer(nn.Module):
    def __init__(self, config: OriginalGLMConfig) -> None:
        super().__init__()
        self.input_layernorm = nn.LayerNorm(config.hidden_size, eps=config.layernorm_epsilon)
        self.attention = OriginalSelfAttention(config)
        self.post_attention_layernorm = nn.LayerNorm(config.hidden_size, eps=config.layernorm_epsilon)
        self.mlp = OriginalMLP(config)

    def forward(self, hidden, attention_mask, past=None):
        attention_output, kv = self.attention(self.input_layernorm(hidden), attention_mask, past)
        hidden = hidden + attention_output
        return hidden + self.mlp(self.post_attention_layernorm(hidden)), kv


class OriginalGLMTransformer(nn.Module):
    def __init__(self, config: OriginalGLMConfig) -> None:
        super().__init__()
        self.position_embeddings = nn.Embedding(config.position_table_rows, config.hidden_size)
        if config.block_position_encoding:
            self.block_position_embeddings = nn.Embedding(config.position_table_rows, config.hidden_size)
        self.layers = nn.ModuleList(OriginalGLMLayer(config) for _ in range(config.num_layers))
        self.final_layernorm = nn.LayerNorm(config.hidden_size, eps=config.layernorm_epsilon)


class OriginalGLMModel(nn.Module):
    """Original-GLM network with ``GLMModel``'s interface: ``forward`` returns final hidden
    states and a key/value cache, ``logits`` the tied projection of the rows asked for."""

    def __init__(self, config: OriginalGLMConfig) -> None:
        super().__init__()
        self.config = config
        self.word_embeddings = nn.Embedding(config.vocab_size, config.hidden_size)
        self.transformer = OriginalGLMTransformer(config)

    def forward(self, input_ids: torch.Tensor, position_ids: torch.Tensor, attention_mask: torch.Tensor,
                past: Optional[KVCache] = None) -> tuple[torch.Tensor, KVCache]:
        """input_ids [b, s]; position_ids [b, 2, s] (position, block position) with block
        position encoding, else [b, s]; attention_mask bool [b, s, past_len + s], True where a
        query may attend to a key; past: the cache of an earlier call."""
        expected = 3 if self.config.block_position_encoding else 2
        if position_ids.dim() != expected:
            raise ValueError(f"position_ids must have {expected} dims for this model, got shape {tuple(position_ids.shape)}")
        t = self.transformer
        if self.config.block_position_encoding:
            hidden = self.word_embeddings(input_ids) + t.position_embeddings(position_ids[:, 0]) + t.block_position_embeddings(position_ids[:, 1])
        else:
            hidden = self.word_embeddings(input_ids) + t.position_embeddings(position_ids)
        cache: KVCache = []
        for i, layer in enumerate(t.layers):
            hidden, kv = layer(hidden, attention_mask, None if past is None else past[i])
            cache.append(kv)
        return t.final_layernorm(hidden), cache

    def logits(self, hidden: torch.Tensor) -> torch.Tensor:
        """Tied output projection, in fp32 for a stable log-softmax."""
        return F.linear(hidden, self.word_embeddings.weight).float()

    def target_log_probs(self, rows: torch.Tensor, target: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return full_vocab_log_probs(self.logits)(rows, target)

