"""The pieces of distributed evaluation, each on its own: launcher environments, the
reference's process groups, dealing requests and gathering them back, re-splitting
checkpoints for any tensor-parallel size, and the tensor-parallel GLM against the
one-process GLM in two real gloo processes (spawned here)."""

from __future__ import annotations

import json
import socket
from pathlib import Path

import pytest
import torch
import torch.multiprocessing as mp

from evaluation.distributed.agreement import differences
from evaluation.distributed.data_parallel import merge_shards, shard_indices
from evaluation.distributed.environment import ProcessLayout, layout_from_environment
from evaluation.distributed.faults import FaultInjector
from evaluation.distributed.groups import ParallelContext, parallel_group_ranks
from evaluation.model.checkpoint import CheckpointError, load_checkpoint, save_checkpoint
from evaluation.model.config import GLMConfig
from evaluation.model.glm import GLMModel
from evaluation.model.sharding import merge_parts, resplit_part, shard_kind, shard_sized_model, shard_slice, split_state
from evaluation.tools.make_tiny_glm import TINY_CONFIG

# -- launcher environments -------------------------------------------------------------------


def test_torchrun_environment() -> None:
    env = {"RANK": "3", "WORLD_SIZE": "4", "LOCAL_RANK": "1", "LOCAL_WORLD_SIZE": "2", "GROUP_RANK": "1",
           "MASTER_ADDR": "10.0.0.1", "MASTER_PORT": "29400"}
    layout = layout_from_environment(env)
    assert layout == ProcessLayout(3, 4, 1, 2, "10.0.0.1", 29400, "env", 1)
    assert layout.distributed and not layout.is_main


def test_deepspeed_environment_uses_local_size_and_cross_rank() -> None:
    env = {"RANK": "9", "WORLD_SIZE": "16", "LOCAL_RANK": "1", "LOCAL_SIZE": "8", "CROSS_RANK": "1",
           "MASTER_ADDR": "worker-1", "MASTER_PORT": "29500"}
    layout = layout_from_environment(env)
    assert (layout.rank, layout.local_world_size, layout.node_rank, layout.master_addr) == (9, 8, 1, "worker-1")


def test_slurm_environment() -> None:
    env = {"SLURM_PROCID": "5", "SLURM_NTASKS": "8", "SLURM_LOCALID": "1", "SLURM_NTASKS_PER_NODE": "4(x2)",
           "SLURM_NNODES": "2", "SLURM_NODEID": "1", "MASTER_ADDR": "node17"}
    layout = layout_from_environment(env)
    assert (layout.rank, layout.world_size, layout.local_rank, layout.local_world_size, layout.node_rank, layout.launcher) == \
        (5, 8, 1, 4, 1, "slurm")
    with pytest.raises(ValueError, match="MASTER_ADDR"):
        layout_from_environment({k: v for k, v in env.items() if k != "MASTER_ADDR"})


def test_single_process_and_bad_values() -> None:
    assert layout_from_environment({}) == ProcessLayout()
    assert not layout_from_environment({"SLURM_PROCID": "0", "SLURM_NTASKS": "1"}).distributed
    with pytest.raises(ValueError, match="RANK='x'"):
        layout_from_environment({"RANK": "x", "WORLD_SIZE": "2"})
    with pytest.raises(ValueError, match="WORLD_SIZE is not set"):
        layout_from_environment({"RANK": "0"})
    with pytest.raises(ValueError, match="rank 2 is outside the world of 2"):
        layout_from_environment({"RANK": "2", "WORLD_SIZE": "2"})


# -- groups, sharding of requests -------------------------------------------------------------


def test_groups_as_the_reference_forms_them() -> None:
    model_groups, data_groups = parallel_group_ranks(8, 2)
    assert model_groups == [[0, 1], [2, 3], [4, 5], [6, 7]]
    assert data_groups == [[0, 2, 4, 6], [1, 3, 5, 7]]
    model_groups, data_groups = parallel_group_ranks(16, 8)  # 2 nodes x 8 GPUs, GLM-130B: one replica per node
    assert model_groups == [list(range(8)), list(range(8, 16))] and data_groups == [[i, i + 8] for i in range(8)]
    with pytest.raises(ValueError, match="multiple of MP_SIZE"):
        parallel_group_ranks(6, 4)


def test_context_ranks() -> None:
    context = ParallelContext(ProcessLayout(rank=5, world_size=8), model_parallel_size=2)
    assert (context.model_parallel_rank, context.data_parallel_rank, context.data_parallel_size) == (1, 2, 4)


@pytest.mark.parametrize("count", [0, 1, 2, 5, 7, 12])
@pytest.mark.parametrize("size", [1, 2, 3, 4])
def test_shards_cover_every_request_once_and_merge_back(count: int, size: int) -> None:
    shares = [list(shard_indices(count, rank, size)) for rank in range(size)]
    assert sorted(i for share in shares for i in share) == list(range(count))
    assert max(map(len, shares)) - min(map(len, shares)) <= 1
    results = [[f"result {i}" for i in share] for share in shares]
    assert merge_shards(results, count) == [f"result {i}" for i in range(count)]


