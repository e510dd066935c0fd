"""Runs that survive: per-item records as they are computed, --resume at any world size,
--cache across runs, and the refusals that keep results from being mixed up."""

from __future__ import annotations

import json
import os
import re
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from evaluation.persistence.identity import call_prefix, describe_changes, model_namespace, request_key
from evaluation.persistence.lock import RunLock, RunLockedError
from evaluation.persistence.recording import KnownRecords, RecordingScorer
from evaluation.persistence.records import RecordsError, RecordWriter, read_records
from evaluation.distributed.groups import ParallelContext
from evaluation.scoring.glm_scorer import EncodingOptions
from evaluation.tools.same_results import compare_runs

from test_distributed import evaluate_sh, glm_env, hf_env, write_task_set

# -- records on disk ---------------------------------------------------------------------------


def test_records_round_trip_exactly_and_torn_lines_are_dropped(tmp_path: Path) -> None:
    writer = RecordWriter(tmp_path / "a-rank000.jsonl")
    values = [[-1.2345678901234567, -0.1], [0.1 + 0.2, 1e-300], [3, True]]
    writer.append([(f"k{i}", v) for i, v in enumerate(values)])
    writer.close()
    other = tmp_path / "b-rank001.jsonl"
    other.write_text('{"k":"k9","r":[1.5]}\nnot json\n{"k":"k8","r":[2.')  # junk in the middle, torn at the end
    loaded = read_records([tmp_path, tmp_path / "absent"])
    assert loaded.results == {"k0": values[0], "k1": values[1], "k2": values[2], "k9": [1.5]}
    assert loaded.files == 2 and loaded.lines == 4
    assert [d.split(": ", 1)[1] for d in loaded.dropped] == ["unreadable line", "torn last line (the writer stopped mid-line)"]
    assert "b-rank001.jsonl:3" in loaded.dropped[1]


def test_a_full_disk_is_a_clear_error() -> None:
    writer = RecordWriter(Path("/dev/full"))
    with pytest.raises(RecordsError, match="No space left on device.*--resume RUN_DIR"):
        writer.append([("k", [1.0])])


def test_changes_are_named_as_dotted_paths() -> None:
    old = {"model": {"quantization_bit_width": None, "dtype": "fp32"}, "tasks": {"a": {"files": {"x.jsonl": "sha256 1"}}}}
    new = {"model": {"quantization_bit_width": 8, "dtype": "fp32"}, "tasks": {"a": {"files": {"x.jsonl": "sha256 2"}}, "b": {}}}
    assert describe_changes(old, new) == ["model.quantization_bit_width: None -> 8", "tasks.a.files.x.jsonl: sha256 1 -> sha256 2",
                                          "tasks.b: (absent) -> {}"]


def test_keys_follow_what_changes_a_score() -> None:
    namespace = model_namespace({"dtype": "fp32"})
    base = call_prefix(namespace, "cond_log_prob", EncodingOptions(), None)
    request = ([1, 2, 3], [[4], [5, 6]])
    assert request_key(base, request) == request_key(base, ([1, 2, 3], [[4], [5, 6]]))
    assert request_key(base, request) != request_key(base, ([1, 2, 3], [[4], [5, 7]]))
    assert request_key(base, request) != request_key(call_prefix(namespace, "cond_log_prob", EncodingOptions(use_task_mask=True), None),
                                                     request)
    assert request_key(base, request) != request_key(call_prefix(model_namespace({"dtype": "bf16"}), "cond_log_prob",
                                                                 EncodingOptions(), None), request)


# -- the lock -------------------------------------------------------------------------------------


def test_lock_refuses_a_live_holder_and_takes_over_a_stale_one(tmp_path: Path) -> None:
    holder = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)", "evaluate.py"])
    try:
        (tmp_path / ".lock").write_text(json.dumps({"pid": holder.pid, "host": socket.gethostname(), "started": "then"}))
        with pytest.raises(RunLockedError, match=f"pid {holder.pid} on host"):
            RunLock(tmp_path).acquire()
    finally:
        holder.kill()
        holder.wait()
    note = RunLock(tmp_path).acquire()  # the holder is gone now: stale
    assert note is not None and "stale lock" in note
    (tmp_path / ".lock").unlink()
    (tmp_path / ".lock").write_text(json.dumps({"pid": 1, "host": "another-host", "started": "then"}))
    with pytest.raises(RunLockedError, match="another-host.*delete"):
        RunLock(tmp_path).acquire()


