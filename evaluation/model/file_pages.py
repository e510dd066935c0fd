"""Let the kernel take back the pages of memory-mapped checkpoint files that were read.

Why: transformers loads ``.safetensors`` through ``mmap``, and the model's parameters are
views of the mapped file. Packing the linear layers for oneDNN (``cpu_linear.py``) reads
every dense weight once and keeps only the packed copy, but the file stays mapped (the
embedding still views it) and every page read stays resident: on SmolLM2-135M, 522 MB of
file pages beside the 470 MB of packed copies after loading, 1,220 MB in all, against
960 MB for the same model streamed from its GGUF file. Those pages are clean copies of the
file, so dropping them loses nothing: a page read again is faulted back in from the page
cache. Only mappings in which no page differs from the file are touched: read-only ones,
and private ones without a copied-on-write page (``/proc/self/smaps``). Packing only reads
the weights, so no page is written between that check and the drop; the loader checks
again before its last drop.
"""

from __future__ import annotations

import ctypes
import functools
import mmap
import os
from pathlib import Path
from typing import TYPE_CHECKING, Iterable, Optional

from ..memory import libc

if TYPE_CHECKING:
    import torch

_MADV_DONTNEED = 4  # Linux <sys/mman.h>


def unmodified_mappings(files: Iterable[Path], smaps: Path = Path("/proc/self/smaps")) -> list[tuple[int, int]]:
    """(start, end) of this process's mappings of ``files`` in which no page differs from the
    file: read-only mappings, and private writable ones (safetensors maps its files
    ``rw-p``) with no copied-on-write page (``Anonymous: 0 kB``). [] where /proc is missing."""
    wanted = {os.path.realpath(f) for f in files}
    try:
        lines = smaps.read_text().splitlines()
    except OSError:
        return []
    ranges, current = [], None
    for line in lines:
        fields = line.split()
        if fields and "-" in fields[0] and len(fields) >= 5 and ":" not in fields[0]:  # a mapping's header line
            path = line.split(maxsplit=5)[5] if len(fields) >= 6 else ""
            start, end = (int(x, 16) for x in fields[0].split("-"))
            shared_writable = "w" in fields[1] and "s" in fields[1]  # writes go to the file: not ours to drop
            current = (start, end) if os.path.realpath(path) in wanted and not shared_writable else None
        elif current is not None and fields[:1] == ["Anonymous:"]:
            if int(fields[1]) == 0:
                ranges.append(current)
            current = None
    return ranges


@functools.cache
def _madvise() -> Optional[ctypes._CFuncPtr]:
    """libc's madvise with its argument types (None without one)."""
    function = getattr(libc(), "madvise", None)
    if function is not None:
        function.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int]
        function.restype = ctypes.c_int
    return function


def drop_pages(ranges: Iterable[tuple[int, int]]) -> int:
    """``madvise(MADV_DONTNEED)`` over each page-aligned range (from ``unmodified_mappings``:
    a page read again then comes back from the page cache, unchanged);
    returns the bytes advised. A no-op without libc's madvise."""
    madvise = _madvise()
    if madvise is None:
        return 0
    advised = 0
    for start, end in ranges:
        if start % mmap.PAGESIZE or end <= start:
            continue
        if madvise(start, end - start, _MADV_DONTNEED) == 0:
            advised += end - start
    return advised


def drop_tensor_pages(tensor: "torch.Tensor", ranges: Iterable[tuple[int, int]]) -> int:
    """Drop the pages under ``tensor``'s data where they lie in one of ``ranges`` (from
    ``unmodified_mappings``); the pages it shares with its neighbours go too, which is
    harmless (they come back from the page cache when read). Returns the bytes advised."""
    start = tensor.data_ptr() // mmap.PAGESIZE * mmap.PAGESIZE
    end = -(-(tensor.data_ptr() + tensor.numel() * tensor.element_size()) // mmap.PAGESIZE) * mmap.PAGESIZE
    return drop_pages([(max(start, low), min(end, high)) for low, high in ranges if start < high and low < end])


def checkpoint_files(folder: Path) -> list[Path]:
    """The weight files of a Hugging Face model folder that transformers may map."""
    return sorted(p for p in folder.iterdir() if p.is_file() and p.suffix in (".safetensors", ".bin"))


def drop_checkpoint_pages(folder: Path) -> int:
    """Drop the resident pages of ``folder``'s mapped weight files; returns the bytes advised."""
    return drop_pages(unmodified_mappings(checkpoint_files(folder)))
