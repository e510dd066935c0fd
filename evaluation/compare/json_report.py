"""report.json: the comparison for machines. Schema ``glm-eval-compare/1``::

    {"schema": "glm-eval-compare/1",
     "alpha": 0.05, "margin": 1.0, "exit_code": 0 | 1, "notes": ["..."],
     "runs": [{"label": "...", "path": "...", "model_config": "..."}, ...],        # runs[0] is the baseline
     "units": [{"task": "...", "level": "group" | "file", "name": "...", "metric": "Accuracy",
                "higher_is_better": true, "n": 408, "values": [baseline, run 1, ...],
                "comparisons": [{"run": 1, "delta": -1.2, "ci95": [-2.9, 0.4], "p": 0.08, "p_holm": 0.5,
                                 "mde": 2.1, "method": "exact McNemar", "verdict": "no detectable change",
                                 "beyond_margin": false,
                                 "right_to_wrong": ["<item id>", ...], "wrong_to_right": [...]}]}]}

Values are in the metric's units (points for Accuracy/EM/F1); item ids are the data's ``id``
fields where there are, else ``<file>:<index>``.
"""

from __future__ import annotations

import math
from typing import Any

from ..metrics import METRICS
from .runs import key_label
from .units import Comparisons

SCHEMA = "glm-eval-compare/1"


def _finite(value: float) -> Any:
    return value if isinstance(value, (int, bool)) or math.isfinite(value) else str(value)


def report_json(result: Comparisons) -> dict[str, Any]:
    units = []
    for unit in result.units:
        pairing = result.paired[unit.task]

        def item_ids(positions: list[int]) -> list[str]:
            ids = []
            for position in positions:
                key = unit.keys[position]
                ids.append(key_label(key, *pairing.positions[0][key]))
            return ids

        units.append({
            "task": unit.task, "level": unit.level, "name": unit.name, "metric": unit.metric,
            "higher_is_better": METRICS[unit.metric].higher_is_better, "n": len(unit.keys),
            "values": [_finite(v) for v in unit.values],
            "comparisons": [{"run": r, "delta": _finite(c.delta), "ci95": [_finite(c.low), _finite(c.high)], "p": c.p,
                             "p_holm": c.p_holm, "mde": _finite(c.mde), "method": c.method, "verdict": c.verdict,
                             "beyond_margin": c.beyond_margin, "right_to_wrong": item_ids(c.right_to_wrong),
                             "wrong_to_right": item_ids(c.wrong_to_right)}
                            for r, c in enumerate(unit.comparisons, start=1)],
        })
    return {"schema": SCHEMA, "alpha": result.alpha, "margin": result.margin, "exit_code": result.exit_code,
            "notes": result.notes,
            "runs": [{"label": r.label, "path": str(r.path), "model_config": r.results.get("model", {}).get("config")}
                     for r in result.runs],
            "units": units}
