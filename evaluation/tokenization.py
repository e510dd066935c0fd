"""GLM-130B tokenizer, compatible with icetk's text path, without icetk.

icetk (the tokenizer package GLM-130B ships with) imports torchvision for its image
tokenizer, and the only torchvision that resolves next to torch 2.13 on CPU fails to
load; it also downloads ``ice_text.model`` on first use. Its *text* path is tiny:
a SentencePiece model whose ids are shifted past 20000 image tokens. This module
reproduces that path with ``sentencepiece`` directly and adds the special tokens
that SwissArmyTransformer's ``_IceTokenizer`` places after the text vocabulary:
``[MASK] [gMASK] [sMASK] eod sop eop`` (ids 150000..150005 for the real model),
``eos`` = 20002 (the SentencePiece ``</s>``) and ``pad`` = 0.
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import sentencepiece as spm

NUM_IMAGE_TOKENS = 20000
SPECIAL_TOKENS = ("[MASK]", "[gMASK]", "[sMASK]", "eod", "sop", "eop", "ENC", "dBLOCK")


class GLM130BTokenizer:
    """icetk-compatible tokenizer: SentencePiece text ids + an image-token offset.

    Why a class of our own: icetk cannot be imported on CPU-only machines here
    (torchvision) and cannot load its model offline; the ids it produces are fully
    determined by the SentencePiece model, so we produce the same ids without it.
    """

    def __init__(self, model_path: str | Path, num_image_tokens: int = NUM_IMAGE_TOKENS) -> None:
        model_path = Path(model_path)
        if not model_path.is_file():
            raise FileNotFoundError(
                f"tokenizer model not found: {model_path} (pass --tokenizer-model PATH to an "
                "icetk ice_text.model or another SentencePiece model)"
            )
        self.model_path = model_path
        self.sp = spm.SentencePieceProcessor()
        self.sp.Load(str(model_path))
        self.num_image_tokens = num_image_tokens
        self.num_text_tokens = self.sp.GetPieceSize()
        first_special = num_image_tokens + self.num_text_tokens
        self.special_tokens = {name: first_special + i for i, name in enumerate(SPECIAL_TOKENS)}
        self.special_tokens["eos"] = num_image_tokens + self.sp.eos_id()
        self.special_tokens["pad"] = 0
        self._special_ids = {v for k, v in self.special_tokens.items() if k != "pad"}

    # Names used by the scorer; kept as properties so the call sites read naturally.
    @property
    def mask_id(self) -> int:
        return self.special_tokens["[MASK]"]

    @property
    def gmask_id(self) -> int:
        return self.special_tokens["[gMASK]"]

    @property
    def sop_id(self) -> int:
        return self.special_tokens["sop"]

    @property
    def eop_id(self) -> int:
        return self.special_tokens["eop"]

    @property
    def eos_id(self) -> int:
        return self.special_tokens["eos"]

    @property
    def pad_id(self) -> int:
        return self.special_tokens["pad"]

    @property
    def num_tokens(self) -> int:
        """Size of the id space actually used (image + text + specials)."""
        return self.num_image_tokens + self.num_text_tokens + len(SPECIAL_TOKENS)

    def get_command(self, name: str) -> int:
        """Id of a special token by its SAT name (``sop``, ``[gMASK]``, ``eos``...)."""
        try:
            return self.special_tokens[name]
        except KeyError:
            raise KeyError(f"unknown special token {name!r}; known: {sorted(self.special_tokens)}") from None

    def tokenize(self, text: str) -> list[int]:
        """Text -> ids, exactly as ``icetk.encode(text)`` (linebreaks left to SentencePiece)."""
        return [i + self.num_image_tokens for i in self.sp.EncodeAsIds(text)]

    encode = tokenize

    def detokenize(self, ids: Sequence[int]) -> str:
        """Ids -> text. Special and image ids are dropped rather than rendered."""
        text_ids = [
            int(i) - self.num_image_tokens
            for i in ids
            if int(i) not in self._special_ids and self.num_image_tokens <= int(i) < self.num_image_tokens + self.num_text_tokens
        ]
        return self.sp.DecodeIds(text_ids)

    decode = detokenize
