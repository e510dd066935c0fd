"""GLM-10B tokenizers on the real files of THUDM/GLM (../shared/tokenizers/glm), and
choosing a tokenizer by type through the model flags.

Expected ids come from the reference implementation's rules (THUDM/GLM
``data_utils/tokenization.py``): command tokens after the text vocabulary in the
reference's order, command strings in the text become their ids, ``[MASK]``-type tokens
eat the whitespace before them, every text chunk goes to the text tokenizer unchanged.
GPT-2 ids are checked against well-known ids and against an independent
implementation of GPT-2's BPE algorithm (ASCII texts, where GPT-2's ``\\p{L}``/``\\p{N}``
classes reduce to ``[A-Za-z]``/``[0-9]``).
"""

from __future__ import annotations

import argparse
import json
import re
from pathlib import Path

import pytest
import sentencepiece as spm

from evaluation.model.loader import ModelSpec, add_model_arguments, load_tokenizer
from evaluation.tokenization import GLM130BTokenizer, build_tokenizer
from evaluation.tokenization_glm10b import GLM10BChineseTokenizer, GLM10BEnglishTokenizer, bpe_files
from evaluation.tools.make_tiny_glm import CORPUS

SHARED = Path(__file__).resolve().parents[2] / "shared"
GLM_FILES = SHARED / "tokenizers" / "glm"
COG_MODEL = GLM_FILES / "cog-pretrain.model"
GPT2_VOCAB, GPT2_MERGES = GLM_FILES / "gpt2-vocab.json", GLM_FILES / "gpt2-merges.txt"
WIKITEXT = SHARED / "data" / "wikitext" / "wiki.test.raw"


def need(*paths: Path) -> None:
    missing = [str(p) for p in paths if not p.is_file()]
    if missing:
        reason = f"real GLM tokenizer files not found: {', '.join(missing)} (expected ../shared/tokenizers/glm beside the repo)"
        print(f"\nSKIP: {reason}")
        pytest.skip(reason)


@pytest.fixture(scope="module")
def chinese() -> GLM10BChineseTokenizer:
    need(COG_MODEL)
    return GLM10BChineseTokenizer(COG_MODEL)


@pytest.fixture(scope="module")
def english() -> GLM10BEnglishTokenizer:
    need(GPT2_VOCAB, GPT2_MERGES)
    tok = build_tokenizer("glm-10b-english", GLM_FILES)
    assert isinstance(tok, GLM10BEnglishTokenizer)
    return tok


@pytest.fixture(scope="module")
def sp() -> spm.SentencePieceProcessor:
    need(COG_MODEL)
    return spm.SentencePieceProcessor(model_file=str(COG_MODEL))


def padded(n: int, multiple: int = 128) -> int:
    return -(-n // multiple) * multiple


# ---- special-token tables -------------------------------------------------------

ENGLISH_COMMANDS = {"pad": 50256, "eos": 50256, "sop": 50257, "eop": 50258, "ENC": 50259, "MASK": 50260,
                    "sep": 50261, "unk": 50262, "gMASK": 50263, "sMASK": 50264}
# GLM-10B-Chinese: --no-fix-command, so [gMASK] shares 50007 with <|endofpiece|> and 50005 is unused.
CHINESE_COMMANDS = {"pad": 50000, "eos": 50000, "sep": 50001, "ENC": 50002, "MASK": 50003, "unk": 50004,
                    "sop": 50006, "eop": 50007, "gMASK": 50007, "sMASK": 50008}


def test_english_command_ids(english: GLM10BEnglishTokenizer) -> None:
    assert {name: english.get_command(name) for name in ENGLISH_COMMANDS} == ENGLISH_COMMANDS
    assert (english.mask_id, english.gmask_id, english.smask_id) == (50260, 50263, 50264)
    assert (english.sop_id, english.eop_id, english.eos_id, english.pad_id) == (50257, 50258, 50256, 50256)
    assert english.get_command("[gMASK]") == 50263 and english.get_command("<|endoftext|>") == 50256
    assert english.num_text_tokens == 50257 and english.num_tokens == 50265
    assert padded(english.num_tokens) == 50304  # GLM-10B's embedding rows
    with pytest.raises(KeyError, match="unknown special token"):
        english.get_command("dBLOCK")


def test_chinese_command_ids(chinese: GLM10BChineseTokenizer) -> None:
    assert {name: chinese.get_command(name) for name in CHINESE_COMMANDS} == CHINESE_COMMANDS
    assert (chinese.mask_id, chinese.gmask_id, chinese.smask_id) == (50003, 50007, 50008)
    assert (chinese.sop_id, chinese.eop_id, chinese.eos_id, chinese.pad_id) == (50006, 50007, 50000, 50000)
    assert chinese.get_command("[CLS]") == 50002 and chinese.get_command("<|startofpiece|>") == 50006
    assert chinese.num_text_tokens == 50000 and chinese.num_tokens == 50009
    assert padded(chinese.num_tokens) == 50048  # GLM-10B-Chinese's embedding rows


def test_chinese_fixed_command_layout() -> None:
    need(COG_MODEL)
    fixed = GLM10BChineseTokenizer(COG_MODEL, fix_command_token=True)
    assert (fixed.get_command("sMASK"), fixed.get_command("gMASK"), fixed.eop_id) == (50008, 50009, 50007)
    assert fixed.num_tokens == 50010


# ---- English (GPT-2 BPE) ----------------------------------------------------------

KNOWN_GPT2 = [
    ("Hello, world!", [15496, 11, 995, 0]),
    (" Hello world", [18435, 995]),
    ("hello", [31373]),
    ("The", [464]),
    (" the.", [262, 13]),
    ("a\n", [64, 198]),
    ("Hello\n\nthe", [15496, 198, 198, 1169]),
]


@pytest.mark.parametrize("text,ids", KNOWN_GPT2)
def test_english_known_ids(english: GLM10BEnglishTokenizer, text: str, ids: list[int]) -> None:
    assert english.tokenize(text) == ids


def bytes_to_unicode() -> dict[int, str]:
    """GPT-2's reversible byte -> printable character map."""
    keep = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1), *range(ord("®"), ord("ÿ") + 1)]
    mapping, extra = {}, 0
    for b in range(256):
        if b in keep:
            mapping[b] = chr(b)
        else:
            mapping[b] = chr(256 + extra)
            extra += 1
    return mapping


