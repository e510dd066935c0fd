"""Dropping the resident pages of memory-mapped checkpoint files (``model/file_pages.py``):
only mappings in which no page differs from the file are chosen, dropping their pages
changes no value read through them, and the Hugging Face loader leaves no page of its
safetensors file resident once the linear layers are packed."""

from __future__ import annotations

import mmap
import os
import sys
from pathlib import Path

import numpy as np
import pytest

from evaluation.model.file_pages import checkpoint_files, drop_pages, drop_tensor_pages, unmodified_mappings

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="/proc/self/smaps is Linux's")


def mapping_rss_kb(path: Path) -> int:
    """Resident kB of this process's mappings of ``path`` (from /proc/self/smaps)."""
    total, inside = 0, False
    for line in Path("/proc/self/smaps").read_text().splitlines():
        fields = line.split()
        if fields and "-" in fields[0] and ":" not in fields[0]:
            inside = len(fields) >= 6 and os.path.realpath(line.split(maxsplit=5)[5]) == os.path.realpath(path)
        elif inside and fields[:1] == ["Rss:"]:
            total += int(fields[1])
    return total


@pytest.fixture()
def data_file(tmp_path: Path) -> tuple[Path, np.ndarray]:
    values = np.random.default_rng(0).standard_normal(8 * 2**20 // 8)  # 8 MiB
    path = tmp_path / "weights.bin"
    values.tofile(path)
    return path, values


def test_a_mapping_read_through_has_its_pages_dropped_and_reads_the_same(data_file) -> None:
    path, values = data_file
    with open(path, "rb") as handle:
        buffer = mmap.mmap(handle.fileno(), 0, flags=mmap.MAP_PRIVATE, prot=mmap.PROT_READ | mmap.PROT_WRITE)  # as safetensors maps
    view = np.frombuffer(buffer, dtype=np.float64)
    assert float(view.sum()) == pytest.approx(float(values.sum()))  # every page read
    assert mapping_rss_kb(path) >= 8192
    ranges = unmodified_mappings([path])
    assert len(ranges) == 1
    assert drop_pages(ranges) >= 8 * 2**20
    assert mapping_rss_kb(path) < 64
    assert np.array_equal(view, values)  # read back from the page cache, unchanged
    del view
    buffer.close()


def test_a_tensors_pages_are_dropped_and_its_neighbours_kept(data_file) -> None:
    import torch

    path, values = data_file
    with open(path, "rb") as handle:
        buffer = mmap.mmap(handle.fileno(), 0, flags=mmap.MAP_PRIVATE, prot=mmap.PROT_READ | mmap.PROT_WRITE)
    whole = torch.frombuffer(buffer, dtype=torch.float64)
    assert float(whole.sum()) == pytest.approx(float(values.sum()))
    middle = whole[2**18 + 2**16 : 2**18 + 2**16 + 2**17]  # 1 MiB from 2.5 MiB in
    before = mapping_rss_kb(path)
    assert drop_tensor_pages(middle, unmodified_mappings([path])) == 2**20
    dropped = before - mapping_rss_kb(path)
    # that tensor's pages, and at most the 2 MiB page around it where the kernel mapped the
    # file with huge pages (it unmaps those whole; they come back from the page cache too)
    assert 1024 <= dropped <= 2048, dropped
    assert torch.equal(whole, torch.from_numpy(values))
    del whole, middle
    buffer.close()


def test_a_mapping_with_a_written_page_is_left_alone(data_file) -> None:
    path, _ = data_file
    with open(path, "rb") as handle:
        buffer = mmap.mmap(handle.fileno(), 0, flags=mmap.MAP_PRIVATE, prot=mmap.PROT_READ | mmap.PROT_WRITE)
    buffer[:8] = b"\x00" * 8  # a private copy of the first page: dropping it would undo this write
    assert unmodified_mappings([path]) == []
    assert buffer[:8] == b"\x00" * 8
    buffer.close()


def test_other_files_are_not_chosen(data_file, tmp_path: Path) -> None:
    path, _ = data_file
    other = tmp_path / "other.bin"
    other.write_bytes(b"\x01" * mmap.PAGESIZE)
    with open(other, "rb") as handle:
        buffer = mmap.mmap(handle.fileno(), 0, prot=mmap.PROT_READ)
    assert unmodified_mappings([path]) == []
    assert len(unmodified_mappings([other])) == 1
    buffer.close()


def test_the_hf_loader_leaves_no_checkpoint_page_resident_after_packing(tiny_llama_dir: Path) -> None:
    pytest.importorskip("transformers")
    from evaluation.cli import build_parser, build_spec
    from evaluation.model.cpu_linear import OneDNNLinear, resolve_cpu_linear

    if resolve_cpu_linear("auto", "cpu", "fp32") != "onednn":
        pytest.skip("no oneDNN packed linear on this machine: nothing is packed, the pages stay in use")
    spec = build_spec(build_parser().parse_args(["x.yaml", "--backend", "hf", "--hf-model", str(tiny_llama_dir)]))
    model = spec.load_model()
    (weights,) = checkpoint_files(tiny_llama_dir)
    assert any(isinstance(m, OneDNNLinear) for m in model.modules())
    assert unmodified_mappings([weights]), "the embedding and norms still view the mapped file"
    assert mapping_rss_kb(weights) == 0
