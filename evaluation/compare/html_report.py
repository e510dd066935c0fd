"""report.html: one self-contained file (inline CSS and SVG, no script, nothing fetched).

Sections: the verdict and the runs; regressions and improvements; Δ per task with 95 %
intervals; per-prompt scores of each group; a per-file Δ heatmap for tasks with many files
(MMLU's subjects); every unit; and a flip browser: each flipped item with its text, its
target and both predictions.
"""

from __future__ import annotations

import html
from typing import Any

from . import plots
from .markdown import delta_cell, flips_cell, number, p_value, verdict_cell
from .runs import key_label
from .units import Comparisons, Unit

STYLE = """
body { font-family: -apple-system, "Segoe UI", Roboto, Helvetica, Arial, sans-serif; margin: 2em auto; max-width: 1200px;
       color: #212121; padding: 0 1em; }
h1 { font-size: 1.6em; } h2 { font-size: 1.25em; margin-top: 2em; border-bottom: 1px solid #ddd; }
table { border-collapse: collapse; font-size: 0.85em; margin: 0.5em 0; }
th, td { border: 1px solid #ddd; padding: 3px 7px; text-align: left; vertical-align: top; }
th { background: #f5f5f5; } td.num { text-align: right; font-variant-numeric: tabular-nums; }
.regressed { color: #c62828; font-weight: bold; } .improved { color: #2e7d32; font-weight: bold; }
.underpowered { color: #757575; } .banner { padding: 0.8em 1em; border-radius: 6px; font-size: 1.1em; }
.bad { background: #ffebee; border: 1px solid #c62828; } .good { background: #e8f5e9; border: 1px solid #2e7d32; }
.warn { background: #fff8e1; border: 1px solid #f9a825; padding: 0.5em 1em; font-weight: bold; }
details { margin: 0.3em 0; } summary { cursor: pointer; } .text { white-space: pre-wrap; max-width: 520px; }
figure { margin: 1em 0; } figure svg { max-width: 100%; height: auto; }
"""


def _e(value: Any) -> str:
    return html.escape(str(value))


def units_table(result: Comparisons, units: list[Unit], run: int = 0) -> str:
    head = ("<tr><th>task</th><th>unit</th><th>metric</th><th>n</th><th>baseline</th><th>new</th><th>Δ [95% CI]</th>"
            "<th>p (Holm)</th><th>flips ✗/✓</th><th>MDE</th><th>method</th><th>verdict</th></tr>")
    rows = []
    for u in units:
        c = u.comparisons[run]
        rows.append(f"<tr><td>{_e(u.task)}</td><td>{_e(u.name)}</td><td>{_e(u.metric)}</td><td class=num>{c.n}</td>"
                    f"<td class=num>{number(u.values[0])}</td><td class=num>{number(u.values[run + 1])}</td>"
                    f"<td class=num>{_e(delta_cell(c))}</td><td class=num>{p_value(c.p_holm)}</td>"
                    f"<td class=num>{flips_cell(c)}</td><td class=num>{number(c.mde, 2)}</td><td>{_e(c.method)}</td>"
                    f"<td class='{c.verdict.split()[0]}'>{_e(verdict_cell(c, result.margin, emoji=False))}</td></tr>")
    return f"<table>{head}{''.join(rows)}</table>"


def describe(record: dict[str, Any]) -> tuple[str, str, str]:
    """(input, target, prediction) of a prediction record, as text."""
    item = record.get("item", {}) if isinstance(record.get("item"), dict) else {}
    text = str(item.get("inputs_pretokenized", item.get("inputs", "")))
    choices = item.get("choices_pretokenized")
    prediction, target = record.get("prediction"), record.get("target", record.get("targets"))
    if isinstance(choices, list):
        if isinstance(prediction, int) and 0 <= prediction < len(choices):
            prediction = f"{prediction}: {choices[prediction]}"
        if isinstance(target, int) and 0 <= target < len(choices):
            target = f"{target}: {choices[target]}"
    if "target_ids" in record and prediction is None:
        prediction = "greedy" if record.get("greedy") else "not greedy"
        target = item.get("targets_pretokenized", "")
    return text[-600:], str(target), str(prediction)


