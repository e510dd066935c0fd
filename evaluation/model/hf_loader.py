"""Model arguments of the Hugging Face backend (``--backend hf``) and loading, offline.

The model is a local folder in the Hugging Face layout (``config.json``, weights,
tokenizer files) or a GGUF file inside such a folder (``--hf-gguf-file``; transformers
dequantizes it to float on load, which needs the ``gguf`` package). Nothing is ever
downloaded: every ``from_pretrained`` runs with ``local_files_only=True`` and
``HF_HUB_OFFLINE=1`` is set, so a missing file is a clear error rather than a hub request.

Order (as for the GLM backend): flags are checked and the config read (for the model's
positions) first, the tokenizer next (every data file is tokenized and validated with
it), the weights last.

Which forward (``--hf-implementation``): a Llama GGUF file on CPU runs on the harness's own
Llama (``lean_llama.py``: bit-identical scores, 130 MB less resident Python than
transformers' modeling code, whose imports reach torch._dynamo and sympy); every other
model on transformers' class. ``auto`` picks, and results.json records the choice and, when
transformers was used, why the harness's own did not apply.
"""

from __future__ import annotations

import argparse
import os
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional


from ..scoring.hf_scorer import DEFAULT_MAX_DECODE_TOKENS, model_max_length
from ..scoring.prefix_reuse import FORWARD_COST_TOKENS
from ..tokenization_hf import HFTokenizer
from .cpu_linear import pack_all_but_a_tied_head, resolve_cpu_linear
from .file_pages import checkpoint_files, drop_checkpoint_pages, drop_tensor_pages, unmodified_mappings
from .loader import DTYPES, resolve_device_and_dtype

BOS_CHOICES = ("auto", "yes", "no")
IMPLEMENTATION_CHOICES = ("auto", "harness", "transformers")


def add_hf_arguments(parser: argparse.ArgumentParser) -> None:
    """Register the Hugging Face backend's flags (used with ``--backend hf``)."""
    group = parser.add_argument_group("Hugging Face causal LM (--backend hf)")
    group.add_argument("--hf-model", default=None, help="local model folder (HF layout, or the folder holding --hf-gguf-file)")
    group.add_argument("--hf-gguf-file", default=None, help="GGUF file name inside --hf-model (dequantized to float on load)")
    group.add_argument("--hf-add-bos", choices=BOS_CHOICES, default="auto",
                       help="put BOS before every context: 'auto' = what the tokenizer does with special tokens "
                            "(lm-evaluation-harness's default); an empty context is always the BOS (else EOS) token")
    group.add_argument("--hf-implementation", choices=IMPLEMENTATION_CHOICES, default="auto",
                       help="the model's forward: 'harness' = the harness's own Llama (a Llama GGUF file on CPU; bit-identical "
                            "scores, about 130 MB less memory), 'transformers' = transformers' class, 'auto' (default) = "
                            "the harness's own where it applies")
    group.add_argument("--hf-max-length", type=int, default=None,
                       help="positions of the model (default: from its config, as lm-evaluation-harness reads them)")
    group.add_argument("--max-batch-tokens", type=int, default=1024,
                       help="HF backend: requests are sorted by length and batched up to this many padded tokens "
                            "(replaces the tasks' micro-batch-size; 1024 keeps padding low: the benchmark measured MMLU 22 %% faster than at 4096)")
    group.add_argument("--max-decode-tokens", type=int, default=DEFAULT_MAX_DECODE_TOKENS,
                       help="HF backend, greedy generation: consecutive --max-batch-tokens batches are decoded together while "
                            "rows x (longest context + max-gen-length) stays within this many tokens of key/value cache "
                            "(a decoding step costs about the same at 8 rows as at 30 on a CPU; default %(default)s; "
                            "at or below --max-batch-tokens every batch decodes alone)")
    group.add_argument("--no-prefix-reuse", action="store_true",
                       help="HF backend: do not compute a prefix shared by several requests (few-shot examples) once and reuse its "
                            "key/value cache (on by default; exact up to float summation order)")
    group.add_argument("--prefix-cache-mb", type=int, default=256,
                       help="HF backend: the most key/value cache one batch on a shared prefix may need at once: the prefix, "
                            "plus one layer's keys and values of its rows (rows are split to fit)")
    group.add_argument("--prefix-forward-cost", type=int, default=FORWARD_COST_TOKENS, metavar="TOKENS",
                       help="HF backend: what one extra forward call costs, in tokens of work; a shared prefix is reused only "
                            "where that saves more than two such calls (default %(default)s, measured on a 2-core CPU; "
                            "a GPU, where a call's fixed cost is many more tokens, wants a larger value)")
    group.add_argument("--no-beam-tree", action="store_true",
                       help="HF backend: beam search with one cache row per beam (the layout before the beam tree; "
                            "slower, same outputs) instead of one row per item holding all its beams")
    group.add_argument("--hf-no-packing", action="store_true",
                       help="score multiple choice with one sequence per choice instead of packing the choices after one context")


