"""Tokenizers of the GLM family behind one interface, and building them by type name.

Types (``--tokenizer-type``):

``icetk-glm-130b``
    GLM-130B. icetk's text path, reproduced without icetk (whose package imports
    torchvision for its image tokenizer and downloads ``ice_text.model`` on first
    use). icetk 0.0.7 (the last release; GitHub master is the same code) does, for
    ``icetk.encode(text)`` with its defaults, exactly ``sp.EncodeAsIds(text)`` shifted
    by 20000 image tokens: no text preprocessing at all (``ignore_linebreak=True`` is
    the default, so newlines are *not* turned into ``<n>``; tabs and runs of spaces
    are left to the SentencePiece model, whose normalizer folds them into single
    spaces). ``icetk.decode(ids)`` is ``sp.DecodeIds(ids - 20000).replace('<n>', '\\n')``.
    SwissArmyTransformer's ``_IceTokenizer`` (what GLM-130B's harness calls) adds the
    special tokens ``[MASK] [gMASK] [sMASK] eod sop eop ENC dBLOCK`` after the text
    vocabulary (150000..150007 for the real model), ``eos`` = 20002 (``</s>``) and
    ``pad`` = 0. The ``<|blank_N|>`` / ``<|tab|>`` whitespace pieces belong to
    ChatGLM-6B's tokenizer, not to icetk or GLM-130B.
``glm-10b-chinese`` / ``glm-10b-english``
    GLM-10B's two tokenizers (SentencePiece ``cog-pretrain.model`` / GPT-2 byte-level
    BPE), with the command tokens of THUDM/GLM: see :mod:`evaluation.tokenization_glm10b`.

Every tokenizer offers ``tokenize``/``encode``, ``detokenize``/``decode`` (special ids
are dropped, not rendered), ``get_command(name)``, ``num_tokens`` and the ids the
scorer needs: ``mask_id gmask_id smask_id sop_id eop_id eos_id pad_id``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable, ClassVar, Optional, Sequence

import sentencepiece as spm

NUM_IMAGE_TOKENS = 20000
SPECIAL_TOKENS = ("[MASK]", "[gMASK]", "[sMASK]", "eod", "sop", "eop", "ENC", "dBLOCK")

TOKENIZER_TYPES = {
    "icetk-glm-130b": "GLM-130B: icetk's ice_text.model (SentencePiece), text ids shifted by 20000 image ids",
    "glm-10b-chinese": "GLM-10B-Chinese: cog-pretrain.model (SentencePiece) + GLM command tokens",
    "glm-10b-english": "GLM-10B (English): GPT-2 byte-level BPE (gpt2-vocab.json + gpt2-merges.txt) + GLM command tokens",
    "glm-bert": "GLM-Base / GLM-Large (English): BERT uncased WordPiece (bert-base-uncased-vocab.txt) + GLM command tokens",
    "glm-large-chinese": "GLM-Large-Chinese: cog-pretrain.model with THUDM/GLM's --fix-command-token ids ([gMASK] 50009)",
}
# What --tokenizer-model defaults to, relative to the checkpoint folder (--load).
DEFAULT_TOKENIZER_MODEL = {
    "icetk-glm-130b": "ice_text.model",
    "glm-10b-chinese": "cog-pretrain.model",
    "glm-10b-english": ".",  # a folder holding gpt2-vocab.json and gpt2-merges.txt
    "glm-bert": "bert-base-uncased-vocab.txt",
    "glm-large-chinese": "cog-pretrain.model",
}


class GLMTokenizerBase:
    """The interface the harness relies on. Subclasses fill ``special_tokens`` (name ->
    id) and map the scorer's roles onto their own names in ``ROLES``."""

    type_name: ClassVar[str] = ""
    ROLES: ClassVar[dict[str, str]] = {}
    special_tokens: dict[str, int]

    def _role(self, role: str) -> int:
        return self.special_tokens[self.ROLES[role]]

    @property
    def mask_id(self) -> int:
        return self._role("mask")

    @property
    def gmask_id(self) -> int:
        return self._role("gmask")

    @property
    def smask_id(self) -> int:
        return self._role("smask")

    @property
    def sop_id(self) -> int:
        return self._role("sop")

    @property
    def eop_id(self) -> int:
        return self._role("eop")

    @property
    def eos_id(self) -> int:
        return self._role("eos")

    @property
    def pad_id(self) -> int:
        return self._role("pad")

    @property
    def num_tokens(self) -> int:  # pragma: no cover - abstract
        raise NotImplementedError

    def get_command(self, name: str) -> int:
        """Id of a special token by the reference implementation's name."""
        try:
            return self.special_tokens[name]
        except KeyError:
            raise KeyError(f"unknown special token {name!r}; known: {sorted(self.special_tokens)}") from None

    def tokenize(self, text: str) -> list[int]:  # pragma: no cover - abstract
        raise NotImplementedError

    def detokenize(self, ids: Sequence[int]) -> str:  # pragma: no cover - abstract
        raise NotImplementedError

    def encode(self, text: str) -> list[int]:
        return self.tokenize(text)

    def encode_continuations(self, context: str, continuations: Sequence[str]) -> tuple[list[int], list[list[int]]]:
        """Ids of a multiple-choice context and of each choice. GLM scores a choice as a
        separate block after [MASK]/[gMASK] (never as a continuation of the context's
        text), so each part is tokenized on its own, as the GLM-130B harness did. The
        Hugging Face tokenizer overrides this with the joint (lm-eval) rule."""
        return self.tokenize(context), [self.tokenize(c) for c in continuations]

    def decode(self, ids: Sequence[int]) -> str:
        return self.detokenize(ids)


