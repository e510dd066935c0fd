"""Where the Hugging Face backend's forward spends its time, side by side with another checkout.

    python benchmarks/hf_forward.py                          # this checkout, ~1 min
    python benchmarks/hf_forward.py --code /tmp/old --rounds 2   # before / after, alternating

The model is SmolLM2-135M's shape with random weights (``smollm2_shape.py``), fp32 on CPU,
its linear layers packed for oneDNN by the checkout's own ``cpu_linear.pack_all_but_a_tied_head``
(which also sets the checkout's allocator policy). Each checkout runs in a fresh process and
scores a sequence of scoring-like batches: ``--batches`` right-padded batches of about
``--tokens`` tokens each, every batch with a new length (40, 46, 52, ... tokens), as a real
run's length-sorted batches are. New shapes matter: oneDNN compiles a primitive per row count.

Printed per checkout: seconds for the sequence and tokens/s; minor page faults per forward
(freed activations handed back to the kernel and faulted in again); resident memory after
loading and its growth over the sequence; and, from torch.profiler over three of the batches,
the self time in the linear layers, in attention (SDPA), and in everything else (norms, RoPE,
SiLU, adds, copies). The last line says whether both checkouts computed bit-identical hidden
states (a digest of every batch's output), which they must: only memory handling differs.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def _faults() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt


def _batches(count: int, tokens: int):
    import torch

    generator = torch.Generator().manual_seed(0)
    out = []
    for i in range(count):
        length = 40 + 6 * i
        rows = max(1, tokens // length)
        lengths = torch.randint(length // 2, length + 1, (rows,), generator=generator)
        lengths[0] = length
        ids = torch.randint(10, 49000, (rows, length), generator=generator)
        mask = (torch.arange(length)[None] < lengths[:, None]).long()
        out.append((ids, mask))
    return out


def _categories(profile) -> dict[str, float]:
    """Self CPU seconds of one profiled pass, as linear / attention / other."""
    totals = {"linear": 0.0, "attention": 0.0, "other": 0.0}
    for event in profile.key_averages():
        name = event.key
        kind = ("linear" if "linear" in name or name in ("aten::addmm", "aten::mm") else
                "attention" if "scaled_dot_product" in name else "other")
        totals[kind] += event.self_cpu_time_total / 1e6
    return totals


def measure(code: Path, batches: int, tokens: int, threads: int) -> dict:
    """Run in a fresh process: ``code``'s ``evaluation`` package packs the model."""
    sys.path.insert(0, str(code))
    import torch

    from evaluation.memory import status_kb
    from evaluation.model.cpu_linear import onednn_available, pack_all_but_a_tied_head

    def rss_mb() -> float:
        return status_kb("VmRSS") / 1024

    sys.path.insert(0, str(ROOT / "benchmarks"))
    from smollm2_shape import build_model

    torch.set_num_threads(threads)
    model = build_model("cpu", torch.float32)
    packed = pack_all_but_a_tied_head(model) if onednn_available() else 0
    body = model.model
    work = _batches(batches, tokens)
    digest = hashlib.sha256()
    with torch.no_grad():
        body(input_ids=torch.randint(10, 49000, (3, 97)))  # warm-up at a shape the sequence does not use
        after_load = rss_mb()
        faults, start = _faults(), time.perf_counter()
        for ids, mask in work:
            hidden = body(input_ids=ids, attention_mask=mask).last_hidden_state
            digest.update(hidden[mask.bool()].numpy().tobytes())
        seconds = time.perf_counter() - start
        faults = _faults() - faults
        growth = rss_mb() - after_load
        from torch.profiler import ProfilerActivity, profile

        with profile(activities=[ProfilerActivity.CPU]) as prof:
            for ids, mask in work[:: max(1, len(work) // 3)][:3]:
                body(input_ids=ids, attention_mask=mask)
    return {"seconds": seconds, "tokens": sum(int(ids.numel()) for ids, _ in work), "faults_per_forward": faults / len(work),
            "rss_after_load_mb": after_load, "rss_growth_mb": growth, "profile": _categories(prof), "packed_layers": packed,
            "digest": digest.hexdigest(), "onednn_caches": {k: os.environ.get(k) for k in ("ONEDNN_PRIMITIVE_CACHE_CAPACITY",
                                                                                          "LRU_CACHE_CAPACITY")}}


def _worker(code: Path, args: argparse.Namespace) -> dict:
    env = {k: v for k, v in os.environ.items() if k not in ("ONEDNN_PRIMITIVE_CACHE_CAPACITY", "LRU_CACHE_CAPACITY")}
    env["OMP_NUM_THREADS"] = str(args.threads)
    out = subprocess.run([sys.executable, __file__, "--worker", str(code), "--batches", str(args.batches), "--tokens",
                          str(args.tokens), "--threads", str(args.threads)], capture_output=True, text=True, env=env)
    if out.returncode != 0:
        raise SystemExit(f"worker for {code} failed:\n{out.stderr[-3000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--code", type=Path, default=None, help="another checkout to measure side by side (e.g. a git worktree)")
    parser.add_argument("--rounds", type=int, default=1, help="alternating runs per checkout; the table shows the fastest")
    parser.add_argument("--batches", type=int, default=24)
    parser.add_argument("--tokens", type=int, default=1024, help="tokens per batch, as --max-batch-tokens")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--worker", type=Path, default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker is not None:
        print(json.dumps(measure(args.worker, args.batches, args.tokens, args.threads)))
        return 0
    checkouts = [("this checkout", ROOT)] + ([(f"--code {args.code}", args.code)] if args.code else [])
    runs: dict[str, list[dict]] = {name: [] for name, _ in checkouts}
    for _ in range(args.rounds):
        for name, code in checkouts:
            runs[name].append(_worker(code, args))
    print(f"SmolLM2-135M shape (random weights), fp32 on CPU, {args.threads} threads, oneDNN-packed linears; {args.batches} "
          f"right-padded batches of ~{args.tokens} tokens, each a new length (fastest of {args.rounds} round(s))")
    header = ["checkout", "seconds", "tokens/s", "page faults/forward", "RSS after load MB", "RSS growth MB",
              "linear s", "attention s", "other s", "other %"]
    lines = [header]
    best = {}
    for name, _ in checkouts:
        run = min(runs[name], key=lambda r: r["seconds"])
        best[name] = run
        p = run["profile"]
        total = sum(p.values())
        lines.append([name, f"{run['seconds']:.2f}", f"{run['tokens'] / run['seconds']:.0f}", f"{run['faults_per_forward']:.0f}",
                      f"{run['rss_after_load_mb']:.0f}", f"{run['rss_growth_mb']:+.0f}", f"{p['linear']:.2f}",
                      f"{p['attention']:.2f}", f"{p['other']:.2f}", f"{100 * p['other'] / total:.0f}%"])
    widths = [max(len(r[c]) for r in lines) for c in range(len(header))]
    for n, line in enumerate(lines):
        print("  ".join(cell.rjust(w) if c else cell.ljust(w) for c, (cell, w) in enumerate(zip(line, widths))))
        if n == 0:
            print("  ".join("-" * w for w in widths))
    if args.code:
        ours, other = best[checkouts[0][0]], best[checkouts[1][0]]
        same = ours["digest"] == other["digest"]
        print(f"speedup {other['seconds'] / ours['seconds']:.2f}x; hidden states bit-identical: {'yes' if same else 'NO'}")
        return 0 if same else 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
