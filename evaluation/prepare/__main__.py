"""``python -m evaluation.prepare --raw RAW_DIR --out DATA_PATH [suite ...]``

Converts the raw public datasets into the harness layout
``DATA_PATH/<suite>/<task>/<PromptName>/<type>/<split>.jsonl``, checks every item count
against its published figure, and writes ``DATA_PATH/<suite>/MANIFEST.json`` (files,
counts, sha256, and a fingerprint of the converter code). The same input always gives the
same bytes. With ``--if-stale`` a suite whose manifest matches the current converter code
and whose files are intact is left as it is (what the quick start uses on every run).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Optional

from .common import PrepareError, check_counts, check_raw_files, suite_is_current, write_suite
from .suites import SUITE_MODULES, suite_module

EXIT_INPUT_ERROR = 2


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m evaluation.prepare", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("suites", nargs="*", metavar="SUITE", help=f"suites to build (default: all): {', '.join(SUITE_MODULES)}")
    parser.add_argument("--raw", type=Path, default=None,
                        help="folder of raw datasets, laid out as ../shared/data (needed by every suite but demo)")
    parser.add_argument("--out", type=Path, required=True, help="DATA_PATH to write the suites into")
    parser.add_argument("--sample", type=int, default=None, metavar="N",
                        help="after checking the full counts, write only the first N items of every file (smoke tests)")
    parser.add_argument("--if-stale", action="store_true",
                        help="skip suites already written by this converter code (same --sample, files intact)")
    return parser


def main(argv: Optional[list[str]] = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    unknown = [s for s in args.suites if s not in SUITE_MODULES]
    if unknown:
        parser.error(f"unknown suite(s) {unknown}; known: {list(SUITE_MODULES)}")
    if args.sample is not None and args.sample < 1:
        parser.error(f"--sample must be >= 1, got {args.sample}")
    suites = args.suites or list(SUITE_MODULES)
    if args.if_stale:
        current = [name for name in suites if suite_is_current(args.out, name, args.sample)]
        for name in current:
            print(f"{name}: up to date in {args.out / name} (same converter code), not rebuilt")
        suites = [name for name in suites if name not in current]
        if not suites:
            return 0

    modules = {name: suite_module(name) for name in suites}
    if any(module.RAW_FILES for module in modules.values()):
        if args.raw is None:
            parser.error(f"--raw is required for suite(s) {[n for n, m in modules.items() if m.RAW_FILES]}")
        if not args.raw.is_dir():
            print(f"error: --raw {args.raw} is not a folder", file=sys.stderr)
            return EXIT_INPUT_ERROR
    missing = [p for name, module in modules.items() for p in check_raw_files(args.raw, name, module.RAW_FILES)]
    if missing:
        print(f"error: {len(missing)} raw file(s) missing; nothing was written:", file=sys.stderr)
        for problem in missing:
            print(f"  {problem}", file=sys.stderr)
        return EXIT_INPUT_ERROR

    args.out.mkdir(parents=True, exist_ok=True)
    print(f"{'suite':<18} {'task':<40} {'files':>5} {'items/file':>34} {'published':>10}  check")
    failed = []
    for name, module in modules.items():
        start = time.time()
        try:
            tasks = module.build(args.raw)
            problems = check_counts(name, tasks)
            if problems:
                raise PrepareError("; ".join(problems))
            write_suite(args.out, name, tasks, args.sample)
        except PrepareError as exc:
            print(f"error: {exc}", file=sys.stderr)
            failed.append(name)
            continue
        for task in sorted(tasks, key=lambda t: t.task):
            counts = sorted({(rel.rsplit('/', 1)[-1].split('.')[0], task.count(rel)) for rel in task.files})
            if len(counts) > 4:  # e.g. MMLU: one split (file) per subject
                shown = f"{len(counts)} splits, {sum(n for _, n in counts)} items each prompt"
                published = str(sum(task.expected[s] for s, _ in counts if s in task.expected)) if task.expected else "-"
            else:
                shown = ", ".join(f"{split} {n}" for split, n in counts)
                published = ", ".join(str(task.expected[s]) for s, _ in counts if s in task.expected) or "-"
            status = "ok" if all(s in task.expected for s, _ in counts) else "unchecked" if not task.expected else "ok (partly)"
            print(f"{name:<18} {task.task:<40} {len(task.files):>5} {shown:>34} {published:>10}  {status}")
        print(f"{name}: {len(tasks)} task(s) written to {args.out / name} in {time.time() - start:.1f}s"
              + (f" (first {args.sample} items of each file)" if args.sample else ""))
    if failed:
        print(f"error: suite(s) {failed} failed; the others were written", file=sys.stderr)
        return EXIT_INPUT_ERROR
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
