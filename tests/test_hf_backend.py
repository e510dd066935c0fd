"""The Hugging Face backend on a tiny randomly initialised Llama built here (offline,
deterministic, saved in the HF layout): every efficient path of ``HFScorer`` against a
straightforward reference computation (one full forward per choice, log-softmax over the
full logits), and every shipped task YAML end to end through evaluate.py."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

transformers = pytest.importorskip("transformers")

from conftest import load_llama_rejecting_4d_masks  # noqa: E402
from evaluation.cli import main as evaluate_main  # noqa: E402
from evaluation.model.cpu_linear import onednn_available, pack_linear_layers  # noqa: E402
from evaluation.scoring.decoding import DecodingSettings  # noqa: E402
from evaluation.scoring.glm_scorer import EncodingOptions  # noqa: E402
from evaluation.scoring.hf_scorer import HFScorer, plan_batches  # noqa: E402
from evaluation.tokenization_hf import HFTokenizer  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
CORPUS = ROOT / "evaluation" / "tools" / "tiny_corpus.txt"
OPTIONS = EncodingOptions(max_seq_length=2048)


@pytest.fixture(scope="session")
def hf_scorer(hf_model) -> HFScorer:
    model, tok = hf_model
    return HFScorer(model, tok, max_batch_tokens=256, log=lambda *_: None)


def reference_log_probs(model, context: list[int], target: list[int]) -> tuple[float, bool]:
    """One plain forward of context + target[:-1], log-softmax over the full logits."""
    ids = torch.tensor([context + target[:-1]])
    with torch.no_grad():
        log_probs = torch.log_softmax(model(input_ids=ids).logits[0].double(), dim=-1)
    rows = log_probs[len(context) - 1 :]
    picked = rows[torch.arange(len(target)), torch.tensor(target)]
    return float(picked.sum()), bool((rows.argmax(dim=-1) == torch.tensor(target)).all())


def sample_requests(tok: HFTokenizer) -> list[tuple[list[int], list[list[int]]]]:
    texts = [
        ("The capital of France is", [" Paris", " a large city in the north", " Rome", " not known to anyone here"]),
        ("2 + 3 =", [" 5", " 6", " 23"]),
        ("Once upon a time there was a small village near the river, and", [" the people were happy", " it rained"]),
        ("Answer:", [" A", " B", " C", " D"]),
    ]
    return [tok.encode_continuations(c, choices) for c, choices in texts]


def test_packed_multiple_choice_equals_per_choice_reference(hf_model, hf_scorer: HFScorer) -> None:
    model, tok = hf_model
    assert hf_scorer.packing and hf_scorer.head_only_at_rows
    requests = sample_requests(tok)
    got = hf_scorer.cond_log_prob(requests, OPTIONS)
    for (context, choices), scores in zip(requests, got):
        expected = [reference_log_probs(model, context, c)[0] for c in choices]
        np.testing.assert_allclose(scores, expected, atol=1e-4)


def test_fallback_without_4d_masks_is_detected_and_scores_the_same(tiny_llama_dir: Path, hf_model) -> None:
    reference_model, tok = hf_model
    model = load_llama_rejecting_4d_masks(tiny_llama_dir)
    scorer = HFScorer(model, tok, max_batch_tokens=128, log=lambda *_: None)
    assert not scorer.packing  # found by the start-up probe
    requests = sample_requests(tok)
    calls: list[int] = []
    got = scorer.cond_log_prob(requests, OPTIONS, progress=calls.append)
    assert sum(calls) == len(requests)
    for (context, choices), scores in zip(requests, got):
        np.testing.assert_allclose(scores, [reference_log_probs(reference_model, context, c)[0] for c in choices], atol=1e-4)


def test_lm_head_runs_only_on_scored_rows(hf_model, hf_scorer: HFScorer) -> None:
    model, tok = hf_model
    requests = sample_requests(tok)
    shapes: list[tuple[int, ...]] = []
    handle = model.lm_head.register_forward_hook(lambda _m, inputs, _o: shapes.append(tuple(inputs[0].shape)))
    try:
        hf_scorer.cond_log_prob(requests, OPTIONS)
    finally:
        handle.remove()
    assert all(len(s) == 2 for s in shapes), shapes  # [rows, hidden], never [batch, length, hidden]
    assert sum(s[0] for s in shapes) == sum(len(c) for _, choices in requests for c in choices)


def test_token_budget_batches_restore_request_order(hf_model) -> None:
    model, tok = hf_model
    lengths = [5, 40, 12, 40, 3, 25, 7]
    batches = plan_batches(lengths, 80)
    assert sorted(i for b in batches for i in b) == list(range(len(lengths)))
    for batch in batches:
        assert len(batch) == 1 or len(batch) * max(lengths[i] for i in batch) <= 80
        assert [lengths[i] for i in batch] == sorted((lengths[i] for i in batch), reverse=True)
    requests = sample_requests(tok) * 3
    small = HFScorer(model, tok, max_batch_tokens=16, log=lambda *_: None).cond_log_prob(requests, OPTIONS)
    large = HFScorer(model, tok, max_batch_tokens=100000, log=lambda *_: None).cond_log_prob(requests, OPTIONS)
    flat = lambda scores: [x for item in scores for x in item]  # noqa: E731
    np.testing.assert_allclose(flat(small), flat(large), atol=1e-4)
    np.testing.assert_allclose(flat(small[:4]), flat(small[4:8]), atol=1e-4)  # same request, same place


def test_continuation_scores_and_greedy_flag_match_brute_force(hf_model, hf_scorer: HFScorer) -> None:
    model, tok = hf_model
    contexts = [tok.tokenize(t) for t in ["The river was", "Once upon a time", "She said that the"]]
    requests = []
    for context in contexts:
        ids = list(context)
        with torch.no_grad():
            for _ in range(3):  # the model's own greedy continuation: greedy by construction
                ids.append(int(model(input_ids=torch.tensor([ids])).logits[0, -1].argmax()))
        greedy = ids[len(context) :]
        requests += [(context, greedy), (context, [greedy[0], (greedy[1] + 1) % tok.num_tokens, greedy[2]])]
    requests.append(([], tok.tokenize(" hello")))  # empty context: scored after the BOS token
    got = hf_scorer.continuation_scores(requests, OPTIONS)
    for (context, target), (loglik, greedy) in zip(requests, got):
        ref_loglik, ref_greedy = reference_log_probs(model, context or [tok.bos_id], target)
        assert loglik == pytest.approx(ref_loglik, abs=1e-4)
        assert greedy == ref_greedy
    assert [g for _, g in got[:6]] == [True, False] * 3


def test_generation_batched_equals_one_by_one_and_brute_force(hf_model, hf_scorer: HFScorer) -> None:
    model, tok = hf_model
    contexts = [tok.tokenize(t) for t in ["The", "Once upon a time there was", "A long time ago in a village near the", "2 + 2"]]
    greedy = DecodingSettings(max_gen_length=6, end_ids=(tok.eos_id,))
    batched = hf_scorer.generate_text(contexts, OPTIONS, greedy)
    single = [hf_scorer.generate_text([c], OPTIONS, greedy)[0] for c in contexts]
    assert batched == single
    for context, out in zip(contexts, batched):
        ids = list(context)
        with torch.no_grad():
            for _ in range(6):
                token = int(model(input_ids=torch.tensor([ids])).logits[0, -1].argmax())
                if token == tok.eos_id:
                    break
                ids.append(token)
        assert out == ids[len(context) :]
    beams = DecodingSettings(max_gen_length=5, end_ids=(tok.eos_id,), num_beams=4, no_repeat_ngram_size=3)
    assert hf_scorer.generate_text(contexts, OPTIONS, beams) == [hf_scorer.generate_text([c], OPTIONS, beams)[0] for c in contexts]


def _brute_force_greedy(model, context: list[int], steps: int, end_id: int, stop=None) -> list[int]:
    ids = list(context)
    with torch.no_grad():
        for _ in range(steps):
            token = int(model(input_ids=torch.tensor([ids])).logits[0, -1].argmax())
            if token == end_id:
                break
            ids.append(token)
            if stop is not None and stop(ids[len(context):]):
                break
    return ids[len(context) :]


def test_greedy_rows_of_several_prefill_batches_decode_together_with_the_same_tokens(hf_model) -> None:
    """Prefill batches of <= 24 tokens, decoded in groups of up to 200 tokens of cache (the
    caches left-padded to one width and joined), finished rows dropped on the way: every
    row's tokens equal its own brute-force greedy run and the run with no grouping."""
    from evaluation.scoring import hf_scorer as module

    model, tok = hf_model
    texts = ["The", "Once upon a time there was", "A long time ago in a village near the", "2 + 2", "She said",
             "In the beginning", "Rivers run to the sea and", "x"]
    contexts = [tok.tokenize(t) for t in texts]
    text_of = lambda ids: tok.detokenize(ids)  # noqa: E731
    stop = lambda ids: "e" in text_of(ids)  # noqa: E731  ends rows at different steps, so some are dropped early
    settings = DecodingSettings(max_gen_length=7, end_ids=(tok.eos_id,), stop_strings=("e",), stopped=stop)
    grouped_scorer = HFScorer(model, tok, max_batch_tokens=24, max_decode_tokens=200, log=lambda *_: None)
    alone_scorer = HFScorer(model, tok, max_batch_tokens=24, max_decode_tokens=1, log=lambda *_: None)

    merges, steps_rows = [], []
    real_merge, real_step = module.merge_left_padded_caches, module._HFCachedDecoder.step

    def counting_merge(caches, widths):
        merges.append(len(caches))
        return real_merge(caches, widths)

    def counting_step(self, tokens, step_index):
        steps_rows.append(tokens.shape[0])
        return real_step(self, tokens, step_index)

    module.merge_left_padded_caches = counting_merge
    module._HFCachedDecoder.step = counting_step
    try:
        grouped = grouped_scorer.generate_text(contexts, OPTIONS, settings)
    finally:
        module.merge_left_padded_caches = real_merge
        module._HFCachedDecoder.step = real_step
    assert merges and max(merges) > 1, "no prefill batches were decoded together"
    assert len(set(steps_rows)) > 1, "finished rows were never dropped"
    assert grouped == alone_scorer.generate_text(contexts, OPTIONS, settings)
    for context, out in zip(contexts, grouped):
        assert out == _brute_force_greedy(model, context, 7, tok.eos_id, stop)


