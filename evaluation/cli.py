"""Command line: validate everything, then load the model, then evaluate and save.

Order matters: task YAMLs, data files and model arguments are all checked before the
(possibly 260 GB) model is loaded, and every problem found is reported at once. In a
multi-process run every rank checks its own inputs first, then the ranks meet once
(``distributed/session.py``): rank 0 reports the problems of all, or the ways in which
ranks were started differently, and only then does any rank load its part of the model.
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime as dt
import os
import sys
import time
import warnings
from pathlib import Path
from typing import Any, Optional

from . import __version__
from .aggregation import format_all_done
from .discovery import discover_task_files
from .distributed.data_parallel import DataParallelScorer
from .distributed.environment import ProcessLayout, layout_from_environment
from .distributed.groups import join
from .distributed.session import Session, begin
from .errors import InputError, Problem
from .memory import peak_memory, status_kb, weight_bytes
from .persistence.identity import model_namespace, run_identity
from .persistence.lock import RunLock, RunLockedError
from .persistence.recording import KnownRecords, RecordingScorer
from .persistence.records import RecordsError
from .persistence.run_folder import (cache_folder, check_run_folder, check_writable, identity_path, load_known, open_writers,
                                     resume_changes, write_identity)
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
        "Normally run through scripts/evaluate.sh, which adds the model flags from MODEL_CONFIG and starts "
        "MP_SIZE x DP_SIZE processes (MP_SIZE: tensor-parallel processes per model replica; DP_SIZE: replicas) "
        "with torchrun when that is more than one, or through scripts/evaluate_multiple_node.sh (the DeepSpeed "
        "launcher and a hostfile) on several nodes. Under any launcher the rank comes from RANK/WORLD_SIZE/LOCAL_RANK "
        "(or Slurm's SLURM_PROCID/SLURM_NTASKS/SLURM_LOCALID).",
    )
    parser.add_argument("tasks", nargs="*", help="task YAML files and/or directories (every *.yaml/*.yml beneath, recursively)")
    parser.add_argument("--task", nargs="+", default=[], metavar="YAML_OR_DIR", help="same as the positional arguments (GLM-130B spelling)")
    group = parser.add_argument_group("evaluation")
    group.add_argument("--data-path", default=os.environ.get("DATA_PATH", "data"), help="root that task 'path' fields are relative to (default: $DATA_PATH or ./data)")
    group.add_argument("--output-dir", default=os.environ.get("OUTPUT_DIR", "outputs"), help="where run folders are created (default: $OUTPUT_DIR or ./outputs)")
    group.add_argument("--run-name", default=None, help="name of this run's folder under --output-dir (default: a timestamp)")
    group.add_argument("--resume", default=None, metavar="RUN_DIR",
                       help="continue an interrupted run in RUN_DIR: items whose records exist there are not computed again "
                            "(any world size, batch size or token budget); refused if the model, a task config or a data "
                            "file differs from the interrupted run's")
    group.add_argument("--cache", default=None, metavar="DIR",
                       help="also keep records in DIR and reuse those of earlier runs of the same model and scoring code "
                            "(a rerun after a YAML edit or a new task computes only what changed); off by default")
    group.add_argument("--no-records", action="store_true",
                       help="do not keep per-item records in the run folder (the run cannot be resumed; for benchmarks)")
    group.add_argument("--model-config", default=None, help="name of the model config used, recorded in results.json (set by evaluate.sh)")
    group.add_argument("--micro-batch-size", type=positive_int, default=None, help="override every task's micro_batch_size")
    group.add_argument("--limit", type=positive_int, default=None, help="score only the first N items of every file (N windows for 'lm' tasks); for smoke tests")
    group.add_argument("--validate-only", action="store_true", help="check task YAMLs, data files and model flags, then exit without loading the model")
    group.add_argument("--no-progress", action="store_true", help="hide progress bars")
    group.add_argument("--show-stderr", action="store_true",
                       help="add '± standard error' to the console's file and group lines (results.json always has the "
                            "standard errors and 95%% intervals)")
    group.add_argument("--backend", choices=["glm", "hf"], default="glm",
                       help="glm: a GLM checkpoint (--load and the GLM flags); hf: a Hugging Face causal LM "
                            "(--hf-model, optionally --hf-gguf-file; the GLM flags are then unused)")
    add_cpu_linear_argument(group)
    dist_group = parser.add_argument_group("many processes (set by scripts/evaluate.sh and scripts/evaluate_multiple_node.sh)")
    dist_group.add_argument("--dist-timeout", type=float, default=1800.0, metavar="SECONDS",
                            help="how long a rank may wait for the others at the rendezvous and at each gather, and how "
                                 "long (at most 60 s) a rank may go without a heartbeat before the run is stopped as failed "
                                 "(default 1800, DeepSpeed's own default)")
    dist_group.add_argument("--local_rank", "--local-rank", type=int, default=None, help=argparse.SUPPRESS)  # DeepSpeed's launcher
    add_model_arguments(parser)
    add_hf_arguments(parser)
    return parser


def build_spec(args: argparse.Namespace, layout: Optional[ProcessLayout] = None) -> ModelSpec | HFModelSpec:
    """The model spec of the chosen backend (flags checked, no weights read). Each rank of
    a multi-process CUDA run takes the GPU of its local rank."""
    spec = HFModelSpec.from_namespace(args) if args.backend == "hf" else ModelSpec.from_namespace(args)
    if layout is not None and layout.distributed and spec.device == "cuda":
        spec = dataclasses.replace(spec, device=f"cuda:{layout.local_rank}")
    return spec


def report(problems: list[Problem]) -> int:
    print(f"error: {len(problems)} problem(s) found; nothing was evaluated:", file=sys.stderr)
    for problem in problems:
        print(f"  {problem}", file=sys.stderr)
    return EXIT_INPUT_ERROR


def load_model(spec: ModelSpec | HFModelSpec, context: Any = None) -> Any:
    """Load the weights (the only slow step; everything is validated before it): this
    rank's tensor-parallel shard when the context says so."""
    return spec.load_model(context)


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
        task = item.task_class(item.config, tokenizer, limit=args.limit, model_max_length=spec.max_sequence_length,
                               data_root=item.data_root)
        data = {}
        for group, files in item.files.items():
            data[group] = []
            for path in files:
                try:
                    data[group].append(task.load_file(path))
                except InputError as exc:  # name the task too: the YAML may be what is wrong (its type, its path)
                    reader = f" (read as '{item.config.type}' data by task {item.config.name} of {item.yaml_path})"
                    problems += [dataclasses.replace(p, message=p.message + reader) for p in exc.problems]
        prepared.append(PreparedTask(item, task, data))
    return prepared, problems


