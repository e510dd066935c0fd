"""The Llama architecture in plain torch: the harness's own forward for Llama GGUF files on CPU.

Why: transformers' ``modeling_llama`` imports its generation, masking and distributed-tensor
machinery (``torch._dynamo``, ``torch._inductor``, ``torch.distributed.tensor``, ``sympy``),
and reading a GGUF config through ``AutoConfig`` imports most of it too: 130 MB of Python
modules that stay resident for the whole run, a quarter of SmolLM2-135M's fp32 weights and
the difference between the quick start's 1.08 GB peak and its 1.0 GB target. The forward
itself is a few hundred lines of torch, written here once.

What it is: ``LeanLlamaForCausalLM`` has transformers' parameter names (so its GGUF tensor
map, ``gguf_streaming.py``, is transformers' own) and the part of ``LlamaForCausalLM``'s
interface that ``HFScorer`` calls: ``input_ids``, a 2D padding or 4D additive
``attention_mask``, ``position_ids``, ``cache`` (a transformers ``Cache``, including
``prefix_cache.ReadOnlyPrefixLayer``), ``use_cache``, ``logits_to_keep``; ``base_model``,
``get_output_embeddings``/``set_output_embeddings``, ``get_input_embeddings``. Only
``transformers.cache_utils`` is imported (20 MB, no dynamo).

Numerics: the same torch calls in the same order as transformers 5's Llama with SDPA
attention, including its mask decisions (SDPA's ``is_causal`` where transformers skips the
mask, its GQA branches), so logits and hidden states are bit-identical to
``LlamaForCausalLM`` loaded with the same weights (``tests/test_lean_llama.py`` checks every
call shape the scorer makes, and whole-task scores). One difference by design: with
``position_ids`` but no mask and no cache, transformers infers packed sequences from
positions that restart; here that input is plain causal (the harness never sends it).

Which models: ``lean_config_from_gguf`` accepts a GGUF file of architecture ``llama`` whose
tensors are exactly the plain Llama set (no biases, no rope frequency table, no experts)
and whose metadata has no rope scaling; anything else says why and transformers' Llama is
used (``--hf-implementation``, ``hf_loader.py``).
"""

from __future__ import annotations

import contextlib
import dataclasses
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator, Optional, Union

import torch
import torch.nn.functional as F
from torch import nn

# GGUF metadata key (after "llama.") -> transformers config field: transformers' own table
# (integrations/ggml.py, GGUF_CONFIG_MAPPING["llama"]), which AutoConfig applies to these files.
GGUF_LLAMA_FIELDS = {
    "context_length": "max_position_embeddings",
    "block_count": "num_hidden_layers",
    "feed_forward_length": "intermediate_size",
    "embedding_length": "hidden_size",
    "rope.dimension_count": "head_dim",
    "rope.freq_base": "rope_theta",
    "attention.head_count": "num_attention_heads",
    "attention.head_count_kv": "num_key_value_heads",
    "attention.layer_norm_rms_epsilon": "rms_norm_eps",
    "vocab_size": "vocab_size",
}
GGUF_LAYER_TENSORS = ("attn_norm", "attn_q", "attn_k", "attn_v", "attn_output", "ffn_norm", "ffn_gate", "ffn_up", "ffn_down")
GGUF_MODEL_TENSORS = ("token_embd", "output_norm", "output")


@dataclass(frozen=True)
class LeanLlamaConfig:
    """The fields of transformers' ``LlamaConfig`` this forward reads (with its defaults)."""

    vocab_size: int
    hidden_size: int
    intermediate_size: int
    num_hidden_layers: int
    num_attention_heads: int
    num_key_value_heads: int
    head_dim: int
    rms_norm_eps: float = 1e-6
    rope_theta: float = 10000.0
    max_position_embeddings: int = 2048
    tie_word_embeddings: bool = False
    bos_token_id: Optional[int] = None
    eos_token_id: Optional[int] = None
    pad_token_id: Optional[int] = None
    model_type: str = "llama"

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def __post_init__(self) -> None:
        if self.num_attention_heads % self.num_key_value_heads:
            raise ValueError(f"num_attention_heads {self.num_attention_heads} is not a multiple of "
                             f"num_key_value_heads {self.num_key_value_heads}")


