"""Write a tiny GLM-130B-architecture checkpoint and tokenizer, deterministically.

    python -m evaluation.tools.make_tiny_glm OUT_DIR [--seed 1234]
    python -m evaluation.tools.make_tiny_glm OUT_DIR --architecture glm [--layout thudm|hf]

OUT_DIR receives the real layout (``latest``, ``1/mp_rank_00_model_states.pt``), an
icetk-style ``ice_text.model`` trained on ``tiny_corpus.txt`` (shipped in this
package) and ``model_config.json``. The flags in ``configs/model_glm_tiny.sh``
describe the same shape. Weights are random but deliberately *not* small: logits
vary by several nats between tokens, so tests of masks and positions can fail.

``--architecture glm`` writes a tiny *original*-GLM network (THUDM/GLM's architecture, 2 layers,
hidden 64, 4 heads, block position encoding) with the same tokenizer, in THUDM/GLM's
checkpoint layout (``latest_checkpointed_iteration.txt``, ``1/mp_rank_00_model_states.pt``)
or, with ``--layout hf``, the Hub layout (``config.json``, ``pytorch_model.bin``, ``glm.`` keys):
``configs/model_glm_original_tiny.sh``.
"""

from __future__ import annotations

import argparse
import fcntl
import hashlib
import io
import sys
from pathlib import Path

import sentencepiece as spm
import torch

from ..model.checkpoint import save_checkpoint
from ..model.config import GLMConfig
from ..model.glm import GLMModel
from ..model.glm_original import OriginalGLMConfig, OriginalGLMModel
from ..model.glm_original_checkpoint import save_original_glm
from ..tokenization import NUM_IMAGE_TOKENS, SPECIAL_TOKENS

CORPUS = Path(__file__).with_name("tiny_corpus.txt")
TEXT_VOCAB_SIZE = 500
TINY_CONFIG = GLMConfig(
    num_layers=2,
    hidden_size=64,
    inner_hidden_size=128,
    num_attention_heads=4,
    vocab_size=20544,  # 20000 image + 500 text + 8 special, padded to a multiple of 64
    max_sequence_length=512,
)


def train_tokenizer(out_file: Path, vocab_size: int = TEXT_VOCAB_SIZE) -> None:
    """Train a small SentencePiece model on the shipped corpus (single-threaded, so the
    bytes are the same on every machine).

    Its first ids are laid out like icetk's ice_text.model: ``<unk> <s> </s> <pad>``
    then the user-defined ``<n>`` (icetk writes newlines as ``<n>`` when asked to and
    always turns ``<n>`` back into a newline when decoding), so eos is 20002 as in
    GLM-130B. SentencePiece's default normalization (nmt_nfkc, extra whitespace
    removed): tabs, newlines and runs of spaces fold into single spaces."""
    model = io.BytesIO()
    spm.SentencePieceTrainer.Train(
        sentence_iterator=iter(CORPUS.read_text(encoding="utf-8").splitlines()),
        model_writer=model,
        vocab_size=vocab_size,
        model_type="unigram",
        character_coverage=1.0,
        byte_fallback=True,
        num_threads=1,
        seed_sentencepiece_size=100000,
        shuffle_input_sentence=False,
        minloglevel=2,
        pad_id=3,
        user_defined_symbols=["<n>"],
    )
    out_file.write_bytes(model.getvalue())


