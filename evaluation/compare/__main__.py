"""python -m evaluation.compare BASELINE NEW [MORE ...] [--out DIR] [--margin 1.0]

Compares run folders item by item (see ``statistics.py`` for the statistics), prints the
Markdown report, writes report.md, report.html and report.json into --out, and exits 0 when
no unit regressed significantly by more than --margin, 1 when one did, 2 on bad input
(a missing folder, runs of different tasks, items that do not pair).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from .html_report import report_html
from .json_report import report_json
from .markdown import markdown
from .runs import CompareError, load_run
from .statistics import ALPHA
from .units import build

EXIT_BAD_INPUT = 2


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m evaluation.compare", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("runs", nargs="+", type=Path, help="run folders: the baseline first, then one or more to compare with it")
    parser.add_argument("--out", type=Path, default=Path("comparison"), help="folder for report.md/html/json (default ./comparison)")
    parser.add_argument("--margin", type=float, default=1.0,
                        help="a significant change must exceed this many metric points to count as a regression for the exit "
                             "code, and a unit whose minimum detectable effect exceeds it is 'underpowered' (default 1.0)")
    parser.add_argument("--alpha", type=float, default=ALPHA, help="significance level after Holm's correction (default 0.05)")
    parser.add_argument("--labels", default=None, help="comma-separated names for the runs (default: their folder names)")
    parser.add_argument("--intersection", action="store_true",
                        help="compare only the items (and tasks) all runs scored, instead of refusing runs that differ")
    args = parser.parse_args(argv)
    if len(args.runs) < 2:
        print("error: give a baseline run folder and at least one more", file=sys.stderr)
        return EXIT_BAD_INPUT
    labels = args.labels.split(",") if args.labels else [None] * len(args.runs)
    if len(labels) != len(args.runs):
        print(f"error: --labels names {len(labels)} runs, {len(args.runs)} given", file=sys.stderr)
        return EXIT_BAD_INPUT
    try:
        runs = [load_run(path, label) for path, label in zip(args.runs, labels)]
        if len({r.label for r in runs}) != len(runs):
            runs = [load_run(path, f"{path.name}#{i}") for i, path in enumerate(args.runs)]
        result = build(runs, args.margin, args.alpha, args.intersection)
    except CompareError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_BAD_INPUT
    for note in result.notes:
        print(f"WARNING: {note}", file=sys.stderr)
    text = markdown(result)
    print(text)
    try:
        args.out.mkdir(parents=True, exist_ok=True)
        (args.out / "report.md").write_text(text + "\n", encoding="utf-8")
        (args.out / "report.html").write_text(report_html(result, text), encoding="utf-8")
        (args.out / "report.json").write_text(json.dumps(report_json(result), indent=1) + "\n", encoding="utf-8")
    except OSError as exc:
        print(f"error: cannot write the reports to {args.out}: {exc}", file=sys.stderr)
        return EXIT_BAD_INPUT
    print(f"reports written to {args.out}/report.md, report.html, report.json", file=sys.stderr)
    return result.exit_code


if __name__ == "__main__":
    raise SystemExit(main())
