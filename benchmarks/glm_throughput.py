"""Forward throughput of the GLM backend against the matmul rate of the same machine, same process.

    python benchmarks/glm_throughput.py                   # 2 threads, ~1 min
    python benchmarks/glm_throughput.py --threads 4 --shapes 8x256 2x1024 --profile
    python benchmarks/glm_throughput.py --code /path/to/other/checkout   # side by side with other code

The model is GLM-130B's architecture at a size a CPU can run: 8 layers, hidden 1024, 16 heads,
GeGLU width 2736 (GLM-130B's 8/3 ratio), random weights, fp32 (``--glm130b-slice --device cuda --dtype bf16
--peak-tflops P``: four of GLM-130B's full-width layers on a GPU, with model FLOP utilisation), with the linear layers as the
harness runs them by default (``--cpu-linear auto``: oneDNN-packed weights where available).
For each batch shape it prints:

* the forward's seconds (best of ``--repeat``; a bidirectional mask, as a scoring batch);
* its achieved GFLOP/s: 2 x (block weights) x tokens + attention 4 x layers x hidden x
  length^2 per row, divided by the time;
* the packed matmul rate measured in the same process on the model's own projection shapes
  at the same row count (a FLOP-weighted mean over qkv, dense, h->4h and 4h->h), and the
  forward's share of it: the rest of the time is norms, rotary, GeGLU, attention, copies.

``--profile`` adds torch.profiler's top operators by self time for one forward. ``--code DIR``
also runs the same measurement with the ``evaluation`` package of another checkout (e.g. a
``git worktree`` of an older commit) in a subprocess and prints the ratio; with ``--rounds R``
both checkouts run in fresh processes R times, alternating (the order swapped each round),
and each shape keeps its fastest forward per checkout. The machine is noisy, so compare the
two columns, not absolute rates.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DIMS = {"layers": 8, "hidden": 1024, "heads": 16, "inner": 2736}  # --layers/--hidden/--heads/--inner override
GLM130B_SLICE = {"layers": 4, "hidden": 12288, "heads": 96, "inner": 32768}  # --glm130b-slice: full-width layers


def build(code: Path, device: str, dtype: str):
    """The model from the ``evaluation`` package under ``code`` (this checkout by default)."""
    sys.path.insert(0, str(code))
    import torch

    from evaluation.model.config import GLMConfig
    from evaluation.model.cpu_linear import pack_linear_layers, resolve_cpu_linear
    from evaluation.model.glm import GLMModel

    torch.manual_seed(0)
    config = GLMConfig(num_layers=DIMS["layers"], hidden_size=DIMS["hidden"], inner_hidden_size=DIMS["inner"],
                       num_attention_heads=DIMS["heads"], vocab_size=1024, max_sequence_length=4096, position_encoding_2d=True)
    with torch.device(device):
        model = GLMModel(config).eval()
    with torch.no_grad():
        for parameter in model.parameters():
            parameter.normal_(0.0, 0.02)
    model = model.to(dtype=getattr(torch, {"fp32": "float32", "bf16": "bfloat16", "fp16": "float16"}[dtype]))
    linear = resolve_cpu_linear("auto", device, dtype)
    if linear == "onednn":
        pack_linear_layers(model)
    return torch, model, linear


def forward_flops(batch: int, length: int) -> float:
    h, inner = DIMS["hidden"], DIMS["inner"]
    per_token = 2 * (h * 3 * h + h * h + h * 2 * inner + inner * h)
    return DIMS["layers"] * (per_token * batch * length + 4 * batch * length * length * h)


def matmul_rate(torch, rows: int, linear: str, repeat: int, device: str, dtype) -> float:
    """GFLOP/s of the model's projections at ``rows`` input rows, run as the model's are
    (oneDNN-packed on CPU when the model is; cuBLAS through F.linear on a GPU)."""
    from evaluation.model.cpu_linear import OneDNNLinear

    h, inner = DIMS["hidden"], DIMS["inner"]
    shapes = [(h, 3 * h), (h, h), (h, 2 * inner), (inner, h)]
    total_flops, total_time = 0.0, 0.0
    for fan_in, fan_out in shapes:
        weight = (torch.randn(fan_out, fan_in, device=device) * 0.02).to(dtype)
        bias = torch.zeros(fan_out, device=device, dtype=dtype)
        layer = OneDNNLinear(weight, bias) if linear == "onednn" else (lambda x, w=weight, b=bias: torch.nn.functional.linear(x, w, b))
        x = torch.randn(rows, fan_in, device=device).to(dtype)
        with torch.no_grad():
            layer(x)
            best = min(_timed(torch, device, lambda: layer(x)) for _ in range(repeat))
        total_flops += 2.0 * rows * fan_in * fan_out
        total_time += best
        del weight, x
    return total_flops / total_time / 1e9


def _timed(torch, device: str, fn) -> float:
    if device.startswith("cuda"):
        torch.cuda.synchronize()
    start = time.perf_counter()
    fn()
    if device.startswith("cuda"):
        torch.cuda.synchronize()
    return time.perf_counter() - start


def measure(code: Path, shapes: list[tuple[int, int]], repeat: int, threads: int, profile: bool, device: str = "cpu",
            dtype: str = "fp32") -> dict:
    torch, model, linear = build(code, device, dtype)
    torch.set_num_threads(threads)
    rows = []
    for batch, length in shapes:
        ids = torch.randint(0, 1024, (batch, length), device=device)
        positions = torch.stack([torch.arange(length, device=device).expand(batch, length),
                                 torch.zeros(batch, length, dtype=torch.long, device=device)], dim=1)
        mask = torch.ones(batch, length, length, dtype=torch.bool, device=device)
        with torch.no_grad():
            model(ids, positions, mask)
            seconds = min(_timed(torch, device, lambda: model(ids, positions, mask)) for _ in range(repeat))
        rate = matmul_rate(torch, batch * length, linear, repeat, device, next(model.parameters()).dtype)
        gflops = forward_flops(batch, length) / seconds / 1e9
        rows.append({"shape": f"{batch}x{length}", "seconds": seconds, "gflops": gflops, "matmul_gflops": rate, "share": gflops / rate})
        if profile:
            from torch.profiler import ProfilerActivity, profile as torch_profile

            activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if device.startswith("cuda") else [])
            with torch.no_grad(), torch_profile(activities=activities) as prof:
                model(ids, positions, mask)
            rows[-1]["profile"] = prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=12)
    return {"linear": linear, "rows": rows, "torch": torch.__version__, "device": device, "dtype": dtype, "dims": dict(DIMS)}


def _worker(code: Path, args: argparse.Namespace) -> dict:
    """One measurement of checkout ``code`` in a fresh process (its own imports)."""
    dims = [f"--{k}={v}" for k, v in DIMS.items()]
    out = subprocess.run([sys.executable, __file__, "--worker", str(code), "--threads", str(args.threads), "--repeat",
                          str(args.repeat), "--device", args.device, "--dtype", args.dtype, *dims, "--shapes", *args.shapes],
                         capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def _fastest(runs: list[dict]) -> dict:
    """Per shape, the row of the run whose forward was fastest (with that run's matmul rate)."""
    best = dict(runs[0])
    best["rows"] = [min((run["rows"][i] for run in runs), key=lambda row: row["seconds"]) for i in range(len(runs[0]["rows"]))]
    return best


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--shapes", nargs="+", default=["4x512", "1x2048", "16x128"], help="batch x length of each forward")
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--profile", action="store_true", help="torch.profiler's top operators for one forward per shape")
    parser.add_argument("--code", type=Path, default=None, help="another checkout to measure side by side")
    parser.add_argument("--rounds", type=int, default=1,
                        help="with --code: both checkouts R times in fresh processes, alternating; the fastest forward per shape is kept")
    parser.add_argument("--device", default="cpu", help="cpu or cuda")
    parser.add_argument("--dtype", choices=["fp32", "bf16", "fp16"], default="fp32")
    for name in DIMS:
        parser.add_argument(f"--{name}", type=int, default=None, help=f"model {name} (default {DIMS[name]})")
    parser.add_argument("--glm130b-slice", action="store_true", help=f"GLM-130B's full-width layers: {GLM130B_SLICE}")
    parser.add_argument("--peak-tflops", type=float, default=None,
                        help="the device's dense peak for this dtype: prints model FLOP utilisation (MFU) against it")
    parser.add_argument("--worker", type=Path, default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.rounds < 1:
        parser.error(f"--rounds must be >= 1, got {args.rounds}")
    if args.rounds > 1 and args.code is None:
        parser.error("--rounds alternates two checkouts: it needs --code DIR")
    if args.rounds > 1 and args.profile:
        parser.error("--profile runs in this process; with --rounds every measurement runs in a worker process (use --rounds 1)")
    if args.glm130b_slice:
        DIMS.update(GLM130B_SLICE)
    DIMS.update({k: getattr(args, k) for k in DIMS if getattr(args, k) is not None})
    shapes = [tuple(int(v) for v in s.split("x")) for s in args.shapes]
    if args.worker is not None:
        print(json.dumps(measure(args.worker, shapes, args.repeat, args.threads, False, args.device, args.dtype)))
        return 0
    os.environ.setdefault("OMP_NUM_THREADS", str(args.threads))
    other = None
    if args.code is not None and args.rounds > 1:
        runs: dict[str, list[dict]] = {"ours": [], "other": []}
        for round_index in range(args.rounds):
            order = [("ours", ROOT), ("other", args.code)]
            for name, code in order if round_index % 2 == 0 else order[::-1]:
                runs[name].append(_worker(code, args))
        ours, other = (_fastest(runs[name]) for name in ("ours", "other"))
    else:
        ours = measure(ROOT, shapes, args.repeat, args.threads, args.profile, args.device, args.dtype)
        if args.code is not None:  # the other checkout in its own process (its own imports), after ours
            other = _worker(args.code, args)
    print(f"GLM-130B architecture, {DIMS['layers']} layers, hidden {DIMS['hidden']}, {DIMS['heads']} heads, GeGLU {DIMS['inner']}; "
          f"{args.dtype} on {args.device}, {args.threads} threads, linear layers: {ours['linear']}; torch {ours['torch']}")
    header = ["shape", "forward s", "GFLOP/s", "matmul GFLOP/s (same shapes)", "% of matmul"]
    if args.peak_tflops:
        header += [f"MFU vs {args.peak_tflops:.0f} TFLOP/s"]
    if other:
        header += ["other: forward s", "other: % of matmul", "speedup"]
    lines = [header]
    for i, row in enumerate(ours["rows"]):
        line = [row["shape"], f"{row['seconds']:.3f}", f"{row['gflops']:.0f}", f"{row['matmul_gflops']:.0f}", f"{100 * row['share']:.0f}%"]
        if args.peak_tflops:
            line.append(f"{100 * row['gflops'] / (args.peak_tflops * 1000):.1f}%")
        if other:
            o = other["rows"][i]
            line += [f"{o['seconds']:.3f}", f"{100 * o['share']:.0f}%", f"{o['seconds'] / row['seconds']:.2f}x"]
        lines.append(line)
    widths = [max(len(r[c]) for r in lines) for c in range(len(header))]
    for n, line in enumerate(lines):
        print("  ".join(cell.rjust(w) for cell, w in zip(line, widths)))
        if n == 0:
            print("  ".join("-" * w for w in widths))
    for row in ours["rows"]:
        if "profile" in row:
            print(f"\nprofile {row['shape']}:\n{row['profile']}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
