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