def lean_config_from_gguf(path: Path) -> tuple[Optional[LeanLlamaConfig], str]:
    """(config, "") when this forward computes the GGUF file's model exactly as transformers'
    Llama would, else (None, the reason). Reads the metadata only (transformers' fast reader,
    milliseconds; ``AutoConfig`` parses the whole vocabulary, about 4 s for SmolLM2)."""
    try:
        from transformers.integrations.gguf import read_gguf_metadata
    except ImportError:
        return None, "this transformers has no fast GGUF metadata reader (transformers.integrations.gguf)"
    metadata, tensor_names = read_gguf_metadata(str(path))
    architecture = metadata.get("general.architecture")
    if architecture != "llama":
        return None, f"architecture {architecture!r} is not 'llama'"
    if "mistral" in str(metadata.get("general.name", "")).lower():
        return None, "transformers reads a 'llama' GGUF named like Mistral as a Mistral model"
    scaling = [key for key in metadata if key.startswith("llama.rope.scaling.")]
    if scaling and str(metadata.get("llama.rope.scaling.type", "none")) != "none":
        return None, f"rope scaling ({', '.join(sorted(scaling))}) is not implemented here"
    if metadata.get("llama.expert_count"):
        return None, "mixture-of-experts layers are not implemented here"
    fields: dict[str, Any] = {}
    for key, name in GGUF_LLAMA_FIELDS.items():
        if f"llama.{key}" in metadata:
            value = metadata[f"llama.{key}"]
            fields[name] = float(value) if name in ("rms_norm_eps", "rope_theta") else int(value)
    for key, name in (("bos_token_id", "bos_token_id"), ("eos_token_id", "eos_token_id"), ("padding_token_id", "pad_token_id")):
        if f"tokenizer.ggml.{key}" in metadata:
            fields[name] = int(metadata[f"tokenizer.ggml.{key}"])
    if "vocab_size" not in fields and isinstance(metadata.get("tokenizer.ggml.tokens"), int):
        fields["vocab_size"] = metadata["tokenizer.ggml.tokens"]  # the reader gives a long array's length
    missing = [name for name in ("vocab_size", "hidden_size", "intermediate_size", "num_hidden_layers", "num_attention_heads")
               if name not in fields]
    if missing:
        return None, f"the metadata lacks {', '.join(missing)}"
    fields.setdefault("num_key_value_heads", fields["num_attention_heads"])
    fields.setdefault("head_dim", fields["hidden_size"] // fields["num_attention_heads"])
    names = set(tensor_names)
    fields["tie_word_embeddings"] = "output.weight" not in names
    expected = {f"{name}.weight" for name in GGUF_MODEL_TENSORS} | {
        f"blk.{layer}.{name}.weight" for layer in range(int(fields["num_hidden_layers"])) for name in GGUF_LAYER_TENSORS}
    unexpected = sorted(names - expected, key=_natural)
    if unexpected:
        return None, f"tensors beyond plain Llama's: {', '.join(unexpected[:3])}{' ...' if len(unexpected) > 3 else ''}"
    absent = sorted(expected - names - {"output.weight"}, key=_natural)
    if absent:
        return None, f"tensors missing: {', '.join(absent[:3])}{' ...' if len(absent) > 3 else ''}"
    try:
        return LeanLlamaConfig(**fields), ""
    except ValueError as exc:
        return None, f"unusable metadata: {exc}"


def _natural(name: str) -> list[Union[int, str]]:
    return [int(part) if part.isdigit() else part for part in re.split(r"(\d+)", name)]


@dataclass
class LeanModelOutput:
    """What ``LlamaModel`` returns, under the names the scorer reads."""

    last_hidden_state: torch.Tensor
    cache: Any = None


@dataclass
class LeanCausalLMOutput:
    """What ``LlamaForCausalLM`` returns, under the names the scorer reads."""

    logits: torch.Tensor
    cache: Any = None


class LeanRMSNorm(nn.Module):
    """transformers' ``LlamaRMSNorm``: normalised in float32, scaled in the model's dtype."""

    def __init__(self, size: int, eps: float, **factory: Any) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.ones(size, **factory))
        self.variance_epsilon = eps

    def forward(self, hidden: torch.Tensor) -> torch.Tensor:
        dtype = hidden.dtype
        hidden = hidden.to(torch.float32)
        variance = hidden.pow(2).mean(-1, keepdim=True)
        hidden = hidden * torch.rsqrt(variance + self.variance_epsilon)
        return self.weight * hidden.to(dtype)


