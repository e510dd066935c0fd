"""Model arguments (the ``MODEL_ARGS`` of ``configs/*.sh``) and building the GLM from them.

Flag names follow the original GLM-130B configs so that an existing
``configs/model_glm_130b.sh`` reads the same here.
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Optional

import torch

from ..digests import path_digest
from ..tokenization import NUM_IMAGE_TOKENS, TOKENIZER_TYPES, GLMTokenizerBase, build_tokenizer, default_tokenizer_model
from .checkpoint import CheckpointError, checkpoint_shards, load_checkpoint
from .config import GLMConfig
from .cpu_linear import pack_linear_layers, resolve_cpu_linear
from .glm import GLMModel
from .glm_original import OriginalGLMConfig
from .glm_original_checkpoint import hf_config, is_hf_layout, load_original_glm
from .quantization import BIT_WIDTHS, load_quantized_model
from .sharding import check_tensor_parallel, shard_sized_model

if TYPE_CHECKING:
    from ..distributed.tensor_parallel import TensorParallelGroup

DTYPES = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}
ARCHITECTURES = ("glm-130b", "glm")


def add_model_arguments(parser: argparse.ArgumentParser) -> None:
    """Register the model flags on ``parser`` (one group, documented in --help)."""
    group = parser.add_argument_group("model (normally given by MODEL_CONFIG's MODEL_ARGS)")
    defaults = GLMConfig()
    group.add_argument("--architecture", choices=ARCHITECTURES, default="glm-130b",
                       help="glm-130b: GLM-130B's network (DeepNorm, rotary, GeGLU); glm: the original GLM of THUDM/GLM "
                            "(GLM-Base/Large/2B/10B and their Chinese and RoBERTa variants: pre-LN, learned (block) position "
                            "embeddings, GELU), loaded from THUDM/GLM's checkpoint layout or a Hub folder (config.json)")
    group.add_argument("--no-block-position", action="store_true",
                       help="glm architecture: no block position embeddings (1D positions; THUDM/GLM's flag). Every released model has them")
    group.add_argument("--num-layers", type=int, default=defaults.num_layers, help="transformer blocks")
    group.add_argument("--hidden-size", type=int, default=defaults.hidden_size, help="model width")
    group.add_argument("--inner-hidden-size", type=int, default=defaults.inner_hidden_size, help="GeGLU inner width")
    group.add_argument("--num-attention-heads", type=int, default=defaults.num_attention_heads, help="attention heads")
    group.add_argument("--vocab-size", type=int, default=defaults.vocab_size, help="rows of the (padded) embedding")
    group.add_argument("--max-sequence-length", "--max-position-embeddings", dest="max_sequence_length", type=int,
                       default=defaults.max_sequence_length, help="longest sequence the model was trained on (THUDM/GLM's "
                       "--max-position-embeddings)")
    group.add_argument("--layernorm-epsilon", type=float, default=defaults.layernorm_epsilon, help="LayerNorm epsilon")
    group.add_argument("--position-encoding-2d", action="store_true", help="2D rotary (position + block position), as in ChatGLM-6B")
    group.add_argument("--layernorm-order", choices=["post"], default="post", help="only GLM-130B's post-LN DeepNorm is implemented")
    group.add_argument("--model-parallel-size", type=int, default=1,
                       help="tensor-parallel processes per model replica (MP_SIZE of scripts/evaluate.sh, which starts "
                            "MP_SIZE x DP_SIZE processes). A checkpoint saved at this size loads each mp_rank_XX directly; "
                            "one of another size is re-split on load")
    group.add_argument("--load", type=str, default=None, help="checkpoint folder (with a 'latest' file)")
    group.add_argument("--tokenizer-type", choices=list(TOKENIZER_TYPES), default="icetk-glm-130b",
                       help="tokenizer of the model: " + "; ".join(f"{k}: {v}" for k, v in TOKENIZER_TYPES.items()))
    group.add_argument("--tokenizer-model", type=str, default=None,
                       help="tokenizer files: icetk-glm-130b: SentencePiece model (default LOAD/ice_text.model); "
                            "glm-10b-chinese: cog-pretrain.model (default LOAD/cog-pretrain.model); "
                            "glm-10b-english: folder with gpt2-vocab.json + gpt2-merges.txt, or the vocab .json "
                            "with its merges .txt next to it (default LOAD)")
    group.add_argument("--num-image-tokens", type=int, default=NUM_IMAGE_TOKENS, help="id offset of text tokens (icetk-glm-130b only: 20000)")
    group.add_argument("--quantization-bit-width", type=int, choices=BIT_WIDTHS, default=None,
                       help="weight-only INT8/INT4 quantization of the block linear layers (GLM-130B's rule); "
                            "a float checkpoint is quantized while loading, a pre-quantized one is detected and loaded as is")
    group.add_argument("--skip-init", action="store_true", help="accepted for compatibility with GLM-130B configs (weights are never randomly initialised here)")
    precision = group.add_mutually_exclusive_group()
    precision.add_argument("--fp16", action="store_true", help="run in float16 (GPU only; softmax stays fp32)")
    precision.add_argument("--bf16", action="store_true", help="run in bfloat16 (softmax stays fp32)")
    group.add_argument("--device", default="auto", help="'cpu', 'cuda', 'cuda:N' or 'auto' (cuda when available)")


def resolve_device_and_dtype(ns: argparse.Namespace) -> tuple[str, str]:
    """(--device with 'auto' resolved, 'fp32'|'fp16'|'bf16'); fp16 on CPU is refused because
    this CPU's half-precision matmuls are unusably slow (0.3 GFLOP/s measured)."""
    device = ns.device
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    dtype = "fp16" if ns.fp16 else "bf16" if ns.bf16 else "fp32"
    if dtype == "fp16" and not device.startswith("cuda"):
        raise ValueError("--fp16 needs a GPU: half-precision matmuls on CPU are unusably slow; use fp32 on CPU")
    return device, dtype