def flip_browser(result: Comparisons, limit: int = 200) -> str:
    parts = []
    for r in range(1, len(result.runs)):
        for unit in result.units:
            c = unit.comparisons[r - 1]
            if unit.level != "file" or not (c.right_to_wrong or c.wrong_to_right):
                continue
            pairing = result.paired[unit.task]
            rows = []
            for direction, positions in (("right → wrong", c.right_to_wrong), ("wrong → right", c.wrong_to_right)):
                for position in positions[:limit]:
                    key = unit.keys[position]
                    base_file, base_index = pairing.positions[0][key]
                    new_file, new_index = pairing.positions[r][key]
                    base_record = result.runs[0].files[(unit.task, base_file)].records[base_index]
                    new_record = result.runs[r].files[(unit.task, new_file)].records[new_index]
                    text, target, base_prediction = describe(base_record)
                    _, _, new_prediction = describe(new_record)
                    css = "regressed" if direction.startswith("right") else "improved"
                    rows.append(f"<tr><td class='{css}'>{direction}</td><td>{_e(key_label(key, base_file, base_index))}</td>"
                                f"<td class=text>{_e(text)}</td><td>{_e(target)}</td><td>{_e(base_prediction)}</td>"
                                f"<td>{_e(new_prediction)}</td></tr>")
            header = ("<tr><th>flip</th><th>item</th><th>input (end)</th><th>target</th>"
                      f"<th>{_e(result.runs[0].label)}</th><th>{_e(result.runs[r].label)}</th></tr>")
            parts.append(f"<details><summary>{_e(unit.task)} / <code>{_e(unit.name)}</code> ({_e(unit.metric)}): "
                         f"{len(c.right_to_wrong)} right → wrong, {len(c.wrong_to_right)} wrong → right"
                         f"{' (vs ' + _e(result.runs[r].label) + ')' if len(result.runs) > 2 else ''}</summary>"
                         f"<table>{header}{''.join(rows)}</table></details>")
    return "".join(parts) or "<p>No item changed between right and wrong.</p>"


def report_html(result: Comparisons, markdown_summary: str) -> str:
    runs_rows = "".join(f"<tr><td>{'baseline' if i == 0 else i}</td><td>{_e(r.label)}</td><td><code>{_e(r.path)}</code></td>"
                        f"<td>{_e(r.results.get('model', {}).get('config'))}</td></tr>" for i, r in enumerate(result.runs))
    beyond = result.regressions
    banner = (f"<div class='banner bad'>FAIL: {len(beyond)} regression(s) beyond the {result.margin:g}-point margin (exit code 1)</div>"
              if beyond else f"<div class='banner good'>PASS: no significant regression beyond the {result.margin:g}-point margin "
                             "(exit code 0)</div>")
    notes = "".join(f"<p class=warn>WARNING: {_e(n)}</p>" for n in result.notes)
    sections = [f"<h1>glm-eval comparison</h1>{banner}{notes}",
                "<h2 id=runs>Runs</h2><table><tr><th>#</th><th>label</th><th>folder</th><th>model config</th></tr>"
                f"{runs_rows}</table>",
                f"<p>Δ = run − baseline. Intervals are paired 95 % intervals; p-values are Holm-adjusted over the "
                f"{len(result.units)} units of each run (α = {result.alpha:g}); MDE = minimum detectable effect at 80 % power. "
                "Verdicts: improved / regressed (significant), underpowered (the MDE exceeds the margin), no detectable change.</p>"]
    for r in range(1, len(result.runs)):
        chosen = [u for u in result.units if u.comparisons[r - 1].verdict in ("regressed", "improved")]
        title = f"Regressions and improvements ({_e(result.runs[r].label)})"
        sections.append(f"<h2 id=changes-{r}>{title}</h2>" + (units_table(result, sorted(chosen, key=lambda u: u.comparisons[r - 1].verdict != 'regressed'), r - 1)
                                                              if chosen else "<p>None.</p>"))
    figure = plots.delta_per_task(result)
    if figure:
        sections.append(f"<h2 id=delta>Δ per task</h2><figure>{figure}</figure>")
    figure = plots.per_prompt(result)
    if figure:
        sections.append(f"<h2 id=prompts>Per-prompt scores</h2><figure>{figure}</figure>")
    for task, figure in plots.subject_heatmap(result):
        sections.append(f"<h2 id=heatmap-{_e(task)}>{_e(task)}: per-file Δ</h2><figure>{figure}</figure>")
    for r in range(1, len(result.runs)):
        sections.append(f"<h2 id=units-{r}>Every unit ({_e(result.runs[r].label)})</h2>"
                        + units_table(result, [u for u in result.units if u.level == "group"], r - 1)
                        + "<details><summary>files</summary>"
                        + units_table(result, [u for u in result.units if u.level == "file"], r - 1) + "</details>")
    sections.append(f"<h2 id=flips>Flipped items</h2>{flip_browser(result)}")
    sections.append(f"<h2 id=markdown>Markdown summary</h2><details><summary>report.md</summary><pre>{_e(markdown_summary)}</pre></details>")
    return (f"<!doctype html><html lang=en><head><meta charset='utf-8'><title>glm-eval comparison</title><style>{STYLE}</style>"
            f"</head><body>{''.join(sections)}</body></html>\n")
