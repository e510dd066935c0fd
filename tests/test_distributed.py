"""Many processes end to end, through the real launchers (torchrun, the DeepSpeed launcher with
a two-node hostfile simulated on this machine): the same results.json metrics and
predictions as one process at every world size, batch size and token budget, for the tiny
GLM and a tiny Llama; failed ranks end the run and are named; bad input is reported once.

Per-item floats are compared at 1e-5 relative (tensor parallelism sums in another order);
everything else (predictions, generated ids, correctness) must be equal. The largest
deviation of each run is printed (``pytest -s`` shows it)."""

from __future__ import annotations

import json
import os
import re
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Optional

import pytest

from evaluation.tools.make_tiny_glm import make_tiny_glm
from evaluation.tools.same_results import compare_runs

ROOT = Path(__file__).resolve().parent.parent
TOLERANCE = 1e-5


def write_task_set(base: Path) -> tuple[Path, Path]:
    """Every request type, with item counts that do not divide by 2 or 4 (uneven shares)."""
    data, tasks = base / "data", base / "tasks"
    tasks.mkdir(parents=True)

    def jsonl(path: Path, rows: list[dict]) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("".join(json.dumps(r) + "\n" for r in rows))

    questions = [("Is the sky blue?", 0), ("Do fish have legs?", 1), ("Is snow cold?", 0), ("Can a stone swim?", 1),
                 ("Is the sun hot?", 0), ("Do cats bark?", 1), ("Is water wet?", 0)]
    for prompt, template, count in (("Plain", "{q}", 7), ("Question", "Question: {q} Answer:", 5)):
        jsonl(data / "toy" / "quiz" / prompt / "mul" / "validation.jsonl",
              [{"inputs_pretokenized": template.format(q=q), "choices_pretokenized": ["yes it is", "no, it is not", "the cow"],
                "label": label} for q, label in questions[:count]])
    jsonl(data / "toy" / "yesno" / "Plain" / "mul" / "test.jsonl",
          [{"inputs_pretokenized": q, "choices_pretokenized": ["yes", "no"], "label": label} for q, label in questions[:5]])
    places = [("France", "Paris"), ("Italy", "Rome"), ("Spain", "Madrid"), ("Japan", "Tokyo"), ("Egypt", "Cairo")]
    jsonl(data / "toy" / "capitals" / "Capital" / "gen" / "test.jsonl",
          [{"inputs_pretokenized": f"The capital of {c} is", "targets_pretokenized": [t]} for c, t in places])
    jsonl(data / "toy" / "cont" / "Plain" / "continuation" / "test.jsonl",
          [{"inputs_pretokenized": f"The capital of {c} is", "targets_pretokenized": f" {t}"} for c, t in places + [("Peru", "Lima")]])
    (data / "toy" / "text").mkdir(parents=True)
    (data / "toy" / "text" / "wiki.test.txt").write_text("The sky is blue and the grass is green, said the cat. " * 23)
    (tasks / "quiz.yaml").write_text("name: quiz\ntype: mul\npath: toy/quiz\nfile-pattern:\n  validation: '**/validation.jsonl'\n"
                                     "micro-batch-size: 2\n")
    (tasks / "yesno.yaml").write_text("name: yesno\ntype: mul\npath: toy/yesno\nuse_task_mask: true\nmicro-batch-size: 3\n")
    (tasks / "capitals.yaml").write_text("name: capitals\ntype: gen\npath: toy/capitals\nuse_task_mask: true\n"
                                         "sampling_strategy: BeamSearchStrategy\nnum_beams: 2\nmax_gen_length: 4\nmicro-batch-size: 2\n")
    (tasks / "greedy.yaml").write_text("name: greedy\ntype: gen\npath: toy/capitals\nmax_gen_length: 5\nmicro-batch-size: 4\n")
    (tasks / "cont.yaml").write_text("name: cont\ntype: continuation\npath: toy/cont\nuse_task_mask: true\nunidirectional: true\n"
                                     "micro-batch-size: 4\n")
    (tasks / "text.yaml").write_text("name: text\ntype: lm\npath: toy/text\nmetrics: [PPL, BPB]\nmax-seq-length: 96\n"
                                     "generation-length: 24\nfile-pattern: '*.txt'\nmicro-batch-size: 2\n")
    return tasks, data