class GLM130BTokenizer(GLMTokenizerBase):
    """icetk-compatible tokenizer: SentencePiece text ids + an image-token offset.

    Why a class of our own: icetk cannot be imported on CPU-only machines here
    (torchvision) and cannot load its model offline; the ids it produces are fully
    determined by the SentencePiece model, so we produce the same ids without it
    (``tests/test_icetk_parity.py`` checks this against the icetk package itself).
    """

    type_name = "icetk-glm-130b"
    ROLES = {"mask": "[MASK]", "gmask": "[gMASK]", "smask": "[sMASK]", "sop": "sop", "eop": "eop", "eos": "eos", "pad": "pad"}

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

    @property
    def num_tokens(self) -> int:
        """Size of the id space actually used (image + text + specials)."""
        return self.num_image_tokens + self.num_text_tokens + len(SPECIAL_TOKENS)

    def tokenize(self, text: str) -> list[int]:
        """Text -> ids, exactly as ``icetk.encode(text)`` (no preprocessing: newlines,
        tabs and runs of spaces go to SentencePiece as they are)."""
        return [i + self.num_image_tokens for i in self.sp.EncodeAsIds(text)]

    def detokenize(self, ids: Sequence[int]) -> str:
        """Ids -> text as ``icetk.decode`` (``<n>`` -> newline). Special, image and pad
        ids are dropped rather than rendered."""
        text_ids = [
            int(i) - self.num_image_tokens
            for i in ids
            if int(i) not in self._special_ids and self.num_image_tokens <= int(i) < self.num_image_tokens + self.num_text_tokens
        ]
        return self.sp.DecodeIds(text_ids).replace("<n>", "\n")


def default_tokenizer_model(tokenizer_type: str, checkpoint: Path) -> Path:
    """Where the tokenizer files are when --tokenizer-model is not given."""
    _check_type(tokenizer_type)
    relative = DEFAULT_TOKENIZER_MODEL[tokenizer_type]
    return checkpoint if relative == "." else checkpoint / relative


def build_tokenizer(tokenizer_type: str, model_path: str | Path, *, num_image_tokens: int = NUM_IMAGE_TOKENS) -> GLMTokenizerBase:
    """The tokenizer of ``tokenizer_type`` from its files.

    ``model_path`` is the SentencePiece model for ``icetk-glm-130b`` and
    ``glm-10b-chinese``; for ``glm-10b-english`` it is a folder holding
    ``gpt2-vocab.json`` + ``gpt2-merges.txt`` (or ``vocab.json`` + ``merges.txt``),
    or a ``*vocab.json`` file whose ``*merges.txt`` lies next to it.
    """
    _check_type(tokenizer_type)
    if tokenizer_type == "icetk-glm-130b":
        return GLM130BTokenizer(model_path, num_image_tokens)
    from .tokenization_glm10b import GLM10BChineseTokenizer, GLM10BEnglishTokenizer, GLMBertTokenizer, bpe_files

    if tokenizer_type == "glm-10b-chinese":
        return GLM10BChineseTokenizer(model_path)
    if tokenizer_type == "glm-bert":
        return GLMBertTokenizer(model_path)
    if tokenizer_type == "glm-large-chinese":
        return GLM10BChineseTokenizer(model_path, fix_command_token=True)
    vocab, merges = bpe_files(Path(model_path))
    return GLM10BEnglishTokenizer(vocab, merges)


def _check_type(tokenizer_type: str) -> None:
    if tokenizer_type not in TOKENIZER_TYPES:
        raise ValueError(f"unknown tokenizer type {tokenizer_type!r}; known: {', '.join(TOKENIZER_TYPES)}")


def encode_context_and_target(tokenize: Callable[[str], list[int]], context: str, target: str,
                              context_ids: Optional[list[int]] = None) -> tuple[list[int], list[int]]:
    """Token ids of a context and of its continuation, by lm-evaluation-harness's rule:
    trailing whitespace of the context moves onto the target, then context + target is
    encoded as one text and split after the context's own ids. If that split does not
    fall on a token boundary (a token spans both), each part is encoded on its own.
    ``context_ids`` (the ids of the whitespace-stripped context), when the caller already
    has them, save encoding the context again for every choice of an item."""
    stripped = context.rstrip()
    if len(stripped) < len(context):
        context, target = stripped, context[len(stripped):] + target
    if context_ids is None:
        context_ids = tokenize(context) if context else []
    whole = tokenize(context + target)
    if len(whole) > len(context_ids) and whole[: len(context_ids)] == context_ids:
        return context_ids, whole[len(context_ids):]
    return context_ids, tokenize(target)
