"""Check that two runs gave the same results: the same predictions, metrics within a tolerance.

    python -m evaluation.tools.same_results RUN_A RUN_B [--tolerance 1e-5]

Made for checking a new layout against a trusted one (a 16-GPU run against one process, a
new batch size against the old): the runs must have the same tasks, files and items. Every
value that is not a float must be equal (predictions, correctness, generated ids, targets);
floats (per-item scores and log-likelihoods, losses, metrics) may differ by ``tolerance``,
relative to max(1, |value|), since tensor parallelism sums in another order. Prints the
largest deviation of each kind and exits 0 when the runs agree, 1 when they do not.
"""

from __future__ import annotations

import argparse
import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator

IGNORED_KEYS = {"seconds"}  # wall time


@dataclass
class Comparison:
    """Where two runs differ, and by how much their floats do."""

    tolerance: float
    differences: list[str] = field(default_factory=list)
    largest: dict[str, tuple[float, str]] = field(default_factory=dict)  # kind -> (deviation, where)

    @property
    def same(self) -> bool:
        return not self.differences

    def floats(self, kind: str, a: float, b: float, where: str) -> None:
        if math.isnan(a) and math.isnan(b):
            return
        deviation = abs(a - b) / max(1.0, abs(a), abs(b)) if math.isfinite(a) and math.isfinite(b) else (0.0 if a == b else math.inf)
        if deviation > self.largest.get(kind, (-1.0, ""))[0]:
            self.largest[kind] = (deviation, where)
        if deviation > self.tolerance:
            self.differences.append(f"{where}: {a!r} vs {b!r} (relative deviation {deviation:.2e})")

    def values(self, kind: str, a: Any, b: Any, where: str) -> None:
        if isinstance(a, bool) or isinstance(b, bool) or not (isinstance(a, (int, float)) and isinstance(b, (int, float))):
            if isinstance(a, dict) and isinstance(b, dict):
                for key in sorted(set(a) | set(b)):
                    if key in IGNORED_KEYS:
                        continue
                    if key not in a or key not in b:
                        self.differences.append(f"{where}.{key}: present in one run only")
                    else:
                        self.values(kind, a[key], b[key], f"{where}.{key}")
            elif isinstance(a, list) and isinstance(b, list) and len(a) == len(b):
                for index, (x, y) in enumerate(zip(a, b)):
                    self.values(kind, x, y, f"{where}[{index}]")
            elif a != b:
                self.differences.append(f"{where}: {_clip(a)} vs {_clip(b)}")
        elif isinstance(a, int) and isinstance(b, int):
            if a != b:
                self.differences.append(f"{where}: {a} vs {b}")
        else:
            self.floats(kind, float(a), float(b), where)


def _clip(value: Any) -> str:
    text = json.dumps(value, ensure_ascii=False)
    return text if len(text) < 100 else text[:97] + "..."


def _records(path: Path) -> Iterator[dict[str, Any]]:
    with path.open(encoding="utf-8") as handle:
        for line in handle:
            yield json.loads(line)


def compare_runs(run_a: Path, run_b: Path, tolerance: float = 1e-5) -> Comparison:
    """Compare the metrics of results.json and every predictions file of two run folders."""
    result = Comparison(tolerance)
    tasks_a = json.loads((run_a / "results.json").read_text())["tasks"]
    tasks_b = json.loads((run_b / "results.json").read_text())["tasks"]
    if sorted(tasks_a) != sorted(tasks_b):
        result.differences.append(f"tasks differ: {sorted(tasks_a)} vs {sorted(tasks_b)}")
    for name in sorted(set(tasks_a) & set(tasks_b)):
        result.values("metric", tasks_a[name]["groups"], tasks_b[name]["groups"], f"{name}")
    files_a = sorted(p.relative_to(run_a) for p in (run_a / "predictions").rglob("*.jsonl"))
    files_b = sorted(p.relative_to(run_b) for p in (run_b / "predictions").rglob("*.jsonl"))
    if files_a != files_b:
        result.differences.append(f"prediction files differ: {sorted(set(files_a) ^ set(files_b))}")
    for relative in sorted(set(files_a) & set(files_b)):
        a, b = list(_records(run_a / relative)), list(_records(run_b / relative))
        if len(a) != len(b):
            result.differences.append(f"{relative}: {len(a)} vs {len(b)} records")
            continue
        for record_a, record_b in zip(a, b):
            result.values("per-item score", record_a, record_b, f"{relative}:{record_a.get('index')}")
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("run_a", type=Path)
    parser.add_argument("run_b", type=Path)
    parser.add_argument("--tolerance", type=float, default=1e-5, help="largest relative float deviation allowed (default 1e-5)")
    args = parser.parse_args(argv)
    for run in (args.run_a, args.run_b):
        if not (run / "results.json").is_file():
            parser.error(f"{run}: no results.json (not a run folder)")
    result = compare_runs(args.run_a, args.run_b, args.tolerance)
    for kind, (deviation, where) in sorted(result.largest.items()):
        print(f"largest {kind} deviation: {deviation:.2e} at {where}")
    if result.same:
        print(f"same results (tolerance {args.tolerance:g})")
        return 0
    print(f"{len(result.differences)} difference(s):")
    for line in result.differences[:20]:
        print(f"  {line}")
    return 1


if __name__ == "__main__":
    raise SystemExit(main())
