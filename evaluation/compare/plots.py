"""The report's figures, drawn with matplotlib's Agg backend and returned as inline SVG
(the HTML then opens offline, with nothing to fetch)."""

from __future__ import annotations

import io
from collections import defaultdict
from pathlib import PurePosixPath
from typing import Optional

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from .units import Comparisons, Unit  # noqa: E402

COLOURS = {"regressed": "#c62828", "improved": "#2e7d32", "underpowered": "#9e9e9e", "no detectable change": "#1565c0"}
MAX_ROWS = 60
POINT_METRICS = ("Accuracy", "EM", "F1")  # in percentage points, like the margin


def svg(figure: plt.Figure) -> str:
    buffer = io.StringIO()
    figure.savefig(buffer, format="svg", bbox_inches="tight")
    plt.close(figure)
    text = buffer.getvalue()
    return text[text.index("<svg"):]


def primary_units(result: Comparisons, level: str) -> list[Unit]:
    """The first metric of each task at ``level``."""
    first_metric = {}
    for unit in result.units:
        first_metric.setdefault(unit.task, unit.metric)
    return [u for u in result.units if u.level == level and u.metric == first_metric[u.task]]


def delta_per_task(result: Comparisons) -> Optional[str]:
    """Δ of every group average with its 95 % interval, one marker per compared run; one
    panel per metric, since their scales differ (accuracy points, perplexities)."""
    groups = [u for u in result.units if u.level == "group"]
    by_metric: dict[str, list[Unit]] = defaultdict(list)
    for unit in groups:
        by_metric[unit.metric].append(unit)
    if not by_metric:
        return None
    runs = len(result.runs) - 1
    heights = [0.6 + 0.3 * min(len(units), MAX_ROWS) * max(1.0, runs * 0.7) for units in by_metric.values()]
    figure, axes = plt.subplots(len(by_metric), 1, figsize=(8, 0.8 + sum(heights)), squeeze=False,
                                gridspec_kw={"height_ratios": heights})
    for axis, (metric, units) in zip(axes[:, 0], by_metric.items()):
        units = units[:MAX_ROWS]
        for r in range(runs):
            offsets = np.arange(len(units)) + (r - (runs - 1) / 2) * 0.25
            for y, unit in zip(offsets, units):
                c = unit.comparisons[r]
                axis.errorbar(c.delta, y, xerr=[[max(c.delta - c.low, 0.0)], [max(c.high - c.delta, 0.0)]], fmt="o",
                              color=COLOURS[c.verdict], ecolor=COLOURS[c.verdict], capsize=3, markersize=5)
        axis.axvline(0, color="black", linewidth=0.8)
        if metric in POINT_METRICS:
            for edge in (-result.margin, result.margin):
                axis.axvline(edge, color="#888888", linewidth=0.8, linestyle="--")
        axis.set_yticks(np.arange(len(units)))
        axis.set_yticklabels([f"{u.task} / {u.name}" for u in units], fontsize=8)
        axis.set_ylim(len(units) - 0.5, -0.5)
        axis.set_title(f"{metric}" + (" (dashed: the margin)" if metric in POINT_METRICS else ""), fontsize=9, loc="left")
        axis.grid(axis="x", alpha=0.3)
        if runs > 1:
            axis.text(1.0, 1.02, "markers top to bottom: " + ", ".join(r.label for r in result.runs[1:]), fontsize=7,
                      transform=axis.transAxes, ha="right")
    axes[-1, 0].set_xlabel(f"Δ = run − {result.runs[0].label}, paired 95 % interval")
    handles = [plt.Line2D([], [], marker="o", linestyle="", color=colour, label=name) for name, colour in COLOURS.items()]
    figure.legend(handles=handles, fontsize=7, loc="lower center", ncol=4, bbox_to_anchor=(0.5, -0.02))
    figure.tight_layout(rect=(0, 0.03, 1, 1))
    return svg(figure)


