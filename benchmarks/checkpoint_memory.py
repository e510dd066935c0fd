"""Peak memory while loading a GLM checkpoint, 1-way and tensor-parallel, against model size.

    python benchmarks/checkpoint_memory.py [--layers 4 --hidden 1024 --vocab 30016]

Builds a few-hundred-MB GLM-architecture checkpoint in a temporary folder, saves it 1-way
and 4-way, then loads each in a fresh process (so earlier allocations do not count) and
prints a table of peak RSS above the interpreter's baseline, next to the model size.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

CHILD = """
import json, sys, torch
sys.path.insert(0, {root!r})
from evaluation.model.config import GLMConfig
from evaluation.model.glm import GLMModel
from evaluation.model.checkpoint import load_checkpoint
def status(field):  # kB; VmHWM is this process's own peak (ru_maxrss survives exec from a big parent)
    return int(open("/proc/self/status").read().split(field + ":")[1].split()[0])
base = status("VmRSS")
with torch.device("meta"):
    model = GLMModel(GLMConfig.from_dict(json.loads({config!r})))
model = model.to_empty(device="cpu")
load_checkpoint(model, {folder!r})
peak = status("VmHWM")
print(json.dumps({{"base_kb": base, "peak_kb": peak}}))
"""


def main() -> None:
    import torch

    from evaluation.model.checkpoint import save_checkpoint
    from evaluation.model.config import GLMConfig
    from evaluation.model.glm import GLMModel

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--layers", type=int, default=4)
    parser.add_argument("--hidden", type=int, default=1024)
    parser.add_argument("--vocab", type=int, default=30016)
    args = parser.parse_args()
    config = GLMConfig(num_layers=args.layers, hidden_size=args.hidden, inner_hidden_size=8 * args.hidden // 3 // 64 * 64,
                       num_attention_heads=args.hidden // 64, vocab_size=args.vocab)
    model = GLMModel(config)
    size_mb = sum(p.numel() * p.element_size() for p in model.parameters()) / 2**20
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for tp in (1, 4):
            folder = Path(tmp) / f"tp{tp}"
            save_checkpoint(model, folder, tensor_parallel=tp)
            code = CHILD.format(root=str(ROOT), config=json.dumps(config.to_dict()), folder=str(folder))
            out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
            stats = json.loads(out.stdout.strip().splitlines()[-1])
            rows.append((tp, (stats["peak_kb"] - stats["base_kb"]) / 1024))
    del model, torch
    print(f"model: {args.layers} layers, hidden {args.hidden}, vocab {args.vocab}: {size_mb:.0f} MB of fp32 parameters")
    print(f"{'shards':>6} | {'peak RSS above baseline (MB)':>28} | {'beyond the model (MB)':>21} | {'peak / model size':>17}")
    print(f"{'-' * 6}-+-{'-' * 28}-+-{'-' * 21}-+-{'-' * 17}")
    for tp, mb in rows:
        print(f"{tp:>6} | {mb:>28.0f} | {mb - size_mb:>21.0f} | {mb / size_mb:>17.2f}")


if __name__ == "__main__":
    main()
