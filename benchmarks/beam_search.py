"""Beam search speed on the Hugging Face backend: the beam tree against one cache row per beam.

    python benchmarks/beam_search.py                        # 100 LAMBADA passages, beam 16, SmolLM2-135M
    python benchmarks/beam_search.py --limit 300 --reps 2
    python benchmarks/beam_search.py --baseline-code /tmp/old  # baseline = another checkout (a git worktree)

Runs ``tasks/lambada/lambada.yaml`` (GLM-130B's generation protocol: beam search 16, at most
5 new tokens, no repeated 3-grams; the GLM switches do not apply to a causal LM) through
``evaluate.py`` with ``configs/model_smollm2_135m.sh``, once with this checkout's default
(the beams of an item share one cache row: ``hf_scorer._HFBeamTreeDecoder``) and once with the
baseline: ``--no-beam-tree`` (one cache row per beam, batches budgeted by beams x items:
the code before the beam tree, kept behind that flag) or, with ``--baseline-code DIR``,
that checkout's own ``evaluate.py``. Runs alternate (baseline, new, baseline, new, ...), each
in a fresh process with the same threads. Prints a table of the task times ("Finish task ...
in X s", which leaves out loading the model) and whether the generated texts are identical
item for item, and exits 1 when they are not.

Data: the first ``--limit`` passages of ``DATA_PATH/lambada/lambada`` (built with
``python -m evaluation.prepare --raw ../shared/data --out DATA_PATH lambada`` when missing).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Optional

ROOT = Path(__file__).resolve().parent.parent
TASK = "tasks/lambada/lambada.yaml"
FINISH = re.compile(r"Finish task (\S+) in ([0-9.]+)s")


def prepare_data(data: Path, raw: Path) -> None:
    if (data / "lambada" / "MANIFEST.json").is_file():
        return
    subprocess.run([sys.executable, "-m", "evaluation.prepare", "--if-stale", "--raw", str(raw), "--out", str(data), "lambada"],
                   cwd=ROOT, check=True, env={**os.environ, "PYTHONPATH": str(ROOT)})


def run_once(code: Path, data: Path, out: Path, limit: int, threads: int, flags: list[str]) -> tuple[float, list[str]]:
    """(task seconds, generated ids in item order) of one evaluate.sh run."""
    env = {**os.environ, "DATA_PATH": str(data), "OUTPUT_DIR": str(out), "OMP_NUM_THREADS": str(threads),
           "MODEL_CONFIG": str(code / "configs/model_smollm2_135m.sh"), "PYTHON": sys.executable}
    before = set(out.iterdir()) if out.exists() else set()
    proc = subprocess.run(["bash", str(code / "scripts/evaluate.sh"), str(code / TASK), "--limit", str(limit), *flags],
                          cwd=code, env=env, capture_output=True, text=True)
    if proc.returncode != 0:
        sys.stderr.write(proc.stdout[-3000:] + proc.stderr[-3000:])
        raise SystemExit(f"evaluate.sh failed in {code} (exit {proc.returncode})")
    match = FINISH.search(proc.stdout)
    if match is None:
        raise SystemExit(f"no 'Finish task' line in the output of {code}")
    (run_dir,) = set(out.iterdir()) - before
    texts = []
    for path in sorted((run_dir / "predictions").rglob("*.jsonl")):
        for line in path.read_text().splitlines():
            record = json.loads(line)
            texts.append(json.dumps([path.name, record["index"], record["generated_ids"]]))
    return float(match.group(2)), texts


def main(argv: Optional[list[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--limit", type=int, default=100, help="LAMBADA passages (default 100)")
    parser.add_argument("--reps", type=int, default=1, help="runs of each variant (alternating; the median is shown)")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--data-path", type=Path, default=ROOT / ".cache" / "bench-data")
    parser.add_argument("--raw", type=Path, default=ROOT.parent / "shared" / "data")
    parser.add_argument("--baseline-code", type=Path, default=None,
                        help="a checkout whose evaluate.py is the baseline (default: this one with --no-beam-tree)")
    args = parser.parse_args(argv)
    prepare_data(args.data_path, args.raw)
    baseline_code = (args.baseline_code or ROOT).resolve()
    variants = {
        "baseline": (baseline_code, [] if args.baseline_code else ["--no-beam-tree"]),
        "beam tree": (ROOT, []),
    }
    times: dict[str, list[float]] = {name: [] for name in variants}
    texts: dict[str, list[str]] = {}
    with tempfile.TemporaryDirectory(prefix="beam_bench_") as tmp:
        for rep in range(args.reps):
            for name, (code, flags) in variants.items():
                seconds, generated = run_once(code, args.data_path, Path(tmp) / name.replace(" ", "_"), args.limit,
                                                 args.threads, flags)
                times[name].append(seconds)
                texts.setdefault(name, generated)
                print(f"  rep {rep + 1} {name:<9}: {seconds:7.1f} s", file=sys.stderr, flush=True)
    median = {name: sorted(values)[len(values) // 2] for name, values in times.items()}
    same = sum(a == b for a, b in zip(texts["baseline"], texts["beam tree"]))
    total = max(len(texts["baseline"]), len(texts["beam tree"]))
    label = f"{baseline_code} --no-beam-tree" if args.baseline_code is None else str(baseline_code)
    print(f"LAMBADA generation protocol (beam 16, 5 tokens), SmolLM2-135M fp32, {args.limit} passages, "
          f"{args.threads} threads, median of {args.reps}")
    print(f"{'variant':<10} | {'task s':>7} | {'items/s':>7} | code")
    print(f"{'-' * 10}-+-{'-' * 7}-+-{'-' * 7}-+-----")
    for name in variants:
        print(f"{name:<10} | {median[name]:7.1f} | {args.limit / median[name]:7.2f} | {label if name == 'baseline' else ROOT}")
    print(f"speedup {median['baseline'] / median['beam tree']:.2f}x; identical generations: {same}/{total}")
    return 0 if same == total and total == args.limit else 1


if __name__ == "__main__":
    sys.exit(main())