def test_decode_groups_keep_the_cache_budget() -> None:
    from evaluation.scoring.hf_scorer import plan_batches, plan_decode_groups

    lengths = [30, 28, 25, 20, 12, 10, 9, 5, 3]
    batches = plan_batches(lengths, 60)
    groups = plan_decode_groups(batches, lengths, 120)
    assert [i for group in groups for part in group for i in part] == [i for b in batches for i in b]
    for group in groups:
        rows = sum(len(part) for part in group)
        assert len(group) == 1 or rows * lengths[group[0][0]] <= 120
    assert any(len(group) > 1 for group in groups)
    assert plan_decode_groups(batches, lengths, 1) == [[b] for b in batches]


def test_language_model_windows_cover_each_token_once(hf_model) -> None:
    model, tok = hf_model
    tokens = tok.tokenize(CORPUS.read_text(encoding="utf-8")[:600])
    scorer = HFScorer(model, tok, max_batch_tokens=256, log=lambda *_: None)
    small = EncodingOptions(max_seq_length=32)
    windows = scorer.lm_windows(tokens, small, generation_length=20)
    assert np.concatenate([w.target_ids[0] for w in windows]).tolist() == tokens
    assert all(len(w) <= 32 for w in windows)
    losses = scorer.calculate_loss(windows)
    for window, (loss, count) in zip(windows, losses):
        with torch.no_grad():
            log_probs = torch.log_softmax(model(input_ids=torch.tensor([window.tokens.tolist()])).logits[0].double(), -1)
        rows = torch.from_numpy(window.target_rows[0])
        expected = -float(log_probs[rows, torch.from_numpy(window.target_ids[0])].sum())
        assert count == len(window.target_ids[0]) and loss == pytest.approx(expected, abs=1e-4)
    # One window holding the whole document = the document's NLL after the BOS token.
    (loss, count), = scorer.calculate_loss(scorer.lm_windows(tokens, OPTIONS, generation_length=4096))
    assert count == len(tokens)
    expected, _ = reference_log_probs(model, [tok.bos_id], tokens)
    assert loss == pytest.approx(-expected, rel=1e-5)


