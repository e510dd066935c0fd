"""Every shipped model config (configs/*.sh) sources cleanly and its MODEL_ARGS parse."""

from __future__ import annotations

import shlex
import subprocess
from pathlib import Path

import pytest

from evaluation.cli import build_parser

ROOT = Path(__file__).resolve().parent.parent
CONFIGS = sorted((ROOT / "configs").glob("*.sh"))


def model_args(config: Path) -> list[str]:
    out = subprocess.run(["bash", "-c", f'set -eu; source "{config}"; printf "%s" "$MODEL_ARGS"'],
                         capture_output=True, text=True, check=True, env={"PATH": "/usr/bin:/bin", "HOME": "/nonexistent"})
    return shlex.split(out.stdout)


@pytest.mark.parametrize("config", CONFIGS, ids=[c.name for c in CONFIGS])
def test_model_args_parse(config: Path) -> None:
    args = build_parser().parse_args(["tasks/demo", *model_args(config)])
    if "int8" in config.name:
        assert args.quantization_bit_width == 8
    elif "int4" in config.name:
        assert args.quantization_bit_width == 4


def test_glm_130b_configs_carry_the_real_shapes() -> None:
    for name in ("model_glm_130b.sh", "model_glm_130b_int8.sh", "model_glm_130b_int4.sh"):
        args = build_parser().parse_args(["x", *model_args(ROOT / "configs" / name)])
        assert (args.num_layers, args.hidden_size, args.num_attention_heads, args.inner_hidden_size, args.vocab_size) == \
            (70, 12288, 96, 32768, 150528)


# (config, the paper's parameter count, the tokenizer's id count) of the released original-GLM models
ORIGINAL_GLM = [("model_glm_base.sh", 110e6), ("model_glm_large.sh", 335e6), ("model_glm_large_chinese.sh", 335e6),
                ("model_glm_410m.sh", 410e6), ("model_glm_515m.sh", 515e6), ("model_glm_2b.sh", 2e9),
                ("model_glm_10b.sh", 10e9), ("model_glm_10b_chinese.sh", 10e9)]


@pytest.mark.parametrize("name, parameters", ORIGINAL_GLM, ids=[n for n, _ in ORIGINAL_GLM])
def test_original_glm_configs_have_the_published_size_and_a_tokenizer_that_fits(name: str, parameters: float) -> None:
    """The shapes from THUDM/GLM's config_tasks give the paper's model sizes (within 7 %), and
    each config's tokenizer loads from ../shared/tokenizers/glm and fits its vocabulary."""
    import torch

    from evaluation.model.glm_original import OriginalGLMModel
    from evaluation.tokenization import build_tokenizer

    args = build_parser().parse_args(["x", *model_args(ROOT / "configs" / name)])
    assert args.architecture == "glm"
    from evaluation.model.glm_original import OriginalGLMConfig

    config = OriginalGLMConfig(num_layers=args.num_layers, hidden_size=args.hidden_size, num_attention_heads=args.num_attention_heads,
                               vocab_size=args.vocab_size, max_sequence_length=args.max_sequence_length,
                               block_position_encoding=not args.no_block_position)
    with torch.device("meta"):
        count = sum(p.numel() for p in OriginalGLMModel(config).parameters())
    # THUDM/GLM's README gives GLM-Large-Chinese as 335M like GLM-Large; its 50048-row vocabulary
    # makes it 355.7M, 6.2 % more
    assert abs(count - parameters) / parameters < 0.07, (name, count)
    tokenizer_model = Path(args.tokenizer_model)
    if not tokenizer_model.exists():
        pytest.skip(f"tokenizer files not found: {tokenizer_model}")
    tokenizer = build_tokenizer(args.tokenizer_type, tokenizer_model)
    assert tokenizer.num_tokens <= config.vocab_size < tokenizer.num_tokens + 128
    assert len({tokenizer.mask_id, tokenizer.gmask_id, tokenizer.sop_id}) == 3
    # GLM-10B-Chinese was trained with [gMASK] on <|endofpiece|>'s id (tokenization_glm10b.py)
    assert (tokenizer.gmask_id == tokenizer.eop_id) == (args.tokenizer_type == "glm-10b-chinese")