@pytest.fixture(scope="module")
def task_set(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    return write_task_set(tmp_path_factory.mktemp("distributed-tasks"))


@pytest.fixture(scope="module")
def tiny_glm_two_way(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny GLM saved 2-way tensor parallel (mp_rank_00 and mp_rank_01), same weights."""
    return make_tiny_glm(tmp_path_factory.mktemp("glm-tiny-tp2"), tensor_parallel=2)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def base_env(data: Path, output: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("MP_SIZE", "DP_SIZE", "OMP_NUM_THREADS", "RANK", "WORLD_SIZE")}
    env.update({"PYTHON": sys.executable, "DATA_PATH": str(data), "OUTPUT_DIR": str(output)})
    env.update(extra)
    return env


def evaluate_sh(run_name: str, tasks: Path, env: dict[str, str], *flags: str, timeout: int = 300) -> subprocess.CompletedProcess:
    return subprocess.run(["bash", str(ROOT / "scripts" / "evaluate.sh"), str(tasks), "--no-progress", "--run-name", run_name, *flags],
                          capture_output=True, text=True, env=env, timeout=timeout)


def glm_env(data: Path, output: Path, checkpoint: Path, **extra: str) -> dict[str, str]:
    return base_env(data, output, MODEL_CONFIG=str(ROOT / "configs" / "model_glm_tiny.sh"), TINY_GLM_PATH=str(checkpoint), **extra)


def hf_env(data: Path, output: Path, model: Path, **extra: str) -> dict[str, str]:
    return base_env(data, output, MODEL_CONFIG=str(ROOT / "configs" / "model_hf_local.sh"), HF_MODEL_PATH=str(model), **extra)


def assert_same(baseline: Path, run: Path, label: str) -> None:
    result = compare_runs(baseline, run, TOLERANCE)
    largest = ", ".join(f"{kind} {dev:.1e}" for kind, (dev, _) in sorted(result.largest.items()))
    print(f"{label}: largest relative deviation from one process: {largest}")
    assert result.same, "\n".join(result.differences[:10])


def results(run: Path) -> dict:
    return json.loads((run / "results.json").read_text())


def run_and_compare(name: str, tasks: Path, env: dict[str, str], baseline: Path, label: str, *flags: str
                    ) -> tuple[subprocess.CompletedProcess, Path]:
    """One run through scripts/evaluate.sh next to ``baseline``, which it must equal."""
    result = evaluate_sh(name, tasks, env, *flags)
    assert result.returncode == 0, result.stderr[-3000:]
    assert_same(baseline, baseline.parent / name, label)
    return result, baseline.parent / name


def one_process_run(tasks: Path, env: dict[str, str]) -> Path:
    """The reference every layout is compared with: one process, the YAMLs' batch sizes."""
    result = evaluate_sh("one-process", tasks, env)
    assert result.returncode == 0, result.stderr
    run = Path(env["OUTPUT_DIR"]) / "one-process"
    assert (results(run)["run"]["world_size"], results(run)["run"]["tensor_parallel"]) == (1, 1)
    return run


# -- the tiny GLM ------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def glm_baseline(tmp_path_factory: pytest.TempPathFactory, task_set, tiny_glm_dir: Path) -> Path:
    tasks, data = task_set
    return one_process_run(tasks, glm_env(data, tmp_path_factory.mktemp("glm-runs"), tiny_glm_dir))


LAYOUTS = {"dp2": {"DP_SIZE": "2"}, "tp2": {"MP_SIZE": "2"}, "dp2xtp2": {"MP_SIZE": "2", "DP_SIZE": "2"}}


@pytest.mark.parametrize("layout", list(LAYOUTS))
def test_glm_same_results_at_any_world_size(layout: str, task_set, tiny_glm_dir: Path, glm_baseline: Path) -> None:
    """DP=2, TP=2 (the 1-way checkpoint re-split on load) and DP=2 x TP=2 through torchrun."""
    tasks, data = task_set
    env = glm_env(data, glm_baseline.parent, tiny_glm_dir, **LAYOUTS[layout])
    result, folder = run_and_compare(layout, tasks, env, glm_baseline, f"GLM {layout}")
    run = results(folder)["run"]
    tp, dp = int(LAYOUTS[layout].get("MP_SIZE", 1)), int(LAYOUTS[layout].get("DP_SIZE", 1))
    assert (run["world_size"], run["tensor_parallel"], run["data_parallel"]) == (tp * dp, tp, dp)
    assert result.stdout.count("Evaluating task quiz:") == 1  # only rank 0 prints


def test_glm_saved_two_way_loads_its_shards_under_mp_size_2(task_set, tiny_glm_two_way: Path, glm_baseline: Path) -> None:
    tasks, data = task_set
    env = glm_env(data, glm_baseline.parent, tiny_glm_two_way, MP_SIZE="2", TINY_GLM_TP="2")
    result, folder = run_and_compare("saved-tp2", tasks, env, glm_baseline, "GLM saved 2-way, MP_SIZE=2")
    assert "tiny GLM written" not in result.stderr  # the 2-way checkpoint was used as saved, not rebuilt
    assert results(folder)["model"]["args"]["checkpoint_shards"] == 2


# -- the tiny original GLM (THUDM/GLM's architecture: stride-3 query_key_value) ---------------------


@pytest.fixture(scope="module")
def tiny_original_dirs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """The tiny original GLM in THUDM/GLM's layout, saved 1-way and 2-way (same weights)."""
    from evaluation.tools.make_tiny_glm import make_tiny_original_glm

    return {tp: make_tiny_original_glm(tmp_path_factory.mktemp(f"glm-original-tp{tp}"), tensor_parallel=int(tp))
            for tp in ("1", "2")}


def original_env(data: Path, output: Path, checkpoint: Path, **extra: str) -> dict[str, str]:
    return base_env(data, output, MODEL_CONFIG=str(ROOT / "configs" / "model_glm_original_tiny.sh"), TINY_GLM_PATH=str(checkpoint),
                    **extra)


@pytest.fixture(scope="module")
def original_baseline(tmp_path_factory: pytest.TempPathFactory, task_set, tiny_original_dirs: dict[str, Path]) -> Path:
    tasks, data = task_set
    return one_process_run(tasks, original_env(data, tmp_path_factory.mktemp("original-runs"), tiny_original_dirs["1"]))


@pytest.mark.parametrize("saved", ["1", "2"], ids=["split-on-load", "saved-2-way"])
def test_original_glm_tensor_parallel_equals_one_process(saved: str, task_set, tiny_original_dirs: dict[str, Path],
                                                         original_baseline: Path) -> None:
    """TP=2 through torchrun on the original architecture: the 1-way checkpoint split on load,
    and a 2-way checkpoint (mp_rank_00 + mp_rank_01, THUDM/GLM's split) read shard by shard."""
    tasks, data = task_set
    env = original_env(data, original_baseline.parent, tiny_original_dirs[saved], MP_SIZE="2", TINY_GLM_TP=saved)
    result, folder = run_and_compare(f"original-tp2-from-{saved}", tasks, env, original_baseline, f"original GLM TP=2 (saved {saved}-way)")
    run = results(folder)["run"]
    assert (run["world_size"], run["tensor_parallel"]) == (2, 2)
    assert results(folder)["model"]["args"]["checkpoint_shards"] == int(saved)


@pytest.mark.parametrize("micro_batch", ["1", "5"])
def test_glm_batch_size_does_not_change_results(micro_batch: str, task_set, tiny_glm_dir: Path, glm_baseline: Path) -> None:
    tasks, data = task_set
    run_and_compare(f"micro-batch-{micro_batch}", tasks, glm_env(data, glm_baseline.parent, tiny_glm_dir), glm_baseline,
                    f"GLM micro-batch {micro_batch}", "--micro-batch-size", micro_batch)


def start_node(node: int, hostfile: Path, port: int, run_name: str, tasks: Path, env: dict[str, str], *flags: str) -> subprocess.Popen:
    node_env = {**env, "HOSTFILE": str(hostfile), "NO_SSH": "1", "NODE_RANK": str(node), "MASTER_ADDR": "127.0.0.1",
                "MASTER_PORT": str(port), "RUN_NAME": run_name}
    return subprocess.Popen(["bash", str(ROOT / "scripts" / "evaluate_multiple_node.sh"), str(tasks), "--no-progress", *flags],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=node_env)


def run_two_nodes(tmp_path: Path, run_name: str, tasks: Path, env: dict[str, str], *flags: str, timeout: int = 300
                  ) -> list[tuple[int, str, float]]:
    """Both 'nodes' of a two-node hostfile on this machine; (exit code, output, seconds) per node."""
    pytest.importorskip("deepspeed")
    hostfile = tmp_path / "hostfile"
    hostfile.write_text("# two simulated nodes, one process each\nworker-1 slots=1\nworker-2 slots=1\n")
    port = free_port()
    start = time.time()
    nodes = [start_node(k, hostfile, port, run_name, tasks, env, *flags) for k in (1, 0)]
    finished = []
    for process in nodes:
        out, _ = process.communicate(timeout=timeout)
        finished.append((process.returncode, out, time.time() - start))
    return finished[::-1]  # node 0 first


def test_two_node_deepspeed_run_equals_one_process(tmp_path: Path, task_set, tiny_glm_two_way: Path, glm_baseline: Path) -> None:
    """scripts/evaluate_multiple_node.sh, started once per node with NO_SSH=1: the 2-way saved
    tiny GLM split across the two nodes (MP_SIZE=2)."""
    tasks, data = task_set
    output = glm_baseline.parent
    env = glm_env(data, output, tiny_glm_two_way, MP_SIZE="2", TINY_GLM_TP="2")
    (code0, out0, _), (code1, out1, _) = run_two_nodes(tmp_path, "two-nodes", tasks, env)
    assert code0 == 0 and code1 == 0, out0[-3000:] + out1[-3000:]
    run = output / "two-nodes"
    assert (run / "launcher-node0.log").is_file() and (run / "launcher-node1.log").is_file()
    layout = results(run)["run"]
    assert (layout["world_size"], layout["tensor_parallel"], layout["num_nodes"]) == (2, 2, 2)
    assert_same(glm_baseline, run, "GLM two nodes (DeepSpeed launcher, TP=2 across nodes)")


# -- a tiny Llama (Hugging Face backend) -------------------------------------------------------


@pytest.fixture(scope="module")
def hf_baseline(tmp_path_factory: pytest.TempPathFactory, task_set, tiny_llama_dir: Path) -> Path:
    tasks, data = task_set
    return one_process_run(tasks, hf_env(data, tmp_path_factory.mktemp("hf-runs"), tiny_llama_dir))


@pytest.mark.parametrize("layout", list(LAYOUTS))
def test_llama_same_results_at_any_world_size(layout: str, task_set, tiny_llama_dir: Path, hf_baseline: Path) -> None:
    """Data parallel through our seam; tensor parallel through transformers' own plan."""
    tasks, data = task_set
    run_and_compare(layout, tasks, hf_env(data, hf_baseline.parent, tiny_llama_dir, **LAYOUTS[layout]), hf_baseline, f"Llama {layout}")


@pytest.mark.parametrize("budget", ["64", "4096"])
def test_llama_token_budget_does_not_change_results(budget: str, task_set, tiny_llama_dir: Path, hf_baseline: Path) -> None:
    tasks, data = task_set
    run_and_compare(f"budget-{budget}", tasks, hf_env(data, hf_baseline.parent, tiny_llama_dir), hf_baseline,
                    f"Llama token budget {budget}", "--max-batch-tokens", budget)


# -- faults -----------------------------------------------------------------------------------

FAULT_TIMEOUT = "10"  # --dist-timeout of the fault tests: bounds every wait


def run_with_fault(tmp_path: Path, task_set, checkpoint: Path, fault: str) -> subprocess.CompletedProcess:
    """DP=2 through torchrun with rank 1 failing as GLM_EVAL_TEST_FAULT says; every rank must
    have exited non-zero well within a minute."""
    tasks, data = task_set
    env = glm_env(data, tmp_path, checkpoint, DP_SIZE="2", GLM_EVAL_TEST_FAULT=fault)
    start = time.time()
    result = evaluate_sh("fault", tasks, env, "--dist-timeout", FAULT_TIMEOUT, timeout=120)
    assert result.returncode != 0
    assert time.time() - start < 60
    return result


def test_a_rank_that_raises_stops_every_rank(tmp_path: Path, task_set, tiny_glm_dir: Path) -> None:
    result = run_with_fault(tmp_path, task_set, tiny_glm_dir, "1:3:raise")
    assert "error: rank 1 (host" in result.stderr and "failed: RuntimeError: fault injected" in result.stderr
    assert re.search(r"error: rank 0 \(host [^)]*\): stopping because rank 1 \(host", result.stderr), result.stderr[-2000:]


def test_a_rank_killed_on_another_node_stops_the_run(tmp_path: Path, task_set, tiny_glm_dir: Path) -> None:
    """No launcher watches both 'nodes' here, so this is the watchdog's work: rank 1 is killed
    with SIGKILL after 3 batches, and rank 0 (on the other node) exits non-zero naming it."""
    tasks, data = task_set
    env = glm_env(data, tmp_path, tiny_glm_dir, GLM_EVAL_TEST_FAULT="1:3:kill")
    (code0, out0, seconds0), (code1, _, _) = run_two_nodes(tmp_path, "killed", tasks, env, "--dist-timeout", FAULT_TIMEOUT,
                                                           timeout=120)
    assert code0 != 0 and code1 != 0
    assert seconds0 < 60
    assert re.search(r"error: rank 0 \(host [^)]*\): stopping because rank 1 \(host [^)]*\) stopped responding", out0), out0[-2000:]


def test_a_hung_rank_is_named_when_the_gather_times_out(tmp_path: Path, task_set, tiny_glm_dir: Path) -> None:
    result = run_with_fault(tmp_path, task_set, tiny_glm_dir, "1:1:hang")
    assert re.search(r"rank 1 \(host [^)]*\) is at collective 0", result.stderr), result.stderr[-2000:]


# -- bad input ----------------------------------------------------------------------------------


def test_validation_errors_are_reported_once_before_any_model_loads(tmp_path: Path, task_set, tiny_glm_dir: Path) -> None:
    tasks, data = task_set
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "bad.yaml").write_text("name: bad\ntype: mul\npath: toy/quiz\nmicro-bach-size: 2\n")
    result = evaluate_sh("bad", bad, glm_env(data, tmp_path, tiny_glm_dir, MP_SIZE="2", DP_SIZE="2"))
    assert result.returncode == 2
    assert result.stderr.count("problem(s) found") == 1
    assert "bad.yaml:4: field 'micro-bach-size'" in result.stderr
    assert "Loading model" not in result.stdout


def launch_rank(rank: int, port: int, tasks: Path, data: Path, output: Path, checkpoint: Path, *flags: str) -> subprocess.Popen:
    """One rank of a 2-process world started by hand (as a node-local launcher would)."""
    model_args = subprocess.run(["bash", "-c", f"GLM_EVAL_ROOT={ROOT} TINY_GLM_PATH={checkpoint} source {ROOT}/configs/model_glm_tiny.sh;"
                                 " echo $MODEL_ARGS"], capture_output=True, text=True, check=True).stdout.split()
    env = {**os.environ, "RANK": str(rank), "WORLD_SIZE": "2", "LOCAL_RANK": "0", "MASTER_ADDR": "127.0.0.1",
           "MASTER_PORT": str(port), "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}
    return subprocess.Popen([sys.executable, str(ROOT / "evaluate.py"), *model_args, str(tasks), "--data-path", str(data),
                             "--output-dir", str(output), "--no-progress", "--dist-timeout", "60", *flags],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)


def run_pair(tasks: Path, data: Path, output: Path, checkpoint: Path, flags0: tuple = (), flags1: tuple = (),
             data1: Optional[Path] = None) -> list[tuple[int, str]]:
    port = free_port()
    ranks = [launch_rank(0, port, tasks, data, output, checkpoint, *flags0),
             launch_rank(1, port, tasks, data1 or data, output, checkpoint, *flags1)]
    outputs = [p.communicate(timeout=120) for p in ranks]
    return [(p.returncode, err) for p, (_, err) in zip(ranks, outputs)]


def test_ranks_started_with_different_inputs_are_refused(tmp_path: Path, task_set, tiny_glm_dir: Path) -> None:
    tasks, data = task_set
    (code0, err0), (code1, err1) = run_pair(tasks, data, tmp_path, tiny_glm_dir, flags1=("--limit", "3"))
    assert code0 == 2 and code1 == 2
    assert "were not started with the same inputs" in err0
    assert re.search(r"rank 1 \(host [^)]*\) differs from rank 0 in evaluation flags: .*\"limit\": null.* on rank 0, "
                     r".*\"limit\": 3.* on rank 1", err0), err0
    assert err1 == ""  # reported once, by rank 0


def test_a_problem_seen_by_one_rank_only_is_reported_by_rank_0(tmp_path: Path, task_set, tiny_glm_dir: Path) -> None:
    tasks, data = task_set
    empty = tmp_path / "empty-data"
    empty.mkdir()
    (code0, err0), (code1, err1) = run_pair(tasks, data, tmp_path, tiny_glm_dir, data1=empty)
    assert code0 == 2 and code1 == 2
    assert re.search(r"rank 1 \(host [^)]*\): .*quiz\.yaml.*path", err0), err0
    assert err1 == ""
