"""Shared fixtures: the project's tiny GLM (real checkpoint layout) built once per session."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from evaluation.model.checkpoint import load_checkpoint
from evaluation.model.config import GLMConfig
from evaluation.model.glm import GLMModel
from evaluation.scoring.glm_scorer import GLMScorer
from evaluation.tokenization import GLM130BTokenizer
from evaluation.tools.make_tiny_glm import TINY_CONFIG, make_tiny_glm

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="session")
def tiny_glm_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny GLM checkpoint folder (latest, 1/mp_rank_00_model_states.pt, ice_text.model)."""
    return make_tiny_glm(tmp_path_factory.mktemp("glm-tiny"))


@pytest.fixture(scope="session")
def tiny_glm_2d_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    config = GLMConfig(**{**TINY_CONFIG.to_dict(), "position_encoding_2d": True})
    return make_tiny_glm(tmp_path_factory.mktemp("glm-tiny-2d"), config=config)


def load_tiny(folder: Path) -> tuple[GLMModel, GLM130BTokenizer]:
    config = GLMConfig.from_dict(json.loads((folder / "model_config.json").read_text()))
    model = GLMModel(config)
    load_checkpoint(model, folder)
    return model.eval(), GLM130BTokenizer(folder / "ice_text.model")


@pytest.fixture(scope="session")
def tiny_model(tiny_glm_dir: Path) -> tuple[GLMModel, GLM130BTokenizer]:
    torch.manual_seed(0)
    return load_tiny(tiny_glm_dir)


@pytest.fixture(scope="session")
def tokenizer(tiny_model) -> GLM130BTokenizer:
    return tiny_model[1]


@pytest.fixture(scope="session")
def scorer(tiny_model) -> GLMScorer:
    model, tok = tiny_model
    return GLMScorer(model, tok)


@pytest.fixture(scope="session")
def scorer_2d(tiny_glm_2d_dir: Path) -> GLMScorer:
    model, tok = load_tiny(tiny_glm_2d_dir)
    return GLMScorer(model, tok)


def tiny_model_args(folder: Path) -> list[str]:
    """evaluate.py flags for the tiny model (what configs/model_glm_tiny.sh passes)."""
    c = TINY_CONFIG
    return [
        "--num-layers", str(c.num_layers), "--hidden-size", str(c.hidden_size),
        "--inner-hidden-size", str(c.inner_hidden_size), "--num-attention-heads", str(c.num_attention_heads),
        "--vocab-size", str(c.vocab_size), "--max-sequence-length", str(c.max_sequence_length),
        "--load", str(folder), "--device", "cpu",
    ]


@pytest.fixture(scope="session")
def sample_data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Every suite prepared from the real raw files in ../shared/data (full counts checked),
    5 items per file; shared by the shipped-task runs of both backends."""
    raw = ROOT.parent / "shared" / "data"
    out = tmp_path_factory.mktemp("data")
    result = subprocess.run([sys.executable, "-m", "evaluation.prepare", "--raw", str(raw), "--out", str(out), "--sample", "5"],
                            capture_output=True, text=True, cwd=ROOT, timeout=900)
    assert result.returncode == 0, result.stderr
    return out


CORPUS = ROOT / "evaluation" / "tools" / "tiny_corpus.txt"


def build_tiny_llama(folder: Path) -> Path:
    """A byte-level BPE tokenizer (any text, Chinese included, encodes) trained on the
    project's tiny corpus, and a 2-layer Llama with random weights (seed 0)."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=400, special_tokens=["<unk>", "<s>", "</s>"],
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
    tok.train([str(CORPUS)], trainer)
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, bos_token="<s>", eos_token="</s>", unk_token="<unk>")
    fast.save_pretrained(folder)
    torch.manual_seed(0)
    config = LlamaConfig(vocab_size=len(fast), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                         num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=2048,
                         bos_token_id=fast.bos_token_id, eos_token_id=fast.eos_token_id, tie_word_embeddings=False)
    model = LlamaForCausalLM(config)
    with torch.no_grad():  # larger weights than the default init, so distributions are far from uniform
        for p in model.parameters():
            if p.ndim == 2:
                p.normal_(0, 0.3)
    model.save_pretrained(folder)
    return folder


def load_llama_rejecting_4d_masks(folder: Path):
    """The tiny Llama of ``folder``, made to raise on a 4D attention mask, as some models do:
    the scorer's start-up probes must find that and fall back."""
    import types

    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(str(folder), local_files_only=True, dtype=torch.float32).eval()
    original = model.model.forward

    def no_4d(self, *args, attention_mask=None, **kwargs):
        if attention_mask is not None and attention_mask.ndim == 4:
            raise ValueError("this model does not accept 4D attention masks")
        return original(*args, attention_mask=attention_mask, **kwargs)

    model.model.forward = types.MethodType(no_4d, model.model)
    return model


@pytest.fixture(scope="session")
def tiny_llama_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny random Llama in the Hugging Face layout (needs the hf extra)."""
    pytest.importorskip("transformers")
    return build_tiny_llama(tmp_path_factory.mktemp("tiny-llama"))


@pytest.fixture(scope="session")
def hf_model(tiny_llama_dir: Path):
    """The tiny Llama loaded in float32, with its tokenizer (the hf extra's backend)."""
    import torch
    from transformers import AutoModelForCausalLM

    from evaluation.tokenization_hf import HFTokenizer

    model = AutoModelForCausalLM.from_pretrained(str(tiny_llama_dir), local_files_only=True, dtype=torch.float32).eval()
    return model, HFTokenizer.from_pretrained(tiny_llama_dir)