# -- the recording scorer in process ------------------------------------------------------------


class CountingScorer:
    """Stands for a backend: the score of a request is its length; counts what it is asked."""

    def __init__(self) -> None:
        self.asked = 0

    def cond_log_prob(self, requests, options, batch_size=1, progress=None, on_batch=None):
        self.asked += len(requests)
        results = [[float(len(context) + len(c)) for c in choices] for context, choices in requests]
        for start in range(0, len(results), 2):
            if on_batch is not None:
                on_batch(range(start, min(start + 2, len(results))), results[start : start + 2])
        return results


def test_known_results_are_served_and_new_ones_written(tmp_path: Path) -> None:
    requests = [([1] * n, [[2], [3, 4]]) for n in range(1, 6)]
    namespace = model_namespace({"test": 1})
    first = RecordingScorer(CountingScorer(), ParallelContext(), namespace, KnownRecords(), [RecordWriter(tmp_path / "a.jsonl")])
    expected = first.cond_log_prob(requests, EncodingOptions())
    first.close()
    assert first.inner.asked == 5 and len(read_records([tmp_path]).results) == 5
    known = KnownRecords(run=read_records([tmp_path]).results)
    second = RecordingScorer(CountingScorer(), ParallelContext(), namespace, known, [RecordWriter(tmp_path / "b.jsonl")])
    seen = []
    assert second.cond_log_prob(requests + [([9], [[9]])], EncodingOptions(), on_batch=lambda i, r: seen.extend(i)) == \
        expected + [[2.0]]
    assert second.inner.asked == 1 and (second.counts.from_run, second.counts.computed) == (5, 1)
    assert sorted(seen) == list(range(6))  # on_batch hears of served and computed requests alike


# -- end to end: kill, resume, cache --------------------------------------------------------------


@pytest.fixture(scope="module")
def tasks_and_data(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    return write_task_set(tmp_path_factory.mktemp("persistence-tasks"))


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory: pytest.TempPathFactory, tasks_and_data, tiny_glm_dir: Path) -> Path:
    tasks, data = tasks_and_data
    output = tmp_path_factory.mktemp("persistence-runs")
    result = evaluate_sh("uninterrupted", tasks, glm_env(data, output, tiny_glm_dir))
    assert result.returncode == 0, result.stderr
    return output / "uninterrupted"


def record_lines(run: Path) -> int:
    return len(read_records([run / "records"]).results)


def resume(run: Path, tasks: Path, env: dict[str, str], *flags: str) -> subprocess.CompletedProcess:
    return subprocess.run(["bash", str(Path(__file__).resolve().parent.parent / "scripts" / "evaluate.sh"), str(tasks),
                           "--no-progress", "--resume", str(run), *flags], capture_output=True, text=True, env=env, timeout=300)


def assert_resumed_without_recomputing(run: Path, on_disk: int, result: subprocess.CompletedProcess, uninterrupted: Path) -> None:
    assert result.returncode == 0, result.stderr[-3000:]
    records = json.loads((run / "results.json").read_text())["run"]["records"]
    total = records["reused_from_run"] + records["computed"]
    assert records["reused_from_run"] == on_disk > 0
    assert re.search(rf"> resumed: {on_disk:,} of {total:,} items already done, {total - on_disk:,} computed", result.stdout)
    comparison = compare_runs(uninterrupted, run, 1e-5)
    assert comparison.same, comparison.differences[:5]


def test_a_killed_run_resumes_without_recomputing_finished_items(tmp_path: Path, tasks_and_data, tiny_glm_dir: Path,
                                                                 uninterrupted: Path) -> None:
    tasks, data = tasks_and_data
    env = glm_env(data, tmp_path, tiny_glm_dir)
    killed = evaluate_sh("killed", tasks, {**env, "GLM_EVAL_TEST_FAULT": "0:4:kill"})
    assert killed.returncode == -9 or killed.returncode == 137, killed.stderr
    run = tmp_path / "killed"
    on_disk = record_lines(run)
    assert 0 < on_disk < json.loads((uninterrupted / "results.json").read_text())["run"]["records"]["computed"]
    with (run / "records").glob("*.jsonl").__next__().open("a") as handle:
        handle.write('{"k": "torn')  # as if killed mid-write
    result = resume(run, tasks, env, "--micro-batch-size", "3")  # another batch size too
    assert "torn last line" in result.stdout
    assert_resumed_without_recomputing(run, on_disk, result, uninterrupted)


