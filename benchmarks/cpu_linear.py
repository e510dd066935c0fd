"""fp32 linear layers on CPU: torch's F.linear (MKL sgemm) against oneDNN with the weight packed once.

    python benchmarks/cpu_linear.py                  # 2 threads, ~2 min
    python benchmarks/cpu_linear.py --threads 4 --rows 1 64 2048

Why: ``--cpu-linear auto`` (the default of both backends) replaces every fp32 ``nn.Linear``
on CPU by ``evaluation.model.cpu_linear.OneDNNLinear``. This script shows what that buys
on the machine it runs on, and that it changes no number:

1. Layers: for the projection shapes of SmolLM2-135M (576 -> 1536, 1536 -> 576, 576 -> 576),
   of a GLM-architecture model with hidden 1024, and of the LM head (576 -> 49152), and for
   several numbers of input rows (1 = one generation step, 2048 = a scoring batch), the
   GFLOP/s of each path, their ratio, and the largest relative difference of the outputs.
   The two paths are timed alternately, call by call, so a busy machine slows both alike.
2. Whole models: a forward pass over ``--batch`` x ``--length`` tokens of a GLM-architecture
   model (random weights, hidden 1024, 8 layers) and, when its HF folder exists (made from
   the GGUF by ``benchmarks/vs_lm_eval.py``), of SmolLM2-135M: seconds per forward with each
   path, the ratio, and the largest difference of the log-probabilities.
3. Generation (SmolLM2-135M only): greedy decoding of 32 tokens at batch 1 and 8, where most
   layer calls see one row per sequence; seconds with each path and whether the tokens agree.

The machine here is noisy: read the ratios, which are measured side by side, not the
absolute rates.
"""

from __future__ import annotations

import argparse
import copy
import statistics
import sys
import time
from pathlib import Path
from typing import Callable

import torch
import torch.nn.functional as F

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from evaluation.model.cpu_linear import OneDNNLinear, onednn_available, pack_linear_layers  # noqa: E402

LAYER_SHAPES = {  # name: (in_features, out_features)
    "smollm2 mlp up 576->1536": (576, 1536),
    "smollm2 mlp down 1536->576": (1536, 576),
    "smollm2 attn 576->576": (576, 576),
    "glm qkv 1024->3072": (1024, 3072),
    "glm mlp 1024->5376": (1024, 5376),
    "lm head 576->49152": (576, 49152),
}


def time_alternately(first: Callable[[], object], second: Callable[[], object], repeats: int) -> tuple[float, float]:
    """Median seconds of each callable, calling them in turn so that load on the machine
    hits both alike."""
    first(), second()  # warm-up: oneDNN picks its kernel on the first call
    a_times, b_times = [], []
    for _ in range(repeats):
        start = time.perf_counter()
        first()
        a_times.append(time.perf_counter() - start)
        start = time.perf_counter()
        second()
        b_times.append(time.perf_counter() - start)
    return statistics.median(a_times), statistics.median(b_times)


def print_table(rows: list[list[str]]) -> None:
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    for index, row in enumerate(rows):
        print("  ".join(cell.rjust(width) if i else cell.ljust(width) for i, (cell, width) in enumerate(zip(row, widths))))
        if index == 0:
            print("  ".join("-" * width for width in widths))


def layer_table(rows_list: list[int], repeats: int) -> list[list[str]]:
    generator = torch.Generator().manual_seed(0)
    table = [["layer", "rows", "F.linear GFLOP/s", "oneDNN GFLOP/s", "ratio", "max rel diff"]]
    for name, (fan_in, fan_out) in LAYER_SHAPES.items():
        weight = torch.randn(fan_out, fan_in, generator=generator) / fan_in**0.5
        packed = OneDNNLinear(weight, None)
        for rows in rows_list:
            if rows > 256 and fan_out > 10000:
                continue  # the head is only ever applied to the scored positions
            inputs = torch.randn(rows, fan_in, generator=generator)
            with torch.no_grad():
                plain_s, packed_s = time_alternately(lambda: F.linear(inputs, weight), lambda: packed(inputs), repeats)
                reference, result = F.linear(inputs, weight), packed(inputs)
            flops = 2.0 * rows * fan_in * fan_out
            diff = ((result - reference).abs().max() / reference.abs().max()).item()
            table.append([name, str(rows), f"{flops / plain_s / 1e9:.0f}", f"{flops / packed_s / 1e9:.0f}",
                          f"{plain_s / packed_s:.2f}x", f"{diff:.1e}"])
    return table


def glm_model() -> tuple[torch.nn.Module, Callable[[torch.nn.Module, torch.Tensor], torch.Tensor]]:
    from evaluation.model.config import GLMConfig
    from evaluation.model.glm import GLMModel

    torch.manual_seed(0)
    config = GLMConfig(num_layers=8, hidden_size=1024, inner_hidden_size=2688, num_attention_heads=16, vocab_size=30016)
    model = GLMModel(config).eval()

    def log_probs(net: torch.nn.Module, ids: torch.Tensor) -> torch.Tensor:
        b, s = ids.shape
        positions = torch.arange(s).expand(b, s)
        if config.position_encoding_2d:
            positions = torch.stack([positions, torch.zeros_like(positions)], dim=1)
        mask = torch.ones(s, s, dtype=torch.bool).tril().expand(b, s, s)
        hidden, _ = net(ids, positions, mask)
        return torch.log_softmax(net.logits(hidden[:, -8:]), dim=-1)  # scored positions only, as the scorer does

    return model, log_probs


