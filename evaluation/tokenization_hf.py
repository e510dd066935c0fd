"""A Hugging Face tokenizer behind the harness's tokenizer interface (``GLMTokenizerBase``).

Why a wrapper: the task classes only speak ``tokenize``/``detokenize``, ``num_tokens``,
``eos_id``/``eop_id`` and ``special_tokens``; a causal LM's tokenizer (a local model
folder, or the tokenizer embedded in a GGUF file) offers the same through other names.

Conventions, chosen to match lm-evaluation-harness's ``hf`` model (v0.4):

* ``tokenize`` never adds special tokens (lm-eval encodes with
  ``add_special_tokens=False`` for causal LMs unless ``add_bos_token`` is set). Whether a
  BOS token is put in front of every context is the scorer's business (``add_bos``), so
  it is one decision recorded once in results.json, not hidden in the tokenizer.
* ``encode_continuations`` applies the peer's rule to multiple choice: each choice is
  encoded together with its context and split at the context's length, trailing
  whitespace of the context moving onto the choice (see ``encode_context_and_target``).
* GLM's mask tokens (``[MASK]``, ``[gMASK]``, ``sop``) do not exist in a causal LM; their
  ids are not offered (asking for them raises ``KeyError`` with the reason). ``eop_id``
  is the model's EOS, so GLM's "end of piece" ends a generation as EOS does.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Optional, Sequence

from .tokenization import GLMTokenizerBase, encode_context_and_target


class HFTokenizer(GLMTokenizerBase):
    """Wraps a ``transformers`` tokenizer (fast or slow) for the task classes and ``HFScorer``."""

    type_name = "hf"
    ROLES = {"eop": "eos", "eos": "eos", "pad": "pad"}

    def __init__(self, tokenizer: Any, name: str = "") -> None:
        self.hf = tokenizer
        self.name = name
        eos = tokenizer.eos_token_id
        if eos is None:
            raise ValueError(f"tokenizer of {name or 'the model'} defines no EOS token: generation could never stop")
        pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else eos
        self.special_tokens: dict[str, int] = {"eos": int(eos), "pad": int(pad)}
        if tokenizer.bos_token_id is not None:
            self.special_tokens["bos"] = int(tokenizer.bos_token_id)
        for token_id in getattr(tokenizer, "all_special_ids", []) or []:
            self.special_tokens.setdefault(str(tokenizer.convert_ids_to_tokens(int(token_id))), int(token_id))
        self._num_tokens = len(tokenizer)

    @classmethod
    def from_pretrained(cls, path: str | Path, gguf_file: Optional[str] = None, without_config: bool = False) -> "HFTokenizer":
        """Load offline from a local model folder (or the GGUF file inside it).

        ``without_config`` (a Llama GGUF file run on the harness's own forward): build the
        tokenizer the way ``AutoTokenizer`` does for it, ``TokenizersBackend`` from the file,
        but without ``AutoTokenizer``'s detour through the model's config class, whose
        imports cost 90 MB (``tests/test_lean_llama.py`` checks both give the same ids). Where
        that equivalence is not certain (a ``tokenizer_config.json`` beside the file naming a
        class, a transformers whose Llama maps to its own tokenizer class) ``AutoTokenizer`` is used."""
        kwargs: dict[str, Any] = {"local_files_only": True}
        if gguf_file:
            kwargs["gguf_file"] = gguf_file
        backend = _llama_gguf_tokenizer_class(Path(path)) if without_config and gguf_file else None
        if backend is not None:
            tokenizer = backend.from_pretrained(str(path), **kwargs)
        else:
            from transformers import AutoTokenizer

            tokenizer = AutoTokenizer.from_pretrained(str(path), **kwargs)
        return cls(tokenizer, str(Path(path) / gguf_file) if gguf_file else str(path))

    def _role(self, role: str) -> int:
        if role not in self.ROLES:
            raise KeyError(f"a Hugging Face causal LM has no GLM {role!r} token (GLM mask tokens do not apply)")
        return self.special_tokens[self.ROLES[role]]

    @property
    def bos_id(self) -> Optional[int]:
        return self.special_tokens.get("bos")

    @property
    def prefix_id(self) -> int:
        """The token an empty context becomes (lm-eval's ``prefix_token_id``): BOS, else EOS."""
        bos = self.bos_id
        return bos if bos is not None else self.eos_id

    @property
    def adds_bos_by_default(self) -> bool:
        """Whether the tokenizer itself would put BOS first when asked for special tokens
        (what lm-eval ≥ 0.4.9 does with ``add_bos_token`` left unset)."""
        bos = self.bos_id
        if bos is None:
            return False
        ids = self.hf("a", add_special_tokens=True)["input_ids"]
        return bool(ids) and ids[0] == bos

    @property
    def num_tokens(self) -> int:
        return self._num_tokens

    def tokenize(self, text: str) -> list[int]:
        """Text -> ids, no special tokens added."""
        return list(self.hf(text, add_special_tokens=False)["input_ids"])

    def detokenize(self, ids: Sequence[int]) -> str:
        """Ids -> text, special tokens dropped (as the GLM tokenizers drop theirs)."""
        return self.hf.decode([int(i) for i in ids], skip_special_tokens=True)

    def encode_continuations(self, context: str, continuations: Sequence[str]) -> tuple[list[int], list[list[int]]]:
        """lm-eval's rules for every choice. Between a context and a choice that touch (no
        whitespace at the end of one or the start of the other) goes lm-eval's default
        target delimiter, one space: our data writes choices as GLM's blank sees them
        (``"make more calls"``), a causal model continues the context with
        ``" make more calls"``, and lm-eval scores exactly that. A choice written with its
        space (MMLU's ``" A"``) is kept; after a context ending in whitespace no space is
        added (lm-eval would score a double space there). Then trailing context whitespace
        moves onto the choice, and context + choice is encoded as one text and split after
        the context's ids."""
        stripped = context.rstrip()
        context_ids: list[int] = self.tokenize(stripped) if stripped else []
        touching = bool(context) and not context[-1].isspace()
        delimited = [" " + c if touching and c and not c[0].isspace() else c for c in continuations]
        choice_ids = [encode_context_and_target(self.tokenize, context, c, context_ids)[1] if c else [] for c in delimited]
        return context_ids, choice_ids


def _llama_gguf_tokenizer_class(folder: Path) -> Any:
    """The class ``AutoTokenizer`` loads a Llama GGUF file's tokenizer with, when that is
    certain without building the config: ``TokenizersBackend`` (transformers 5 maps no
    tokenizer class to 'llama' and the folder has no tokenizer_config.json); else None."""
    if (folder / "tokenizer_config.json").exists():
        return None
    try:
        from transformers.models.auto.tokenization_auto import TOKENIZER_MAPPING_NAMES
        from transformers.tokenization_utils_tokenizers import TokenizersBackend
    except ImportError:
        return None
    return TokenizersBackend if TOKENIZER_MAPPING_NAMES.get("llama") is None else None