def test_a_run_killed_at_world_size_2_resumes_at_world_size_1(tmp_path: Path, tasks_and_data, tiny_glm_dir: Path,
                                                              uninterrupted: Path) -> None:
    tasks, data = tasks_and_data
    env = glm_env(data, tmp_path, tiny_glm_dir)
    killed = evaluate_sh("killed-dp2", tasks, {**env, "DP_SIZE": "2", "GLM_EVAL_TEST_FAULT": "1:5:kill"})
    assert killed.returncode != 0
    run = tmp_path / "killed-dp2"
    assert len(list((run / "records").glob("*rank001.jsonl"))) == 1  # rank 1 kept its own batches
    on_disk = record_lines(run)
    assert_resumed_without_recomputing(run, on_disk, resume(run, tasks, env), uninterrupted)


def test_a_killed_llama_run_resumes(tmp_path: Path, tasks_and_data, tiny_llama_dir: Path) -> None:
    """The Hugging Face scorer reports its token-budget batches (and packed, generated and
    windowed requests) to the records as well."""
    tasks, data = tasks_and_data
    env = hf_env(data, tmp_path, tiny_llama_dir)
    assert evaluate_sh("whole", tasks, env, "--max-batch-tokens", "128").returncode == 0
    killed = evaluate_sh("killed", tasks, {**env, "GLM_EVAL_TEST_FAULT": "0:6:kill"}, "--max-batch-tokens", "128")
    assert killed.returncode != 0
    run = tmp_path / "killed"
    assert_resumed_without_recomputing(run, record_lines(run), resume(run, tasks, env), tmp_path / "whole")


def test_resume_refuses_other_inputs_and_names_them(tmp_path: Path, tasks_and_data, tiny_glm_dir: Path) -> None:
    tasks, data = tasks_and_data
    env = glm_env(data, tmp_path, tiny_glm_dir)
    assert evaluate_sh("done", tasks, env).returncode == 0
    run = tmp_path / "done"
    refused = resume(run, tasks, env, "--quantization-bit-width", "8")
    assert refused.returncode == 2 and "model.quantization_bit_width: None -> 8" in refused.stderr
    edited = tmp_path / "edited-tasks"
    edited.mkdir()
    for yaml in tasks.glob("*.yaml"):
        text = yaml.read_text()
        (edited / yaml.name).write_text(text.replace("max-seq-length: 96", "max-seq-length: 80"))
    refused = resume(run, edited, env)
    assert refused.returncode == 2 and "tasks.text.config.max_seq_length: 96 -> 80" in refused.stderr, refused.stderr
    assert "Loading model" not in refused.stdout
    again = evaluate_sh("done", tasks, env)  # a finished run is not silently overwritten
    assert again.returncode == 2 and "already holds results.json" in again.stderr


def test_an_interrupted_run_is_not_restarted_by_accident(tmp_path: Path, tasks_and_data, tiny_glm_dir: Path) -> None:
    tasks, data = tasks_and_data
    env = glm_env(data, tmp_path, tiny_glm_dir)
    assert evaluate_sh("cut", tasks, {**env, "GLM_EVAL_TEST_FAULT": "0:2:kill"}).returncode != 0
    again = evaluate_sh("cut", tasks, env)
    assert again.returncode == 2 and f"continue it with --resume {tmp_path / 'cut'}" in again.stderr


def test_output_problems_are_reported_before_the_model_loads(tmp_path: Path, tasks_and_data, tiny_glm_dir: Path) -> None:
    tasks, data = tasks_and_data
    a_file = tmp_path / "not-a-folder"
    a_file.write_text("")
    result = evaluate_sh("x", tasks, glm_env(data, a_file, tiny_glm_dir))
    assert result.returncode == 2 and "is a file, not a folder" in result.stderr and "Traceback" not in result.stderr
    holder = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)", "evaluate.py"])
    try:
        (tmp_path / "busy").mkdir()
        (tmp_path / "busy" / ".lock").write_text(json.dumps({"pid": holder.pid, "host": socket.gethostname(), "started": "now"}))
        result = evaluate_sh("busy", tasks, glm_env(data, tmp_path, tiny_glm_dir))
        assert result.returncode == 2 and f"being written by pid {holder.pid}" in result.stderr
    finally:
        holder.kill()