def smollm2_model(folder: Path) -> tuple[torch.nn.Module, Callable[[torch.nn.Module, torch.Tensor], torch.Tensor]]:
    from transformers import AutoModelForCausalLM
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()  # keep the printed tables clean

    model = AutoModelForCausalLM.from_pretrained(str(folder), dtype=torch.float32).eval()

    def log_probs(net: torch.nn.Module, ids: torch.Tensor) -> torch.Tensor:
        hidden = net.model(input_ids=ids).last_hidden_state
        return torch.log_softmax(net.lm_head(hidden[:, -8:]), dim=-1)

    return model, log_probs


def model_table(models: dict[str, tuple[torch.nn.Module, Callable]], batch: int, length: int, repeats: int) -> list[list[str]]:
    table = [["model", "tokens", "F.linear s/fwd", "oneDNN s/fwd", "ratio", "layers packed", "max |d logprob|"]]
    for name, (model, log_probs) in models.items():
        packed_model = copy.deepcopy(model)
        count = pack_linear_layers(packed_model)
        ids = torch.randint(0, 30000, (batch, length), generator=torch.Generator().manual_seed(1))
        with torch.no_grad():
            plain_s, packed_s = time_alternately(lambda: log_probs(model, ids), lambda: log_probs(packed_model, ids), repeats)
            diff = (log_probs(model, ids) - log_probs(packed_model, ids)).abs().max().item()
        table.append([name, f"{batch}x{length}", f"{plain_s:.3f}", f"{packed_s:.3f}", f"{plain_s / packed_s:.2f}x", str(count),
                      f"{diff:.1e}"])
    return table


def generation_table(model: torch.nn.Module, new_tokens: int, batches: list[int], repeats: int) -> list[list[str]]:
    """Greedy decoding with the KV cache: most calls then push one row per sequence through
    each layer, the regime where oneDNN's lead is smallest."""
    packed_model = copy.deepcopy(model)
    pack_linear_layers(packed_model)
    table = [["model", "batch", "new tokens", "F.linear s", "oneDNN s", "ratio", "same tokens"]]
    for batch in batches:
        ids = torch.randint(0, 30000, (batch, 64), generator=torch.Generator().manual_seed(2))

        def generate(net: torch.nn.Module) -> torch.Tensor:
            return net.generate(ids, attention_mask=torch.ones_like(ids), max_new_tokens=new_tokens, min_new_tokens=new_tokens,
                                do_sample=False, pad_token_id=0)

        with torch.no_grad():
            plain_s, packed_s = time_alternately(lambda: generate(model), lambda: generate(packed_model), repeats)
            same = bool(torch.equal(generate(model), generate(packed_model)))
        table.append(["SmolLM2-135M", str(batch), str(new_tokens), f"{plain_s:.3f}", f"{packed_s:.3f}", f"{plain_s / packed_s:.2f}x",
                      "yes" if same else "NO"])
    return table


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--threads", type=int, default=2, help="torch threads (default 2, as in CI)")
    parser.add_argument("--rows", type=int, nargs="+", default=[1, 16, 256, 2048], help="input rows per layer call")
    parser.add_argument("--repeats", type=int, default=15, help="timed calls per path (median kept)")
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--length", type=int, default=256)
    parser.add_argument("--smollm2-dir", default=str(ROOT / ".cache/smollm2-135m-hf"),
                        help="HF folder of SmolLM2-135M (skipped when missing)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    if not onednn_available():
        print("oneDNN's packed linear is not usable in this torch build: --cpu-linear auto uses F.linear here.")
        return 1
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, fp32, CPU")
    print("\nSingle layers (no bias):")
    print_table(layer_table(args.rows, args.repeats))
    models = {"glm 8 layers, hidden 1024": glm_model()}
    folder = Path(args.smollm2_dir)
    if (folder / "config.json").exists():
        models["SmolLM2-135M"] = smollm2_model(folder)
    else:
        print(f"\n(SmolLM2-135M skipped: no {folder}; run benchmarks/vs_lm_eval.py once to make it)")
    print(f"\nWhole models, forward + log-softmax at the last 8 positions ({max(3, args.repeats // 3)} calls each, median):")
    print_table(model_table(models, args.batch, args.length, max(3, args.repeats // 3)))
    if "SmolLM2-135M" in models:
        print(f"\nGreedy generation after a 64-token prompt ({max(3, args.repeats // 3)} calls each, median):")
        print_table(generation_table(models["SmolLM2-135M"][0], 32, [1, 8], max(3, args.repeats // 3)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