@dataclass(frozen=True)
class HFModelSpec:
    """A causal LM to load with transformers, resolved from the flags."""

    model_path: Path
    gguf_file: Optional[str]
    dtype: str
    device: str
    add_bos: str
    max_sequence_length: int
    max_batch_tokens: int
    packing: bool = True
    cpu_linear: str = "torch"  # 'onednn' or 'torch', resolved from --cpu-linear (see cpu_linear.py)
    model_parallel_size: int = 1  # tensor-parallel processes per replica (transformers' own tp_plan)
    prefix_reuse: bool = True  # shared-prefix key/value reuse (scoring/prefix_reuse.py)
    prefix_cache_mb: int = 256
    prefix_forward_cost: int = FORWARD_COST_TOKENS  # tokens of work one extra forward call costs (prefix_reuse.py)
    beam_tree: bool = True  # beams of an item share one cache row (hf_scorer._HFBeamTreeDecoder)
    max_decode_tokens: int = DEFAULT_MAX_DECODE_TOKENS  # greedy generation: batches decoded together (hf_scorer.plan_decode_groups)
    implementation: str = "transformers"  # or 'harness': lean_llama.LeanLlamaForCausalLM (resolved from --hf-implementation)
    implementation_note: str = ""  # why the harness's own forward does not apply (when transformers is used)
    config: Any = field(default=None, compare=False, repr=False)  # the transformers (or lean_llama) config read by from_namespace

    @property
    def source(self) -> str:
        return str(self.model_path / self.gguf_file) if self.gguf_file else str(self.model_path)

    @classmethod
    def from_namespace(cls, ns: argparse.Namespace) -> "HFModelSpec":
        """Check the flags and read the model's config (not its weights)."""
        if not ns.hf_model:
            raise ValueError("--backend hf needs --hf-model DIR (a local model folder; see configs/model_hf_local.sh)")
        path = Path(ns.hf_model)
        if not path.is_dir():
            raise ValueError(f"--hf-model {path}: no such folder")
        if ns.hf_gguf_file:
            if not (path / ns.hf_gguf_file).is_file():
                raise ValueError(f"--hf-gguf-file {ns.hf_gguf_file}: not found in {path}")
        elif not (path / "config.json").is_file():
            raise ValueError(f"--hf-model {path}: no config.json (not a Hugging Face model folder; for a GGUF file pass --hf-gguf-file)")
        device, dtype = resolve_device_and_dtype(ns)
        if ns.max_batch_tokens < 1:
            raise ValueError(f"--max-batch-tokens must be >= 1, got {ns.max_batch_tokens}")
        if getattr(ns, "max_decode_tokens", DEFAULT_MAX_DECODE_TOKENS) < 1:
            raise ValueError(f"--max-decode-tokens must be >= 1, got {ns.max_decode_tokens}")
        if getattr(ns, "prefix_cache_mb", 256) < 1:
            raise ValueError(f"--prefix-cache-mb must be >= 1, got {ns.prefix_cache_mb}")
        if getattr(ns, "prefix_forward_cost", FORWARD_COST_TOKENS) < 0:
            raise ValueError(f"--prefix-forward-cost must be >= 0, got {ns.prefix_forward_cost}")
        require_transformers(ns.hf_gguf_file)
        model_parallel = getattr(ns, "model_parallel_size", 1)
        choice = getattr(ns, "hf_implementation", "auto")
        if choice == "transformers":
            lean_config, note = None, "--hf-implementation transformers"
        else:
            lean_config, note = lean_config_for(path, ns.hf_gguf_file, device, model_parallel)
        if choice == "harness" and lean_config is None:
            raise ValueError(f"--hf-implementation harness does not apply to {path / ns.hf_gguf_file if ns.hf_gguf_file else path}: "
                             f"{note}; use --hf-implementation transformers (or auto)")
        implementation = "transformers" if lean_config is None else "harness"
        config = read_config(path, ns.hf_gguf_file) if lean_config is None else lean_config
        max_length = ns.hf_max_length or model_max_length(config)
        cpu_linear_choice = getattr(ns, "cpu_linear", "auto")
        if model_parallel > 1:
            check_tensor_parallel_plan(config, model_parallel, path)
            if cpu_linear_choice == "onednn":
                raise ValueError("--cpu-linear onednn does not apply under tensor parallelism of a Hugging Face model "
                                 "(its weights are DTensors); use --cpu-linear auto or torch")
            cpu_linear_choice = "torch"
        cpu_linear = resolve_cpu_linear(cpu_linear_choice, device, dtype)
        return cls(path, ns.hf_gguf_file, dtype, device, ns.hf_add_bos, max_length, ns.max_batch_tokens, not ns.hf_no_packing,
                   cpu_linear, model_parallel, not getattr(ns, "no_prefix_reuse", False), getattr(ns, "prefix_cache_mb", 256),
                   getattr(ns, "prefix_forward_cost", FORWARD_COST_TOKENS), not getattr(ns, "no_beam_tree", False),
                   getattr(ns, "max_decode_tokens", DEFAULT_MAX_DECODE_TOKENS), implementation, note, config)

    def load_tokenizer(self) -> HFTokenizer:
        offline()
        # The harness's own forward has no transformers config class: the tokenizer is built the
        # way AutoTokenizer builds it for a Llama GGUF file, without importing that class (sympy).
        return HFTokenizer.from_pretrained(self.model_path, self.gguf_file, without_config=self.implementation == "harness")

    def resolve_add_bos(self, tokenizer: HFTokenizer) -> bool:
        if self.add_bos == "auto":
            return tokenizer.adds_bos_by_default
        return self.add_bos == "yes"

    def load_model(self, context: Any = None) -> Any:
        """The model, on this rank's device. Under tensor parallelism (``context`` a
        ``distributed.groups.ParallelContext`` with model_parallel_size > 1) transformers
        shards it with the model's own ``base_model_tp_plan`` (DTensors): ``tp_size`` consecutive
        ranks per replica, and ``dp_replicate_size`` replicas (transformers then wraps the
        layers for FSDP2 replication; with one FSDP shard per replica no parameter is split
        across replicas)."""
        offline()
        from transformers import AutoModelForCausalLM

        kwargs: dict[str, Any] = {"local_files_only": True, "dtype": DTYPES[self.dtype]}
        if self.gguf_file:
            kwargs["gguf_file"] = self.gguf_file
        tensor_parallel = context is not None and context.model_parallel_size > 1
        if context is not None and not context.is_main:
            from transformers.utils import logging as hf_logging

            hf_logging.disable_progress_bar()  # one "Loading weights" bar per run, not per rank
        if tensor_parallel:
            from transformers.distributed import DistributedConfig

            kwargs["distributed_config"] = DistributedConfig(tp_plan="auto", tp_size=context.model_parallel_size,
                                                             dp_replicate_size=context.data_parallel_size)
        if self.gguf_file and not tensor_parallel and self.device == "cpu":
            model = self._load_gguf_streaming()
            if model is not None:
                return model
        with warnings.catch_warnings():
            # FSDP2's replication wrappers warn about autograd hooks; this is inference under no_grad.
            warnings.filterwarnings("ignore", message=".*pre-backward hook.*")
            warnings.filterwarnings("ignore", message=".*returned a view tensor.*")
            model = AutoModelForCausalLM.from_pretrained(str(self.model_path), **kwargs)
        if not tensor_parallel:
            model = model.to(self.device)
        model = model.eval()
        if self.cpu_linear == "onednn":  # CPU only, never under tensor parallelism (from_namespace)
            # The dense weights view the mapped checkpoint; once packed, their pages need not stay resident.
            mapped = unmodified_mappings(checkpoint_files(self.model_path))
            pack_all_but_a_tied_head(model, after_each=lambda weight: drop_tensor_pages(weight, mapped))
            drop_checkpoint_pages(self.model_path)
        return model

    def _load_gguf_streaming(self) -> Any:
        """A GGUF model on CPU, one tensor at a time (``gguf_streaming.py``: the same weights as
        transformers' loader at a third of its peak memory), or None when this architecture's
        tensors do not map one to one (transformers' loader is used then)."""
        from .gguf_streaming import load_gguf_streaming

        from .gguf_streaming import transformers_model
        from .lean_llama import LeanLlamaForCausalLM

        config = self.config if self.config is not None else read_config(self.model_path, self.gguf_file)
        build_model = LeanLlamaForCausalLM.empty if self.implementation == "harness" else transformers_model
        return load_gguf_streaming(self.model_path / self.gguf_file, config, DTYPES[self.dtype],
                                   pack_linears=self.cpu_linear == "onednn", build_model=build_model)

    def make_scorer(self, model: Any, tokenizer: HFTokenizer) -> Any:
        from ..scoring.hf_scorer import HFScorer

        return HFScorer(model, tokenizer, self.device, add_bos=self.resolve_add_bos(tokenizer),
                        max_batch_tokens=self.max_batch_tokens, max_length=self.max_sequence_length, allow_packing=self.packing,
                        prefix_reuse=self.prefix_reuse, prefix_cache_mb=self.prefix_cache_mb, prefix_forward_cost=self.prefix_forward_cost,
                        beam_tree=self.beam_tree, pack_head_for_generation=self.cpu_linear == "onednn",
                        max_decode_tokens=self.max_decode_tokens)

    def identity(self, tokenizer: HFTokenizer, tensor_parallel: int = 1) -> dict[str, Any]:
        """What this model's scores are a function of (``persistence/identity.py``): the
        folder's files (names, sizes, mtimes; the GGUF file alone when one is named), dtype,
        positions and the BOS rule. Batching, packing, the matmul library and tensor
        parallelism change only the last bits and are left out (resume at any layout)."""
        files = [self.model_path / self.gguf_file] if self.gguf_file else sorted(
            p for p in self.model_path.iterdir() if p.is_file() and not p.name.startswith("."))
        return {
            "backend": "hf",
            "model_path": str(self.model_path.resolve()),
            "files": [{"file": p.name, "bytes": p.stat().st_size, "mtime_ns": p.stat().st_mtime_ns} for p in files],
            "dtype": self.dtype,
            "max_sequence_length": self.max_sequence_length,
            "add_bos": self.resolve_add_bos(tokenizer),
        }

    def describe(self, tokenizer: Optional[HFTokenizer] = None) -> dict[str, Any]:
        """JSON-friendly record for results.json: backend, model, dtype and BOS handling."""
        record: dict[str, Any] = {
            "backend": "hf",
            "model_path": str(self.model_path),
            "gguf_file": self.gguf_file,
            "dtype": self.dtype,
            "device": self.device,
            "max_sequence_length": self.max_sequence_length,
            "max_batch_tokens": self.max_batch_tokens,
            "add_bos": self.add_bos,
            "cpu_linear": self.cpu_linear,
            "model_parallel_size": self.model_parallel_size,
            "implementation": self.implementation,
            **({"implementation_note": self.implementation_note} if self.implementation_note else {}),
        }
        if tokenizer is not None:
            record["bos"] = {
                "add_bos_resolved": self.resolve_add_bos(tokenizer),
                "tokenizer_adds_bos_by_default": tokenizer.adds_bos_by_default,
                "bos_token_id": tokenizer.bos_id,
                "empty_context_token_id": tokenizer.prefix_id,
                "rule": "contexts are encoded without special tokens unless add_bos; an empty context "
                        "(and the first language-modelling window) starts from the BOS token, else EOS",
            }
        return record


