"""Re-shard a GLM checkpoint to another tensor-parallel size (like GLM-130B's convert_tp).

    python -m evaluation.tools.convert_tp INPUT_DIR OUTPUT_DIR --tensor-parallel N [--quantization-bit-width 8|4]

Works for any input size (read from INPUT_DIR's shards) and any N that divides the
heads, the GeGLU width and the vocabulary. Memory stays lean: input shards are
memory-mapped and each output shard is built key by key from the input slices it
overlaps, so only one output shard is resident at a time. Tokenizer and config files next to
the checkpoint (``ice_text.model``, ``model_config.json``) are copied along.

With ``--quantization-bit-width`` the output is a pre-quantized checkpoint (the four linear
layers of every block as int8 / packed int4 plus ``weight_scale``), each shard quantized
on its own as GLM-130B's own conversion does. A pre-quantized input cannot be re-sharded
(its row-parallel scales belong to its shards): convert from the float checkpoint.
"""

from __future__ import annotations

import argparse
import shutil
import sys
from pathlib import Path

import torch

from ..model.checkpoint import checkpoint_shards, read_shard, shard_path
from ..model.quantization import BIT_WIDTHS, SCALE_SUFFIX, quantized_shard
from ..model.sharding import merge_parts, resplit_part, split_state

SIDE_FILES = ("ice_text.model", "model_config.json")


def convert(input_dir: Path, output_dir: Path, tensor_parallel: int, bits: int | None = None) -> list[Path]:
    shards = checkpoint_shards(input_dir)
    iteration = (input_dir / "latest").read_text().strip()
    inputs = [read_shard(p) for p in shards]  # memory-mapped, not resident
    keys = list(inputs[0])
    if any(k.endswith(SCALE_SUFFIX) for k in keys):
        raise ValueError(f"{shards[0]} is pre-quantized; re-shard or quantize the float checkpoint instead")
    # Validate divisibility up front on meta tensors (shapes only; nothing is read or copied).
    split_state({k: merge_parts(k, [s[k].to("meta") for s in inputs]) for k in keys}, tensor_parallel)
    folder = output_dir / iteration
    folder.mkdir(parents=True, exist_ok=True)
    written = []
    for rank in range(tensor_parallel):
        # Each output part is cut from the overlapping input slices (resplit_part), so no
        # full-size parameter is ever built unless the output is 1-way.
        part = {}
        for key in keys:
            piece = resplit_part(key, [s[key] for s in inputs], rank, tensor_parallel)
            if bits is None:
                part[key] = piece.clone()
            else:
                part.update(quantized_shard(key, piece, bits))
            del piece
        written.append(shard_path(folder, rank))
        torch.save({"module": part}, written[-1])
        del part
    (output_dir / "latest").write_text(iteration + "\n")
    for name in SIDE_FILES:
        if (input_dir / name).is_file():
            shutil.copyfile(input_dir / name, output_dir / name)
    return written


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("input_dir", type=Path, help="checkpoint folder with a 'latest' file")
    parser.add_argument("output_dir", type=Path, help="folder to write the re-sharded checkpoint into")
    parser.add_argument("--tensor-parallel", type=int, required=True, help="number of shards to write")
    parser.add_argument("--quantization-bit-width", type=int, choices=BIT_WIDTHS, default=None,
                        help="write a pre-quantized INT8/INT4 checkpoint (weight-only, per-row scales)")
    args = parser.parse_args(argv)
    if args.tensor_parallel < 1:
        parser.error("--tensor-parallel must be >= 1")
    if args.output_dir.resolve() == args.input_dir.resolve():
        parser.error("output_dir must differ from input_dir")
    try:
        written = convert(args.input_dir, args.output_dir, args.tensor_parallel, args.quantization_bit_width)
    except (ValueError, RuntimeError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(f"wrote {len(written)} shard(s) to {written[0].parent}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
