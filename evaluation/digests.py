"""Content digests: of files, of the harness's scoring code, and of arbitrary request objects.

One module so that every identity in the harness (the ranks' start-up agreement, the keys
of per-item records, the identity of a run that is resumed) hashes the same way.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from pathlib import Path
from typing import Any, Iterable

import numpy as np

PACKAGE = Path(__file__).resolve().parent
# The code a score is a function of, besides the request, the model and its options: the
# networks, their loading and quantization, the scorers, packing and decoding, tensor
# parallelism, and the tokenizers. Tasks are not in it: they build the requests (whose
# content is in every key) and post-process results (which is redone on every run).
SCORING_CODE = ("model/*.py", "scoring/*.py", "distributed/tensor_parallel.py", "tokenization*.py")


def file_digest(path: Path, length: int = 16) -> str:
    """sha256 of a file's bytes (hex, first ``length`` characters)."""
    digest = hashlib.sha256()
    with Path(path).open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()[:length]


def files_digest(paths: Iterable[Path], root: Path = PACKAGE) -> str:
    digest = hashlib.sha256()
    for path in sorted(paths):
        digest.update(str(path.relative_to(root)).encode() + b"\0" + path.read_bytes() + b"\0")
    return digest.hexdigest()[:16]


def path_digest(path: Path) -> str:
    """Digest of a file, or of the files directly inside a folder (a tokenizer folder)."""
    path = Path(path)
    if path.is_dir():
        return files_digest((p for p in path.iterdir() if p.is_file()), root=path)
    return file_digest(path) if path.is_file() else "missing"


def scoring_code_digest() -> str:
    """Digest of the scoring code (``SCORING_CODE``): any change to it invalidates records."""
    return files_digest(path for pattern in SCORING_CODE for path in PACKAGE.glob(pattern))


def canonical(value: Any) -> Any:
    """A JSON-able form of a request: dataclasses as dicts, numpy arrays as (dtype, shape,
    sha256 of the bytes), numpy scalars as numbers; equal requests give equal forms."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):  # fields marked digest=False are left out
        return {f.name: canonical(getattr(value, f.name)) for f in dataclasses.fields(value) if f.metadata.get("digest", True)}
    if isinstance(value, np.ndarray):
        array = np.ascontiguousarray(value)
        return ["ndarray", str(array.dtype), list(array.shape), hashlib.sha256(array.tobytes()).hexdigest()]
    if isinstance(value, (list, tuple, range)):
        return [canonical(v) for v in value]
    if isinstance(value, dict):
        return {str(k): canonical(v) for k, v in sorted(value.items())}
    if isinstance(value, np.generic):
        return value.item()
    return value


def digest_of(*parts: Any) -> str:
    """sha256 (hex) of the canonical JSON of ``parts``."""
    text = json.dumps([canonical(p) for p in parts], sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(text.encode()).hexdigest()
