"""Memory per parameter, loading peak and logit error of INT8 / INT4 weight-only quantization.

    python benchmarks/quantization.py [--layers 4 --hidden 1024 --vocab 30016]

Part 1 (measured): builds a few-hundred-MB GLM-architecture checkpoint (weights ~N(0, 0.02),
as trained models have), writes it as fp32 and pre-quantized INT8 / INT4, and loads each
mode in a fresh process: weight bytes per parameter, peak RSS while loading (above the
interpreter's baseline) and peak private (anonymous) memory, load time, and the largest logit deviation from fp32 on a fixed
input. Part 2 (exact, no allocation): the same bytes for GLM-130B's real shapes, built on
torch's meta device.
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
import json, sys, threading, time, torch
sys.path.insert(0, {root!r})
from evaluation.model.config import GLMConfig
from evaluation.model.glm import GLMModel
from evaluation.model.checkpoint import load_checkpoint
from evaluation.model.quantization import load_quantized_model, model_bytes
def status(field):
    return int(open("/proc/self/status").read().split(field + ":")[1].split()[0])
torch.set_num_threads(2)
base, anon_base = status("VmRSS"), status("RssAnon")
anon_peak, done = [anon_base], threading.Event()
def sample():  # private (anonymous) memory: what the process itself allocated, without mapped file pages
    while not done.is_set():
        anon_peak[0] = max(anon_peak[0], status("RssAnon"))
        time.sleep(0.002)
sampler = threading.Thread(target=sample, daemon=True)
sampler.start()
config = GLMConfig.from_dict(json.loads({config!r}))
start = time.time()
bits = {bits!r}
if bits is None:
    with torch.device("meta"):
        model = GLMModel(config)
    model = model.to_empty(device="cpu")
    load_checkpoint(model, {folder!r})
else:
    model = load_quantized_model(config, {folder!r}, bits)
seconds = time.time() - start
peak = status("VmHWM")
done.set(); sampler.join()
anon = max(anon_peak[0], status("RssAnon")) - anon_base
tokens = torch.arange(64)[None] * 37 % config.vocab_size
with torch.no_grad():
    hidden, _ = model.eval()(tokens, torch.arange(64)[None], torch.ones(1, 64, 64, dtype=torch.bool).tril())
    logits = model.logits(hidden)
torch.save(logits, {logits_path!r})
print(json.dumps({{"base_kb": base, "peak_kb": peak, "anon_kb": anon, "bytes": model_bytes(model), "seconds": seconds}}))
"""


def glm130b_table() -> list[tuple[str, float, float]]:
    import torch

    from evaluation.model.config import GLMConfig
    from evaluation.model.glm import GLMModel
    from evaluation.model.quantization import make_quantized_structure, model_bytes

    rows = []
    with torch.device("meta"):
        fp16 = GLMModel(GLMConfig()).half()
        params = sum(p.numel() for p in fp16.parameters())
        rows.append(("fp16", model_bytes(fp16) / params, model_bytes(fp16) / 2**30))
        for bits in (8, 4):
            model = make_quantized_structure(GLMModel(GLMConfig()).half(), bits).half()
            rows.append((f"INT{bits}", model_bytes(model) / params, model_bytes(model) / 2**30))
    return [(name, per, gib) for name, per, gib in rows] + [("params", params / 1e9, 0.0)]


def main() -> None:
    import torch

    from evaluation.model.checkpoint import save_checkpoint
    from evaluation.model.config import GLMConfig
    from evaluation.model.glm import GLMModel
    from evaluation.tools.convert_tp import convert

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--layers", type=int, default=4)
    parser.add_argument("--hidden", type=int, default=1024)
    parser.add_argument("--vocab", type=int, default=30016)
    args = parser.parse_args()
    config = GLMConfig(num_layers=args.layers, hidden_size=args.hidden, inner_hidden_size=8 * args.hidden // 3 // 64 * 64,
                       num_attention_heads=args.hidden // 64, vocab_size=args.vocab)
    torch.manual_seed(0)
    model = GLMModel(config)
    with torch.no_grad():
        for p in model.parameters():
            if p.dim() == 2:
                p.normal_(0, 0.02)
    params = sum(p.numel() for p in model.parameters())
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        fp = Path(tmp) / "fp32"
        save_checkpoint(model, fp)
        (fp / "model_config.json").write_text(json.dumps(config.to_dict()))
        del model
        modes = [("fp32", fp, None), ("INT8 on load", fp, 8), ("INT4 on load", fp, 4)]
        for bits in (8, 4):
            convert(fp, Path(tmp) / f"int{bits}", 1, bits)
            modes.append((f"INT{bits} pre-quantized", Path(tmp) / f"int{bits}", bits))
        reference = None
        for name, folder, bits in modes:
            logits_path = str(Path(tmp) / "logits.pt")
            code = CHILD.format(root=str(ROOT), config=json.dumps(config.to_dict()), folder=str(folder), bits=bits, logits_path=logits_path)
            out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
            if out.returncode:
                raise SystemExit(out.stderr)
            stats = json.loads(out.stdout.strip().splitlines()[-1])
            logits = torch.load(logits_path)
            reference = logits if reference is None else reference
            deviation = (logits - reference).abs().max().item()
            rows.append((name, stats["bytes"] / params, stats["bytes"] / 2**20, (stats["peak_kb"] - stats["base_kb"]) / 1024,
                         stats["anon_kb"] / 1024, stats["seconds"], deviation, reference.abs().max().item()))
    print(f"model: {args.layers} layers, hidden {args.hidden}, vocab {args.vocab}: {params / 1e6:.1f}M parameters")
    header = (f"{'mode':<22} | {'bytes/param':>11} | {'weights (MB)':>12} | {'peak RSS (MB)':>13} | {'peak private (MB)':>17} | "
              f"{'load (s)':>8} | {'max |logit - fp32|':>18}")
    print(header)
    print("-" * len(header))
    for name, per, mb, peak, anon, seconds, deviation, scale in rows:
        print(f"{name:<22} | {per:>11.3f} | {mb:>12.1f} | {peak:>13.0f} | {anon:>17.0f} | {seconds:>8.2f} | {deviation:>18.4f}")
    print(f"(logits of fp32 reach |{rows[0][7]:.2f}| on this input; peak RSS counts the memory-mapped checkpoint pages, "
          "which the kernel can drop; peak private is sampled every 2 ms)")
    table = glm130b_table()
    params130 = table[-1][1]
    print(f"\nGLM-130B shapes ({params130:.1f}B parameters; embeddings and norms stay fp16):")
    print(f"{'mode':<6} | {'bytes/param':>11} | {'weights (GiB)':>13}")
    print("-" * 36)
    for name, per, gib in table[:-1]:
        print(f"{name:<6} | {per:>11.3f} | {gib:>13.1f}")


if __name__ == "__main__":
    main()