def choose_run_dir(args: argparse.Namespace) -> tuple[Path, list[Problem]]:
    """The run folder and what stands against using it (rank 0 decides; other ranks write nothing)."""
    if args.resume:
        run_dir = Path(args.resume)
        problems = [Problem(run_dir, "--resume continues the run in that folder; leave out --run-name")] if args.run_name else []
        return run_dir, problems + [Problem(run_dir, text) for text in check_run_folder(run_dir, resume=True)]
    run_dir = Path(args.output_dir) / (args.run_name or default_run_name())
    if args.run_name is None:
        base, suffix = run_dir, 2
        while run_dir.exists():  # two runs started in the same second
            run_dir, suffix = base.with_name(f"{base.name}-{suffix}"), suffix + 1
    problems = [Problem(run_dir, text) for text in check_run_folder(run_dir, resume=False)]
    if args.cache:
        problems += [Problem(args.cache, text) for text in check_writable(Path(args.cache), "--cache")[0]]
    return run_dir, problems


def identity_problems(args: argparse.Namespace, spec: ModelSpec | HFModelSpec, prepared: list[PreparedTask],
                      run_dir: Path) -> tuple[dict[str, Any], list[Problem]]:
    """This run's identity (persistence/identity.py) and, for --resume, how it differs from
    the interrupted run's."""
    tokenizer = prepared[0].task.tokenizer
    identity = run_identity(spec.identity(tokenizer, args.model_parallel_size), vars(args), prepared, Path(args.data_path))
    problems = []
    if args.resume:
        problems = [Problem(identity_path(run_dir), f"cannot resume: the interrupted run had other inputs: {change}")
                    for change in resume_changes(run_dir, identity)]
    return identity, problems


def fingerprint_of(args: argparse.Namespace, spec: ModelSpec | HFModelSpec, prepared: list[PreparedTask]) -> dict[str, str]:
    """What every rank must agree on (see distributed/agreement.py)."""
    from .distributed.agreement import input_fingerprint
    from .results import git_commit

    flags = {"backend": args.backend, "limit": args.limit, "micro_batch_size": args.micro_batch_size,
             "model_parallel_size": args.model_parallel_size}
    return input_fingerprint({"version": __version__, "git_commit": git_commit()}, flags,
                             spec.describe(prepared[0].task.tokenizer), prepared, Path(args.data_path))


def silence_other_ranks(layout: ProcessLayout) -> None:
    """Only rank 0 prints the console lines and Python's warnings (every rank would print the
    same ones); the others keep stderr for their errors."""
    if not layout.is_main:
        sys.stdout = open(os.devnull, "w", encoding="utf-8")
        warnings.simplefilter("ignore")


