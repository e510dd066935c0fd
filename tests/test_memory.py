"""glibc allocator settings of ``evaluation.memory``: after loading, a forward's freed
activations must be reused, not handed back to the kernel and faulted in again.

Each check runs in a fresh interpreter: ``mallopt`` is process-wide, and the pytest process
has already loaded models (and so changed the thresholds) in other tests."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent

# Allocate and free a 16 MiB tensor (below the 32 MiB mmap threshold, so it comes from the heap)
# 30 times and print the minor page faults that cost. Reused heap memory does not fault again
# (glibc grows the heap over the first few rounds, hence the warm-up).
CHURN = """
import resource, sys, torch
sys.path.insert(0, {root!r})
from evaluation import memory
{setup}
for _ in range(10):
    torch.ones(4 * 2**20)  # warm-up, not counted
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for _ in range(30):
    torch.ones(4 * 2**20)
print(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
"""
PAGES_PER_BLOCK = 16 * 2**20 // 4096


def _faults(setup: str) -> int:
    out = subprocess.run([sys.executable, "-c", CHURN.format(root=str(ROOT), setup=setup)], capture_output=True, text=True,
                         check=True)
    return int(out.stdout.strip().splitlines()[-1])


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's mallopt")
def test_blocks_freed_after_loading_are_reused_not_faulted_in_again():
    # During loading the thresholds are kept low on purpose: each freed block goes back to the kernel.
    while_loading = _faults("memory.keep_large_blocks_returnable()")
    assert while_loading > 20 * PAGES_PER_BLOCK, while_loading  # the check below can tell the two apart
    after_loading = _faults("memory.keep_large_blocks_returnable(); memory.reuse_freed_blocks()")
    assert after_loading < PAGES_PER_BLOCK, (after_loading, while_loading)


# A small packed linear run at 400 row counts it has not seen: each compiles a new primitive.
NEW_SHAPES = """
import os, sys, torch
sys.path.insert(0, {root!r})
{setup}
from evaluation.memory import status_kb
from evaluation.model.cpu_linear import OneDNNLinear, onednn_available
if not onednn_available():
    print("no-onednn"); raise SystemExit
def rss_mb():
    return status_kb("VmRSS") // 1024
layer = OneDNNLinear(torch.randn(64, 64), None)
with torch.no_grad():
    for rows in range(1, 51):
        layer(torch.randn(rows, 64))
    before = rss_mb()
    for rows in range(51, 451):
        layer(torch.randn(rows, 64))
print(rss_mb() - before)
"""


def _growth_mb(setup: str) -> int:
    out = subprocess.run([sys.executable, "-c", NEW_SHAPES.format(root=str(ROOT), setup=setup)], capture_output=True,
                         text=True, check=True).stdout.strip().splitlines()[-1]
    if out == "no-onednn":
        pytest.skip("this torch build has no oneDNN linear")
    return int(out)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc/self/status")
def test_onednn_primitive_caches_stay_bounded_over_new_batch_shapes():
    bounded = _growth_mb("")
    # oneDNN's own default (which a user can still ask for) grows by ~580 KB per new shape.
    unbounded = _growth_mb("os.environ['ONEDNN_PRIMITIVE_CACHE_CAPACITY'] = os.environ['LRU_CACHE_CAPACITY'] = '1024'")
    assert unbounded > 100, unbounded  # the check below can tell the two apart
    assert bounded < 20, (bounded, unbounded)
