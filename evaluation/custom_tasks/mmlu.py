"""MMLU: the four category groups of a task YAML plus an ``overall`` line over all of them.

Each category group's files are subjects; the group ``average`` is weighted by item count,
so it is the category's accuracy, and ``overall``'s average is the accuracy over every
question of the YAML (all 14042 on a full build), the figure papers report as "MMLU".
``max`` and ``median`` of a group are over its subjects. GLM-130B's task class
(THUDM/GLM-130B tasks/mmlu/task.py) printed the same extra line, named "Overall".
"""

from __future__ import annotations

from ..aggregation import FileScore
from ..tasks import MultiChoiceTask

OVERALL = "overall"


class MMLU(MultiChoiceTask):
    """Multiple choice as usual; adds the ``overall`` group (every file of every group, once)."""

    def extra_groups(self, scores_by_group: dict[str, list[FileScore]]) -> dict[str, list[FileScore]]:
        seen: set[str] = set()
        files = []
        for group, scores in scores_by_group.items():
            if group == OVERALL:
                continue
            for score in scores:
                if score.file not in seen:  # a file matched by two globs counts once
                    seen.add(score.file)
                    files.append(score)
        return {OVERALL: files} if files else {}
