"""User-facing errors that name the file, line and field at fault.

Every problem with a task YAML or a data file becomes one of these, collected over
*all* tasks before any model is loaded, so a user fixes every mistake in one pass.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Optional


@dataclass(frozen=True)
class Problem:
    """One thing wrong with one input file."""

    file: Path | str
    message: str
    line: Optional[int] = None
    field: Optional[str] = None

    def __str__(self) -> str:
        where = f"{self.file}:{self.line}" if self.line is not None else f"{self.file}"
        what = f"field '{self.field}': " if self.field else ""
        return f"{where}: {what}{self.message}"


class InputError(Exception):
    """Raised with every problem found; ``str()`` lists them one per line."""

    def __init__(self, problems: list[Problem]) -> None:
        self.problems = list(problems)
        super().__init__("\n".join(str(p) for p in self.problems))

    @classmethod
    def single(cls, file: Path | str, message: str, line: Optional[int] = None, field: Optional[str] = None) -> "InputError":
        return cls([Problem(file, message, line, field)])