def init_weights(model: GLMModel, seed: int) -> None:
    """Seeded, deliberately large-variance initialisation (see module docstring)."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, param in sorted(model.named_parameters()):
            if name.endswith("word_embeddings.weight"):
                std = 0.2
            elif "layernorm" in name and name.endswith("weight"):
                param.copy_(1.0 + 0.1 * torch.randn(param.shape, generator=generator))
                continue
            elif name.endswith("bias"):
                std = 0.05
            else:
                std = 1.0 / param.shape[1] ** 0.5
            param.copy_(std * torch.randn(param.shape, generator=generator))


TINY_ORIGINAL_CONFIG = OriginalGLMConfig(num_layers=2, hidden_size=64, num_attention_heads=4, vocab_size=20544,
                                         max_sequence_length=512, block_position_encoding=True)

RECIPE_FILE = "recipe.sha256"


def recipe_digest(seed: int, config: GLMConfig | OriginalGLMConfig, tensor_parallel: int = 1, layout: str = "sat") -> str:
    """What the folder's contents are a function of: this generator, its corpus, the seed,
    the config and the number of shards. Stored next to the checkpoint so a cached tiny
    model built by older code (or in another layout) is recognised as stale (``--if-stale``)
    instead of silently used."""
    digest = hashlib.sha256(Path(__file__).read_bytes())
    digest.update(CORPUS.read_bytes())
    digest.update(f"{seed}:{sorted(config.to_dict().items())}".encode())
    if tensor_parallel != 1:
        digest.update(f":tp{tensor_parallel}".encode())
    if layout != "sat":
        digest.update(f":{layout}".encode())
    return digest.hexdigest()


def make_tiny_original_glm(out_dir: Path, seed: int = 1234, layout: str = "thudm",
                           config: OriginalGLMConfig = TINY_ORIGINAL_CONFIG, tensor_parallel: int = 1) -> Path:
    """The tiny original-GLM model and its tokenizer in ``layout`` (thudm or hf); in the thudm
    layout optionally as ``tensor_parallel`` shards (THUDM/GLM's split rules). The weights do
    not depend on ``tensor_parallel``."""
    out_dir.mkdir(parents=True, exist_ok=True)
    train_tokenizer(out_dir / "ice_text.model")
    model = OriginalGLMModel(config)
    init_weights(model, seed)  # type: ignore[arg-type]  (any module: seeded per parameter name)
    save_original_glm(model, out_dir, layout=layout, tensor_parallel=tensor_parallel)
    config.save(out_dir / "model_config.json")
    (out_dir / RECIPE_FILE).write_text(recipe_digest(seed, config, tensor_parallel, layout) + "\n")
    return out_dir


def make_tiny_glm(out_dir: Path, seed: int = 1234, config: GLMConfig = TINY_CONFIG, tensor_parallel: int = 1) -> Path:
    """Create the checkpoint folder (``tensor_parallel`` shards, like a checkpoint saved by
    an N-way run); returns it. The weights do not depend on ``tensor_parallel``."""
    out_dir.mkdir(parents=True, exist_ok=True)
    train_tokenizer(out_dir / "ice_text.model")
    needed = NUM_IMAGE_TOKENS + TEXT_VOCAB_SIZE + len(SPECIAL_TOKENS)
    if config.vocab_size < needed:
        raise ValueError(f"vocab_size {config.vocab_size} < {needed} ids the tokenizer needs")
    model = GLMModel(config)
    init_weights(model, seed)
    save_checkpoint(model, out_dir, iteration="1", tensor_parallel=tensor_parallel)
    config.save(out_dir / "model_config.json")
    (out_dir / RECIPE_FILE).write_text(recipe_digest(seed, config, tensor_parallel) + "\n")
    return out_dir


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("out_dir", type=Path, help="folder to write the checkpoint into")
    parser.add_argument("--seed", type=int, default=1234, help="weight seed (default 1234)")
    parser.add_argument("--position-encoding-2d", action="store_true", help="build a 2D-rotary variant")
    parser.add_argument("--tensor-parallel", type=int, default=1,
                        help="save the checkpoint as N shards (mp_rank_00 ... mp_rank_N-1), as an N-way run saves it")
    parser.add_argument("--architecture", choices=["glm-130b", "glm"], default="glm-130b",
                        help="glm: a tiny original-GLM network (THUDM/GLM's architecture) instead of GLM-130B's")
    parser.add_argument("--layout", choices=["thudm", "hf"], default="thudm",
                        help="--architecture glm: THUDM/GLM's checkpoint layout or the Hub layout (config.json + pytorch_model.bin)")
    parser.add_argument("--if-stale", action="store_true",
                        help="do nothing if OUT_DIR already holds the model this code would build (its recipe.sha256 matches)")
    args = parser.parse_args(argv)
    config: GLMConfig | OriginalGLMConfig = TINY_CONFIG
    original = args.architecture == "glm"
    if original:
        config = TINY_ORIGINAL_CONFIG
    elif args.position_encoding_2d:
        config = GLMConfig(**{**TINY_CONFIG.to_dict(), "position_encoding_2d": True})
    args.out_dir.parent.mkdir(parents=True, exist_ok=True)
    # Several processes may prepare the same folder at once (one per node of a multi-node
    # run on a shared disk): the lock makes the later ones find it current.
    with (args.out_dir.parent / f".{args.out_dir.name}.lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        stamp = args.out_dir / RECIPE_FILE
        wanted = recipe_digest(args.seed, config, args.tensor_parallel, args.layout if original else "sat")
        if args.if_stale and stamp.is_file() and stamp.read_text().strip() == wanted:
            return 0
        if original:
            make_tiny_original_glm(args.out_dir, args.seed, args.layout, tensor_parallel=args.tensor_parallel)
        else:
            make_tiny_glm(args.out_dir, args.seed, config, args.tensor_parallel)
    print(f"tiny GLM written to {args.out_dir}" + (f" ({args.tensor_parallel} shards)" if args.tensor_parallel > 1 else ""),
          file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