@dataclass(frozen=True)
class ModelSpec:
    """Everything needed to build and load the model, resolved from the flags."""

    config: GLMConfig | OriginalGLMConfig
    checkpoint: Path
    tokenizer_model: Path
    num_image_tokens: int
    dtype: str
    device: str
    model_parallel_size: int
    tokenizer_type: str = "icetk-glm-130b"
    quantization_bit_width: Optional[int] = None
    cpu_linear: str = "torch"  # 'onednn' or 'torch', resolved from --cpu-linear (see cpu_linear.py)

    @classmethod
    def from_namespace(cls, ns: argparse.Namespace) -> "ModelSpec":
        if ns.load is None:
            raise ValueError("no checkpoint given: set --load (normally through MODEL_CONFIG's MODEL_ARGS)")
        checkpoint = Path(ns.load)
        architecture = getattr(ns, "architecture", "glm-130b")
        hub = architecture == "glm" and is_hf_layout(checkpoint)
        try:  # cheap (reads 'latest', lists the folder): a wrong path fails before any data is read
            hub_config = hf_config(checkpoint) if hub else None
            if not hub:
                checkpoint_shards(checkpoint)
        except CheckpointError as exc:
            raise ValueError(f"--load {checkpoint}: {exc} (set CHECKPOINT_PATH in the model config)") from None
        device, dtype = resolve_device_and_dtype(ns)
        if architecture == "glm":
            return cls._original(ns, checkpoint, hub_config, device, dtype)
        config = GLMConfig(
            num_layers=ns.num_layers,
            hidden_size=ns.hidden_size,
            inner_hidden_size=ns.inner_hidden_size,
            num_attention_heads=ns.num_attention_heads,
            vocab_size=ns.vocab_size,
            max_sequence_length=ns.max_sequence_length,
            layernorm_epsilon=ns.layernorm_epsilon,
            position_encoding_2d=ns.position_encoding_2d,
        )
        check_tensor_parallel(config, ns.model_parallel_size)
        tokenizer_type = ns.tokenizer_type
        tokenizer_model = Path(ns.tokenizer_model) if ns.tokenizer_model else default_tokenizer_model(tokenizer_type, checkpoint)
        return cls(config, checkpoint, tokenizer_model, ns.num_image_tokens, dtype, device, ns.model_parallel_size, tokenizer_type,
                   getattr(ns, "quantization_bit_width", None), resolve_cpu_linear(getattr(ns, "cpu_linear", "auto"), device, dtype))

    @classmethod
    def _original(cls, ns: argparse.Namespace, checkpoint: Path, hub_config: Optional[OriginalGLMConfig], device: str,
                  dtype: str) -> "ModelSpec":
        """The original GLM: its shape from the flags, or from a Hub folder's config.json (the
        flags must then agree with it)."""
        config = OriginalGLMConfig(num_layers=ns.num_layers, hidden_size=ns.hidden_size, num_attention_heads=ns.num_attention_heads,
                                   vocab_size=ns.vocab_size, max_sequence_length=ns.max_sequence_length,
                                   block_position_encoding=not ns.no_block_position, layernorm_epsilon=ns.layernorm_epsilon)
        if hub_config is not None and hub_config != config:
            differ = [f"{k}: flags {getattr(config, k)}, config.json {getattr(hub_config, k)}"
                      for k in ("num_layers", "hidden_size", "num_attention_heads", "vocab_size", "max_sequence_length",
                                "block_position_encoding") if getattr(config, k) != getattr(hub_config, k)]
            raise ValueError(f"--load {checkpoint}: the model flags disagree with its config.json ({'; '.join(differ)})")
        check_tensor_parallel(config, ns.model_parallel_size)
        if getattr(ns, "quantization_bit_width", None):
            raise ValueError("--quantization-bit-width applies to GLM-130B's network only")
        tokenizer_model = Path(ns.tokenizer_model) if ns.tokenizer_model else default_tokenizer_model(ns.tokenizer_type, checkpoint)
        return cls(config, checkpoint, tokenizer_model, ns.num_image_tokens, dtype, device, ns.model_parallel_size, ns.tokenizer_type, None,
                   resolve_cpu_linear(getattr(ns, "cpu_linear", "auto"), device, dtype))

    @property
    def original(self) -> bool:
        return isinstance(self.config, OriginalGLMConfig)

    def layout(self) -> str:
        """sat (GLM-130B), thudm (THUDM/GLM's Megatron layout) or hub (config.json + weights)."""
        if not self.original:
            return "sat"
        return "hub" if is_hf_layout(self.checkpoint) else "thudm"

    def checkpoint_files(self) -> list[Path]:
        if self.layout() == "hub":
            return sorted(p for p in self.checkpoint.iterdir() if p.suffix in (".bin", ".safetensors", ".json"))
        return checkpoint_shards(self.checkpoint)

    def iteration(self) -> str:
        for name in ("latest", "latest_checkpointed_iteration.txt"):
            if (self.checkpoint / name).is_file():
                return (self.checkpoint / name).read_text().strip()
        return "hub"

    @property
    def max_sequence_length(self) -> int:
        return self.config.max_sequence_length

    @property
    def source(self) -> str:
        return str(self.checkpoint)

    def load_tokenizer(self) -> GLMTokenizerBase:
        return load_tokenizer(self)

    def load_model(self, context: Any = None) -> Any:
        """The model; this rank's tensor-parallel shard when ``context`` (a
        ``distributed.groups.ParallelContext``) has model_parallel_size > 1."""
        if context is None or context.model_parallel_size == 1:
            return load_model(self)
        from ..distributed.tensor_parallel import TensorParallelGroup

        return load_model(self, TensorParallelGroup(context.model_parallel_rank, context.model_parallel_size, context.model_group))

    def make_scorer(self, model: GLMModel, tokenizer: GLMTokenizerBase) -> Any:
        from ..scoring.glm_scorer import GLMScorer

        return GLMScorer(model, tokenizer, self.device)

    def identity(self, tokenizer: Any = None, tensor_parallel: int = 1) -> dict[str, Any]:
        """What this model's scores are a function of (``persistence/identity.py``): the
        checkpoint's path, iteration and shard files (sizes, mtimes), shape, dtype,
        quantization and tokenizer. Quantizing a float checkpoint on load quantizes each
        tensor-parallel shard on its own, so then the tensor-parallel size counts too;
        otherwise it only changes the last bits and is left out (resume at any world size)."""
        shards = self.checkpoint_files()
        return {
            "backend": "glm",
            "config": self.config.to_dict(),
            "checkpoint": {"path": str(self.checkpoint.resolve()), "iteration": self.iteration(),
                           "shards": [{"file": p.name, "bytes": p.stat().st_size, "mtime_ns": p.stat().st_mtime_ns} for p in shards]},
            "dtype": self.dtype,
            "quantization_bit_width": self.quantization_bit_width,
            "tokenizer": {"type": self.tokenizer_type, "files": path_digest(self.tokenizer_model)},
            "num_image_tokens": self.num_image_tokens if self.tokenizer_type == "icetk-glm-130b" else None,
            **({"quantized_per_tensor_parallel_shard": tensor_parallel}
               if self.quantization_bit_width and tensor_parallel > 1 else {}),
        }

    def describe(self, tokenizer: Optional[GLMTokenizerBase] = None) -> dict[str, Any]:
        """JSON-friendly record for results.json."""
        return {
            "backend": "glm",
            **self.config.to_dict(),
            "load": str(self.checkpoint),
            "checkpoint_layout": self.layout(),
            "checkpoint_shards": 0 if self.layout() == "hub" else len(checkpoint_shards(self.checkpoint)),
            "tokenizer_type": self.tokenizer_type,
            "tokenizer_model": str(self.tokenizer_model),
            "num_image_tokens": self.num_image_tokens if self.tokenizer_type == "icetk-glm-130b" else None,
            "dtype": self.dtype,
            "device": self.device,
            "model_parallel_size": self.model_parallel_size,
            "quantization_bit_width": self.quantization_bit_width,
            "cpu_linear": self.cpu_linear,
        }


