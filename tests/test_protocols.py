"""The protocols and metrics evaluators expect, each against a hand computation and on both
backends: normalised accuracy, partial scoring, stop sequences, ROUGE (Chinese too), MCC,
macro-F1, micro P/R/F1, the final-number match, and their error bars."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch

from evaluation.compare.statistics import compare_table
from evaluation.metrics import (METRICS, CJKRougeTokenizer, last_number, macro_f1_statistic, mcc_statistic,
                                number_match_score, rouge_score)
from evaluation.scoring.decoding import DecodingSettings, beam_search, greedy_decode
from evaluation.task_config import GenerationTaskConfig, MultiChoiceTaskConfig
from evaluation.tasks import GenerationTask, MultiChoiceTask, choice_lengths
from evaluation.tokenization import encode_context_and_target
from evaluation.uncertainty import metric_interval
from test_scoring import separate_choice_score


def write_jsonl(path: Path, items: list[dict]) -> Path:
    path.write_text("".join(json.dumps(i, ensure_ascii=False) + "\n" for i in items), encoding="utf-8")
    return path


# -- normalised accuracy ------------------------------------------------------------------------
def test_normalised_accuracies_by_hand() -> None:
    record = {"scores": [-4.0, -6.0, -9.0], "target": 1, "prediction": 0, "correct": False,
              "choice_chars": [2, 6, 3], "choice_tokens": [1, 2, 4], "choice_bytes": [8, 6, 3]}
    # chars: -2, -1, -3 -> 1 (right); tokens: -4, -3, -2.25 -> 2 (wrong); bytes: -0.5, -1, -3 -> 0 (wrong)
    assert METRICS["Accuracy"].fn([record], {}) == 0.0
    assert METRICS["AccuracyNorm"].fn([record], {}) == 100.0
    assert METRICS["AccuracyNormTokens"].fn([record], {}) == 0.0
    assert METRICS["AccuracyNormBytes"].fn([record], {}) == 0.0
    second = dict(record, target=2)
    assert METRICS["AccuracyNormTokens"].fn([record, second], {}) == 50.0
    assert list(METRICS["AccuracyNorm"].items([record, second], {})[0]) == [100.0, 0.0]


def test_choice_lengths_drop_one_leading_space_only() -> None:
    lengths = choice_lengths([" Paris", "make more calls", "  two", "日本"], [1, 3, 2, 2])
    assert lengths == {"choice_chars": [5, 15, 4, 2], "choice_bytes": [5, 15, 4, 6], "choice_tokens": [1, 3, 2, 2]}


MC_ITEMS = [
    {"inputs_pretokenized": "The capital of France is", "choices_pretokenized": ["Paris", "a large city in the north", "Rome"], "label": 0},
    {"inputs_pretokenized": "Two plus three equals", "choices_pretokenized": ["five", "six hundred and two", "23"], "label": 0},
    {"inputs_pretokenized": "The sky is", "choices_pretokenized": ["blue", "green with some purple dots"], "label": 0},
]


def check_normalised_records(records: list[dict], tokenizer, items: list) -> None:
    for record, item in zip(records, items):
        assert record["choice_chars"] == [len(c) for c in item.raw["choices_pretokenized"]]
        assert record["choice_tokens"] == [len(c) for c in item.choices]
    for name, key in (("AccuracyNorm", "choice_chars"), ("AccuracyNormTokens", "choice_tokens"), ("AccuracyNormBytes", "choice_bytes")):
        by_hand = [int(np.argmax(np.asarray(r["scores"]) / np.asarray(r[key]))) == r["target"] for r in records]
        assert METRICS[name].fn(records, {}) == pytest.approx(100.0 * sum(by_hand) / len(records))


def test_glm_records_keep_the_lengths_normalised_accuracy_needs(tmp_path: Path, scorer, tokenizer) -> None:
    config = MultiChoiceTaskConfig(name="t", type="mul", path=".", metrics=["AccuracyNorm"])
    task = MultiChoiceTask(config, tokenizer)
    data = task.load_file(write_jsonl(tmp_path / "mc.jsonl", MC_ITEMS))
    records = task.predict(scorer, data, progress=False)
    # GLM scores the bare choice after [MASK]: its tokens are the choice's own.
    assert [r["choice_tokens"] for r in records] == [[len(tokenizer.tokenize(c)) for c in i["choices_pretokenized"]] for i in MC_ITEMS]
    check_normalised_records(records, tokenizer, data.items)


def test_hf_records_keep_the_lengths_normalised_accuracy_needs(tmp_path: Path, hf_model) -> None:
    from evaluation.scoring.hf_scorer import HFScorer

    model, tok = hf_model
    config = MultiChoiceTaskConfig(name="t", type="mul", path=".", metrics=["AccuracyNorm"])
    task = MultiChoiceTask(config, tok)
    data = task.load_file(write_jsonl(tmp_path / "mc.jsonl", MC_ITEMS))
    records = task.predict(HFScorer(model, tok, max_batch_tokens=256, log=lambda *_: None), data, progress=False)
    # A causal model scores " " + choice (lm-eval's delimiter); the characters stay the bare choice's.
    assert [r["choice_tokens"] for r in records] == [[len(c) for c in tok.encode_continuations(i["inputs_pretokenized"], i["choices_pretokenized"])[1]]
                                                     for i in MC_ITEMS]
    check_normalised_records(records, tok, data.items)


# -- partial scoring ------------------------------------------------------------------------------
WSC_ITEMS = [
    {"contexts_pretokenized": ["The trophy doesn't fit into the brown suitcase because the trophy",
                               "The trophy doesn't fit into the brown suitcase because the suitcase"],
     "continuation_pretokenized": " is too large.", "label": 0},
    {"contexts_pretokenized": ["The city councilmen refused the demonstrators a permit because the city councilmen",
                               "The city councilmen refused the demonstrators a permit because the demonstrators"],
     "continuation_pretokenized": " advocated violence.", "label": 1},
]


def test_partial_scoring_on_glm_scores_the_continuation_after_each_context(tmp_path: Path, scorer, tokenizer) -> None:
    config = MultiChoiceTaskConfig(name="wsc", type="mul", path=".", partial_scoring=True, metrics=["Accuracy"])
    task = MultiChoiceTask(config, tokenizer)
    records = task.predict(scorer, task.load_file(write_jsonl(tmp_path / "wsc.jsonl", WSC_ITEMS)), progress=False)
    for record, item in zip(records, WSC_ITEMS):
        by_hand = []
        for context in item["contexts_pretokenized"]:
            context_ids, target_ids = encode_context_and_target(tokenizer.tokenize, context, item["continuation_pretokenized"])
            by_hand.append(separate_choice_score(scorer, context_ids, target_ids, gmask=False))  # context, [MASK], sop + continuation
        assert record["scores"] == pytest.approx(by_hand, abs=1e-4)
        assert record["prediction"] == int(np.argmax(by_hand)) and record["correct"] == (record["prediction"] == item["label"])
        assert record["choice_chars"] == [len(c) for c in item["contexts_pretokenized"]]  # lm-eval's acc_norm in this mode


def test_partial_scoring_on_hf_is_the_loglikelihood_after_each_context(tmp_path: Path, hf_model) -> None:
    from evaluation.scoring.hf_scorer import HFScorer
    from test_hf_backend import reference_log_probs

    model, tok = hf_model
    config = MultiChoiceTaskConfig(name="wsc", type="mul", path=".", partial_scoring=True)
    task = MultiChoiceTask(config, tok)
    records = task.predict(HFScorer(model, tok, max_batch_tokens=64, log=lambda *_: None),
                           task.load_file(write_jsonl(tmp_path / "wsc.jsonl", WSC_ITEMS)), progress=False)
    for record, item in zip(records, WSC_ITEMS):
        by_hand = [reference_log_probs(model, *encode_context_and_target(tok.tokenize, c, item["continuation_pretokenized"]))[0]
                   for c in item["contexts_pretokenized"]]
        assert record["scores"] == pytest.approx(by_hand, abs=1e-4)


def test_partial_scoring_data_errors_name_the_field(tmp_path: Path, tokenizer) -> None:
    from evaluation.errors import InputError

    config = MultiChoiceTaskConfig(name="wsc", type="mul", path=".", partial_scoring=True)
    bad = [{"contexts_pretokenized": "one string", "continuation_pretokenized": " x", "label": 0},
           {"contexts_pretokenized": ["a", "b"], "label": 0},
           {"contexts_pretokenized": ["a", "b"], "continuation_pretokenized": " x", "label": 2}]
    with pytest.raises(InputError) as caught:
        MultiChoiceTask(config, tokenizer).load_file(write_jsonl(tmp_path / "bad.jsonl", bad))
    text = str(caught.value)
    assert "bad.jsonl:1" in text and "contexts_pretokenized" in text
    assert "bad.jsonl:2" in text and "continuation_pretokenized" in text
    assert "bad.jsonl:3" in text and "outside the 2 choices" in text


# -- stop sequences -------------------------------------------------------------------------------
class TableDecoder:
    """Next-token logits from a fixed table: token t is always followed by table[t]."""

    def __init__(self, vocab: int = 10) -> None:
        self.vocab = vocab

    def reorder(self, rows: torch.Tensor) -> None:
        pass

    def step(self, tokens: torch.Tensor, step_index: int) -> torch.Tensor:
        logits = torch.zeros((tokens.shape[0], self.vocab))
        logits[torch.arange(tokens.shape[0]), (tokens + 1) % self.vocab] = 5.0
        return logits


def test_a_stop_string_ends_greedy_and_beam_rows_but_keeps_their_tokens() -> None:
    first = torch.zeros((2, 10))
    first[0, 1] = first[1, 4] = 5.0  # row 0: 1 2 3 4 5 ..., row 1: 4 5 6 ...
    text = lambda ids: "".join(chr(ord("a") + i) for i in ids)  # noqa: E731  token i -> letter i
    settings = DecodingSettings(max_gen_length=8, end_ids=(9,), stopped=lambda ids: "de" in text(ids))
    assert greedy_decode(first, TableDecoder(), settings) == [[1, 2, 3, 4], [4, 5, 6, 7, 8]]  # row 1 ends at its end token 9
    plain = DecodingSettings(max_gen_length=8, end_ids=(9,))
    assert greedy_decode(first, TableDecoder(), plain)[0] == [1, 2, 3, 4, 5, 6, 7, 8]
    beams = DecodingSettings(max_gen_length=8, end_ids=(9,), num_beams=2, stopped=lambda ids: "de" in text(ids))
    assert beam_search(first[:1], TableDecoder(), beams, [3], [[]])[0] == [1, 2, 3, 4]


def generation_task(tokenizer, until: list[str], max_gen_length: int = 12) -> GenerationTask:
    config = GenerationTaskConfig(name="g", type="gen", path=".", sampling_strategy="BaseStrategy", max_gen_length=max_gen_length,
                                  until=until, max_seq_length=256)
    return GenerationTask(config, tokenizer)


GEN_ITEMS = [{"inputs_pretokenized": "Question: Who wrote Hamlet?\nAnswer:", "targets_pretokenized": ["Shakespeare"]},
             {"inputs_pretokenized": "Question: What is two plus two?\nAnswer:", "targets_pretokenized": ["4"]},
             {"inputs_pretokenized": "The weather today", "targets_pretokenized": ["sunny"]}]


def check_stop_cut(tmp_path: Path, tokenizer, scorer) -> None:
    """With a stop string, decoding ends at the first token whose text completes it, and the
    recorded text is the stop-free run's text cut before it."""
    path = write_jsonl(tmp_path / "gen.jsonl", GEN_ITEMS)
    free_task = generation_task(tokenizer, [])
    free = free_task.predict(scorer, free_task.load_file(path), progress=False)
    texts = [r["prediction"] for r in free]
    stop = next(t[3:5] for t in texts if len(t) >= 6)  # two characters the model does generate
    task = generation_task(tokenizer, [stop, "\u2603never"])
    stopped = task.predict(scorer, task.load_file(path), progress=False)
    hits = 0
    for text, free_record, record in zip(texts, free, stopped):
        if stop in text:
            hits += 1
            assert record["prediction"] == text[: text.index(stop)]
            assert record["stopped_at"] == stop and record["generated_text"].startswith(record["prediction"] + stop)
            ids = free_record["generated_ids"]
            first = next(n for n in range(1, len(ids) + 1) if stop in tokenizer.detokenize(ids[:n]))
            assert record["generated_ids"] == ids[:first]
        else:
            assert record["prediction"] == text and "stopped_at" not in record
    assert hits >= 1


