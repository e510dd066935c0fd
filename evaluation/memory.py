"""Peak memory of this process, for results.json and the benchmarks.

On Linux ``VmHWM`` in ``/proc/self/status`` is the peak resident set of this process alone
(``ru_maxrss`` would report a larger parent's peak after an exec). It counts the pages of
memory-mapped checkpoint shards that were read, which the kernel may drop again; the
weights of a loaded model are included either way. On CUDA the peak of allocated tensor
memory on this rank's device is reported too.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools
import os
import resource
import sys
from pathlib import Path
from typing import Optional


_M_TRIM_THRESHOLD = -1  # mallopt parameter numbers in glibc's malloc.h
_M_MMAP_THRESHOLD = -3
_MMAP_THRESHOLD_BYTES = 128 * 1024  # glibc's initial value
_TRIM_THRESHOLD_BYTES = 128 * 1024
# After loading: glibc's own ceiling for its dynamic mmap threshold, and twice that for the
# trim threshold, which is the ratio glibc's dynamic rule keeps between the two.
_RUN_MMAP_THRESHOLD_BYTES = 32 * 2**20
_RUN_TRIM_THRESHOLD_BYTES = 2 * _RUN_MMAP_THRESHOLD_BYTES


@functools.cache
def libc() -> Optional[ctypes.CDLL]:
    """glibc, looked up once (``find_library`` runs ldconfig: a few ms a call)."""
    name = ctypes.util.find_library("c")
    try:
        return ctypes.CDLL(name) if name else None
    except OSError:
        return None


def keep_large_blocks_returnable() -> None:
    """Fix glibc's mmap and trim thresholds at 128 KiB (process-wide; no-op without glibc). glibc
    raises the thresholds each time a large block is freed, so later weight-sized blocks come
    from the heap and stay in the process after they are freed: replacing SmolLM2's dense
    weights by packed copies kept 410 MB that way. With the thresholds fixed they are mapped
    and unmapped."""
    library = libc()
    if library is not None and hasattr(library, "mallopt"):
        library.mallopt(_M_MMAP_THRESHOLD, _MMAP_THRESHOLD_BYTES)
        library.mallopt(_M_TRIM_THRESHOLD, _TRIM_THRESHOLD_BYTES)


def reuse_freed_blocks() -> None:
    """Undo ``keep_large_blocks_returnable`` once the weights are in place, so the activations
    of each batch reuse freed heap memory instead of faulting in fresh, zeroed pages.

    Both thresholds matter. Blocks up to 32 MiB (glibc's ceiling for its own mmap threshold)
    come from the heap again: with 128 KiB kept, MMLU scoring ran 2x slower. And the heap is
    trimmed only when more than 64 MiB lie free at its top: setting the mmap threshold by hand
    switches off glibc's dynamic rule, which would otherwise have raised the trim threshold
    with it, and at 128 KiB every forward of SmolLM2-135M (8 x 128 tokens) handed its
    activations back to the kernel and faulted them in again: 210,000 page faults per
    forward and 15-20 % of its time (``benchmarks/hf_forward.py`` shows the difference)."""
    library = libc()
    if library is not None and hasattr(library, "mallopt"):
        library.mallopt(_M_MMAP_THRESHOLD, _RUN_MMAP_THRESHOLD_BYTES)
        library.mallopt(_M_TRIM_THRESHOLD, _RUN_TRIM_THRESHOLD_BYTES)


# Primitives kept by oneDNN's own cache and by ideep's (torch's wrapper around it) each.
ONEDNN_CACHE_CAPACITY = 16


def bound_onednn_primitive_caches(capacity: int = ONEDNN_CACHE_CAPACITY) -> None:
    """Keep at most ``capacity`` compiled oneDNN primitives in each of oneDNN's and ideep's
    caches (both default to 1024), unless the user set ``ONEDNN_PRIMITIVE_CACHE_CAPACITY`` or
    ``LRU_CACHE_CAPACITY`` already. Both are read when the first primitive is made, so this
    works after ``import torch`` as long as no oneDNN op has run.

    Why: a packed linear compiles one primitive per input row count, and scoring batches
    differ in row count, so the caches grow with every new batch shape: about 580 KB per
    primitive, 2 MB per new batch shape on SmolLM2-135M, and up to 1024 x 580 KB = 600 MB
    over a long run (``tests/test_memory.py``). A forward uses six shapes or fewer (its
    layers repeat them), so 16 keeps every reuse that happens, and the next batch, with
    other row counts, missed the cache anyway."""
    for name in ("ONEDNN_PRIMITIVE_CACHE_CAPACITY", "LRU_CACHE_CAPACITY"):
        os.environ.setdefault(name, str(capacity))


def return_freed_memory_to_the_system() -> None:
    """glibc's ``malloc_trim(0)``: hand back heap pages that dropped objects left free."""
    library = libc()
    if library is not None and hasattr(library, "malloc_trim"):
        library.malloc_trim(0)


def status_kb(field: str, path: Path = Path("/proc/self/status")) -> Optional[int]:
    """A ``kB`` field of /proc/self/status (None where there is none)."""
    try:
        text = path.read_text()
    except OSError:
        return None
    for line in text.splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    return None


def peak_memory(device: str = "cpu") -> dict[str, float]:
    """{'peak_rss_mb': ..., 'peak_cuda_mb': ... (CUDA only)} of this process."""
    kb = status_kb("VmHWM")
    if kb is None:  # not Linux: ru_maxrss is kB on Linux, bytes on macOS
        kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // (1024 if sys.platform == "darwin" else 1)
    memory = {"peak_rss_mb": round(kb / 1024, 1)}
    if device.startswith("cuda"):
        import torch

        memory["peak_cuda_mb"] = round(torch.cuda.max_memory_allocated(torch.device(device)) / 2**20, 1)
    return memory


def weight_bytes(model) -> int:
    """Bytes of this rank's weights: parameters, buffers and oneDNN-packed copies
    (``OneDNNLinear.packed_weight``, not a registered tensor); a DTensor counts its local shard."""
    seen: set[int] = set()
    total = 0
    for module in model.modules():
        tensors = [*module.parameters(recurse=False), *module.buffers(recurse=False)]
        packed = getattr(module, "packed_weight", None)
        if packed is not None:
            tensors.append(packed)
        for tensor in tensors:
            local = getattr(tensor, "_local_tensor", tensor)
            if id(local) in seen:
                continue
            seen.add(id(local))
            total += local.numel() * local.element_size()
    return total
