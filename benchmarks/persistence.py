"""What durable per-item records cost: the SmolLM2 quick start with and without them, side by side.

    python benchmarks/persistence.py [--rounds 2] [--limit N]

Runs ``scripts/evaluate.sh tasks/quickstart`` on SmolLM2-135M (the quick start's model and
tasks: LAMBADA in both protocols and MMLU on four subjects) alternately with records (the
default: every batch's records appended, flushed, fsync'd every 5 s) and with
``--no-records``, ``--rounds`` times each, alternating which goes first. Prints the wall
time of each run and of its tasks (model loading excluded), the median of each mode and
their ratio, and, from results.json, the time the records layer itself spent on keys,
lookups and writes in the recorded runs: the noise-free part of the answer, since this
machine's run-to-run noise (about 10 %) is larger than the cost being measured.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def run(mode: str, name: str, output: Path, data: Path, limit: int | None) -> dict:
    env = {**os.environ, "PYTHON": str(ROOT / ".venv" / "bin" / "python"), "MODEL_CONFIG": str(ROOT / "configs" / "model_smollm2_135m.sh"),
           "DATA_PATH": str(data), "OUTPUT_DIR": str(output)}
    flags = ["--no-progress", "--run-name", name] + (["--no-records"] if mode == "without records" else [])
    flags += ["--limit", str(limit)] if limit else []
    start = time.perf_counter()
    result = subprocess.run(["bash", str(ROOT / "scripts" / "evaluate.sh"), str(ROOT / "tasks" / "quickstart"), *flags],
                            capture_output=True, text=True, env=env, timeout=3600)
    wall = time.perf_counter() - start
    if result.returncode != 0:
        raise SystemExit(f"{name} failed:\n{result.stderr[-3000:]}")
    saved = json.loads((output / name / "results.json").read_text())
    records = saved["run"]["records"]
    return {"mode": mode, "name": name, "wall": wall, "tasks": sum(t["seconds"] for t in saved["tasks"].values()),
            "overhead": records.get("rank0_overhead_seconds", 0.0), "items": records["computed"] + records["reused_from_run"],
            "record_bytes": sum(p.stat().st_size for p in (output / name / "records").glob("*.jsonl")) if mode == "with records" else 0}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--limit", type=int, default=None, help="items per file (default: the whole quick start)")
    parser.add_argument("--raw", type=Path, default=ROOT.parent / "shared" / "data")
    args = parser.parse_args()
    subprocess.run(["bash", str(ROOT / "scripts" / "setup_venv.sh"), "hf"], check=True)
    data = ROOT / ".cache" / "quickstart-data"
    subprocess.run([str(ROOT / ".venv" / "bin" / "python"), "-m", "evaluation.prepare", "--if-stale", "--raw", str(args.raw),
                    "--out", str(data), "quickstart"], check=True, cwd=ROOT, capture_output=True)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for round_index in range(args.rounds):
            modes = ["with records", "without records"][:: 1 if round_index % 2 == 0 else -1]
            for mode in modes:
                rows.append(run(mode, f"{mode.split()[0]}-{round_index}", Path(tmp), data, args.limit))
                row = rows[-1]
                print(f"  {row['name']:<12} {row['mode']:<16} wall {row['wall']:7.1f} s   tasks {row['tasks']:7.1f} s"
                      + (f"   records layer {row['overhead']:.2f} s, {row['record_bytes'] / 1024:.0f} KB" if row["record_bytes"] else ""),
                      flush=True)
    print(f"\nSmolLM2-135M quick start ({rows[0]['items']} items per run), {args.rounds} runs per mode, alternating:")
    print(f"{'mode':<16} {'median wall s':>13} {'median tasks s':>14}")
    medians = {}
    for mode in ("without records", "with records"):
        mine = [r for r in rows if r["mode"] == mode]
        medians[mode] = (statistics.median(r["wall"] for r in mine), statistics.median(r["tasks"] for r in mine))
        print(f"{mode:<16} {medians[mode][0]:>13.1f} {medians[mode][1]:>14.1f}")
    wall_ratio = medians["with records"][0] / medians["without records"][0] - 1
    task_ratio = medians["with records"][1] / medians["without records"][1] - 1
    recorded = [r for r in rows if r["mode"] == "with records"]
    layer = statistics.median(r["overhead"] / r["tasks"] for r in recorded)
    print(f"difference with records: wall {wall_ratio:+.1%}, tasks {task_ratio:+.1%} (noise between runs is larger)")
    print(f"time in the records layer (keys, lookups, writes): {layer:.2%} of task time")
    print(f"overhead={layer:.4f} wall_delta={wall_ratio:+.4f}")


if __name__ == "__main__":
    main()