def test_stop_strings_on_glm(tmp_path: Path, scorer, tokenizer, monkeypatch: pytest.MonkeyPatch) -> None:
    # The random tiny GLM repeats one token that decodes to nothing: give each generated token
    # a visible text (its position) so that the stop strings have something to find.
    monkeypatch.setattr(tokenizer, "detokenize", lambda ids: " ".join(str(n) for n in range(len(ids))))
    check_stop_cut(tmp_path, tokenizer, scorer)


def test_stop_strings_on_hf(tmp_path: Path, hf_model) -> None:
    from evaluation.scoring.hf_scorer import HFScorer

    model, tok = hf_model
    check_stop_cut(tmp_path, tok, HFScorer(model, tok, max_batch_tokens=256, log=lambda *_: None))


def test_stop_settings_digest_the_same_in_every_process(tokenizer) -> None:
    """Record keys and the ranks' agreement digest the decoding settings: the stop strings
    count, the checking function (a new closure per task object) does not."""
    from evaluation.digests import digest_of

    one, two = generation_task(tokenizer, ["\n", "Q:"]), generation_task(tokenizer, ["\n", "Q:"])
    assert one.decoding_settings().stopped is not two.decoding_settings().stopped
    assert digest_of(one.decoding_settings()) == digest_of(two.decoding_settings())
    assert digest_of(one.decoding_settings()) != digest_of(generation_task(tokenizer, ["\n"]).decoding_settings())


