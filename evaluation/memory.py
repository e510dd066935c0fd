"""Peak memory of this process, for results.json and the benchmarks.

On Linux ``VmHWM`` in ``/proc/self/status`` is the peak resident set of this process alone
(``ru_maxrss`` would report a larger parent's peak after an exec). It counts the pages of
memory-mapped checkpoint shards that were read, which the kernel may drop again; the
weights of a loaded model are included either way. On CUDA the peak of allocated tensor
memory on this rank's device is reported too.
"""

from __future__ import annotations

import resource
import sys
from pathlib import Path
from typing import Optional


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