def main(argv: Optional[list[str]] = None) -> int:
    args = build_parser().parse_args(argv)
    start = time.time()
    try:
        layout = layout_from_environment()
    except ValueError as exc:
        return report([Problem("<launcher environment>", str(exc))])
    silence_other_ranks(layout)
    print("> Loading task configs")
    try:
        spec = build_spec(args, layout)
    except ValueError as exc:
        spec, prepared, problems = None, [], [Problem("<model arguments>", str(exc))]
    else:
        prepared, problems = prepare_tasks(args, spec)
    if layout.distributed and layout.world_size % args.model_parallel_size:
        problems.append(Problem("<launcher environment>", f"{layout.world_size} processes cannot form model-parallel groups "
                                                          f"of --model-parallel-size {args.model_parallel_size}"))
    run_dir, identity = None, None
    if layout.is_main and (not args.validate_only or args.resume):
        run_dir, run_dir_problems = choose_run_dir(args)
        problems += run_dir_problems
        if not problems:
            identity, changes = identity_problems(args, spec, prepared, run_dir)
            problems += changes

    if layout.distributed:
        device_type = "cuda" if spec is not None and spec.device.startswith("cuda") else "cpu"
        session, reported, mismatches = begin(layout, args.dist_timeout, device_type, args.model_parallel_size,
                                              [str(p) for p in problems], lambda: fingerprint_of(args, spec, prepared))
        if reported or mismatches:
            if session.context.is_main:
                report_disagreement(session.context.world_size, reported, mismatches)
            session.end()
            return EXIT_INPUT_ERROR
    elif problems:
        return report(problems)
    else:
        session = Session(join(layout, args.dist_timeout, "cpu"))
        try:
            if not args.validate_only:  # a launcher script validates in one process before starting MP_SIZE of them
                session.context.form_groups(args.model_parallel_size)
        except ValueError as exc:
            return report([Problem("<model arguments>", str(exc))])

    for item in prepared:
        print(f"    Task {item.loaded.config.name} loaded from config {item.loaded.yaml_path}")
    print(f"> Successfully load {len(prepared)} task{'s' if len(prepared) != 1 else ''}")
    if args.validate_only:
        print("> Validation only: every task config and data file is valid")
        session.end()
        return 0
    try:
        run(args, argv, session, spec, prepared, run_dir, identity, start)
    except (RecordsError, RunLockedError) as exc:  # the message says what happened and what to do
        if session.context.distributed:
            session.fail(exc, traceback_too=False)
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except BaseException as exc:  # noqa: BLE001 - every failure of a rank must end all ranks, naming it
        if not session.context.distributed:
            raise
        session.fail(exc)
    session.end()
    return 0


def report_disagreement(world_size: int, reported: list[str], mismatches: list[str]) -> None:
    """Rank 0's one report of why a multi-process run stopped before loading the model."""
    if reported:
        print(f"error: {len(reported)} problem(s) found; nothing was evaluated:", file=sys.stderr)
    else:
        print(f"error: the {world_size} ranks were not started with the same inputs; nothing was evaluated:", file=sys.stderr)
    for line in reported or mismatches:
        print(f"  {line}", file=sys.stderr)


def open_records(args: argparse.Namespace, session: Session, spec: ModelSpec | HFModelSpec, prepared: list[PreparedTask],
                 run_dir: Optional[Path], identity: Optional[dict]) -> tuple[Path, KnownRecords, list, Optional[RunLock], str]:
    """Rank 0 locks the run folder, writes the run's identity and loads what is known (this
    run's records on --resume, the cache's); every rank learns the folder, the attempt and
    the namespace from rank 0 and opens its own record files."""
    context = session.context
    known, lock, cache = KnownRecords(), None, None
    if context.is_main:
        lock = RunLock(run_dir)
        run_dir.mkdir(parents=True, exist_ok=True)
        note = lock.acquire()
        if note:
            print(f"> Note: {note}")
        if not args.no_records and not args.resume:
            write_identity(run_dir, identity)
        namespace = model_namespace(identity["model"])
        if args.cache:
            cache = cache_folder(Path(args.cache), namespace, identity["model"])
        from_run, from_cache = load_known(run_dir if args.resume else None, cache)
        known = KnownRecords(from_run.results, from_cache.results)
        if args.resume:
            print(f"> Resuming {run_dir}: {from_run.lines:,} records in {from_run.files} file(s)")
        if args.cache:
            print(f"> Cache {cache}: {from_cache.lines:,} records of this model and scoring code")
        for line in from_run.dropped + from_cache.dropped:
            print(f"> Note: dropped {line}")
        shared = (run_dir, dt.datetime.now().strftime("%Y%m%d-%H%M%S") + f"-{os.getpid()}", namespace, cache)
    else:
        shared = None
    run_dir, attempt, namespace, cache = context.broadcast_from_main(shared)
    writers = open_writers(None if args.no_records else run_dir, cache, attempt, context.rank)
    return run_dir, known, writers, lock, namespace