def test_an_empty_stop_string_is_refused(tmp_path: Path) -> None:
    from evaluation.task_config import load_tasks

    (tmp_path / "data" / "g").mkdir(parents=True)
    write_jsonl(tmp_path / "data" / "g" / "test.jsonl", GEN_ITEMS)
    yaml_path = tmp_path / "g.yaml"
    yaml_path.write_text("name: g\ntype: gen\npath: g\nuntil: ['\\n', '']\n", encoding="utf-8")
    _, problems = load_tasks([yaml_path], tmp_path / "data")
    assert len(problems) == 1 and problems[0].field == "until" and problems[0].line == 4 and "empty" in problems[0].message


# -- generation metrics ---------------------------------------------------------------------------
def test_rouge_by_hand_in_english_and_chinese() -> None:
    # "the cat sat" against "the cat sat on the mat": 3 of 3 unigrams, 2 of 2 bigrams match.
    assert rouge_score("rouge1")("the cat sat", "the cat sat on the mat") == pytest.approx(2 * 1 * 0.5 / 1.5)
    assert rouge_score("rouge2")("the cat sat", "the cat sat on the mat") == pytest.approx(2 * 1 * 0.4 / 1.4)
    assert rouge_score("rougeL")("the cat sat", "the cat sat on the mat") == pytest.approx(2 / 3)
    # 我爱北京 / 我爱上海: characters 2 of 4 match, bigrams 1 of 3 (我爱).
    assert rouge_score("rouge1")("我爱北京", "我爱上海") == pytest.approx(0.5)
    assert rouge_score("rouge2")("我爱北京", "我爱上海") == pytest.approx(1 / 3)
    from rouge_score import rouge_scorer
    assert rouge_scorer.RougeScorer(["rouge1"]).score("我爱上海", "我爱北京")["rouge1"].fmeasure == 0.0  # the package's own tokenizer
    assert CJKRougeTokenizer().tokenize("我爱 Beijing, the 2nd!") == ["我", "爱", "beijing", "the", "2nd"]
    records = [{"prediction": "我爱北京", "targets": ["完全不同", "我爱上海"]}, {"prediction": "the cat", "targets": ["a dog"]}]
    assert METRICS["ROUGE-1"].fn(records, {}) == pytest.approx(100 * (0.5 + 0.0) / 2)  # best over the targets


