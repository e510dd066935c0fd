"""Command line: validate everything, then load the model, then evaluate and save.

Order matters: task YAMLs, data files and model arguments are all checked before the
(possibly 260 GB) model is loaded, and every problem found is reported at once.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path
from typing import Any, Optional

from .aggregation import format_all_done
from .discovery import discover_task_files
from .errors import InputError, Problem
from .model.cpu_linear import add_cpu_linear_argument
from .model.hf_loader import HFModelSpec, add_hf_arguments
from .model.loader import ModelSpec, add_model_arguments
from .results import RunRecorder, Tee, default_run_name
from .runner import PreparedTask, evaluate_task
from .task_config import load_tasks

EXIT_INPUT_ERROR = 2


def positive_int(text: str) -> int:
    """argparse type: an integer >= 1 (0 or negative batch sizes and limits make no sense)."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, got {value}")
    return value


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="evaluate.py",
        description="Zero-shot evaluation of GLM-family models on YAML-defined tasks. "
        "Normally run through scripts/evaluate.sh, which adds the model flags from MODEL_CONFIG.",
    )
    parser.add_argument("tasks", nargs="*", help="task YAML files and/or directories (every *.yaml/*.yml beneath, recursively)")
    parser.add_argument("--task", nargs="+", default=[], metavar="YAML_OR_DIR", help="same as the positional arguments (GLM-130B spelling)")
    group = parser.add_argument_group("evaluation")
    group.add_argument("--data-path", default=os.environ.get("DATA_PATH", "data"), help="root that task 'path' fields are relative to (default: $DATA_PATH or ./data)")
    group.add_argument("--output-dir", default=os.environ.get("OUTPUT_DIR", "outputs"), help="where run folders are created (default: $OUTPUT_DIR or ./outputs)")
    group.add_argument("--run-name", default=None, help="name of this run's folder under --output-dir (default: a timestamp)")
    group.add_argument("--model-config", default=None, help="name of the model config used, recorded in results.json (set by evaluate.sh)")
    group.add_argument("--micro-batch-size", type=positive_int, default=None, help="override every task's micro_batch_size")
    group.add_argument("--limit", type=positive_int, default=None, help="score only the first N items of every file (N windows for 'lm' tasks); for smoke tests")
    group.add_argument("--validate-only", action="store_true", help="check task YAMLs, data files and model flags, then exit without loading the model")
    group.add_argument("--no-progress", action="store_true", help="hide progress bars")
    group.add_argument("--backend", choices=["glm", "hf"], default="glm",
                       help="glm: a GLM checkpoint (--load and the GLM flags); hf: a Hugging Face causal LM "
                            "(--hf-model, optionally --hf-gguf-file; the GLM flags are then unused)")
    add_cpu_linear_argument(group)
    add_model_arguments(parser)
    add_hf_arguments(parser)
    return parser


def build_spec(args: argparse.Namespace) -> ModelSpec | HFModelSpec:
    """The model spec of the chosen backend (flags checked, no weights read)."""
    if args.backend == "hf":
        return HFModelSpec.from_namespace(args)
    return ModelSpec.from_namespace(args)


def report(problems: list[Problem]) -> int:
    print(f"error: {len(problems)} problem(s) found; nothing was evaluated:", file=sys.stderr)
    for problem in problems:
        print(f"  {problem}", file=sys.stderr)
    return EXIT_INPUT_ERROR


def load_model(spec: ModelSpec | HFModelSpec) -> Any:
    """Load the weights (the only slow step; everything is validated before it)."""
    return spec.load_model()


def prepare_tasks(args: argparse.Namespace, spec: ModelSpec | HFModelSpec) -> tuple[list[PreparedTask], list[Problem]]:
    """Validate configs, then parse every data file with the tokenizer."""
    paths, problems = discover_task_files([*args.tasks, *args.task])
    if not paths and not problems:
        problems.append(Problem("<command line>", "no task given: pass task YAML files or directories"))
    loaded, config_problems = load_tasks(paths, Path(args.data_path), spec.max_sequence_length)
    problems += config_problems
    if problems:
        return [], problems
    try:
        tokenizer = spec.load_tokenizer()
    except (OSError, ValueError) as exc:
        return [], [Problem(spec.tokenizer_model if isinstance(spec, ModelSpec) else spec.source, str(exc))]
    prepared = []
    for item in loaded:
        if args.micro_batch_size is not None:
            item.config.micro_batch_size = args.micro_batch_size
        task = item.task_class(item.config, tokenizer, limit=args.limit, model_max_length=spec.max_sequence_length)
        data = {}
        for group, files in item.files.items():
            data[group] = []
            for path in files:
                try:
                    data[group].append(task.load_file(path))
                except InputError as exc:
                    problems += exc.problems
        prepared.append(PreparedTask(item, task, data))
    return prepared, problems


def main(argv: Optional[list[str]] = None) -> int:
    args = build_parser().parse_args(argv)
    start = time.time()
    print("> Loading task configs")
    try:
        spec = build_spec(args)
    except ValueError as exc:
        return report([Problem("<model arguments>", str(exc))])
    prepared, problems = prepare_tasks(args, spec)
    if problems:
        return report(problems)
    for item in prepared:
        print(f"    Task {item.loaded.config.name} loaded from config {item.loaded.yaml_path}")
    print(f"> Successfully load {len(prepared)} task{'s' if len(prepared) != 1 else ''}")
    if args.validate_only:
        print("> Validation only: every task config and data file is valid")
        return 0

    run_dir = Path(args.output_dir) / (args.run_name or default_run_name())
    if args.run_name is None:
        base, suffix = run_dir, 2
        while run_dir.exists():  # two runs started in the same second
            run_dir, suffix = base.with_name(f"{base.name}-{suffix}"), suffix + 1
    if (run_dir / "results.json").exists():
        return report([Problem(run_dir, "already holds results.json; choose another --run-name or --output-dir")])
    recorder = RunRecorder(
        run_dir,
        model={"config": args.model_config, "backend": args.backend, "args": spec.describe(prepared[0].task.tokenizer)},
        run={"argv": sys.argv[1:] if argv is None else list(argv), "data_path": str(Path(args.data_path).resolve()), "limit": args.limit},
    )
    tee = Tee(sys.stdout, run_dir / "console.log")
    sys.stdout = tee
    try:
        print(f"> Run folder: {run_dir}")
        print(f"> Loading model from {spec.source} ({spec.dtype} on {spec.device})")
        model_start = time.time()
        model = load_model(spec)
        scorer = spec.make_scorer(model, prepared[0].task.tokenizer)
        print(f"> Model loaded in {time.time() - model_start:.1f}s")
        if hasattr(scorer, "describe"):
            recorder.results["model"]["scorer"] = scorer.describe()
            recorder.write()
        progress = not args.no_progress and sys.stderr.isatty()
        for item in prepared:
            print()
            evaluate_task(item, scorer, recorder, progress=progress)
        print(format_all_done(len(prepared), time.time() - start))
        print(f"> Results saved to {recorder.results_path}")
    finally:
        sys.stdout = tee.stream
        tee.close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