def test_merge_refuses_a_short_share() -> None:
    with pytest.raises(RuntimeError, match="rank 1 returned 1 results for 2 requests"):
        merge_shards([["a", "b"], ["c"]], 4)


def test_fingerprint_differences_name_the_component() -> None:
    lines = differences({"evaluation flags": "limit 3", "data file a.jsonl": "sha256 1"},
                        {"evaluation flags": "limit 3", "data file a.jsonl": "sha256 2"}, 3)
    assert lines == ["data file a.jsonl: sha256 1 on rank 0, sha256 2 on rank 3"]


def test_fault_injection_spec() -> None:
    FaultInjector(0, None).batch_done()  # inert
    injector = FaultInjector(1, "1:2:raise")
    injector.batch_done()
    with pytest.raises(RuntimeError, match="after 2 batches"):
        injector.batch_done()
    assert not FaultInjector(0, "1:2:raise").active
    with pytest.raises(ValueError, match="RANK:BATCHES:MODE"):
        FaultInjector(0, "nonsense")


# -- checkpoints at any tensor-parallel size --------------------------------------------------


@pytest.fixture(scope="module")
def full_state() -> dict[str, torch.Tensor]:
    torch.manual_seed(0)
    return {k: v.clone() for k, v in GLMModel(TINY_CONFIG).state_dict().items()}


@pytest.mark.parametrize("source", [1, 2, 4])
@pytest.mark.parametrize("target", [1, 2, 4])
def test_resplit_equals_merge_then_slice(full_state, source: int, target: int) -> None:
    shards = split_state(full_state, source)
    for key, full in full_state.items():
        parts = [shard[key] for shard in shards]
        assert torch.equal(merge_parts(key, parts), full), key
        for rank in range(target):
            assert torch.equal(resplit_part(key, parts, rank, target), shard_slice(full, shard_kind(key), rank, target)), (key, rank)


@pytest.mark.parametrize("source", [1, 2, 4])
@pytest.mark.parametrize("target", [1, 2, 4])
def test_shard_sized_model_loads_its_part_from_any_layout(tmp_path: Path, full_state, source: int, target: int) -> None:
    """load_checkpoint streams the source shards one by one into rank r's tensors."""
    model = GLMModel(TINY_CONFIG)
    model.load_state_dict(full_state)
    save_checkpoint(model, tmp_path, tensor_parallel=source)
    expected = split_state(full_state, target)
    for rank in range(target):
        with torch.device("meta"):
            shard = GLMModel(TINY_CONFIG)
            shard_sized_model(shard, target)
        shard = shard.to_empty(device="cpu")
        with torch.no_grad():
            for value in shard.state_dict().values():
                value.fill_(float("nan"))  # any slice left unwritten would show
        load_checkpoint(shard, tmp_path, rank, target)
        assert shard.transformer.layers[0].attention.num_heads == TINY_CONFIG.num_attention_heads // target
        for key, value in shard.state_dict().items():
            assert torch.equal(value, expected[rank][key]), (rank, key)


def test_indivisible_tensor_parallel_size_is_refused() -> None:
    with torch.device("meta"):
        model = GLMModel(TINY_CONFIG)
    with pytest.raises(ValueError, match="does not divide num_attention_heads = 4"):
        shard_sized_model(model, 3)


def test_shape_errors_name_the_key_and_the_layout(tmp_path: Path, full_state) -> None:
    model = GLMModel(TINY_CONFIG)
    model.load_state_dict(full_state)
    save_checkpoint(model, tmp_path, tensor_parallel=2)
    other = GLMModel(GLMConfig(**{**TINY_CONFIG.to_dict(), "inner_hidden_size": 64}))
    with pytest.raises(CheckpointError, match="dense_h_to_4h.weight has shape"):
        load_checkpoint(other, tmp_path)


