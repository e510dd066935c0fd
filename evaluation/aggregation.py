"""Per-group statistics over prompt files, and the GLM-130B console formats.

A group (e.g. ``validation``) gathers several prompt files of one task; its score is
reported as max / median / average over files, the average weighted by each file's
item count, so that prompt sensitivity is visible at a glance.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Mapping, Optional, Sequence

import numpy as np

from .metrics import METRICS
from .uncertainty import FileItems, Interval, as_json, group_interval


@dataclass(frozen=True)
class FileScore:
    """Metric values of one data file, how many items produced them, and (when known) each
    metric's per-item contributions and interval (``uncertainty.py``)."""

    file: str
    n: int
    metrics: Mapping[str, float]
    items: Mapping[str, FileItems] = field(default_factory=dict)
    intervals: Mapping[str, Optional[Interval]] = field(default_factory=dict)
    stats: Mapping[str, float] = field(default_factory=dict)  # LM files: words, bytes, tokens (what PPL/BPB divide by)

    def as_json(self) -> dict[str, Any]:
        """``{"n": ..., "<metric>": v, "<metric>_stderr": se, "<metric>_ci95": [low, high]}``
        (lm-evaluation-harness's naming; null where there is no interval)."""
        entry: dict[str, Any] = {"n": self.n}
        for name, value in self.metrics.items():
            entry[name] = value
            if name in self.intervals:
                entry[f"{name}_stderr"], entry[f"{name}_ci95"] = as_json(self.intervals[name])
        if self.stats:
            entry["stats"] = dict(self.stats)
        return entry


def group_statistics(files: Sequence[FileScore]) -> dict[str, dict[str, Any]]:
    """metric -> {max, median, average[, average_stderr, average_ci95]}; average weighted by
    item count; the average's interval when every file carries its items."""
    if not files:
        raise ValueError("a group needs at least one file")
    weights = np.array([f.n for f in files], dtype=np.float64)
    stats: dict[str, dict[str, Any]] = {}
    for name in files[0].metrics:
        values = np.array([f.metrics[name] for f in files], dtype=np.float64)
        average = float(np.average(values, weights=weights)) if weights.sum() > 0 else float(values.mean())
        stats[name] = {"max": float(values.max()), "median": float(np.median(values)), "average": average}
        if all(name in f.items for f in files) and name in METRICS:
            interval = group_interval(METRICS[name], [f.items[name] for f in files])
            stats[name]["average_stderr"], stats[name]["average_ci95"] = as_json(interval)
    return stats


def _pm(stderr: Optional[float]) -> str:
    return f" ± {stderr:.3f}" if stderr is not None and math.isfinite(stderr) else ""


def format_file_line(score: FileScore, show_stderr: bool = False) -> str:
    """``Finish <file>, Accuracy = 29.200`` (GLM-130B's line; ``± se`` after each value with ``show_stderr``)."""
    def value(name: str, v: float) -> str:
        interval = score.intervals.get(name) if show_stderr else None
        return f", {name} = {v:.3f}" + (_pm(interval.stderr) if interval is not None else "")
    return "        Finish " + score.file + "".join(value(k, v) for k, v in score.metrics.items())


def _triple(stats: Mapping[str, Any], show_stderr: bool = False) -> str:
    se = _pm(stats.get("average_stderr")) if show_stderr else ""
    return f"max = {stats['max']:.3f}, median = {stats['median']:.3f}, average = {stats['average']:.3f}{se}"


def format_group_lines(group: str, stats: Mapping[str, Mapping[str, Any]], level: int = 1, show_stderr: bool = False) -> list[str]:
    """One line for a single metric; a header plus one line per metric otherwise."""
    indent = "    " * level
    if len(stats) == 1:
        (name, values), = stats.items()
        return [f"{indent}Group {group} {name}: {_triple(values, show_stderr)}"]
    return [f"{indent}Group {group}:"] + [f"{indent}    Metric {name}: {_triple(values, show_stderr)}" for name, values in stats.items()]


def format_task_done(name: str, seconds: float) -> str:
    return f"Finish task {name} in {seconds:.1f}s."


def format_all_done(count: int, seconds: float) -> str:
    return f"Finish {count} task{'s' if count != 1 else ''} in {seconds:.1f}s"
