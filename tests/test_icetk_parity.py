"""GLM130BTokenizer against the icetk package itself (icetk 0.0.7, what GLM-130B uses).

icetk is imported in a child process with torchvision replaced by a stub and every
real torchvision import blocked (icetk needs torchvision only for images; the one that
resolves next to torch 2.13 breaks on CPU), with HOME pointed at an empty folder and
``requests.get`` disabled, so icetk can neither download nor touch ``~/.icetk_models``.
It is pointed at ice_text.model files trained here: the tiny model's tokenizer and one
that keeps whitespace (identity normalization), so the comparison covers both ways a
SentencePiece model may treat newlines, tabs and runs of spaces.

scripts/setup_venv.sh installs icetk for the tests (requirements/test-icetk.txt, with
--no-deps); the test is skipped, with the reason printed, only where icetk is not
installed at all.
"""

from __future__ import annotations

import importlib.util
import io
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import sentencepiece as spm

from evaluation.tokenization import GLM130BTokenizer
from evaluation.tools.make_tiny_glm import CORPUS, train_tokenizer

ROOT = Path(__file__).resolve().parent.parent

TEXTS = [
    "", " ", "  ", "\n", "\t", "\n\n", " \t \n ",
    "hello world", "Hello,  world!", "What is two plus three?",
    "a b", "a\tb", "a\nb", "a\n\nb", "line one\nline two\n", "\nleading newline", "trailing newline\n",
    "\ttabbed\tline", "a\tb\t\tc", "code:\n\tif x:\n\t\treturn  y\n",
    "  lead", "trail  ", "   both   ", " single", "single ",
    "你好，世界！", "中文 English 混合 123", "GLM-130B 是一个双语模型。\n第二行\t制表符",
    "机器学习是一门研究计算机如何从数据中学习的学科。",
    "What?! (yes) -- \"quoted\" 'single' [brackets] {braces} <angle> 50% $3.14 #1 @user ~^|\\/",
    "<n>", "a<n>b", "a <n> b", "<n><n>", "x<|tab|>y", "<|blank_4|>", "[MASK] [gMASK] <sop>",
    "😀 emoji", "café naïve Ωmega", "ＡＢＣ１２３", "…—", "\u3000全角空格\u3000",
]
# Runs of 2..100 spaces inside, before and after text.
TEXTS += ["x" + " " * n + "y" for n in range(2, 101)]
TEXTS += [" " * n + "lead" for n in (2, 3, 17, 80, 81, 100)]
TEXTS += ["trail" + " " * n for n in (2, 5, 79, 100)]
TEXTS += ["tabs" + "\t" * n + "end" for n in (1, 2, 8)]
TEXTS += ["mixed" + " \t" * n + "\n" * n + "end" for n in (1, 3)]

CHILD = r"""
import importlib.abc, json, sys, types

request = json.load(sys.stdin)
blocked = []

class BlockTorchvision(importlib.abc.MetaPathFinder):
    # Any torchvision module not already stubbed in sys.modules would be a real import.
    def find_spec(self, name, path=None, target=None):
        if name == "torchvision" or name.startswith("torchvision."):
            blocked.append(name)
            raise ImportError(f"real torchvision import blocked: {name}")
        return None

sys.meta_path.insert(0, BlockTorchvision())
stubs = {}
for name in ("torchvision", "torchvision.transforms", "torchvision.transforms.functional"):
    stubs[name] = types.ModuleType(name)
stubs["torchvision"].transforms = stubs["torchvision.transforms"]
stubs["torchvision.transforms"].functional = stubs["torchvision.transforms.functional"]
stubs["torchvision.transforms.functional"].pil_to_tensor = lambda *a, **k: None
sys.modules.update(stubs)
try:
    import PIL.Image  # icetk imports it at module level; stub it only where absent
except ImportError:
    pil = types.ModuleType("PIL"); pil.Image = types.ModuleType("PIL.Image")
    sys.modules.update({"PIL": pil, "PIL.Image": pil.Image})

import requests
def no_download(*args, **kwargs):
    raise RuntimeError("icetk tried to download")
requests.get = no_download

from icetk import icetk  # the global IceTokenizer SwissArmyTransformer's _IceTokenizer uses
import icetk as icetk_package

results = {}
for name, folder in request["models"].items():
    if hasattr(icetk, "_text_tokenizer"):
        del icetk._text_tokenizer
    icetk.configure(path=folder)
    results[name] = {
        "encode": [icetk.encode(t) for t in request["texts"]],
        "decode_encoded": [icetk.decode(icetk.encode(t)) for t in request["texts"] if t.strip()],
        "decode_each": [icetk.decode([i]) for i in range(20000, 20000 + icetk.num_text_tokens)],
        "num_tokens": icetk.num_tokens,
        "eos": icetk["</s>"],
        "newline_piece": icetk["<n>"],
    }
torchvision_modules = {k: (v is stubs.get(k), getattr(v, "__file__", None)) for k, v in sys.modules.items()
                       if k == "torchvision" or k.startswith("torchvision.")}
json.dump({"results": results, "blocked": blocked, "torchvision_modules": torchvision_modules,
           "icetk_file": icetk_package.__file__}, sys.stdout)
"""


