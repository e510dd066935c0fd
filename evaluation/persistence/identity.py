"""What a score is a function of, so that records are never mixed up.

Two levels:

* The **namespace** of a model: its fingerprint (``ModelSpec.identity`` /
  ``HFModelSpec.identity``: checkpoint path, iteration, shard sizes and mtimes, dtype,
  quantization, the backend flags that change scores, the tokenizer file's digest) and the
  digest of the harness's scoring code. Records are only ever looked up inside the
  namespace they were written in.
* The **key** of a request: the namespace, the scorer method, the task's encoding options
  and decoding settings, and the request itself (token ids; LM windows as their arrays).
  The request's ids are a function of the item's content, the prompt file's text and the
  tokenizer, so they stand for all three exactly; what does not change a score (batch size,
  token budget, world size, the order of items, the task's name, metrics) is deliberately
  not in the key, so a resumed or cached record serves whatever layout asks for it.

The **run identity** is what ``--resume`` insists on: the model fingerprint, the scoring
code, the evaluation flags that select items (``--limit``), and per task its resolved
config (the micro-batch size left out) and the sha256 of each data file. A resume whose
identity differs is refused with the differences, one ``a.b: old -> new`` line each.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any, Iterable, Mapping

from ..digests import digest_of, file_digest, scoring_code_digest

# Flags of a run that decide which items are scored (the rest only decide how fast).
SELECTING_FLAGS = ("backend", "limit")


def model_namespace(model_identity: Mapping[str, Any]) -> str:
    """Records of this model under this scoring code live in this namespace."""
    return digest_of("glm-eval records v1", scoring_code_digest(), dict(model_identity))[:16]


def call_prefix(namespace: str, method: str, options: Any, settings: Any) -> str:
    """The part of a key that one scorer call shares (digested once per call: LAMBADA's
    decoding settings carry a thousand banned ids)."""
    return digest_of(namespace, method, options, settings)


def request_key(prefix: str, request: Any) -> str:
    return digest_of(prefix, request)


def run_identity(model_identity: Mapping[str, Any], flags: Mapping[str, Any], prepared: Iterable[Any], data_root: Path) -> dict:
    """The identity ``--resume`` compares (see the module doc). ``prepared`` are
    ``runner.PreparedTask`` objects."""
    tasks = {}
    for item in prepared:
        config = {k: v for k, v in dataclasses.asdict(item.loaded.config).items() if k != "micro_batch_size"}
        files = {}
        for group_files in item.data.values():
            for data in group_files:
                for path in [data.path, *data.sources]:
                    try:
                        name = str(Path(path).resolve().relative_to(data_root.resolve()))
                    except ValueError:
                        name = str(path)
                    files[name] = "sha256 " + file_digest(Path(path))
        tasks[item.loaded.config.name] = {"config": config, "files": files}
    return {"scoring_code": scoring_code_digest(), "model": json.loads(json.dumps(dict(model_identity), default=str)),
            "flags": {k: flags.get(k) for k in SELECTING_FLAGS}, "tasks": tasks}


def describe_changes(old: Any, new: Any, path: str = "") -> list[str]:
    """``a.b: old -> new`` for every leaf where ``new`` differs from ``old``."""
    if isinstance(old, dict) and isinstance(new, dict):
        lines = []
        for key in [*old, *(k for k in new if k not in old)]:
            where = f"{path}.{key}" if path else str(key)
            if key not in new:
                lines.append(f"{where}: {_short(old[key])} -> (absent)")
            elif key not in old:
                lines.append(f"{where}: (absent) -> {_short(new[key])}")
            else:
                lines.extend(describe_changes(old[key], new[key], where))
        return lines
    return [] if old == new else [f"{path}: {_short(old)} -> {_short(new)}"]


def _short(value: Any) -> str:
    if value is None or isinstance(value, (bool, int, float)):
        text = repr(value)
    elif isinstance(value, str):
        text = value
    else:
        text = json.dumps(value, ensure_ascii=False, default=str)
    return text if len(text) <= 100 else text[:97] + "..."
