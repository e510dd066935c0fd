"""Evaluate loaded tasks file by file, print the GLM-130B lines, record results."""

from __future__ import annotations

import dataclasses
import time
from typing import Any, Callable, Optional

from .aggregation import FileScore, format_file_line, format_group_lines, format_task_done, group_statistics
from .results import RunRecorder
from .metrics import METRICS
from .scoring.api import Scorer
from .uncertainty import FileItems, metric_interval
from .task_config import LoadedTask
from .tasks import BaseTask, FileData


@dataclasses.dataclass
class PreparedTask:
    """A validated task with its task object and parsed data files (group -> files)."""

    loaded: LoadedTask
    task: BaseTask
    data: dict[str, list[FileData]]


def file_score(prepared: PreparedTask, relative: str, records: list[dict[str, Any]], data: FileData,
               metrics: dict[str, float]) -> FileScore:
    """A file's metric values with each metric's per-item contributions and interval."""
    config, items, intervals = prepared.loaded.config, {}, {}
    clusters = None
    if config.cluster_by:
        clusters = [r.get("item", {}).get(config.cluster_by, ("item", i)) for i, r in enumerate(records)]
        clusters = [c if isinstance(c, (str, int, float, tuple)) else str(c) for c in clusters]
    for name in metrics:
        metric = METRICS[name]
        num, den = metric.items(records, data.stats)
        items[name] = FileItems(relative, num, den, clusters)
        intervals[name] = metric_interval(metric, num, den, clusters)
    return FileScore(relative, len(data), metrics, items, intervals, dict(data.stats))


def evaluate_task(prepared: PreparedTask, scorer: Scorer, recorder: Optional[RunRecorder],
                  print_fn: Callable[[str], None] = print, progress: bool = True, show_stderr: bool = False) -> dict[str, Any]:
    """Run one task, print its lines and add its entry to results.json.

    Without a recorder (every rank but 0 of a multi-process run) the task is only scored:
    the scorer's collectives need every rank, while metrics are computed, printed and saved
    once, by rank 0, from the gathered results."""
    loaded, task = prepared.loaded, prepared.task
    if recorder is None:
        for files in prepared.data.values():
            for data in files:
                task.predict(scorer, data, progress=False)
        return {}
    config = loaded.config
    start = time.time()
    print_fn(f"Evaluating task {config.name}:")
    groups: dict[str, dict[str, Any]] = {}
    scores_by_group: dict[str, list[FileScore]] = {}
    for group, files in prepared.data.items():
        print_fn(f"    Evaluating group {group}:")
        scores = []
        for data in files:
            relative = loaded.relative(data.path)
            records = task.predict(scorer, data, progress=progress)
            metrics = task.compute_metrics(records, data)
            recorder.save_predictions(config.name, relative, records)
            score = file_score(prepared, relative, records, data, metrics)
            print_fn(format_file_line(score, show_stderr))
            scores.append(score)
        scores_by_group[group] = scores
    print_fn(f"Evaluation results of task {config.name}:")
    for group, scores in {**scores_by_group, **task.extra_groups(scores_by_group)}.items():
        stats = group_statistics(scores)
        for line in format_group_lines(group, stats, show_stderr=show_stderr):
            print_fn(line)
        groups[group] = {**stats, "files": {s.file: s.as_json() for s in scores}}
    seconds = time.time() - start
    entry = {
        "type": config.type,
        "yaml": str(loaded.yaml_path),
        "config": dataclasses.asdict(config),
        "effective_max_seq_length": scorer.effective_max_length(task.options),
        "seconds": round(seconds, 3),
        "groups": groups,
    }
    recorder.add_task(config.name, entry)
    print_fn(format_task_done(config.name, seconds))
    return entry