def test_final_number_match_by_hand() -> None:
    assert last_number("She has 1,800 eggs, so the answer is 18.") == 18.0
    assert number_match_score("5 + 4 = 9. The answer is 9.", "9") == 1.0
    assert number_match_score("The answer is 9.5", "9") == 0.0
    assert number_match_score("-3.50 dollars", "-3.5") == 1.0
    assert number_match_score("no number here", "7") == 0.0
    records = [{"prediction": "so 12. The answer is 12.", "targets": ["12"]}, {"prediction": "It is 7", "targets": ["8"]}]
    assert METRICS["NumberEM"].fn(records, {}) == 50.0


# -- confusion-table metrics ----------------------------------------------------------------------
TARGETS = np.asarray([0, 0, 1, 1, 1, 2], dtype=float)
PREDICTIONS = np.asarray([0, 1, 1, 1, 0, 2], dtype=float)


def test_mcc_macro_f1_and_micro_by_hand() -> None:
    # Confusion [[1, 1, 0], [1, 2, 0], [0, 0, 1]]: s = 6, trace 4, true = predicted = (2, 3, 1).
    assert mcc_statistic(TARGETS, PREDICTIONS) == pytest.approx(100 * (4 * 6 - 14) / math.sqrt((36 - 14) * (36 - 14)))
    # per-class F1: 2/4, 4/6, 2/2
    assert macro_f1_statistic(TARGETS, PREDICTIONS) == pytest.approx(100 * (0.5 + 2 / 3 + 1.0) / 3)
    records = [{"target": int(t), "prediction": int(p)} for t, p in zip(TARGETS, PREDICTIONS)]
    for name in ("MicroPrecision", "MicroRecall", "MicroF1"):
        assert METRICS[name].fn(records, {}) == pytest.approx(100 * 4 / 6)
    assert METRICS["MCC"].fn(records, {}) == pytest.approx(100 * 10 / 22)
    assert mcc_statistic(np.asarray([0.0, 1.0, 1.0]), np.asarray([1.0, 1.0, 1.0])) == 0.0  # constant prediction
    assert mcc_statistic(np.asarray([0.0, 1.0, 0.0, 1.0]), np.asarray([1.0, 0.0, 1.0, 0.0])) == pytest.approx(-100.0)


