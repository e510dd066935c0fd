"""Hyper-parameters of a GLM-130B-architecture model.

They arrive as command-line flags (the ``MODEL_ARGS`` of a ``configs/*.sh`` file, named
as in the original GLM-130B configs) and are stored next to a tiny checkpoint in
``model_config.json`` so that the test model describes itself.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any


@dataclass(frozen=True)
class GLMConfig:
    """Shape of the network; defaults are GLM-130B's own."""

    num_layers: int = 70
    hidden_size: int = 12288
    inner_hidden_size: int = 32768
    num_attention_heads: int = 96
    vocab_size: int = 150528
    max_sequence_length: int = 2048
    layernorm_epsilon: float = 1e-5
    position_encoding_2d: bool = False
    rotary_base: float = 10000.0

    def __post_init__(self) -> None:
        if self.hidden_size % self.num_attention_heads:
            raise ValueError(
                f"hidden_size {self.hidden_size} is not divisible by num_attention_heads {self.num_attention_heads}"
            )
        head_dim = self.hidden_size // self.num_attention_heads
        if head_dim % (4 if self.position_encoding_2d else 2):
            raise ValueError(f"head dim {head_dim} must be divisible by {4 if self.position_encoding_2d else 2} for rotary")

    @property
    def head_dim(self) -> int:
        return self.hidden_size // self.num_attention_heads

    @property
    def deepnorm_alpha(self) -> float:
        """DeepNorm residual scale of GLM-130B: sqrt(2 * num_layers)."""
        return (2 * self.num_layers) ** 0.5

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> "GLMConfig":
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise ValueError(f"unknown GLM config keys: {unknown}")
        return cls(**values)

    def save(self, path: Path) -> None:
        path.write_text(json.dumps(self.to_dict(), indent=2) + "\n")