def run(args: argparse.Namespace, argv: Optional[list[str]], session: Session, spec: ModelSpec | HFModelSpec,
        prepared: list[PreparedTask], run_dir: Optional[Path], identity: Optional[dict], start: float) -> None:
    """Load the model, evaluate every task, save (rank 0 records; the others only score)."""
    context = session.context
    run_dir, known, writers, lock, namespace = open_records(args, session, spec, prepared, run_dir, identity)
    recorder, tee = None, None
    if context.is_main:
        recorder = RunRecorder(
            run_dir,
            model={"config": args.model_config, "backend": args.backend, "args": spec.describe(prepared[0].task.tokenizer)},
            run={"argv": sys.argv[1:] if argv is None else list(argv), "data_path": str(Path(args.data_path).resolve()),
                 "limit": args.limit, **context.describe()},
        )
        tee = Tee(sys.stdout, run_dir / "console.log")
        sys.stdout = tee
    scorer = None
    try:
        print(f"> Run folder: {run_dir}")
        layout = f"; {context.world_size} processes: tensor parallel {context.model_parallel_size} x data parallel " \
                 f"{context.data_parallel_size} on {len(context.nodes)} node(s)" if context.distributed else ""
        print(f"> Loading model from {spec.source} ({spec.dtype} on {spec.device}{layout})")
        model_start = time.time()
        rss_before_model = (status_kb("VmRSS") or 0) / 1024
        model = load_model(spec, context)
        peak_after_load = (status_kb("VmHWM") or 0) / 1024
        backend = spec.make_scorer(model, prepared[0].task.tokenizer)
        inner = DataParallelScorer(backend, context, session.watchdog) if context.distributed else backend
        scorer = RecordingScorer(inner, context, namespace, known, writers)
        print(f"> Model loaded in {time.time() - model_start:.1f}s")
        if recorder is not None and hasattr(backend, "describe"):
            recorder.results["model"]["scorer"] = backend.describe()
            recorder.write()
        progress = not args.no_progress and sys.stderr.isatty() and context.is_main
        for item in prepared:
            print()
            before = dataclasses.replace(scorer.counts)
            evaluate_task(item, scorer, recorder, progress=progress, show_stderr=args.show_stderr)
            reused = scorer.counts.minus(before)
            if reused.from_run or reused.from_cache:
                print(f"    Reused {reused.from_run + reused.from_cache:,} of {reused.total:,} items "
                      f"({reused.from_run:,} from this run's records, {reused.from_cache:,} from the cache)")
        print(format_all_done(len(prepared), time.time() - start))
        counts = scorer.counts
        if args.resume:
            print(f"> resumed: {counts.from_run:,} of {counts.total:,} items already done, {counts.computed:,} computed")
        if args.cache:
            print(f"> cache: reused {counts.from_cache:,} of {counts.total:,} items")
        memory = context.gather_world({"rank": context.rank, "weights_mb": round(weight_bytes(model) / 2**20, 1),
                                       "rss_before_model_mb": round(rss_before_model, 1),
                                       "peak_rss_after_load_mb": round(peak_after_load, 1), **peak_memory(spec.device)})
        if recorder is not None:
            recorder.results["run"]["memory"] = memory
            if hasattr(backend, "describe"):  # again: its counters (prefix reuse) are only known now
                recorder.results["model"]["scorer"] = backend.describe()
            recorder.results["run"]["records"] = {
                "kept": not args.no_records, "resumed": bool(args.resume), "cache": args.cache,
                "reused_from_run": counts.from_run, "reused_from_cache": counts.from_cache, "computed": counts.computed,
                "repeated_in_run": counts.repeated, "rank0_overhead_seconds": round(scorer.overhead_seconds, 3)}
            recorder.results["finished"] = dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")
            recorder.write()
            if context.distributed:
                print("> Memory per rank (weights / peak resident): " + ", ".join(
                    f"rank {m['rank']} {m['weights_mb']:.0f} / {m['peak_rss_mb']:.0f} MB" for m in memory))
            print(f"> Results saved to {recorder.results_path}")
    finally:
        if scorer is not None:
            scorer.close()
        else:
            for writer in writers:
                writer.close()
        if lock is not None:
            lock.release()
        if tee is not None:
            sys.stdout = tee.stream
            tee.close()


if __name__ == "__main__":
    raise SystemExit(main())
