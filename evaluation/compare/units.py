"""The units a comparison reports on: every group (its average) and every file of every task,
per metric, with the baseline's value, each other run's, and the paired comparison of each
other run with the baseline (``statistics.py``), Holm-adjusted over every comparison of a run.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import PurePosixPath
from typing import Any, Optional

import numpy as np

from ..metrics import METRICS, value_of
from ..uncertainty import is_mean
from .runs import CompareError, PairedTask, Run, pair_task
from .statistics import ALPHA, Comparison, compare_binary, compare_general, compare_table, decide, holm


@dataclass
class Unit:
    task: str
    level: str  # "group" or "file"
    name: str  # the group, or the baseline's file (with the other runs' file when it differs)
    metric: str
    keys: list[tuple]
    values: list[float]
    comparisons: list[Comparison]  # one per run after the baseline
    files: list[str] = field(default_factory=list)  # the baseline files of the unit's items


@dataclass
class Comparisons:
    runs: list[Run]
    units: list[Unit]
    paired: dict[str, PairedTask]
    notes: list[str]
    margin: float
    alpha: float

    @property
    def regressions(self) -> list[tuple[Unit, int]]:
        """(unit, run index) of every regression beyond the margin."""
        return [(u, r) for u in self.units for r, c in enumerate(u.comparisons, start=1) if c.verdict == "regressed" and c.beyond_margin]

    @property
    def exit_code(self) -> int:
        return 1 if self.regressions else 0


def _item_arrays(run: Run, task: str, metric: str, cache: dict) -> Any:
    def arrays(file: str) -> tuple[np.ndarray, np.ndarray]:
        key = (id(run), task, file, metric)
        if key not in cache:
            result = run.files[(task, file)]
            cache[key] = METRICS[metric].items(result.records, result.stats)
        return cache[key]
    return arrays


def _clusters(run: Run, task: str, positions: list[tuple[str, int]], level: str, files: list[str]) -> Optional[list[Any]]:
    """Clusters of a unit's items (the rule of ``uncertainty.group_interval``)."""
    field_name = run.task_config(task).get("cluster_by")
    if field_name:
        return [str(run.files[(task, f)].records[i].get("item", {}).get(field_name, (f, i))) for f, i in positions]
    if level == "file" or len(files) < 2:
        return None
    tails = {PurePosixPath(f).parts[1:] for f in files}
    counts = {len(run.files[(task, f)].records) for f in files}
    if len(tails) == 1 and len(counts) == 1:
        return [i for _, i in positions]  # prompt variants: a question is one cluster across prompts
    return [f for f, _ in positions]


def build(runs: list[Run], margin: float, alpha: float = ALPHA, intersection: bool = False) -> Comparisons:
    """Pair every task of the runs and compare each later run with the first."""
    tasks = list(runs[0].results["tasks"])
    notes = []
    for run in runs[1:]:
        other = list(run.results["tasks"])
        if sorted(other) != sorted(tasks):
            if not intersection:
                raise CompareError(f"{run.label} evaluated other tasks than {runs[0].label}: "
                                   f"{sorted(set(other) ^ set(tasks))} are in one run only (compare the common ones with --intersection)")
            notes.append(f"ONLY THE COMMON TASKS ARE COMPARED: {sorted(set(other) ^ set(tasks))} left out ({run.label})")
            tasks = [t for t in tasks if t in other]
    cache: dict = {}
    units: list[Unit] = []
    paired: dict[str, PairedTask] = {}
    for task in tasks:
        pairing = pair_task(runs, task, intersection)
        paired[task] = pairing
        for r, run in enumerate(runs[1:], start=1):
            if pairing.dropped[r] or pairing.missing[r]:
                notes.append(f"ONLY THE COMMON ITEMS ARE COMPARED in task {task}: {pairing.missing[r]} baseline items are not in "
                             f"{run.label}, {pairing.dropped[r]} of its items are not in the baseline")
        baseline = runs[0]
        base_files = [baseline.files[(task, f)] for g in baseline.groups[task] for f in baseline.groups[task][g]]
        metrics = list(base_files[0].metrics)
        by_file: dict[str, list[tuple]] = {}
        for key in pairing.keys:
            by_file.setdefault(pairing.positions[0][key][0], []).append(key)
        layout = [("group", g, [f for f in files if f in by_file]) for g, files in baseline.groups[task].items()]
        layout += [("file", f, [f]) for f in by_file]
        for level, name, files in layout:
            keys = [k for f in files for k in by_file.get(f, [])]
            if not keys:
                continue
            for metric_name in metrics:
                metric = METRICS[metric_name]
                per_run = []
                for r, run in enumerate(runs):
                    arrays = _item_arrays(run, task, metric_name, cache)
                    positions = [pairing.positions[r][k] for k in keys]
                    num = np.asarray([arrays(f)[0][i] for f, i in positions])
                    den = np.asarray([arrays(f)[1][i] for f, i in positions])
                    per_run.append((num, den, positions))
                if level == "group" and len(files) > 1 and not is_mean(metric, per_run[0][1]):
                    continue  # a ratio metric's group average is not a pooled statistic (uncertainty.py)
                clusters = _clusters(baseline, task, per_run[0][2], level, files)
                comparisons = []
                for num, den, _ in per_run[1:]:
                    base_num, base_den, _ = per_run[0]
                    if metric.statistic is not None:  # (targets, predictions): the targets are the baseline's
                        comparisons.append(compare_table(metric, base_num, base_den, den, clusters))
                    elif metric.binary and is_mean(metric, base_den):
                        comparisons.append(compare_binary(metric, base_num, num, clusters))
                    else:
                        comparisons.append(compare_general(metric, base_num, base_den, num, den, clusters))
                label = name
                if level == "file":
                    others = sorted({per_run[r][2][0][0] for r in range(1, len(runs))} - {name})
                    label = name + "".join(f" -> {o}" for o in others)
                values = [value_of(metric, num, den) for num, den, _ in per_run]
                units.append(Unit(task, level, label, metric_name, keys, values, comparisons, files))
    for r in range(1, len(runs)):
        family = [u.comparisons[r - 1] for u in units]
        for comparison, adjusted in zip(family, holm([c.p for c in family])):
            comparison.p_holm = adjusted
    for unit in units:
        for comparison in unit.comparisons:
            decide(comparison, METRICS[unit.metric], margin, alpha)
    return Comparisons(runs, units, paired, notes, margin, alpha)
