"""Registry of suite converters: suite name -> module.

Each module defines ``RAW_FILES`` (paths or globs under RAW_DIR that must exist, checked
for every requested suite before any conversion starts) and ``build(raw_dir) ->
list[TaskData]``. Modules are imported on demand, so one broken converter does not
stop the others from being listed.
"""

from __future__ import annotations

import importlib
from types import ModuleType

SUITE_MODULES: dict[str, str] = {
    "demo": "evaluation.prepare.demo",
    "lambada": "evaluation.prepare.lambada",
    "mmlu": "evaluation.prepare.mmlu",
    "clue": "evaluation.prepare.clue",
    "fewclue": "evaluation.prepare.fewclue",
    "bloom": "evaluation.prepare.bloom",
    "llm-foundry": "evaluation.prepare.llm_foundry",
    "language-modeling": "evaluation.prepare.language_modeling",
    "quickstart": "evaluation.prepare.quickstart",
}


def suite_module(name: str) -> ModuleType:
    return importlib.import_module(SUITE_MODULES[name])
