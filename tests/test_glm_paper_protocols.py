"""The GLM paper's zero-shot protocols against THUDM/GLM's own dataset code (fixtures recorded by
``scripts/reference/make_glm_protocol_fixtures.py`` from ``tasks/language_model/dataset.py``):
LM windows (``zero_wikitext.sh`` / ``zero_lm.sh``, bidirectional and ``--unidirectional``),
LAMBADA rows (``zero_lambada.sh`` / ``zero_lambada_uni.sh``), the WikiText detokenizer and the
"adjusted ppl" normaliser; and the harness's pipeline on them (the YAMLs, the metric)."""

from __future__ import annotations

import hashlib
import json
import math
from pathlib import Path

import numpy as np
import pytest

from evaluation.detokenizers import original_token_count, wikitext_detokenize
from evaluation.metrics import METRICS
from evaluation.scoring.packing import SpecialIds, build_language_model_windows_glm, build_multiple_choice

FIXTURE = json.loads((Path(__file__).parent / "fixtures" / "glm_protocols.json").read_text())
SPECIAL = FIXTURE["special"]
IDS = SpecialIds(mask=SPECIAL["MASK"], gmask=SPECIAL["gMASK"], sop=SPECIAL["sop"], pad=SPECIAL["pad"], eos=SPECIAL["eos"])
SHARED = Path(__file__).resolve().parents[2] / "shared"


def assert_row_matches(ours, theirs: dict) -> None:
    """Our packed row equals THUDM/GLM's (ids, 2D positions, ``sep`` mask, scored rows/targets)."""
    length = len(ours)
    assert ours.tokens.tolist() == theirs["text"][:length]
    assert all(t == SPECIAL["eos"] for t in theirs["text"][length:]), "THUDM/GLM's row is longer than ours"
    assert ours.positions.tolist() == [row[:length] for row in theirs["position_id"]]
    sep = theirs["attention_mask"]
    index = np.arange(length)
    expected_mask = (index[None, :] < sep) | (index[None, :] <= index[:, None])
    assert np.array_equal(ours.mask, expected_mask)
    scored = [i for i, flag in enumerate(theirs["loss_mask"]) if flag]
    assert np.concatenate(ours.target_rows).tolist() == scored
    assert np.concatenate(ours.target_ids).tolist() == [theirs["target"][i] for i in scored]


@pytest.mark.parametrize("case", FIXTURE["lm"], ids=lambda c: f"seq{c['seq_length']}-g{c['overlapping_eval']}-n{c['n']}"
                         + ("-uni" if c["unidirectional"] else ""))
def test_lm_windows_match_thudm_glm(case: dict) -> None:
    windows = build_language_model_windows_glm(case["document"], IDS, SPECIAL["ENC"], use_task_mask=True,
                                               unidirectional=case["unidirectional"], max_seq_length=case["seq_length"],
                                               generation_length=case["overlapping_eval"], position_2d=True)
    assert len(windows) == len(case["rows"])
    if "text" not in case["rows"][0]:  # the large case keeps only per-window counts
        for window, row in zip(windows, case["rows"]):
            assert window.target_ids[0].size == row["scored"] and window.target_ids[0][0] == row["first_target"]
    else:
        for window, row in zip(windows, case["rows"]):
            assert_row_matches(window, row)
    scored = np.concatenate([w.target_ids[0] for w in windows]).tolist()
    assert scored == case["document"][1:], "every token but the first is scored exactly once"


@pytest.mark.parametrize("case", FIXTURE["lambada"], ids=lambda c: "uni" if c["unidirectional"] else "bi")
def test_lambada_rows_match_thudm_glm(case: dict) -> None:
    for tokens, answer, row in zip(case["tokens"], case["labels"], case["rows"]):
        packed = build_multiple_choice([SPECIAL["ENC"], *tokens], [answer], IDS, use_task_mask=True,
                                       unidirectional=case["unidirectional"], use_multitask_encoding=False,
                                       max_seq_length=case["seq_length"], position_2d=True,
                                       unidirectional_prefix=2 if case["unidirectional"] else 0, context_eos=True)
        assert_row_matches(packed, row)