# -- the tensor-parallel GLM in two real processes ---------------------------------------------


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _tensor_parallel_worker(rank: int, size: int, port: int, folder: str, out: str, config_json: str, bits) -> None:
    import torch.distributed as dist

    from evaluation.distributed.tensor_parallel import TensorParallelGroup
    from evaluation.model.loader import ModelSpec, load_model
    from evaluation.scoring.decoding import DecodingSettings
    from evaluation.scoring.glm_scorer import EncodingOptions, GLMScorer
    from evaluation.tokenization import GLM130BTokenizer

    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=size)
    config = GLMConfig.from_dict(json.loads(config_json))
    spec = ModelSpec(config, Path(folder), Path(folder) / "ice_text.model", 20000, "fp32", "cpu", size,
                     quantization_bit_width=bits, cpu_linear="torch")
    model = load_model(spec, TensorParallelGroup(rank, size, dist.new_group(list(range(size)))))
    tokenizer = GLM130BTokenizer(Path(folder) / "ice_text.model")
    scorer = GLMScorer(model, tokenizer)
    words = ["the cat sat on the mat", "two plus three is five", "rain falls in the north every day"]
    items = [(tokenizer.tokenize(w), [tokenizer.tokenize(" yes"), tokenizer.tokenize(" no way"), tokenizer.tokenize(" maybe so")])
             for w in words]
    result = {
        "mul_mask": scorer.cond_log_prob(items, EncodingOptions(), 2),
        "mul_gmask": scorer.cond_log_prob(items, EncodingOptions(use_task_mask=True), 3),
        "continuation": scorer.continuation_scores([(c, ch[1]) for c, ch in items],
                                                   EncodingOptions(use_task_mask=True, unidirectional=True), 2),
        "lm": scorer.calculate_loss(scorer.lm_windows(tokenizer.tokenize(" ".join(words * 8)), EncodingOptions(max_seq_length=64), 16), 2),
        "greedy": scorer.generate_text([c for c, _ in items], EncodingOptions(use_task_mask=True),
                                       DecodingSettings(6, (tokenizer.eop_id, tokenizer.eos_id)), 2),
        "beam": scorer.generate_text([c for c, _ in items], EncodingOptions(),
                                     DecodingSettings(5, (tokenizer.eop_id, tokenizer.eos_id), num_beams=3, no_repeat_ngram_size=2), 2),
    }
    if rank == 0:
        Path(out).write_text(json.dumps(result))
    dist.destroy_process_group()


def _run_tensor_parallel(folder: Path, tmp_path: Path, size: int, config: GLMConfig, bits=None) -> dict:
    out = tmp_path / f"tp{size}-{bits}.json"
    mp.start_processes(_tensor_parallel_worker, args=(size, _free_port(), str(folder), str(out), json.dumps(config.to_dict()), bits),
                       nprocs=size, start_method="spawn", join=True)
    return json.loads(out.read_text())


def _assert_close(a, b, tolerance: float = 1e-5) -> float:
    """Same structure, same non-floats, floats within ``tolerance`` (relative); returns the largest deviation."""
    if isinstance(a, float) or isinstance(b, float):
        deviation = abs(a - b) / max(1.0, abs(a))
        assert deviation <= tolerance, (a, b)
        return deviation
    if isinstance(a, list):
        assert isinstance(b, list) and len(a) == len(b)
        return max([_assert_close(x, y, tolerance) for x, y in zip(a, b)], default=0.0)
    if isinstance(a, dict):
        assert a.keys() == b.keys()
        return max([_assert_close(a[k], b[k], tolerance) for k in a], default=0.0)
    assert a == b
    return 0.0


@pytest.mark.parametrize("two_d", [False, True], ids=["rotary-1d", "rotary-2d"])
def test_tensor_parallel_glm_equals_one_process(tmp_path: Path, tiny_glm_dir: Path, tiny_glm_2d_dir: Path, two_d: bool) -> None:
    """Every request type (packed [MASK]/[gMASK] multiple choice, continuations, LM windows,
    greedy and beam generation with the KV cache) at TP=2 against one process, from the
    1-way checkpoint re-split on load."""
    folder = tiny_glm_2d_dir if two_d else tiny_glm_dir
    config = GLMConfig.from_dict(json.loads((folder / "model_config.json").read_text()))
    one, two = _run_tensor_parallel(folder, tmp_path, 1, config), _run_tensor_parallel(folder, tmp_path, 2, config)
    deviation = _assert_close(one, two)
    print(f"largest relative deviation TP=2 vs 1 ({'2D' if two_d else '1D'} rotary): {deviation:.2e}")
    assert one["mul_mask"][0][0] != one["mul_gmask"][0][0]  # the requests differ, so the comparison means something


def test_tensor_parallel_quantizes_each_shard(tmp_path: Path, tiny_glm_dir: Path) -> None:
    """INT8 at TP=2 quantizes each shard (row-parallel rows get one scale per segment, as the
    reference does): equal to one process loading a 2-way pre-quantized checkpoint, whose
    merged scales keep both segments."""
    from evaluation.tools.convert_tp import convert

    config = TINY_CONFIG
    prequantized = tmp_path / "int8-tp2"
    convert(tiny_glm_dir, prequantized, 2, bits=8)
    on_load_tp2 = _run_tensor_parallel(tiny_glm_dir, tmp_path, 2, config, bits=8)
    prequantized_one = _run_tensor_parallel(prequantized, tmp_path, 1, config, bits=8)
    prequantized_tp2 = _run_tensor_parallel(prequantized, tmp_path, 2, config, bits=8)
    assert _assert_close(on_load_tp2, prequantized_one) <= 1e-5
    assert _assert_close(prequantized_tp2, prequantized_one) <= 1e-5


def test_prequantized_checkpoint_is_not_resplit(tmp_path: Path, tiny_glm_dir: Path) -> None:
    from evaluation.model.quantization import load_quantized_model
    from evaluation.tools.convert_tp import convert

    convert(tiny_glm_dir, tmp_path / "int8-tp2", 2, bits=8)
    with pytest.raises(ValueError, match="loads at tensor-parallel size 2 or 1, not 4"):
        load_quantized_model(TINY_CONFIG, tmp_path / "int8-tp2", 8, rank=0, size=4)

