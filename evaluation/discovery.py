"""Positional task arguments -> the ordered list of task YAML files.

A directory contributes every ``*.yaml``/``*.yml`` beneath it (recursively, sorted by
path so runs are reproducible); a file contributes itself. Anything else is an error:
the original harness ignored such arguments silently and users lost whole runs.
"""

from __future__ import annotations

from pathlib import Path

from .errors import Problem

YAML_SUFFIXES = (".yaml", ".yml")


def discover_task_files(arguments: list[str]) -> tuple[list[Path], list[Problem]]:
    """Expand task arguments into YAML paths (deduplicated, stable order)."""
    found: list[Path] = []
    problems: list[Problem] = []
    for argument in arguments:
        path = Path(argument)
        try:
            path.stat()
        except FileNotFoundError:
            pass
        except OSError as exc:  # a name too long, a loop of links, ...
            problems.append(Problem(argument, f"cannot be looked up: {exc.strerror or exc}"))
            continue
        if path.is_dir():
            files = sorted(p for p in path.rglob("*") if p.suffix in YAML_SUFFIXES and p.is_file())
            if not files:
                problems.append(Problem(argument, "directory contains no task YAML (*.yaml, *.yml)"))
            found.extend(files)
        elif path.is_file() and path.suffix in YAML_SUFFIXES:
            found.append(path)
        elif path.exists():
            problems.append(Problem(argument, "not a task YAML (expected a .yaml/.yml file or a directory of them)"))
        else:
            problems.append(Problem(argument, "no such file or directory"))
    unique: list[Path] = []
    seen: set[Path] = set()
    for path in found:
        key = path.resolve()
        if key not in seen:
            seen.add(key)
            unique.append(path)
    return unique, problems
