"""Throughput of the Hugging Face backend's scorer on a SmolLM2-135M-shaped Llama (random weights).

    python benchmarks/hf_throughput.py                            # CPU, fp32, ~1 min
    python benchmarks/hf_throughput.py --device cuda --dtype bf16 --items 2000

No files are read: the model is built from SmolLM2-135M's shape (30 layers, hidden 576, 9 heads,
3 key/value heads, MLP 1536, vocabulary 49152) with random weights, which is all a speed figure
needs, so it runs on a bare GPU machine. Requests are MMLU-5-shot-like: ``--items`` questions
sharing a ``--prefix``-token few-shot prefix, each with its own ``--question`` tokens and four
single-token choices, scored by ``HFScorer.cond_log_prob`` (the path every multiple-choice task
takes) with shared-prefix reuse on and off. Prints scored items/s and body tokens/s of each, the
ratio, and the largest difference of the scores between the two (they must agree: reuse changes
only the summation order). On CUDA, transformers' SDPA attention picks the flash /
memory-efficient kernels for bf16 on its own.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from evaluation.scoring.api import EncodingOptions  # noqa: E402
from evaluation.scoring.hf_scorer import HFScorer  # noqa: E402

sys.path.insert(0, str(ROOT / "benchmarks"))
from smollm2_shape import VOCAB, build_model  # noqa: E402


class IdsOnly:
    """The tokenizer attributes the scorer reads when requests arrive as ids."""

    def __init__(self, vocab: int) -> None:
        self.num_tokens, self.prefix_id, self.bos_id, self.pad_id = vocab, 0, 0, 0


def requests(items: int, prefix: int, question: int, vocab: int) -> list[tuple[list[int], list[list[int]]]]:
    rng = np.random.default_rng(0)
    shots = rng.integers(10, vocab, prefix).tolist()
    return [(shots + rng.integers(10, vocab, question).tolist(), [[int(c)] for c in rng.integers(10, vocab, 4)]) for _ in range(items)]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--dtype", choices=["fp32", "bf16", "fp16"], default="fp32")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--items", type=int, default=60)
    parser.add_argument("--prefix", type=int, default=500, help="tokens of the shared few-shot prefix")
    parser.add_argument("--question", type=int, default=120, help="tokens of each question after it")
    parser.add_argument("--max-batch-tokens", type=int, default=1024)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    dtype = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}[args.dtype]
    model = build_model(args.device, dtype)
    batch = requests(args.items, args.prefix, args.question, VOCAB)
    options = EncodingOptions(max_seq_length=2048)
    results, rows = {}, []
    for reuse in (False, True):
        scorer = HFScorer(model, IdsOnly(VOCAB), args.device, max_batch_tokens=args.max_batch_tokens, prefix_reuse=reuse,
                          log=lambda *_: None)
        scorer.cond_log_prob(batch[:4], options)  # warm-up
        if args.device.startswith("cuda"):
            torch.cuda.synchronize()
        start = time.perf_counter()
        results[reuse] = np.array(scorer.cond_log_prob(batch, options))
        if args.device.startswith("cuda"):
            torch.cuda.synchronize()
        seconds = time.perf_counter() - start
        body = args.items * args.question + (args.prefix if scorer.prefix_reuse else args.items * args.prefix)
        rows.append((f"prefix reuse {'on' if reuse else 'off'}" + ("" if scorer.prefix_reuse == reuse else " (probe refused)"),
                     seconds, args.items / seconds, body / seconds))
    print(f"HFScorer.cond_log_prob, SmolLM2-135M shape (random weights), {args.dtype} on {args.device}; {args.items} items of "
          f"{args.prefix} shared + {args.question} own tokens, 4 single-token choices; max-batch-tokens {args.max_batch_tokens}")
    print(f"{'mode':30} {'seconds':>8} {'items/s':>9} {'body tokens/s':>14}")
    for name, seconds, per_item, tokens in rows:
        print(f"{name:30} {seconds:8.2f} {per_item:9.1f} {tokens:14.0f}")
    difference = float(np.abs(results[True] - results[False]).max())
    print(f"speedup from reuse: {rows[0][1] / rows[1][1]:.2f}x; largest score difference {difference:.2e}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
