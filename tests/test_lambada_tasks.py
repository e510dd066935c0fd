"""LAMBADA's scoring pieces on the tiny GLM: ``GLMScorer.continuation_scores`` against
cond_log_prob and a brute-force forward, the ContinuationTask / ContinuationPPL pair
(lm-eval's lambada_openai), and the GLM-protocol task class (first word, banned ids)."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch

from evaluation.custom_tasks.lambada import LAMBADA, first_word, punctuation_token_ids, strip_punctuation
from evaluation.errors import InputError
from evaluation.metrics import METRICS
from evaluation.scoring.glm_scorer import EncodingOptions, GLMScorer
from evaluation.task_config import GenerationTaskConfig, load_tasks
from evaluation.task_config import ContinuationTaskConfig
from evaluation.tasks import ContinuationTask, GenerationItem, encode_context_and_target

ROOT = Path(__file__).resolve().parent.parent
CONTEXT = "I look at him, feeling stunned. But as I stare at Harlin, I don't care about"
TARGETS = [" signs", " the weather and the sea", "."]
OPTIONS = {
    "MASK": EncodingOptions(),
    "gMASK": EncodingOptions(use_task_mask=True),
    "gMASK-uni": EncodingOptions(use_task_mask=True, unidirectional=True),
}


@torch.no_grad()
def full_log_probs(scorer: GLMScorer, tokens: list[int], positions: list[int], mask: np.ndarray) -> torch.Tensor:
    """Whole-sequence log-softmax [L, V] of one hand-built, unpacked sequence."""
    hidden, _ = scorer.model(torch.tensor([tokens]), torch.tensor([positions]), torch.tensor(mask)[None])
    return torch.log_softmax(scorer.model.logits(hidden[0]), dim=-1).double()


def unpacked(scorer: GLMScorer, context: list[int], target: list[int], options: EncodingOptions) -> tuple[torch.Tensor, int]:
    """Log-probs of the plain GLM sequence for (context, target), built by hand from the
    reference rules, and the row that predicts target[0] (target[i] is read at row + i).
    Bidirectional: context + [gMASK] attend to each other, then sop + target[:-1] causal,
    positions linear. Unidirectional: [gMASK] sop context target[:-1], all causal."""
    ids = scorer.ids
    assert options.use_task_mask
    if options.unidirectional:
        tokens = [ids.gmask, ids.sop, *context, *target[:-1]]
        n = len(tokens)
        return full_log_probs(scorer, tokens, list(range(n)), np.tril(np.ones((n, n), dtype=bool))), len(context) + 1
    prefix = [*context, ids.gmask]
    tokens = [*prefix, ids.sop, *target[:-1]]
    n, p = len(tokens), len(prefix)
    mask = np.tril(np.ones((n, n), dtype=bool))
    mask[:p, :p] = True
    return full_log_probs(scorer, tokens, list(range(n)), mask), p


@pytest.mark.parametrize("name", list(OPTIONS))
def test_continuation_scores_equal_cond_log_prob(scorer: GLMScorer, tokenizer, name: str) -> None:
    options = OPTIONS[name]
    context = tokenizer.tokenize(CONTEXT)
    requests = [(context, tokenizer.tokenize(t)) for t in TARGETS]
    assert {len(t) for _, t in requests} != {1}  # single- and multi-token targets
    expected = [scorer.cond_log_prob([(c, [t])], options)[0][0] for c, t in requests]
    got = scorer.continuation_scores(requests, options, batch_size=2)
    assert len(got) == len(requests)
    np.testing.assert_allclose([g[0] for g in got], expected, atol=1e-6, rtol=0)
    assert all(isinstance(g[1], bool) for g in got)


@pytest.mark.parametrize("name", ["gMASK", "gMASK-uni"])
def test_greedy_flag_and_sum_against_brute_force(scorer: GLMScorer, tokenizer, name: str) -> None:
    options = OPTIONS[name]
    context = tokenizer.tokenize(CONTEXT)
    # The greedy continuation, one token at a time, by full unpacked forwards.
    greedy: list[int] = []
    for _ in range(4):
        log_probs, row = unpacked(scorer, context, [*greedy, 0], options)
        greedy.append(int(log_probs[row + len(greedy)].argmax()))
    log_probs, row = unpacked(scorer, context, greedy, options)
    brute_sum = float(sum(log_probs[row + i, t] for i, t in enumerate(greedy)))
    # The runner-up at the last position: same prefix, not greedy.
    runner_up = int(log_probs[row + len(greedy) - 1].topk(2).indices[1])
    other = [*greedy[:-1], runner_up]
    other_sum = float(sum(log_probs[row + i, t] for i, t in enumerate(other)))
    # A target whose first token is not the argmax.
    first_wrong = [int(log_probs[row].topk(2).indices[1]), *greedy[1:]]
    got = scorer.continuation_scores([(context, greedy), (context, other), (context, first_wrong), (context, greedy[:1])], options, 4)
    assert got[0][1] is True and got[0][0] == pytest.approx(brute_sum, abs=1e-5)
    assert got[1][1] is False and got[1][0] == pytest.approx(other_sum, abs=1e-5)
    assert got[2][1] is False
    assert got[3][1] is True and got[3][0] == pytest.approx(float(log_probs[row, greedy[0]]), abs=1e-5)


def test_continuation_scores_rejects_empty_target(scorer: GLMScorer, tokenizer) -> None:
    with pytest.raises(ValueError, match="non-empty target"):
        scorer.continuation_scores([(tokenizer.tokenize("a b"), [])], OPTIONS["gMASK"])


def test_encode_context_and_target_moves_trailing_space(tokenizer) -> None:
    tokenize = tokenizer.tokenize
    context, target = encode_context_and_target(tokenize, "I don't care about ", "signs")
    assert (context, target) == encode_context_and_target(tokenize, "I don't care about", " signs")
    assert context == tokenize("I don't care about")
    assert context + target == tokenize("I don't care about signs")
    assert encode_context_and_target(tokenize, "", "signs") == ([], tokenize("signs"))


def make_task(tokenizer, **overrides) -> ContinuationTask:
    config = ContinuationTaskConfig(name="c", type="continuation", path="x", use_task_mask=True, unidirectional=True,
                                    metrics=["Accuracy", "ContinuationPPL"], **overrides)
    return ContinuationTask(config, tokenizer)


def test_continuation_task_reads_text_and_ids(tokenizer, tmp_path: Path) -> None:
    rows = [
        {"inputs_pretokenized": "I don't care about", "targets_pretokenized": " signs", "id": 7},
        {"inputs_pretokenized": "I don't care about", "targets_pretokenized": [" signs"]},
        {"inputs": [20100, 20101], "targets": [20102]},
    ]
    path = tmp_path / "test.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    data = make_task(tokenizer).load_file(path)
    assert data.items[0].target == data.items[1].target == tokenizer.tokenize("I don't care about signs")[len(data.items[0].context):]
    assert (data.items[2].context, data.items[2].target) == ([20100, 20101], [20102])
    assert data.items[0].raw["id"] == 7


@pytest.mark.parametrize("row, field", [
    ({"inputs_pretokenized": "x"}, "targets_pretokenized"),
    ({"inputs_pretokenized": "x", "targets_pretokenized": ""}, "targets_pretokenized"),
    ({"inputs_pretokenized": "x", "targets_pretokenized": [" a", " b"]}, "targets_pretokenized"),
    ({"inputs": [1], "targets": [10 ** 9]}, "targets"),
    ({"targets_pretokenized": " a"}, "inputs_pretokenized"),
])
def test_continuation_task_errors_name_line_and_field(tokenizer, tmp_path: Path, row: dict, field: str) -> None:
    path = tmp_path / "bad.jsonl"
    path.write_text(json.dumps({"inputs_pretokenized": "fine", "targets_pretokenized": " ok"}) + "\n" + json.dumps(row) + "\n")
    with pytest.raises(InputError) as info:
        make_task(tokenizer).load_file(path)
    (problem,) = info.value.problems
    assert problem.line == 2 and problem.field == field


def test_continuation_task_records_and_metrics(scorer: GLMScorer, tokenizer, tmp_path: Path) -> None:
    rows = [{"inputs_pretokenized": CONTEXT, "targets_pretokenized": t} for t in TARGETS]
    path = tmp_path / "test.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    task = make_task(tokenizer, micro_batch_size=2)
    data = task.load_file(path)
    records = task.predict(scorer, data, progress=False)
    scores = scorer.continuation_scores([(i.context, i.target) for i in data.items], task.options)
    assert [r["correct"] for r in records] == [g for _, g in scores]
    np.testing.assert_allclose([r["loglikelihood"] for r in records], [s for s, _ in scores], atol=1e-5, rtol=0)
    metrics = task.compute_metrics(records, data)
    assert metrics["ContinuationPPL"] == pytest.approx(math.exp(-sum(r["loglikelihood"] for r in records) / len(records)))
    assert metrics["Accuracy"] == pytest.approx(100.0 * sum(g for _, g in scores) / len(scores))


def test_continuation_ppl_is_per_item() -> None:
    fn = METRICS["ContinuationPPL"].fn
    assert fn([{"loglikelihood": -1.0}, {"loglikelihood": -3.0}], {}) == pytest.approx(math.exp(2.0))
    assert METRICS["ContinuationPPL"].task_types == ("continuation",)
    assert "continuation" in METRICS["Accuracy"].task_types


# -- the GLM-130B protocol ------------------------------------------------------------------
@pytest.mark.parametrize("text, word", [
    ("signs", "signs"), (" signs. He", "signs"), ("signs\nThe", "signs"), ("don't go", "don't"),
    ("Tess!\"", "Tess"), ("", ""), ("  ", ""), ("...", ""),
])
def test_first_word(text: str, word: str) -> None:
    assert first_word(text) == word


def test_strip_punctuation_keeps_inner_punctuation() -> None:
    assert strip_punctuation("\u201cSal") == "Sal"
    assert strip_punctuation("\"Nadia,\"") == "Nadia"
    assert strip_punctuation("thought...Tess") == "thought...Tess"


def test_banned_ids_are_punctuation(tokenizer) -> None:
    banned = set(punctuation_token_ids(tokenizer))
    for text in [".", ",", "?", "\"", "'", "("]:
        ids = tokenizer.tokenize("a" + text)[len(tokenizer.tokenize("a")):]
        assert ids and ids[0] in banned, text
    # A character this tokenizer spells as several UTF-8 byte pieces cannot be banned by
    # one id (its first byte is no punctuation): the curly quote here.
    curly = tokenizer.tokenize("a\u201c")[len(tokenizer.tokenize("a")):]
    assert len(curly) == 3 and curly[0] not in banned
    word_ids = set(tokenizer.tokenize("the cat sat on the mat signs"))
    assert not word_ids & banned
    assert not banned & {tokenizer.eop_id, tokenizer.eos_id, tokenizer.gmask_id, tokenizer.sop_id}
    # The bare space piece starts many words ("▁" + pieces): not banned.
    assert tokenizer.sp.PieceToId("\u2581") + tokenizer.num_image_tokens not in banned
    assert punctuation_token_ids(tokenizer) is punctuation_token_ids(tokenizer)  # cached


def lambada_task(tokenizer, **overrides) -> LAMBADA:
    config = GenerationTaskConfig(name="LAMBADA", type="gen", path="x", use_task_mask=True, metrics=["Accuracy"],
                                  sampling_strategy="BeamSearchStrategy", num_beams=4, max_gen_length=5, **overrides)
    return LAMBADA(config, tokenizer)


def test_lambada_record_judges_the_first_word(tokenizer) -> None:
    task = lambada_task(tokenizer)
    item = GenerationItem({"id": 0}, tokenizer.tokenize("I don't care about"), ["signs"])
    record = task.make_record(item, tokenizer.tokenize(" signs. He said"))
    assert record["prediction"] == "signs" and record["correct"] is True
    assert record["generation"] == "signs. He said"
    assert task.make_record(item, tokenizer.tokenize("Signs"))["correct"] is False  # case-sensitive
    assert task.make_record(item, tokenizer.tokenize("sign"))["correct"] is False
    assert task.make_record(item, [])["correct"] is False


def test_lambada_decoding_bans_punctuation_first(scorer: GLMScorer, tokenizer, tmp_path: Path) -> None:
    task = lambada_task(tokenizer)
    settings = task.decoding_settings()
    assert settings.num_beams == 4 and settings.max_gen_length == 5
    assert set(settings.banned_first_ids) == set(punctuation_token_ids(tokenizer))
    rows = [{"inputs_pretokenized": CONTEXT, "targets_pretokenized": ["signs"]},
            {"inputs_pretokenized": "He said, \"", "targets_pretokenized": ["Nadia"]}]
    path = tmp_path / "test.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    records = task.predict(scorer, task.load_file(path), progress=False)
    for record in records:
        assert record["generated_ids"] and record["generated_ids"][0] not in settings.banned_first_ids


def test_shipped_lambada_yamls(tmp_path: Path) -> None:
    for folder in ("lambada/lambada/last_word/gen", "lambada/lambada_openai/last_word/continuation"):
        (tmp_path / folder).mkdir(parents=True)
        (tmp_path / folder / "test.jsonl").write_text(json.dumps({"inputs_pretokenized": "a", "targets_pretokenized": ["b"]}) + "\n")
    yamls = sorted((ROOT / "tasks" / "lambada").glob("*.yaml"))
    loaded, problems = load_tasks(yamls, tmp_path, model_max_length=2048)
    assert not problems, problems
    by_name = {t.config.name: t for t in loaded}
    assert set(by_name) == {"LAMBADA", "LAMBADA-unidirectional", "LAMBADA-openai", "LAMBADA-glm-paper", "LAMBADA-glm-paper-uni"}
    for name in ("LAMBADA", "LAMBADA-unidirectional"):
        c = by_name[name].config
        assert by_name[name].task_class is LAMBADA
        assert (c.sampling_strategy, c.num_beams, c.max_gen_length, c.use_task_mask, c.metrics) == ("BeamSearchStrategy", 16, 5, True, ["Accuracy"])
        assert c.unidirectional is (name == "LAMBADA-unidirectional")
    openai = by_name["LAMBADA-openai"]
    assert openai.task_class is ContinuationTask
    assert (openai.config.use_task_mask, openai.config.unidirectional, openai.config.metrics) == (True, True, ["Accuracy", "ContinuationPPL"])
    for name, uni in (("LAMBADA-glm-paper", False), ("LAMBADA-glm-paper-uni", True)):  # THUDM/GLM zero_lambada(_uni).sh
        c = by_name[name].config
        assert (c.use_task_mask, c.unidirectional, c.description, c.max_seq_length) == (True, uni, "[CLS]", 512)


def test_glm_paper_lambada_puts_cls_first_for_the_original_glm_tokenizers(tmp_path: Path) -> None:
    """THUDM/GLM's LambadaDataset: [CLS] + passage without its last word, the word as ' ' + word."""
    from evaluation.tokenization import build_tokenizer

    vocab = ROOT.parent / "shared" / "tokenizers" / "glm" / "bert-base-uncased-vocab.txt"
    if not vocab.is_file():
        pytest.skip(f"{vocab} not found")
    folder = tmp_path / "lambada/lambada_openai/last_word/continuation"
    folder.mkdir(parents=True)
    (folder / "test.jsonl").write_text(json.dumps({"inputs_pretokenized": "the cat sat on the", "targets_pretokenized": " mat"}) + "\n")
    loaded, problems = load_tasks([ROOT / "tasks" / "lambada" / "lambada-glm-paper.yaml"], tmp_path)
    assert not problems
    tokenizer = build_tokenizer("glm-bert", vocab)
    task = ContinuationTask(loaded[0].config, tokenizer, data_root=loaded[0].data_root)
    item = task.load_file(folder / "test.jsonl").items[0]
    assert item.context == [101, *tokenizer.tokenize("the cat sat on the")] and item.target == tokenizer.tokenize(" mat")