def per_prompt(result: Comparisons, limit: int = 12) -> Optional[str]:
    """Per-prompt scores of each group whose files are prompts of the same questions
    (``Plain/mul/test.jsonl``, ``Question/mul/test.jsonl``): baseline against the other runs.
    Groups of different questions (MMLU's subjects) are in the heatmap instead."""
    files_of: dict[tuple[str, str], list[Unit]] = defaultdict(list)
    groups = [u for u in primary_units(result, "group") if len(u.files) > 1]
    file_units = {(u.task, u.name.split(" -> ")[0], u.metric): u for u in result.units if u.level == "file"}
    for group in groups:
        for f in group.files:
            unit = file_units.get((group.task, f, group.metric))
            if unit is not None:
                files_of[(group.task, group.name)].append(unit)
    def prompts_of_one_question_set(units: list[Unit]) -> bool:  # as uncertainty.prompt_variants: same tail, same n
        tails = {PurePosixPath(u.name.split(" -> ")[0]).parts[1:] for u in units}
        return len(tails) == 1 and len({len(u.keys) for u in units}) == 1

    chosen = [(key, units) for key, units in files_of.items() if len(units) > 1 and prompts_of_one_question_set(units)][:limit]
    if not chosen:
        return None
    columns = min(3, len(chosen))
    rows = -(-len(chosen) // columns)
    figure, axes = plt.subplots(rows, columns, figsize=(4.2 * columns, 3.0 * rows), squeeze=False)
    width = 0.8 / len(result.runs)
    for axis, ((task, group), units) in zip(axes.flat, chosen):
        x = np.arange(len(units))
        for r, run in enumerate(result.runs):
            axis.bar(x + (r - (len(result.runs) - 1) / 2) * width, [u.values[r] for u in units], width, label=run.label)
        axis.set_xticks(x)
        axis.set_xticklabels([u.name.split("/")[0][:18] for u in units], rotation=30, ha="right", fontsize=7)
        axis.set_title(f"{task} / {group} ({units[0].metric})", fontsize=8)
        axis.tick_params(axis="y", labelsize=7)
    for axis in list(axes.flat)[len(chosen):]:
        axis.axis("off")
    axes.flat[0].legend(fontsize=7)
    figure.tight_layout()
    return svg(figure)


def subject_heatmap(result: Comparisons, minimum_files: int = 8) -> list[tuple[str, str]]:
    """Per-file Δ of tasks with many files (MMLU's subjects), rows sorted by Δ: (task, svg)."""
    figures = []
    by_task: dict[str, list[Unit]] = defaultdict(list)
    for unit in primary_units(result, "file"):
        by_task[unit.task].append(unit)
    for task, units in by_task.items():
        if len(units) < minimum_files:
            continue
        units = sorted(units, key=lambda u: u.comparisons[0].delta)
        matrix = np.array([[c.delta for c in u.comparisons] for u in units])
        limit = float(np.nanmax(np.abs(matrix))) or 1.0
        figure, axis = plt.subplots(figsize=(2.2 + 1.4 * matrix.shape[1], 0.6 + 0.2 * len(units)))
        image = axis.imshow(matrix, cmap="RdBu", vmin=-limit, vmax=limit, aspect="auto")
        axis.set_yticks(np.arange(len(units)))
        axis.set_yticklabels([u.name.split(" -> ")[0].rsplit("/", 1)[-1].removesuffix(".jsonl") for u in units], fontsize=6)
        axis.set_xticks(np.arange(matrix.shape[1]))
        axis.set_xticklabels([r.label for r in result.runs[1:]], fontsize=7, rotation=20)
        for (y, x), value in np.ndenumerate(matrix):
            axis.text(x, y, f"{value:+.1f}", ha="center", va="center", fontsize=5)
        figure.colorbar(image, ax=axis, label=f"Δ {units[0].metric} against {result.runs[0].label}", shrink=0.6)
        axis.set_title(f"{task}: Δ per file", fontsize=8)
        figures.append((task, svg(figure)))
    return figures