class ReferenceGPT2:
    """GPT-2's BPE algorithm written out plainly, for ASCII text only."""

    SPLIT = re.compile(r"""'s|'t|'re|'ve|'m|'ll|'d| ?[A-Za-z]+| ?[0-9]+| ?[^\sA-Za-z0-9]+|\s+(?!\S)|\s+""")

    def __init__(self, vocab_file: Path, merges_file: Path) -> None:
        self.vocab = json.loads(vocab_file.read_text(encoding="utf-8"))
        lines = merges_file.read_text(encoding="utf-8").split("\n")[1:]
        self.ranks = {tuple(line.split()): i for i, line in enumerate(line for line in lines if line)}
        self.byte_map = bytes_to_unicode()

    def bpe(self, word: list[str]) -> list[str]:
        while len(word) > 1:
            pairs = {(a, b) for a, b in zip(word, word[1:])}
            best = min(pairs, key=lambda p: self.ranks.get(p, float("inf")))
            if best not in self.ranks:
                break
            merged, i = [], 0
            while i < len(word):
                if i < len(word) - 1 and (word[i], word[i + 1]) == best:
                    merged.append(word[i] + word[i + 1])
                    i += 2
                else:
                    merged.append(word[i])
                    i += 1
            word = merged
        return word

    def encode(self, text: str) -> list[int]:
        assert text.isascii()
        ids = []
        for chunk in self.SPLIT.findall(text):
            ids += [self.vocab[t] for t in self.bpe([self.byte_map[b] for b in chunk.encode("utf-8")])]
        return ids


def ascii_texts() -> list[str]:
    texts = [line for line in CORPUS.read_text(encoding="utf-8").splitlines() if line.isascii()]
    texts += [
        "  two leading spaces", "trailing spaces   ", "tabs\tand\t\ttabs", "new\nlines\n\n\nmany\n",
        "x  y   z    w", "don't can't I'll we've they're she'd I'm", "CAPS'LL", "3.14159 + 2,718 = 5.85",
        "e-mail: someone@example.com; url: https://example.com/a?b=c&d=e", "#hashtag @mention $dollar %percent",
        "mixedCASE camelCase snake_case kebab-case", "(((nested))) [[brackets]] {{braces}}", "end. \n ",
    ]
    if WIKITEXT.is_file():  # real English prose, with GPT-2's own tokenization quirks (" @-@ ")
        lines = WIKITEXT.read_text(encoding="utf-8").splitlines()[:600]
        texts += [line for line in lines if line.strip() and line.isascii()]
    return texts


def test_english_bpe_matches_reference_algorithm(english: GLM10BEnglishTokenizer) -> None:
    reference = ReferenceGPT2(GPT2_VOCAB, GPT2_MERGES)
    texts = ascii_texts()
    assert len(texts) > 40
    mismatches = [t for t in texts if english.tokenize(t) != reference.encode(t)]
    assert not mismatches, f"{len(mismatches)} of {len(texts)} texts differ, first: {mismatches[0]!r}"