@pytest.mark.skipif(not onednn_available(), reason="this torch build has no working oneDNN linear")
def test_onednn_packed_layers_change_no_score(tiny_llama_dir: Path, hf_model) -> None:
    """The loader's default on CPU (``--cpu-linear auto``) packs every linear layer for
    oneDNN; every request type must score as on the unchanged model."""
    from transformers import AutoModelForCausalLM

    plain_model, tok = hf_model
    model = AutoModelForCausalLM.from_pretrained(str(tiny_llama_dir), local_files_only=True, dtype=torch.float32).eval()
    assert pack_linear_layers(model) == 2 * 7 + 1  # q, k, v, o, gate, up, down per layer + the LM head
    plain = HFScorer(plain_model, tok, max_batch_tokens=256, log=lambda *_: None)
    packed = HFScorer(model, tok, max_batch_tokens=256, log=lambda *_: None)
    assert packed.packing and packed.head_only_at_rows  # the probes still pass
    requests = sample_requests(tok)
    for e, g in zip(plain.cond_log_prob(requests, OPTIONS), packed.cond_log_prob(requests, OPTIONS)):
        np.testing.assert_allclose(g, e, atol=1e-4)
    continuations = [(c, choices[1]) for c, choices in requests]
    for (e, eg), (g, gg) in zip(plain.continuation_scores(continuations, OPTIONS), packed.continuation_scores(continuations, OPTIONS)):
        assert g == pytest.approx(e, abs=1e-4) and gg == eg
    windows = plain.lm_windows(tok.tokenize(CORPUS.read_text(encoding="utf-8")[:400]), EncodingOptions(max_seq_length=32), 20)
    for (e, n), (g, m) in zip(plain.calculate_loss(windows), packed.calculate_loss(windows)):
        assert n == m and g == pytest.approx(e, abs=1e-4)
    contexts = [c for c, _ in requests]
    for settings in (DecodingSettings(max_gen_length=6, end_ids=(tok.eos_id,)),
                     DecodingSettings(max_gen_length=5, end_ids=(tok.eos_id,), num_beams=4, no_repeat_ngram_size=3)):
        assert packed.generate_text(contexts, OPTIONS, settings) == plain.generate_text(contexts, OPTIONS, settings)