def require_transformers(gguf_file: Optional[str]) -> None:
    """A clear error when the HF extra is not installed (it is optional for GLM runs)."""
    import importlib.util

    missing = [name for name in ("transformers", "accelerate", *(("gguf",) if gguf_file else ()))
               if importlib.util.find_spec(name) is None]
    if missing:
        raise ValueError(f"--backend hf needs the Python package(s) {', '.join(missing)}: "
                         "install them with `bash scripts/setup_venv.sh hf`")


def offline() -> None:
    """Never let transformers reach for the hub (the machines here have no internet)."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")


def read_config(path: Path, gguf_file: Optional[str]) -> Any:
    """The model's transformers config (or GGUF metadata), before any weight is read."""
    offline()
    from transformers import AutoConfig

    kwargs: dict[str, Any] = {"local_files_only": True}
    if gguf_file:
        kwargs["gguf_file"] = gguf_file
    try:
        return AutoConfig.from_pretrained(str(path), **kwargs)
    except (OSError, ValueError) as exc:
        raise ValueError(f"cannot read the model config of {path / gguf_file if gguf_file else path}: {exc}") from None


def lean_config_for(path: Path, gguf_file: Optional[str], device: str, model_parallel: int) -> tuple[Any, str]:
    """(the harness's own Llama config, "") when ``lean_llama.py`` applies to this model on this
    device, else (None, why not)."""
    if not gguf_file:
        return None, "it runs Llama GGUF files only (--hf-gguf-file); a model folder loads with transformers"
    if device != "cpu":
        return None, "it runs on CPU only (the GGUF file is streamed into CPU memory)"
    if model_parallel > 1:
        return None, "tensor parallelism uses transformers' plan"
    from .lean_llama import lean_config_from_gguf

    try:
        return lean_config_from_gguf(path / gguf_file)
    except (OSError, ValueError, KeyError) as exc:
        raise ValueError(f"cannot read the model config of {path / gguf_file}: {exc}") from None


def read_max_length(path: Path, gguf_file: Optional[str]) -> int:
    """The model's positions from its config (or GGUF metadata), before any weight is read."""
    return model_max_length(read_config(path, gguf_file))


def check_tensor_parallel_plan(config: Any, size: int, path: Path) -> None:
    """A clear error, before anything is loaded, when transformers cannot split this model ``size`` ways."""
    plan = getattr(config, "base_model_tp_plan", None)
    if not plan:
        raise ValueError(f"--model-parallel-size {size}: {path} ({type(config).__name__}) has no tensor-parallel plan in "
                         "transformers (config.base_model_tp_plan); run it with MP_SIZE=1 (data parallel only)")
    for name in ("num_attention_heads", "num_key_value_heads"):  # each shard needs whole (key/value) heads
        value = getattr(config, name, None)
        if isinstance(value, int) and value % size:
            raise ValueError(f"--model-parallel-size {size} does not divide {name} = {value} of {path}")