def load_tokenizer(spec: ModelSpec) -> GLMTokenizerBase:
    """The tokenizer named by --tokenizer-type, checked against the model's vocabulary."""
    tokenizer = build_tokenizer(spec.tokenizer_type, spec.tokenizer_model, num_image_tokens=spec.num_image_tokens)
    if tokenizer.num_tokens > spec.config.vocab_size:
        raise ValueError(
            f"tokenizer {spec.tokenizer_model} needs {tokenizer.num_tokens} ids but --vocab-size is {spec.config.vocab_size}"
        )
    return tokenizer


def load_model(spec: ModelSpec, tensor_parallel: Optional["TensorParallelGroup"] = None) -> Any:
    """Build the network on the meta device, then load the checkpoint (no random init).

    With ``tensor_parallel`` (rank r of n) the layers are shard-sized and only shard r's
    part of each parameter is read (``checkpoint.CheckpointParts``); the collectives are
    added last (``distributed/tensor_parallel.py``). With --quantization-bit-width, or when
    the checkpoint is pre-quantized, the block linear layers are INT8/INT4 (see
    ``quantization.py``); quantizing happens on CPU, tensor by tensor, before the model
    moves to its device. With ``cpu_linear == 'onednn'`` the float linear layers get
    oneDNN-packed weights (``cpu_linear.py``)."""
    rank, size = (tensor_parallel.rank, tensor_parallel.size) if tensor_parallel is not None else (0, 1)
    if isinstance(spec.config, OriginalGLMConfig):
        model = load_original_glm(spec.config, spec.checkpoint, DTYPES[spec.dtype], "cpu", rank, size)
    else:
        model = load_quantized_model(spec.config, spec.checkpoint, spec.quantization_bit_width, rank, size)
    if model is None:
        with torch.device("meta"):
            model = GLMModel(spec.config)
            shard_sized_model(model, size)
        model = model.to_empty(device="cpu")
        load_checkpoint(model, spec.checkpoint, rank, size)
    model = model.to(device=spec.device, dtype=DTYPES[spec.dtype]).eval()
    if tensor_parallel is not None and size > 1:
        from ..distributed.tensor_parallel import parallelize

        model = parallelize(model, tensor_parallel)
    if spec.cpu_linear == "onednn":
        pack_linear_layers(model)
    return model
