"""Items per second at 1, 2 and 4 processes (data and tensor parallel), side by side in one run.

    python benchmarks/scaling.py [--layers 4 --hidden 1024] [--limit 15] [--smollm2]

Workload: MMLU 0-shot questions in lm-evaluation-harness's format (the quick start's four
subjects, ``--limit`` questions each, prepared from ../shared/data), scored through
``scripts/evaluate.sh`` exactly as a user runs it, for each layout MP_SIZE x DP_SIZE:

* a GLM-130B-architecture model built here (``--layers``, ``--hidden``; random weights, the
  tiny GLM's tokenizer), saved 1-way and re-split on load for TP > 1;
* with ``--smollm2``, SmolLM2-135M (GGUF, Hugging Face backend): data parallel only, its 9
  heads and 3 key/value heads do not split 2 or 4 ways.

Each process gets ``cores / processes`` threads (at least 1), so 4 processes on a 2-core
machine are oversubscribed 2x, which the table says. Rates exclude model loading: items over
the summed "Finish task" seconds of rank 0 (which include its wait at each gather). Every
run is checked against the one-process run (``evaluation.tools.same_results``); the table
prints the largest per-item deviation. Memory, from results.json (largest rank): the weights
a rank holds, and its peak resident set above what it held just before the model loaded
(the torch runtime and the parsed data), once after loading ("load peak": weights plus the
checkpoint pages read, which are memory-mapped) and at the end ("run peak": activations
of the largest batch added).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from evaluation.tools.same_results import compare_runs  # noqa: E402

GLM_LAYOUTS = [(1, 1), (1, 2), (2, 1), (1, 4), (2, 2), (4, 1)]
HF_LAYOUTS = [(1, 1), (1, 2), (1, 4)]


def build_glm(folder: Path, layers: int, hidden: int) -> list[str]:
    """A seeded GLM-130B-architecture checkpoint (1-way) and the evaluate.py flags for it."""
    import torch

    from evaluation.model.checkpoint import save_checkpoint
    from evaluation.model.config import GLMConfig
    from evaluation.model.glm import GLMModel
    from evaluation.tools.make_tiny_glm import TINY_CONFIG, init_weights, make_tiny_glm

    tiny = make_tiny_glm(folder / "tokenizer-source")
    config = GLMConfig(num_layers=layers, hidden_size=hidden, inner_hidden_size=8 * hidden // 3 // 64 * 64,
                       num_attention_heads=hidden // 64, vocab_size=TINY_CONFIG.vocab_size, max_sequence_length=1024)
    torch.manual_seed(0)
    model = GLMModel(config)
    init_weights(model, seed=0)
    checkpoint = folder / "glm"
    save_checkpoint(model, checkpoint)
    shutil.copyfile(tiny / "ice_text.model", checkpoint / "ice_text.model")
    return ["--num-layers", str(layers), "--hidden-size", str(hidden), "--inner-hidden-size", str(config.inner_hidden_size),
            "--num-attention-heads", str(config.num_attention_heads), "--vocab-size", str(config.vocab_size),
            "--max-sequence-length", "1024", "--tokenizer-model", str(checkpoint / "ice_text.model"), "--load", str(checkpoint)]


def write_config(path: Path, model_args: list[str]) -> Path:
    path.write_text("MP_SIZE=\"${MP_SIZE:-1}\"\nMODEL_ARGS=\"" + " ".join(model_args) + "\"\n")
    return path


def run_layout(config: Path, tp: int, dp: int, data: Path, output: Path, limit: int, extra_env: dict[str, str]) -> dict:
    cores = os.cpu_count() or 1
    name = f"tp{tp}-dp{dp}"
    env = {**{k: v for k, v in os.environ.items() if k not in ("MP_SIZE", "DP_SIZE", "RANK", "WORLD_SIZE")},
           "PYTHON": sys.executable, "MODEL_CONFIG": str(config), "DATA_PATH": str(data), "OUTPUT_DIR": str(output),
           "MP_SIZE": str(tp), "DP_SIZE": str(dp), "OMP_NUM_THREADS": str(max(1, cores // (tp * dp))), **extra_env}
    result = subprocess.run(["bash", str(ROOT / "scripts" / "evaluate.sh"), str(ROOT / "tasks" / "quickstart" / "mmlu-subjects.yaml"),
                             "--limit", str(limit), "--no-progress", "--run-name", name],
                            capture_output=True, text=True, env=env, timeout=3600)
    if result.returncode != 0:
        raise SystemExit(f"{name} failed:\n{result.stderr[-3000:]}")
    saved = json.loads((output / name / "results.json").read_text())
    seconds = sum(task["seconds"] for task in saved["tasks"].values())
    items = sum(f["n"] for task in saved["tasks"].values() for g, group in task["groups"].items() if g != "overall"
                for f in group["files"].values())
    memory = saved["run"]["memory"]
    return {"name": name, "tp": tp, "dp": dp, "threads": int(env["OMP_NUM_THREADS"]), "items": items, "seconds": seconds,
            "rate": items / seconds, "weights_mb": max(m["weights_mb"] for m in memory),
            "peak_rss_mb": max(m["peak_rss_mb"] for m in memory),
            "load_mb": max(m["peak_rss_after_load_mb"] - m["rss_before_model_mb"] for m in memory),
            "added_mb": max(m["peak_rss_mb"] - m["rss_before_model_mb"] for m in memory), "run": output / name}


def table(title: str, rows: list[dict], cores: int) -> None:
    base = rows[0]
    print(f"\n{title}")
    print(f"{'layout':>12} {'procs':>5} {'threads':>7} {'items':>5} {'seconds':>8} {'items/s':>8} {'vs 1 proc':>9} "
          f"{'efficiency':>10} {'weights/rank MB':>15} {'load peak MB':>12} {'run peak MB':>11} {'max |d score|':>13}")
    for row in rows:
        procs = row["tp"] * row["dp"]
        speedup = row["rate"] / base["rate"]
        # Against the cores each layout can really use: on a 2-core machine every layout here
        # uses both, so efficiency = speedup, and more processes add no compute, only overhead.
        used, base_used = min(procs * row["threads"], cores), min(base["threads"], cores)
        efficiency = speedup * base_used / used
        deviation = compare_runs(base["run"], row["run"], 1e-5).largest.get("per-item score", (0.0, ""))[0]
        note = " (oversubscribed)" if procs * row["threads"] > cores else ""
        print(f"{'TP%d x DP%d' % (row['tp'], row['dp']):>12} {procs:>5} {row['threads']:>7} {row['items']:>5} {row['seconds']:>8.1f} "
              f"{row['rate']:>8.2f} {speedup:>8.2f}x {efficiency:>9.0%} {row['weights_mb']:>15.0f} {row['load_mb']:>12.0f} "
              f"{row['added_mb']:>11.0f} "
              f"{deviation:>13.1e}{note}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--layers", type=int, default=4)
    parser.add_argument("--hidden", type=int, default=1024)
    parser.add_argument("--limit", type=int, default=15, help="questions per MMLU subject file (4 files)")
    parser.add_argument("--smollm2", action="store_true", help="also SmolLM2-135M (HF backend, needs the hf extra)")
    parser.add_argument("--raw", type=Path, default=ROOT.parent / "shared" / "data")
    args = parser.parse_args()
    cores = os.cpu_count() or 1
    data = ROOT / ".cache" / "quickstart-data"
    subprocess.run([sys.executable, "-m", "evaluation.prepare", "--if-stale", "--raw", str(args.raw), "--out", str(data), "quickstart"],
                   check=True, cwd=ROOT, capture_output=True)
    print(f"machine: {cores} cores; torch {__import__('torch').__version__}; {args.limit} questions x 4 MMLU subjects per run")
    with tempfile.TemporaryDirectory() as tmp:
        tmp_path = Path(tmp)
        config = write_config(tmp_path / "model_bench_glm.sh", build_glm(tmp_path, args.layers, args.hidden))
        rows = [run_layout(config, tp, dp, data, tmp_path / "glm-runs", args.limit, {}) for tp, dp in GLM_LAYOUTS]
        table(f"GLM-130B architecture, {args.layers} layers, hidden {args.hidden} (fp32, 1-way checkpoint re-split for TP)", rows, cores)
        if args.smollm2:
            smol = ROOT / "configs" / "model_smollm2_135m.sh"
            rows = [run_layout(smol, tp, dp, data, tmp_path / "hf-runs", args.limit, {}) for tp, dp in HF_LAYOUTS]
            table("SmolLM2-135M (Hugging Face backend, GGUF dequantized to fp32)", rows, cores)


if __name__ == "__main__":
    main()