def test_multiple_choice_uses_the_joint_encoding_rule(hf_model) -> None:
    _, tok = hf_model
    context, choices = tok.encode_continuations("Question: 2 + 3?\nAnswer: ", ["5", "five"])
    assert context == tok.tokenize("Question: 2 + 3?\nAnswer:")
    for choice, ids in zip(["5", "five"], choices):
        assert context + ids == tok.tokenize("Question: 2 + 3?\nAnswer: " + choice)
    # A choice that touches the context gets lm-eval's target delimiter (one space); one
    # written with its own space is kept as it is.
    context, choices = tok.encode_continuations("Question: 2 + 3?\nAnswer:", ["5", " five"])
    assert context == tok.tokenize("Question: 2 + 3?\nAnswer:")
    for choice, ids in zip([" 5", " five"], choices):
        assert context + ids == tok.tokenize("Question: 2 + 3?\nAnswer:" + choice)


def test_results_record_backend_and_bos(tiny_llama_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    data = tmp_path / "data" / "demo" / "mc"
    data.mkdir(parents=True)
    items = [{"inputs_pretokenized": "The capital of France is", "choices_pretokenized": [" Paris", " Rome"], "label": 0}] * 3
    (data / "test.jsonl").write_text("".join(json.dumps(i) + "\n" for i in items))
    yaml = tmp_path / "mc.yaml"
    yaml.write_text("name: mc\ntype: mul\npath: demo/mc\nfile-pattern:\n  test: 'test.jsonl'\n")
    code = evaluate_main([str(yaml), "--data-path", str(tmp_path / "data"), "--output-dir", str(tmp_path), "--run-name", "r",
                          "--no-progress", "--backend", "hf", "--hf-model", str(tiny_llama_dir), "--device", "cpu"])
    assert code == 0, capsys.readouterr().err
    model = json.loads((tmp_path / "r" / "results.json").read_text())["model"]
    assert model["backend"] == "hf" and model["args"]["model_path"] == str(tiny_llama_dir)
    assert model["args"]["dtype"] == "fp32" and model["args"]["bos"]["add_bos_resolved"] is False
    assert model["scorer"]["packed_multiple_choice"] is True
    assert model["args"]["cpu_linear"] == "onednn"  # the default on CPU in fp32 (see test_cpu_linear.py)
    records = [json.loads(line) for line in (tmp_path / "r" / "predictions" / "mc" / "test.jsonl").read_text().splitlines()]
    assert len(records) == 3 and len(records[0]["scores"]) == 2


def test_hf_backend_errors_name_the_flag(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    code = evaluate_main([str(ROOT / "tasks" / "demo"), "--backend", "hf", "--hf-model", str(tmp_path / "missing")])
    assert code == 2 and "--hf-model" in capsys.readouterr().err
    code = evaluate_main([str(ROOT / "tasks" / "demo"), "--backend", "hf", "--hf-model", str(tmp_path)])
    assert code == 2 and "no config.json" in capsys.readouterr().err


def test_prefix_forward_cost_flag_reaches_the_scorer_and_is_checked(tiny_llama_dir: Path, capsys: pytest.CaptureFixture) -> None:
    from evaluation.cli import build_parser, build_spec

    def spec(*flags: str):
        return build_spec(build_parser().parse_args(["x.yaml", "--backend", "hf", "--hf-model", str(tiny_llama_dir), *flags]))

    assert spec().prefix_forward_cost == 32
    model_spec = spec("--prefix-forward-cost", "500")
    model = model_spec.load_model()
    scorer = model_spec.make_scorer(model, model_spec.load_tokenizer())
    assert scorer.prefix_forward_cost == 500 and scorer.describe()["prefix_forward_cost"] == 500
    code = evaluate_main([str(ROOT / "tasks" / "demo"), "--backend", "hf", "--hf-model", str(tiny_llama_dir),
                          "--prefix-forward-cost", "-1"])
    assert code == 2 and "--prefix-forward-cost must be >= 0" in capsys.readouterr().err


# -- every shipped task YAML, end to end ------------------------------------------------------
RAW = ROOT.parent / "shared" / "data"
SUITES = sorted(p.name for p in (ROOT / "tasks").iterdir() if p.is_dir() and any(p.glob("*.yaml")))


@pytest.mark.skipif(not RAW.is_dir(), reason=f"raw datasets not found at {RAW}")
@pytest.mark.parametrize("suite", SUITES)
def test_suite_runs_three_items_on_the_tiny_llama(suite: str, sample_data: Path, tiny_llama_dir: Path, tmp_path: Path,
                                                  capsys: pytest.CaptureFixture) -> None:
    code = evaluate_main([str(ROOT / "tasks" / suite), "--data-path", str(sample_data), "--output-dir", str(tmp_path),
                          "--run-name", "run", "--limit", "3", "--no-progress", "--backend", "hf",
                          "--hf-model", str(tiny_llama_dir), "--device", "cpu"])
    out, err = capsys.readouterr()
    assert code == 0, err
    results = json.loads((tmp_path / "run" / "results.json").read_text())
    assert len(results["tasks"]) == len(list((ROOT / "tasks" / suite).glob("*.yaml")))
    assert "Traceback" not in out
