"""report.md: GitHub-flavoured, short enough for a pull-request comment, regressions first.

Two runs: the regressions, then the improvements, then one row per group (the task-level
lines; MMLU's overall among them), with files only where something moved. More runs: one
table, a column per run, each against the first.
"""

from __future__ import annotations

import math

from .statistics import Comparison
from .units import Comparisons, Unit

SYMBOL = {"regressed": "🔴 regressed", "improved": "🟢 improved", "no detectable change": "no detectable change",
          "underpowered": "⚪ underpowered"}


def number(value: float, digits: int = 3) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "n/a"
    if isinstance(value, float) and math.isinf(value):
        return "inf"
    return f"{value:.{digits}f}" if abs(value) < 1e6 else f"{value:.3g}"


def signed(value: float) -> str:
    return f"{value:+.2f}" if abs(value) < 1e6 else f"{value:+.3g}"


def p_value(p: float) -> str:
    return "<0.001" if p < 0.001 else f"{p:.3f}"


def delta_cell(c: Comparison) -> str:
    return f"{c.delta:+.3f} [{c.low:+.3f}, {c.high:+.3f}]" if abs(c.delta) < 1e6 else f"{c.delta:+.3g}"


def flips_cell(c: Comparison) -> str:
    return f"{len(c.right_to_wrong)} / {len(c.wrong_to_right)}" if c.method.endswith(("McNemar", "normal")) else "–"


def verdict_cell(c: Comparison, margin: float, emoji: bool = True) -> str:
    text = SYMBOL[c.verdict] if emoji else c.verdict
    if c.verdict == "regressed" and not c.beyond_margin:
        text += f" (within the {margin:g} margin)"
    return text


HEADER = "| task | unit | metric | n | baseline | new | Δ [95% CI] | p (Holm) | flips ✗/✓ | MDE | verdict |\n" \
         "|---|---|---|---:|---:|---:|---|---:|---:|---:|---|"


def row(unit: Unit, index: int, margin: float) -> str:
    c = unit.comparisons[index]
    where = unit.name if unit.level == "group" else f"`{unit.name}`"
    return (f"| {unit.task} | {where} | {unit.metric} | {c.n} | {number(unit.values[0])} | {number(unit.values[index + 1])} | "
            f"{delta_cell(c)} | {p_value(c.p_holm)} | {flips_cell(c)} | {number(c.mde, 2)} | {verdict_cell(c, margin)} |")


def two_runs(result: Comparisons) -> str:
    base, new = result.runs[0], result.runs[1]
    lines = [f"## glm-eval comparison: `{new.label}` against `{base.label}`", ""]
    count = sum(len(p.keys) for p in result.paired.values())
    lines.append(f"{len(result.paired)} task(s), {count:,} paired items; margin {result.margin:g} points, α = {result.alpha:g} "
                 f"after Holm's correction over {len(result.units)} comparisons. Δ = new − baseline; flips ✗/✓ = right→wrong / "
                 f"wrong→right; MDE = minimum detectable effect.")
    lines.append("")
    for note in result.notes:
        lines.append(f"> **⚠ {note}**")
    if result.notes:
        lines.append("")
    regressions = [u for u in result.units if u.comparisons[0].verdict == "regressed"]
    improvements = [u for u in result.units if u.comparisons[0].verdict == "improved"]
    beyond = [u for u in regressions if u.comparisons[0].beyond_margin]
    lines.append(f"**{'❌ ' + str(len(beyond)) + ' regression(s) beyond the margin' if beyond else '✅ no significant regression beyond the margin'}**"
                 f" (exit code {result.exit_code}); {len(improvements)} improvement(s); "
                 f"{sum(u.comparisons[0].verdict == 'underpowered' for u in result.units)} underpowered unit(s).")
    lines.append("")
    for title, chosen in (("Regressions", regressions), ("Improvements", improvements)):
        if chosen:
            lines += [f"### {title}", "", HEADER] + [row(u, 0, result.margin) for u in chosen] + [""]
    groups = [u for u in result.units if u.level == "group"]
    lines += ["### Groups (task level)", "", HEADER] + [row(u, 0, result.margin) for u in groups] + [""]
    return "\n".join(lines)


def many_runs(result: Comparisons) -> str:
    labels = [r.label for r in result.runs]
    lines = [f"## glm-eval comparison of {len(labels)} runs, each against `{labels[0]}`", ""]
    lines.append(f"Margin {result.margin:g} points, α = {result.alpha:g} after Holm's correction per run. "
                 "Cells: value (Δ against the first run, verdict).")
    lines.append("")
    for note in result.notes:
        lines.append(f"> **⚠ {note}**")
    beyond = result.regressions
    lines.append(f"**{'❌ ' + str(len(beyond)) + ' regression(s) beyond the margin' if beyond else '✅ no significant regression beyond the margin'}**"
                 f" (exit code {result.exit_code}).")
    lines += ["", "| task | group | metric | " + " | ".join(f"`{label}`" for label in labels) + " |",
              "|---|---|---|" + "---:|" * len(labels)]
    for unit in result.units:
        if unit.level != "group":
            continue
        cells = [number(unit.values[0])]
        for index, c in enumerate(unit.comparisons):
            mark = {"regressed": "🔴", "improved": "🟢", "underpowered": "⚪"}.get(c.verdict, "")
            cells.append(f"{number(unit.values[index + 1])} ({signed(c.delta)}{' ' + mark if mark else ''})")
        lines.append(f"| {unit.task} | {unit.name} | {unit.metric} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def markdown(result: Comparisons) -> str:
    return two_runs(result) if len(result.runs) == 2 else many_runs(result)