def run_with_cache(name: str, tasks: Path, env: dict[str, str], cache: Path, *flags: str) -> dict:
    result = evaluate_sh(name, tasks, env, "--cache", str(cache), *flags)
    assert result.returncode == 0, result.stderr[-3000:]
    return json.loads((Path(env["OUTPUT_DIR"]) / name / "results.json").read_text())["run"]["records"]


def test_the_cache_reuses_what_did_not_change(tmp_path: Path, tasks_and_data, tiny_glm_dir: Path, uninterrupted: Path) -> None:
    tasks, data = tasks_and_data
    env, cache = glm_env(data, tmp_path, tiny_glm_dir), tmp_path / "cache"
    first = run_with_cache("first", tasks, env, cache)
    assert first["reused_from_cache"] == 0 and first["computed"] > 0
    second = run_with_cache("second", tasks, env, cache)
    assert (second["reused_from_cache"], second["computed"]) == (first["computed"], 0)
    assert compare_runs(uninterrupted, tmp_path / "second", 1e-5).same

    # One YAML edited in a way that changes scores, and one task added: only those are computed.
    edited = tmp_path / "edited"
    edited.mkdir()
    for yaml in tasks.glob("*.yaml"):
        (edited / yaml.name).write_text(yaml.read_text().replace("max-seq-length: 96", "max-seq-length: 80"))
    (edited / "more.yaml").write_text("name: more\ntype: mul\npath: toy/yesno\nmicro-batch-size: 2\n")
    text_windows = sum(1 for _ in (uninterrupted / "predictions" / "text" / "wiki.test.txt.jsonl").open())
    third = run_with_cache("third", edited, env, cache)
    windows_now = sum(1 for _ in (tmp_path / "third" / "predictions" / "text" / "wiki.test.txt.jsonl").open())
    assert third["computed"] == windows_now + 5  # the re-windowed text and the new task's 5 items
    assert third["reused_from_cache"] == first["computed"] - text_windows

    # Another model (INT8 weights) shares nothing with the cached one.
    fourth = run_with_cache("fourth", tasks, env, cache, "--quantization-bit-width", "8")
    assert fourth["reused_from_cache"] == 0


def test_no_records_keeps_nothing(tmp_path: Path, tasks_and_data, tiny_glm_dir: Path) -> None:
    tasks, data = tasks_and_data
    result = evaluate_sh("plain", tasks, glm_env(data, tmp_path, tiny_glm_dir), "--no-records")
    assert result.returncode == 0 and not (tmp_path / "plain" / "records").exists()
    assert not (tmp_path / "plain" / ".lock").exists()
    refused = resume(tmp_path / "plain", tasks, glm_env(data, tmp_path, tiny_glm_dir))
    assert refused.returncode == 2 and "nothing to resume" in refused.stderr


def test_records_are_flushed_as_batches_finish(tmp_path: Path, tasks_and_data, tiny_glm_dir: Path) -> None:
    """While a run is going, its records grow batch by batch (a hung rank-0 batch leaves the
    earlier ones readable on disk)."""
    tasks, data = tasks_and_data
    env = {**glm_env(data, tmp_path, tiny_glm_dir), "GLM_EVAL_TEST_FAULT": "0:3:hang"}
    process = subprocess.Popen(["bash", str(Path(__file__).resolve().parent.parent / "scripts" / "evaluate.sh"), str(tasks),
                                "--no-progress", "--run-name", "hanging"], env=env, stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        deadline = time.time() + 60
        while time.time() < deadline and record_lines(tmp_path / "hanging") == 0:
            time.sleep(0.5)
        time.sleep(1.0)
        # capitals.yaml comes first: 5 items in batches of 2, 2 and 1; it hangs after the third
        assert record_lines(tmp_path / "hanging") == 2 + 2 + 1
    finally:
        os.killpg(process.pid, 9)
        process.wait()
