"""Before any model loads, every rank must agree on what the run is.

Each rank validates its own inputs (task YAMLs, data files, model flags) on its own, before
it waits on anyone. The ranks then meet once at the rendezvous and exchange two things:

* their validation problems, so that rank 0 reports them once for the whole run (a problem
  seen only on some ranks, e.g. a file missing on one node, is reported with those ranks'
  names);
* a fingerprint of their inputs: the harness version, the evaluation flags, the model
  arguments, every task config and the sha256 of every data file. Ranks started with
  different task lists, data or model arguments would otherwise score different items and
  gather garbage, or wait on each other forever; here they are refused with a message that
  names what differs.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any, Iterable, Mapping

from ..digests import file_digest

MAX_DIFFERENCES_SHOWN = 8


def _short(value: Any) -> str:
    text = value if isinstance(value, str) else json.dumps(value, sort_keys=True, default=str)
    return text if len(text) <= 120 else hashlib.sha256(text.encode()).hexdigest()[:16] + " (digest)"


def input_fingerprint(harness: Mapping[str, Any], flags: Mapping[str, Any], model: Mapping[str, Any],
                      tasks: Iterable[Any], data_root: Path) -> dict[str, str]:
    """Named components of what this rank is about to evaluate (see the module doc).
    ``tasks`` are ``runner.PreparedTask`` objects; data files are named relative to
    ``data_root`` so that nodes mounting the data at different places still agree."""
    tasks = list(tasks)
    fingerprint = {
        "harness": _short(dict(harness)),
        "evaluation flags": _short(dict(flags)),
        "model arguments": _short({k: v for k, v in model.items() if k != "device"}),
        "task list": _short([prepared.loaded.config.name for prepared in tasks]),
    }
    for prepared in tasks:
        config = prepared.loaded.config
        yaml_path = Path(prepared.loaded.yaml_path)
        fingerprint[f"task {config.name}"] = _short({"yaml sha256": file_digest(yaml_path), "config": repr(config)})
        for group, files in prepared.data.items():
            for data in files:
                try:
                    name = str(Path(data.path).resolve().relative_to(data_root.resolve()))
                except ValueError:
                    name = str(data.path)
                fingerprint[f"data file {name}"] = f"sha256 {file_digest(Path(data.path))}"
    return fingerprint


def differences(reference: Mapping[str, str], other: Mapping[str, str], other_rank: int) -> list[str]:
    """Human-readable components where ``other`` (rank ``other_rank``'s) differs from
    ``reference`` (rank 0's), in rank 0's order: flags and model first, then tasks and files."""
    lines = []
    for key in [*reference, *(k for k in other if k not in reference)]:
        mine, theirs = reference.get(key), other.get(key)
        if mine != theirs:
            lines.append(f"{key}: {mine if mine is not None else 'absent'} on rank 0, "
                         f"{theirs if theirs is not None else 'absent'} on rank {other_rank}")
    return lines


def agree(context: Any, problems: list[str], fingerprint: Mapping[str, str]) -> tuple[list[str], list[str]]:
    """Exchange problems and fingerprints over the whole world (one collective).

    Returns, identically on every rank, (the validation problems of the run, rank 0's first,
    then those only other ranks saw, tagged with their rank) and (the ways in which ranks
    differ from rank 0). Both empty: the ranks agree."""
    gathered = context.gather_world({"problems": list(problems), "fingerprint": dict(fingerprint)})
    reported = list(gathered[0]["problems"])
    seen = set(reported)
    for rank, entry in enumerate(gathered[1:], start=1):
        for problem in entry["problems"]:
            if problem not in seen:
                reported.append(f"{context.rank_name(rank)}: {problem}")
    if reported:
        return reported, []
    mismatches = []
    for rank, entry in enumerate(gathered[1:], start=1):
        lines = differences(gathered[0]["fingerprint"], entry["fingerprint"], rank)
        if lines:
            shown = lines[:MAX_DIFFERENCES_SHOWN]
            more = f" (and {len(lines) - len(shown)} more)" if len(lines) > len(shown) else ""
            mismatches.append(f"{context.rank_name(rank)} differs from rank 0 in " + "; ".join(shown) + more)
    return [], mismatches
