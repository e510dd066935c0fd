"""The quick start's real task set (``tasks/quickstart``): small enough for a few minutes
of a 135M model on 2 CPU cores, real enough to print meaningful scores.

* LAMBADA in both protocols: ``lambada_openai`` (lm-evaluation-harness's continuation
  task) on the first ``LAMBADA_ITEMS`` passages; ``lambada`` (GLM-130B's generation task,
  beam search 16) on the first ``LAMBADA_GENERATION_ITEMS``, as beam search costs about
  ten times more per passage on CPU.
* MMLU 0-shot in lm-evaluation-harness's prompt format, one subject per category
  (``MMLU_SUBJECTS``: 408 questions), and the same questions in the MMLU paper's format
  (``MMLU_paper/``) and 5-shot in lm-evaluation-harness's format (``LM_eval_5shot/``): not
  part of the quick start's tasks; ``examples/compare-mmlu-formats`` scores them, to show
  ``python -m evaluation.compare`` on three prompt formats of the same questions).

Built from the same converters as the full ``lambada`` and ``mmlu`` suites, whose full
published counts are checked before anything is cut, so the items are exactly the first
ones of the full suites.
"""

from __future__ import annotations

from pathlib import Path

from . import lambada, mmlu
from .common import PrepareError, TaskData, check_counts

LAMBADA_ITEMS = 500
LAMBADA_GENERATION_ITEMS = 100
MMLU_SUBJECTS = {  # subject -> category; the smallest subject of each category with short questions
    "abstract_algebra": "stem",
    "us_foreign_policy": "social_sciences",
    "jurisprudence": "humanities",
    "global_facts": "other",
}
RAW_FILES = [*lambada.RAW_FILES, *mmlu.RAW_FILES]


def build(raw_dir: Path) -> list[TaskData]:
    full_lambada = lambada.build(raw_dir)
    full_mmlu = mmlu.build(raw_dir)
    problems = check_counts("lambada", full_lambada) + check_counts("mmlu", full_mmlu)
    if problems:
        raise PrepareError("; ".join(problems))
    tasks = []
    for t in full_lambada:
        n = LAMBADA_GENERATION_ITEMS if t.task == "lambada" else LAMBADA_ITEMS
        tasks.append(TaskData(t.task, {rel: content[:n] for rel, content in t.files.items()}, {"test": n}, t.source))
    zero_shot = next(t for t in full_mmlu if t.task == "0shot")
    five_shot = next(t for t in full_mmlu if t.task == "5shot")
    files = {f"{prompt}/mul/{category}/{subject}.jsonl": zero_shot.files[f"{prompt}/mul/{category}/{subject}.jsonl"]
             for prompt in ("LM_eval", "MMLU_paper") for subject, category in MMLU_SUBJECTS.items()}
    files.update({f"LM_eval_5shot/mul/{category}/{subject}.jsonl": five_shot.files[f"LM_eval/mul/{category}/{subject}.jsonl"]
                  for subject, category in MMLU_SUBJECTS.items()})
    tasks.append(TaskData("mmlu_0shot", files, {s: zero_shot.expected[s] for s in MMLU_SUBJECTS}, zero_shot.source))
    return tasks
