"""GLM-10B tokenizers: SentencePiece (Chinese) and GPT-2 byte-level BPE (English).

Ids follow THUDM/GLM (``data_utils/tokenization.py``, ``ChineseSPTokenizer`` and
``GPT2BPETokenizer`` built with ``add_block_symbols`` and ``add_task_mask``, as its
``config_tasks/model_blocklm_10B*.sh`` do; the decoder-mask token ``[dBLOCK]`` is not
added because evaluation never enables it). Command tokens come after the text
vocabulary:

==========  =====================  ===============  ===============
name        token                  glm-10b-english  glm-10b-chinese
==========  =====================  ===============  ===============
pad, eos    ``<|endoftext|>``      50256            50000
sop         ``<|startofpiece|>``   50257            50006
eop         ``<|endofpiece|>``     50258            50007
ENC         ``[CLS]``              50259            50002
MASK        ``[MASK]``             50260            50003
sep         ``[SEP]``              50261            50001
unk         ``[UNK]``              50262            50004
gMASK       ``[gMASK]``            50263            50007 (!)
sMASK       ``[sMASK]``            50264            50008
==========  =====================  ===============  ===============

(!) GLM-10B-Chinese was trained without the reference's ``fix_command_token``
(``--no-fix-command`` in its config; SwissArmyTransformer applies the same rule for
``glm-10b``), so its ``[gMASK]`` shares id 50007 with ``<|endofpiece|>`` and id 50005
is unused. ``GLM10BChineseTokenizer(fix_command_token=True)`` gives the later layout
(GLM-Large-Chinese: ``[sMASK]`` 50008, ``[gMASK]`` 50009).

Encoding follows the reference ``Tokenizer.EncodeAsIds``: command-token strings
written in the text (``[MASK]``, ``<|endoftext|>``...) become their ids; ``[MASK]``,
``[gMASK]`` and ``[sMASK]`` strip the whitespace just before them; text that is empty
or only whitespace gives no ids; everything else goes to the text tokenizer unchanged.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import sentencepiece as spm

from .tokenization import GLMTokenizerBase


@dataclass(frozen=True)
class CommandToken:
    name: str
    token: str
    id: int
    lstrip: bool = False  # strip whitespace on the left of the token when encoding


class _CommandTokenTokenizer(GLMTokenizerBase):
    """Text tokenizer + GLM command tokens (shared by both GLM-10B tokenizers)."""

    ROLES = {"mask": "MASK", "gmask": "gMASK", "smask": "sMASK", "sop": "sop", "eop": "eop", "eos": "eos", "pad": "pad"}

    def __init__(self, num_text_tokens: int, command_tokens: list[CommandToken]) -> None:
        self.num_text_tokens = num_text_tokens
        self.command_tokens = command_tokens
        self.special_tokens = {c.name: c.id for c in command_tokens}
        # get_command also takes the token strings ("[MASK]", "<|endoftext|>", ...).
        self.special_tokens.update({c.token: c.id for c in command_tokens if c.token not in self.special_tokens})
        self._token_ids = {c.token: c.id for c in command_tokens}
        self._command_ids = {c.id for c in command_tokens}

    @property
    def num_tokens(self) -> int:
        """Text vocabulary + command tokens (the reference's ``num_tokens``, before padding)."""
        return max(self.num_text_tokens, *(c.id + 1 for c in self.command_tokens))

    def _encode_text(self, text: str) -> list[int]:  # pragma: no cover - abstract
        raise NotImplementedError

    def _decode_text(self, ids: list[int]) -> str:  # pragma: no cover - abstract
        raise NotImplementedError

    def tokenize(self, text: str) -> list[int]:
        if not text.strip():
            return []
        pieces = [text]
        for command in self.command_tokens:
            split: list[str] = []
            for piece in pieces:
                if piece in self._token_ids:
                    split.append(piece)
                else:
                    split.extend(_split_on(command, piece))
            pieces = split
        ids: list[int] = []
        for piece in pieces:
            if piece in self._token_ids:
                ids.append(self._token_ids[piece])
            else:
                ids.extend(self._encode_text(piece))
        return ids

    def detokenize(self, ids: Sequence[int]) -> str:
        """Ids -> text; command ids (and ids outside the text vocabulary) are dropped."""
        text_ids = [int(i) for i in ids if int(i) not in self._command_ids and 0 <= int(i) < self.num_text_tokens]
        return self._decode_text(text_ids)


def _split_on(command: CommandToken, text: str) -> list[str]:
    """Split ``text`` around occurrences of one command token, keeping the token."""
    parts = text.split(command.token)
    out: list[str] = []
    last = len(parts) - 1
    for i, part in enumerate(parts):
        if command.lstrip and i < last:
            part = part.rstrip()
        if i < last:
            if part:
                out.append(part)
            out.append(command.token)
        elif part:
            out.append(part)
    return out


class GLM10BChineseTokenizer(_CommandTokenTokenizer):
    """GLM-10B-Chinese: ``cog-pretrain.model`` (SentencePiece, 50000 pieces) as is."""

    type_name = "glm-10b-chinese"

    def __init__(self, model_path: str | Path, fix_command_token: bool = False) -> None:
        model_path = Path(model_path)
        if not model_path.is_file():
            raise FileNotFoundError(
                f"tokenizer model not found: {model_path} (pass --tokenizer-model PATH to GLM's cog-pretrain.model)"
            )
        self.model_path = model_path
        self.sp = spm.SentencePieceProcessor()
        self.sp.Load(str(model_path))
        n = self.sp.GetPieceSize()
        commands = [
            CommandToken("pad", "<|endoftext|>", n),
            CommandToken("eos", "<|endoftext|>", n),
            CommandToken("sep", "[SEP]", n + 1),
            CommandToken("ENC", "[CLS]", n + 2),
            CommandToken("MASK", "[MASK]", n + 3, lstrip=True),
            CommandToken("unk", "[UNK]", n + 4),
            CommandToken("sop", "<|startofpiece|>", n + 6),
            CommandToken("eop", "<|endofpiece|>", n + 7),
        ]
        if fix_command_token:
            commands += [CommandToken("sMASK", "[sMASK]", n + 8, lstrip=True), CommandToken("gMASK", "[gMASK]", n + 9, lstrip=True)]
        else:
            commands += [CommandToken("gMASK", "[gMASK]", n + 7, lstrip=True), CommandToken("sMASK", "[sMASK]", n + 8, lstrip=True)]
        super().__init__(n, commands)

    def _encode_text(self, text: str) -> list[int]:
        return self.sp.EncodeAsIds(text)

    def _decode_text(self, ids: list[int]) -> str:
        return self.sp.DecodeIds(ids)


class GLM10BEnglishTokenizer(_CommandTokenTokenizer):
    """GLM-10B (English): GPT-2's byte-level BPE, run by Hugging Face ``tokenizers``.

    ``tokenizers``' ``BPE`` model with the ``ByteLevel`` pre-tokenizer (GPT-2's split
    regex, no prefix space) and decoder is the standard implementation of GPT-2's
    encoder; decoding replaces invalid UTF-8 like GPT-2's ``errors='replace'``.
    """

    type_name = "glm-10b-english"

    def __init__(self, vocab_path: str | Path, merges_path: str | Path) -> None:
        from tokenizers import Tokenizer, decoders, models, pre_tokenizers

        self.vocab_path, self.merges_path = Path(vocab_path), Path(merges_path)
        for path in (self.vocab_path, self.merges_path):
            if not path.is_file():
                raise FileNotFoundError(f"GPT-2 BPE file not found: {path}")
        bpe = models.BPE.from_file(str(self.vocab_path), str(self.merges_path))
        self.bpe = Tokenizer(bpe)
        self.bpe.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
        self.bpe.decoder = decoders.ByteLevel()
        vocab = json.loads(self.vocab_path.read_text(encoding="utf-8"))
        if "<|endoftext|>" not in vocab:
            raise ValueError(f"{self.vocab_path} has no '<|endoftext|>' entry: not a GPT-2 vocabulary")
        n = len(vocab)
        eot = vocab["<|endoftext|>"]
        commands = [
            CommandToken("pad", "<|endoftext|>", eot),
            CommandToken("eos", "<|endoftext|>", eot),
            CommandToken("sop", "<|startofpiece|>", n),
            CommandToken("eop", "<|endofpiece|>", n + 1),
            CommandToken("ENC", "[CLS]", n + 2),
            CommandToken("MASK", "[MASK]", n + 3, lstrip=True),
            CommandToken("sep", "[SEP]", n + 4),
            CommandToken("unk", "[UNK]", n + 5),
            CommandToken("gMASK", "[gMASK]", n + 6, lstrip=True),
            CommandToken("sMASK", "[sMASK]", n + 7, lstrip=True),
        ]
        super().__init__(n, commands)

    def _encode_text(self, text: str) -> list[int]:
        return self.bpe.encode(text, add_special_tokens=False).ids

    def _decode_text(self, ids: list[int]) -> str:
        return self.bpe.decode(ids, skip_special_tokens=False)


BPE_FILE_PAIRS = (("gpt2-vocab.json", "gpt2-merges.txt"), ("vocab.json", "merges.txt"))


def bpe_files(path: Path) -> tuple[Path, Path]:
    """(vocab.json, merges.txt) from a folder, or from the vocab file (merges next to it)."""
    if path.is_dir():
        for vocab, merges in BPE_FILE_PAIRS:
            if (path / vocab).is_file() and (path / merges).is_file():
                return path / vocab, path / merges
        wanted = " or ".join(f"{v} + {m}" for v, m in BPE_FILE_PAIRS)
        raise FileNotFoundError(f"no GPT-2 BPE files in {path}: expected {wanted}")
    if path.name.endswith("vocab.json"):
        merges = path.with_name(path.name[: -len("vocab.json")] + "merges.txt")
        if not path.is_file():
            raise FileNotFoundError(f"GPT-2 BPE vocabulary not found: {path}")
        if not merges.is_file():
            raise FileNotFoundError(f"GPT-2 BPE merges not found next to {path}: expected {merges}")
        return path, merges
    raise FileNotFoundError(
        f"--tokenizer-model {path} for glm-10b-english must be a folder with gpt2-vocab.json and gpt2-merges.txt, "
        "or the path of a *vocab.json file with its *merges.txt next to it"
    )


class GLMBertTokenizer(_CommandTokenTokenizer):
    """GLM-Base / GLM-Large (English): BERT's uncased WordPiece (``bert-base-uncased-vocab.txt``,
    the same file for bert-large-uncased), run by Hugging Face ``tokenizers``' ``BertWordPiece``
    (lower case, accents stripped, Chinese characters split, as BERT's own tokenizer).

    Command tokens as THUDM/GLM's ``BertWordPieceTokenizer`` with ``add_block_symbols`` and
    ``add_task_mask``: pad = eos = ``[PAD]`` 0, ENC ``[CLS]`` 101, sep ``[SEP]`` 102, MASK
    ``[MASK]`` 103, unk ``[UNK]`` 100, then after the 30522 WordPiece ids sop 30522, eop 30523,
    gMASK 30524, sMASK 30525 (the released checkpoints pad the embedding to 30592 rows).
    THUDM/GLM puts ``[CLS]`` in front of every input of these models; a task that wants it
    writes it in its text (command-token strings in the text become their ids).
    """

    type_name = "glm-bert"

    def __init__(self, vocab_path: str | Path) -> None:
        from tokenizers import BertWordPieceTokenizer

        self.vocab_path = Path(vocab_path)
        if not self.vocab_path.is_file():
            raise FileNotFoundError(f"BERT WordPiece vocabulary not found: {self.vocab_path}")
        self.wordpiece = BertWordPieceTokenizer(str(self.vocab_path), lowercase=True)
        vocab = self.wordpiece.get_vocab()
        wanted = ("[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]")
        if any(token not in vocab for token in wanted):
            raise ValueError(f"{self.vocab_path} lacks BERT's special tokens {wanted}: not a BERT vocabulary")
        n = len(vocab)
        commands = [
            CommandToken("pad", "[PAD]", vocab["[PAD]"]),
            CommandToken("ENC", "[CLS]", vocab["[CLS]"]),
            CommandToken("MASK", "[MASK]", vocab["[MASK]"], lstrip=True),
            CommandToken("unk", "[UNK]", vocab["[UNK]"]),
            CommandToken("sep", "[SEP]", vocab["[SEP]"]),
            CommandToken("eos", "[PAD]", vocab["[PAD]"]),
            CommandToken("sop", "<|startofpiece|>", n),
            CommandToken("eop", "<|endofpiece|>", n + 1),
            CommandToken("gMASK", "[gMASK]", n + 2, lstrip=True),
            CommandToken("sMASK", "[sMASK]", n + 3, lstrip=True),
        ]
        super().__init__(n, commands)

    def _encode_text(self, text: str) -> list[int]:
        return self.wordpiece.encode(text, add_special_tokens=False).ids

    def _decode_text(self, ids: list[int]) -> str:
        return self.wordpiece.decode(ids, skip_special_tokens=False)