def test_table_metrics_get_a_reproducible_bootstrap_interval() -> None:
    rng = np.random.default_rng(3)
    targets = rng.integers(0, 3, 200).astype(float)
    predictions = np.where(rng.random(200) < 0.6, targets, rng.integers(0, 3, 200)).astype(float)
    metric = METRICS["MCC"]
    interval = metric_interval(metric, targets, predictions)
    value = mcc_statistic(targets, predictions)
    assert interval is not None and interval.low < value < interval.high and interval.method == "bootstrap-bca"
    assert metric_interval(metric, targets, predictions) == interval  # fixed seed
    clustered = metric_interval(metric, targets, predictions, clusters=[i // 10 for i in range(200)])
    assert clustered is not None and clustered.method == "cluster-bootstrap-bca"
    assert 0 < interval.stderr < 15


def test_paired_comparison_of_a_table_metric() -> None:
    rng = np.random.default_rng(5)
    targets = rng.integers(0, 2, 300).astype(float)
    good = np.where(rng.random(300) < 0.85, targets, 1 - targets)
    same = compare_table(METRICS["MCC"], targets, good, good.copy())
    assert same.delta == 0 and same.p == 1.0
    worse = good.copy()
    flip = rng.choice(300, 90, replace=False)
    worse[flip] = 1 - targets[flip]  # 90 items forced wrong
    result = compare_table(METRICS["MacroF1"], targets, good, worse)
    assert result.delta < -10 and result.p < 0.01 and result.high < 0 and result.low < result.delta


# -- end to end: every new metric reaches results.json with its error bar -------------------------
def test_new_metrics_are_saved_with_intervals(tmp_path: Path, tiny_glm_dir: Path) -> None:
    from conftest import tiny_model_args

    from evaluation import cli
    from evaluation.compare.__main__ import main as compare_main

    data = tmp_path / "data"
    write_jsonl((data / "mc").mkdir(parents=True) or data / "mc" / "test.jsonl", MC_ITEMS * 4)
    write_jsonl((data / "wsc").mkdir(parents=True) or data / "wsc" / "test.jsonl", WSC_ITEMS * 3)
    write_jsonl((data / "gen").mkdir(parents=True) or data / "gen" / "test.jsonl", GEN_ITEMS * 2)
    tasks = tmp_path / "tasks"
    tasks.mkdir()
    (tasks / "mc.yaml").write_text("name: mc\ntype: mul\npath: mc\nmetrics: [Accuracy, AccuracyNorm, AccuracyNormTokens, "
                                   "AccuracyNormBytes, MCC, MacroF1, MicroPrecision, MicroRecall, MicroF1]\n", encoding="utf-8")
    (tasks / "wsc.yaml").write_text("name: wsc\ntype: mul\npath: wsc\npartial-scoring: true\nmetrics: [Accuracy, MCC]\n", encoding="utf-8")
    (tasks / "gen.yaml").write_text("name: gen\ntype: gen\npath: gen\nmax-gen-length: 6\nuntil: ['\\n']\nmax-seq-length: 128\n"
                                    "metrics: [EM, F1, NumberEM, ROUGE-1, ROUGE-2, ROUGE-L]\n", encoding="utf-8")
    for run in ("a", "b"):
        argv = [str(tasks), "--data-path", str(data), "--output-dir", str(tmp_path / "out"), "--run-name", run, "--no-progress",
                *tiny_model_args(tiny_glm_dir)]
        assert cli.main(argv) == 0
    results = json.loads((tmp_path / "out" / "a" / "results.json").read_text())
    expected = {"mc": 9, "wsc": 2, "gen": 6}
    for task, count in expected.items():
        files = next(iter(results["tasks"][task]["groups"].values()))["files"]
        entry = next(iter(files.values()))
        metrics = results["tasks"][task]["config"]["metrics"]
        assert len(metrics) == count
        for metric in metrics:
            low, high = entry[f"{metric}_ci95"]
            assert low <= entry[metric] <= high and entry[f"{metric}_stderr"] is not None, (task, metric, entry)
    mc_records = [json.loads(line) for line in (tmp_path / "out" / "a" / "predictions" / "mc" / "test.jsonl").read_text().splitlines()]
    assert all("choice_chars" in r and "choice_tokens" in r for r in mc_records)
    code = compare_main([str(tmp_path / "out" / "a"), str(tmp_path / "out" / "b"), "--out", str(tmp_path / "report")])
    report = json.loads((tmp_path / "report" / "report.json").read_text())
    assert code == 0
    verdicts = {(u["task"], u["metric"]): u["comparisons"][0]["verdict"] for u in report["units"]}
    assert ("mc", "MCC") in verdicts and ("gen", "ROUGE-L") in verdicts
    assert "regressed" not in verdicts.values() and "improved" not in verdicts.values()