ROUND_TRIP = [
    "Hello, world!", "  leading and trailing  ", "tabs\tand\nnewlines\r\n\n", "x" + " " * 50 + "y",
    "中文和 English 混合 123。", "你好，世界！", "😀 emoji, café, naïve, Ωmega, ＡＢＣ", "a\u3000b", "don't",
]


@pytest.mark.parametrize("text", ROUND_TRIP)
def test_english_round_trip(english: GLM10BEnglishTokenizer, text: str) -> None:
    ids = english.tokenize(text)
    assert all(0 <= i < 50257 for i in ids)
    assert english.detokenize(ids) == text


# ---- Chinese (SentencePiece) ------------------------------------------------------

CHINESE_ROUND_TRIP = [
    "今天天气很好,我们一起去公园散步吧。",
    "机器学习是一门研究计算机如何从数据中学习的学科。",
    "北京是中国的首都,上海是中国最大的城市之一。",
    "GLM-10B 是一个 通用语言模型",
    "中文 English 混合 123",
    "The quick brown fox jumps over the lazy dog.",
]


@pytest.mark.parametrize("text", CHINESE_ROUND_TRIP)
def test_chinese_round_trip(chinese: GLM10BChineseTokenizer, sp: spm.SentencePieceProcessor, text: str) -> None:
    ids = chinese.tokenize(text)
    assert ids == sp.EncodeAsIds(text)  # no command token in it: exactly the SentencePiece ids
    assert ids and sp.unk_id() not in ids and all(0 <= i < 50000 for i in ids)
    assert chinese.detokenize(ids) == text


def test_chinese_normalization_is_the_models(chinese: GLM10BChineseTokenizer) -> None:
    """cog-pretrain.model normalizes (NFKC, whitespace folded); nothing else is done to the text."""
    assert chinese.detokenize(chinese.tokenize("你好，世界！\n第二行\t  第三行  ")) == "你好,世界! 第二行 第三行"
    assert chinese.tokenize("a\nb") == chinese.tokenize("a b")
    assert chinese.tokenize("a<n>b") == [778, 3, 43658]  # "<n>" is a user-defined piece of the model


# ---- command tokens written in the text --------------------------------------------


def test_english_command_tokens_in_text(english: GLM10BEnglishTokenizer) -> None:
    bpe = english._encode_text
    assert english.tokenize("Hello [MASK] world") == [15496, 50260, 995]
    assert english.tokenize("Hello \t [MASK]") == [15496, 50260]  # [MASK] strips whitespace before it
    assert english.tokenize("Hello [SEP] world") == [15496, 220, 50261, 995]  # [SEP] does not
    assert english.tokenize("[gMASK]") == [50263]
    assert english.tokenize("Question: why? Answer: [sMASK]") == bpe("Question: why? Answer:") + [50264]
    assert english.tokenize("a<|endoftext|>b") == [64, 50256, 65]
    assert english.tokenize("[CLS] x<|startofpiece|> y<|endofpiece|>") == [50259, *bpe(" x"), 50257, *bpe(" y"), 50258]
    assert english.tokenize("[MASK][MASK] [UNK]") == [50260, 50260, *bpe(" "), 50262]
    assert english.tokenize("[mask] is not a command") == bpe("[mask] is not a command")
    for blank in ("", " ", "\n\t  "):
        assert english.tokenize(blank) == []
    assert english.detokenize([15496, 50260, 995, 50258, 50256]) == "Hello world"


def test_chinese_command_tokens_in_text(chinese: GLM10BChineseTokenizer, sp: spm.SentencePieceProcessor) -> None:
    enc = sp.EncodeAsIds
    assert chinese.tokenize("你好 [gMASK]") == enc("你好") + [50007]
    assert chinese.tokenize("[CLS]你好[SEP]") == [50002] + enc("你好") + [50001]
    assert chinese.tokenize("问题是[MASK]，答案") == enc("问题是") + [50003] + enc("，答案")
    assert chinese.tokenize("<|endoftext|>") == [50000]
    assert chinese.tokenize("前<|startofpiece|>后<|endofpiece|>") == enc("前") + [50006] + enc("后") + [50007]
    assert chinese.tokenize(" \n ") == []
    assert chinese.detokenize(chinese.tokenize("[CLS]你好[SEP][sMASK]")) == "你好"


# ---- a model config names its tokenizer --------------------------------------------


def model_spec(*flags: str) -> ModelSpec:
    parser = argparse.ArgumentParser()
    add_model_arguments(parser)
    return ModelSpec.from_namespace(parser.parse_args(["--device", "cpu", *flags]))


def fake_checkpoint_layout(folder: Path) -> Path:
    """A folder that passes the loader's layout check ('latest' + one shard file); these
    tests exercise tokenizer selection only, so the shard is never read."""
    (folder / "1").mkdir(parents=True, exist_ok=True)
    (folder / "latest").write_text("1\n")
    (folder / "1" / "mp_rank_00_model_states.pt").touch()
    return folder


