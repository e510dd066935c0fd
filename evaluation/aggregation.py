"""Per-group statistics over prompt files, and the GLM-130B console formats.

A group (e.g. ``validation``) gathers several prompt files of one task; its score is
reported as max / median / average over files, the average weighted by each file's
item count, so that prompt sensitivity is visible at a glance.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Mapping, Sequence

import numpy as np


@dataclass(frozen=True)
class FileScore:
    """Metric values of one data file and how many items produced them."""

    file: str
    n: int
    metrics: Mapping[str, float]


def group_statistics(files: Sequence[FileScore]) -> dict[str, dict[str, float]]:
    """metric -> {max, median, average}; average weighted by item count."""
    if not files:
        raise ValueError("a group needs at least one file")
    weights = np.array([f.n for f in files], dtype=np.float64)
    stats = {}
    for name in files[0].metrics:
        values = np.array([f.metrics[name] for f in files], dtype=np.float64)
        average = float(np.average(values, weights=weights)) if weights.sum() > 0 else float(values.mean())
        stats[name] = {"max": float(values.max()), "median": float(np.median(values)), "average": average}
    return stats


def format_file_line(score: FileScore) -> str:
    return "        Finish " + score.file + "".join(f", {k} = {v:.3f}" for k, v in score.metrics.items())


def _triple(stats: Mapping[str, float]) -> str:
    return f"max = {stats['max']:.3f}, median = {stats['median']:.3f}, average = {stats['average']:.3f}"


def format_group_lines(group: str, stats: Mapping[str, Mapping[str, float]], level: int = 1) -> list[str]:
    """One line for a single metric; a header plus one line per metric otherwise."""
    indent = "    " * level
    if len(stats) == 1:
        (name, values), = stats.items()
        return [f"{indent}Group {group} {name}: {_triple(values)}"]
    return [f"{indent}Group {group}:"] + [f"{indent}    Metric {name}: {_triple(values)}" for name, values in stats.items()]


def format_task_done(name: str, seconds: float) -> str:
    return f"Finish task {name} in {seconds:.1f}s."


def format_all_done(count: int, seconds: float) -> str:
    return f"Finish {count} task{'s' if count != 1 else ''} in {seconds:.1f}s"