def test_prefixed_layout_with_several_choices_keeps_choices_apart() -> None:
    packed = build_multiple_choice([1, 10, 11, 12], [[20, 21], [30]], IDS, use_task_mask=True, unidirectional=True,
                                   use_multitask_encoding=False, max_seq_length=64, position_2d=True, unidirectional_prefix=2)
    # [CLS] 10 [gMASK] | sop 11 | 12 20 | 12  (no context_eos here)
    assert packed.tokens.tolist() == [1, 10, 4, 5, 11, 12, 20, 12]
    assert packed.positions.tolist() == [[0, 1, 2, 2, 2, 2, 2, 2], [0, 0, 0, 1, 2, 3, 4, 3]]
    assert [r.tolist() for r in packed.target_rows] == [[5, 6], [7]]
    assert not packed.mask[7, 5] and not packed.mask[7, 6] and packed.mask[7, 4] and packed.mask[0, 2]


def test_prefix_is_checked_in_the_yaml(tmp_path: Path) -> None:
    from evaluation.task_config import MultiChoiceTaskConfig

    config = MultiChoiceTaskConfig(name="x", type="mul", path="p", unidirectional_prefix=2, use_task_mask=True)
    assert ("unidirectional_prefix", "applies in unidirectional mode only (set unidirectional: true)") in config.check()


@pytest.mark.skipif(not (SHARED / "data" / "wikitext" / "wiki.test.raw").is_file(), reason="../shared/data not beside the repo")
def test_wikitext_detokenizer_and_count_match_thudm_glm() -> None:
    raw = (SHARED / "data" / "wikitext" / "wiki.test.raw").read_bytes().decode("utf-8").replace("\r\n", "\n")
    reference = FIXTURE["wikitext"]
    assert original_token_count(raw) == reference["original_tokens"]
    detokenized = wikitext_detokenize(raw)
    assert len(detokenized) == reference["detokenized_chars"]
    assert hashlib.sha256(detokenized.encode("utf-8")).hexdigest() == reference["detokenized_sha256"]


def test_wikitext_detokenizer_rules_by_hand() -> None:
    text = ' = = Career = = \n The film @-@ maker ( born 1 @,@ 000 ) said " yes " , and it \'s 3 @.@ 5 km . \n'
    assert wikitext_detokenize(text) == ' == Career ==\nThe film-maker (born 1,000) said "yes", and it\'s 3.5 km.\n'


def test_adjusted_perplexity_divides_by_original_tokens_less_one() -> None:
    records = [{"loss": 3.0, "scored_tokens": 4}, {"loss": 5.0, "scored_tokens": 2}]
    stats = {"words": 10.0, "bytes": 50.0, "tokens": 7.0, "original_tokens": 9.0}
    assert METRICS["AdjustedPPL"].fn(records, stats) == pytest.approx(math.exp(8.0 / 9.0))
    num, den = METRICS["AdjustedPPL"].items(records, stats)
    assert num.sum() / den.sum() == pytest.approx(8.0 / 9.0)


def test_bad_lm_protocol_fields_are_named() -> None:
    from evaluation.task_config import LanguageModelTaskConfig

    config = LanguageModelTaskConfig(name="x", type="lm", path="p", window_layout="thudm", detokenizer="wiki", documents="para")
    fields = {name for name, _ in config.check(1024)}
    assert {"window_layout", "detokenizer", "documents"} <= fields
    generation = LanguageModelTaskConfig(name="x", type="lm", path="p", context_eos=True)
    assert any(name == "context_eos" for name, _ in generation.check(1024))


def test_glm_layout_windows_need_a_cls_token() -> None:
    from evaluation.scoring.api import EncodingOptions
    from evaluation.scoring.glm_scorer import GLMScorer

    class NoCls:
        special_tokens = {"MASK": 3}

    scorer = GLMScorer.__new__(GLMScorer)
    scorer.tokenizer, scorer.ids, scorer.position_2d, scorer.max_model_length = NoCls(), IDS, True, 64
    with pytest.raises(ValueError, match=r"puts \[CLS\] before every window"):
        scorer.lm_windows(list(range(10, 40)), EncodingOptions(True, max_seq_length=16, lm_window_layout="glm"), 4)