def test_loader_builds_the_named_tokenizer(tmp_path: Path) -> None:
    need(COG_MODEL, GPT2_VOCAB, GPT2_MERGES)
    checkpoint = fake_checkpoint_layout(tmp_path / "ckpt")
    for f in (COG_MODEL, GPT2_VOCAB, GPT2_MERGES):
        (checkpoint / f.name).symlink_to(f)

    english = model_spec("--load", str(checkpoint), "--tokenizer-type", "glm-10b-english", "--vocab-size", "50304")
    assert english.tokenizer_model == checkpoint
    assert isinstance(load_tokenizer(english), GLM10BEnglishTokenizer)
    described = english.describe()
    assert described["tokenizer_type"] == "glm-10b-english" and described["tokenizer_model"] == str(checkpoint)
    assert described["num_image_tokens"] is None

    by_file = model_spec("--load", str(checkpoint), "--tokenizer-type", "glm-10b-english", "--vocab-size", "50304",
                         "--tokenizer-model", str(GPT2_VOCAB))
    assert load_tokenizer(by_file).tokenize("Hello, world!") == [15496, 11, 995, 0]
    assert bpe_files(GPT2_VOCAB) == (GPT2_VOCAB, GPT2_MERGES)

    chinese = model_spec("--load", str(checkpoint), "--tokenizer-type", "glm-10b-chinese", "--vocab-size", "50048")
    assert chinese.tokenizer_model == checkpoint / "cog-pretrain.model"
    assert isinstance(load_tokenizer(chinese), GLM10BChineseTokenizer)
    assert chinese.describe()["tokenizer_type"] == "glm-10b-chinese"

    too_small = model_spec("--load", str(checkpoint), "--tokenizer-type", "glm-10b-english", "--vocab-size", "50257")
    with pytest.raises(ValueError, match="needs 50265 ids but --vocab-size is 50257"):
        load_tokenizer(too_small)


def test_loader_tokenizer_errors(tmp_path: Path, tiny_glm_dir: Path) -> None:
    fake_checkpoint_layout(tmp_path)
    default = model_spec("--load", str(tiny_glm_dir), "--vocab-size", "20544")
    assert default.tokenizer_type == "icetk-glm-130b" and default.tokenizer_model == tiny_glm_dir / "ice_text.model"
    assert isinstance(load_tokenizer(default), GLM130BTokenizer)
    assert default.describe()["tokenizer_type"] == "icetk-glm-130b" and default.describe()["num_image_tokens"] == 20000

    (tmp_path / "gpt2-vocab.json").write_text("{}")
    no_merges = model_spec("--load", str(tmp_path), "--tokenizer-type", "glm-10b-english")
    with pytest.raises(FileNotFoundError, match="no GPT-2 BPE files"):
        load_tokenizer(no_merges)
    with pytest.raises(FileNotFoundError, match="merges not found next to"):
        bpe_files(tmp_path / "gpt2-vocab.json")
    missing = model_spec("--load", str(tmp_path), "--tokenizer-type", "glm-10b-chinese")
    with pytest.raises(FileNotFoundError, match="cog-pretrain.model"):
        load_tokenizer(missing)
    with pytest.raises(SystemExit):
        model_spec("--load", str(tmp_path), "--tokenizer-type", "glm-10b-roberta")
    with pytest.raises(ValueError, match="unknown tokenizer type"):
        build_tokenizer("bert", tmp_path)


def test_glm_bert_wordpiece_ids_are_bert_uncased_with_glm_command_tokens() -> None:
    """GLM-Base / GLM-Large: BERT's uncased WordPiece ids (checked against the vocabulary file's
    line numbers) and THUDM/GLM's command tokens after its 30522 pieces."""
    from evaluation.tokenization import build_tokenizer

    vocab_file = Path(__file__).resolve().parents[2] / "shared" / "tokenizers" / "glm" / "bert-base-uncased-vocab.txt"
    if not vocab_file.is_file():
        pytest.skip(f"{vocab_file} not found")
    lines = vocab_file.read_text(encoding="utf-8").splitlines()
    tokenizer = build_tokenizer("glm-bert", vocab_file)
    ids = tokenizer.tokenize("[CLS] The capital of FRANCE is [MASK] .")
    assert ids == [101, lines.index("the"), lines.index("capital"), lines.index("of"), lines.index("france"), lines.index("is"), 103,
                   lines.index(".")]
    assert (tokenizer.sop_id, tokenizer.eop_id, tokenizer.gmask_id, tokenizer.eos_id, tokenizer.num_tokens) == (30522, 30523, 30524, 0, 30526)
    assert tokenizer.detokenize(tokenizer.tokenize("Hello world, café!")) == "hello world, cafe!"