def rotate_half(x: torch.Tensor) -> torch.Tensor:
    half = x.shape[-1] // 2
    return torch.cat((-x[..., half:], x[..., :half]), dim=-1)


def repeat_kv(states: torch.Tensor, groups: int) -> torch.Tensor:
    """[b, kv_heads, n, d] -> [b, kv_heads * groups, n, d], each key/value head repeated ``groups`` times."""
    if groups == 1:
        return states
    b, heads, n, d = states.shape
    return states[:, :, None].expand(b, heads, groups, n, d).reshape(b, heads * groups, n, d)


def sdpa_attention(query: torch.Tensor, key: torch.Tensor, value: torch.Tensor, mask: Optional[torch.Tensor],
                   groups: int, scaling: float) -> torch.Tensor:
    """transformers' ``sdpa_attention_forward`` on CPU/CUDA: GQA in SDPA when there is no mask,
    one query token attended per key/value head group, else keys and values repeated;
    SDPA's own causal mask where no mask was built. Returns [b, q, heads, d]."""
    q_length = query.shape[2]
    extra: dict[str, Any] = {}
    if groups > 1:
        if mask is None and key.shape[-1] == value.shape[-1] <= 256:
            extra["enable_gqa"] = True
        elif q_length == 1:
            b, heads, _, d = query.shape
            query = query.reshape(b, heads // groups, groups, d)
            if mask is not None and mask.shape[1] != 1:
                mask = mask.reshape(mask.shape[0], heads // groups, groups, mask.shape[-1])
        else:
            key, value = repeat_kv(key, groups), repeat_kv(value, groups)
    is_causal = q_length > 1 and mask is None
    if is_causal and key.shape[2] > q_length:
        key, value = key[:, :, :q_length], value[:, :, :q_length]
    out = F.scaled_dot_product_attention(query, key, value, attn_mask=mask, dropout_p=0.0, scale=scaling,
                                         is_causal=is_causal, **extra)
    return out.reshape(out.shape[0], -1, q_length, value.shape[-1]).transpose(1, 2).contiguous()


class LeanAttention(nn.Module):
    def __init__(self, config: LeanLlamaConfig, layer_index: int, **factory: Any) -> None:
        super().__init__()
        self.layer_idx = layer_index
        self.head_dim = config.head_dim
        self.num_key_value_groups = config.num_attention_heads // config.num_key_value_heads
        self.scaling = self.head_dim ** -0.5
        self.q_proj = nn.Linear(config.hidden_size, config.num_attention_heads * self.head_dim, bias=False, **factory)
        self.k_proj = nn.Linear(config.hidden_size, config.num_key_value_heads * self.head_dim, bias=False, **factory)
        self.v_proj = nn.Linear(config.hidden_size, config.num_key_value_heads * self.head_dim, bias=False, **factory)
        self.o_proj = nn.Linear(config.num_attention_heads * self.head_dim, config.hidden_size, bias=False, **factory)

    def forward(self, hidden: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor, mask: Optional[torch.Tensor],
                cache: Any) -> torch.Tensor:
        input_shape = hidden.shape[:-1]
        shape = (*input_shape, -1, self.head_dim)
        query = self.q_proj(hidden).view(shape).transpose(1, 2)
        key = self.k_proj(hidden).view(shape).transpose(1, 2)
        value = self.v_proj(hidden).view(shape).transpose(1, 2)
        cos, sin = cos.unsqueeze(1), sin.unsqueeze(1)
        query = (query * cos) + (rotate_half(query) * sin)
        key = (key * cos) + (rotate_half(key) * sin)
        if cache is not None:
            key, value = cache.update(key, value, self.layer_idx)
        out = sdpa_attention(query, key, value, mask, self.num_key_value_groups, self.scaling)
        return self.o_proj(out.reshape(*input_shape, -1).contiguous())


class LeanMLP(nn.Module):
    def __init__(self, config: LeanLlamaConfig, **factory: Any) -> None:
        super().__init__()
        self.gate_proj = nn.Linear(config.hidden_size, config.intermediate_size, bias=False, **factory)
        self.up_proj = nn.Linear(config.hidden_size, config.intermediate_size, bias=False, **factory)
        self.down_proj = nn.Linear(config.intermediate_size, config.hidden_size, bias=False, **factory)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.down_proj(F.silu(self.gate_proj(x)) * self.up_proj(x))


class LeanDecoderLayer(nn.Module):
    def __init__(self, config: LeanLlamaConfig, layer_index: int, **factory: Any) -> None:
        super().__init__()
        self.self_attn = LeanAttention(config, layer_index, **factory)
        self.mlp = LeanMLP(config, **factory)
        self.input_layernorm = LeanRMSNorm(config.hidden_size, config.rms_norm_eps, **factory)
        self.post_attention_layernorm = LeanRMSNorm(config.hidden_size, config.rms_norm_eps, **factory)

    def forward(self, hidden: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor, mask: Optional[torch.Tensor],
                cache: Any) -> torch.Tensor:
        hidden = hidden + self.self_attn(self.input_layernorm(hidden), cos, sin, mask, cache)
        return hidden + self.mlp(self.post_attention_layernorm(hidden))


def causal_mask(attention_mask: Optional[torch.Tensor], batch: int, q_length: int, past: int,
                device: torch.device) -> Optional[torch.Tensor]:
    """The mask transformers' ``create_causal_mask`` gives SDPA: a 4D mask as it is; None where
    SDPA's ``is_causal`` (or no mask at all) is exact (``_ignore_causal_mask_sdpa``); else a
    [b, 1, q, kv] bool mask, causal from the query's cache position and AND the 2D padding."""
    if attention_mask is not None and attention_mask.ndim == 4:
        return attention_mask
    kv_length = past + q_length
    padding = None
    if attention_mask is not None:
        padding = attention_mask.to(device=device, dtype=torch.bool)
        if (missing := kv_length - padding.shape[-1]) > 0:
            padding = F.pad(padding, (0, missing))
        padding = padding[:, :kv_length]
    if (q_length == 1 or kv_length == q_length) and (padding is None or bool(padding.all())):
        return None
    if past == 0 and (padding is None or (bool(padding[:, :q_length].all()) and not bool(padding[:, q_length:].any()))):
        return None
    allowed = torch.arange(kv_length, device=device)[None, :] <= (torch.arange(q_length, device=device) + past)[:, None]
    allowed = allowed[None, None]
    if padding is not None:
        allowed = allowed & padding[:, None, None, :]
    return allowed.expand(batch, 1, q_length, kv_length)


class LeanLlamaModel(nn.Module):
    """The decoder stack (transformers' ``LlamaModel``): embeddings, layers, final norm, RoPE."""

    def __init__(self, config: LeanLlamaConfig, **factory: Any) -> None:
        super().__init__()
        self.config = config
        self.embed_tokens = nn.Embedding(config.vocab_size, config.hidden_size, config.pad_token_id, **factory)
        self.layers = nn.ModuleList([LeanDecoderLayer(config, i, **factory) for i in range(config.num_hidden_layers)])
        self.norm = LeanRMSNorm(config.hidden_size, config.rms_norm_eps, **factory)
        self.register_buffer("inv_freq", self.rope_inverse_frequencies(config), persistent=False)

    @staticmethod
    def rope_inverse_frequencies(config: LeanLlamaConfig) -> torch.Tensor:
        """transformers' default RoPE (float32, whatever the model's dtype)."""
        dim = config.head_dim
        return 1.0 / (config.rope_theta ** (torch.arange(0, dim, 2, dtype=torch.float) / dim))

    def rope(self, hidden: torch.Tensor, position_ids: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        freqs = position_ids[..., None].float() * self.inv_freq.to(device=hidden.device, dtype=torch.float)
        emb = torch.cat((freqs, freqs), dim=-1)
        return emb.cos().to(hidden.dtype), emb.sin().to(hidden.dtype)

    def forward(self, input_ids: torch.Tensor, attention_mask: Optional[torch.Tensor] = None,
                position_ids: Optional[torch.Tensor] = None, cache: Any = None, use_cache: bool = False) -> LeanModelOutput:
        hidden = self.embed_tokens(input_ids)
        if use_cache and cache is None:
            from transformers.cache_utils import DynamicCache

            cache = DynamicCache()
        past = cache.get_seq_length() if cache is not None else 0
        if position_ids is None:
            position_ids = (torch.arange(hidden.shape[1], device=hidden.device) + past).unsqueeze(0)
        mask = causal_mask(attention_mask, hidden.shape[0], hidden.shape[1], past, hidden.device)
        cos, sin = self.rope(hidden, position_ids)
        for layer in self.layers:
            hidden = layer(hidden, cos, sin, mask, cache)
        return LeanModelOutput(self.norm(hidden), cache)


class LeanLlamaForCausalLM(nn.Module):
    """A Llama causal LM with transformers' parameter names and call interface (see the module doc)."""

    def __init__(self, config: LeanLlamaConfig, **factory: Any) -> None:
        super().__init__()
        self.config = config
        self.model = LeanLlamaModel(config, **factory)
        self.lm_head = nn.Linear(config.hidden_size, config.vocab_size, bias=False, **factory)
        self._tied_weights_keys = {"lm_head.weight": "model.embed_tokens.weight"} if config.tie_word_embeddings else {}
        self.tie_weights()

    @classmethod
    def empty(cls, config: LeanLlamaConfig, dtype: torch.dtype = torch.float32, device: str = "cpu") -> "LeanLlamaForCausalLM":
        """The model with uninitialised weights (every one is about to be read from a file).
        Why not the meta device: initialising a meta tensor runs torch's reference
        implementations, which import torch._dynamo (and sympy), the 90 MB this module avoids."""
        with _parameters_left_uninitialised():
            model = cls(config, device=device, dtype=dtype)
        return model.eval()

    def tie_weights(self) -> None:
        if self.config.tie_word_embeddings:
            self.lm_head.weight = self.model.embed_tokens.weight

    @property
    def base_model(self) -> LeanLlamaModel:
        return self.model

    def get_input_embeddings(self) -> nn.Embedding:
        return self.model.embed_tokens

    def get_output_embeddings(self) -> nn.Module:
        return self.lm_head

    def set_output_embeddings(self, head: nn.Module) -> None:
        self.lm_head = head

    def forward(self, input_ids: torch.Tensor, attention_mask: Optional[torch.Tensor] = None,
                position_ids: Optional[torch.Tensor] = None, cache: Any = None, use_cache: bool = False,
                logits_to_keep: int = 0) -> LeanCausalLMOutput:
        out = self.model(input_ids, attention_mask, position_ids, cache, use_cache)
        hidden = out.last_hidden_state[:, -logits_to_keep:] if logits_to_keep else out.last_hidden_state
        return LeanCausalLMOutput(self.lm_head(hidden), out.cache)


@contextlib.contextmanager
def _parameters_left_uninitialised() -> Iterator[None]:
    """``nn.Linear`` and ``nn.Embedding`` keep ``torch.empty`` storage instead of drawing random
    weights (as transformers' ``no_init_weights`` does for its models)."""
    saved = nn.Linear.reset_parameters, nn.Embedding.reset_parameters
    nn.Linear.reset_parameters = nn.Embedding.reset_parameters = lambda self: None  # type: ignore[method-assign]
    try:
        yield
    finally:
        nn.Linear.reset_parameters, nn.Embedding.reset_parameters = saved  # type: ignore[method-assign]