def train_whitespace_keeping_model(out_file: Path) -> None:
    """A model that keeps newlines, tabs and runs of spaces (identity normalization)."""
    model = io.BytesIO()
    spm.SentencePieceTrainer.Train(
        sentence_iterator=iter(CORPUS.read_text(encoding="utf-8").splitlines()),
        model_writer=model, vocab_size=500, model_type="unigram", character_coverage=1.0,
        byte_fallback=True, num_threads=1, shuffle_input_sentence=False, minloglevel=2,
        normalization_rule_name="identity", remove_extra_whitespaces=False,
        pad_id=3, user_defined_symbols=["<n>"],
    )
    out_file.write_bytes(model.getvalue())


@pytest.fixture(scope="module")
def icetk_results(tmp_path_factory: pytest.TempPathFactory) -> tuple[dict, dict[str, Path]]:
    if importlib.util.find_spec("icetk") is None:
        reason = ("icetk is not installed, so there is nothing to compare against: install it with "
                  "`bash scripts/setup_venv.sh test` (requirements/test-icetk.txt, --no-deps)")
        print(f"\nSKIP: {reason}")
        pytest.skip(reason)
    base = tmp_path_factory.mktemp("icetk")
    models = {"tiny": base / "tiny", "whitespace": base / "whitespace"}
    for folder in models.values():
        folder.mkdir()
    train_tokenizer(models["tiny"] / "ice_text.model")
    train_whitespace_keeping_model(models["whitespace"] / "ice_text.model")
    home = base / "home"
    home.mkdir()
    env = {**os.environ, "HOME": str(home)}
    request = {"models": {k: str(v) for k, v in models.items()}, "texts": TEXTS}
    out = subprocess.run([sys.executable, "-c", CHILD], input=json.dumps(request), capture_output=True,
                         text=True, env=env, cwd=base, timeout=300)
    assert out.returncode == 0, f"icetk failed to run:\n{out.stderr[-4000:]}"
    report = json.loads(out.stdout)
    assert not (home / ".icetk_models").exists(), "icetk used its default ~/.icetk_models"
    return report, models


def test_torchvision_never_imported(icetk_results) -> None:
    report, _ = icetk_results
    assert report["blocked"] == [], f"icetk tried to import real torchvision modules: {report['blocked']}"
    modules = report["torchvision_modules"]
    assert set(modules) == {"torchvision", "torchvision.transforms", "torchvision.transforms.functional"}
    assert all(is_stub and file is None for is_stub, file in modules.values()), modules
    icetk_file = Path(report["icetk_file"])  # the installed package, not something of ours
    assert icetk_file.parent.name == "icetk" and "site-packages" in icetk_file.parts


@pytest.mark.parametrize("model", ["tiny", "whitespace"])
def test_encode_matches_icetk(icetk_results, model: str) -> None:
    report, models = icetk_results
    ours = GLM130BTokenizer(models[model] / "ice_text.model")
    theirs = report["results"][model]
    assert ours.num_image_tokens + ours.num_text_tokens == theirs["num_tokens"]
    assert ours.eos_id == theirs["eos"] == 20002
    assert theirs["newline_piece"] == 20004
    mismatches = [(t, ours.tokenize(t), ids) for t, ids in zip(TEXTS, theirs["encode"]) if ours.tokenize(t) != ids]
    assert not mismatches, f"{len(mismatches)} texts differ from icetk, first: {mismatches[0]!r}"


@pytest.mark.parametrize("model", ["tiny", "whitespace"])
def test_decode_matches_icetk(icetk_results, model: str) -> None:
    report, models = icetk_results
    ours = GLM130BTokenizer(models[model] / "ice_text.model")
    theirs = report["results"][model]
    nonblank = [t for t in TEXTS if t.strip()]
    got = [ours.detokenize(ours.tokenize(t)) for t in nonblank]
    assert got == theirs["decode_encoded"]
    each = [ours.detokenize([i]) for i in range(20000, 20000 + ours.num_text_tokens)]
    assert each == theirs["decode_each"]
    # icetk turns "<n>" back into a newline when decoding; so do we.
    assert ours.detokenize(ours.tokenize("a<n>b")) == "a\nb"


def test_models_really_differ_on_whitespace(icetk_results) -> None:
    """The two models make the comparison cover both whitespace behaviours."""
    report, _ = icetk_results
    tiny, keep = report["results"]["tiny"]["encode"], report["results"]["whitespace"]["encode"]
    index = {t: i for i, t in enumerate(TEXTS)}
    # The tiny model folds whitespace: a run of spaces, a tab and a newline read as one space.
    assert tiny[index["x" + " " * 7 + "y"]] == tiny[index["x  y"]]
    assert tiny[index["a\nb"]] == tiny[index["a\tb"]] == tiny[index["a b"]]
    # The whitespace-keeping one does not.
    assert len({tuple(keep[index["x" + " " * n + "y"]]) for n in range(2, 101)}) == 99
    assert len({tuple(keep[index[t]]) for t in ("a b", "a\tb", "a\nb", "a\n\nb")}) == 4
