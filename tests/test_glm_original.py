"""The original GLM (THUDM/GLM's architecture) behind the GLM scorer: its scores equal
THUDM/GLM's own rules built by hand (one row per choice, 2D positions: a blank's tokens at
the mask position with block positions 1, 2, ...), its greedy generation is the argmax of a
full forward, and the tiny original-GLM runs every shipped suite in both checkpoint layouts."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from evaluation.model.glm_original_checkpoint import load_original_glm
from evaluation.model.glm_original import OriginalGLMConfig
from evaluation.scoring.decoding import DecodingSettings
from evaluation.scoring.glm_scorer import EncodingOptions, GLMScorer
from evaluation.tokenization import GLM130BTokenizer
from evaluation.tools.make_tiny_glm import make_tiny_original_glm

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def original(tmp_path_factory: pytest.TempPathFactory) -> tuple[GLMScorer, GLM130BTokenizer]:
    folder = make_tiny_original_glm(tmp_path_factory.mktemp("glm-original"))
    config = OriginalGLMConfig.from_dict(json.loads((folder / "model_config.json").read_text()))
    tokenizer = GLM130BTokenizer(folder / "ice_text.model")
    return GLMScorer(load_original_glm(config, folder), tokenizer), tokenizer


@torch.no_grad()
def row_log_probs(scorer: GLMScorer, tokens: list[int], positions: list[list[int]], sep: int) -> torch.Tensor:
    """One hand-built row, THUDM/GLM's mask: every token sees [0, sep) and itself causally."""
    n = len(tokens)
    mask = np.tril(np.ones((n, n), dtype=bool))
    mask[:, :sep] = True
    hidden, _ = scorer.model(torch.tensor([tokens]), torch.tensor([positions]), torch.tensor(mask[None]))
    return torch.log_softmax(scorer.model.logits(hidden[0]), dim=-1).double()


def thudm_choice_score(scorer: GLMScorer, context: list[int], choice: list[int], gmask: bool) -> float:
    """THUDM/GLM's multi-token cloze row: context + mask (positions 0..n-1, block 0), then
    sop + choice[:-1] at the mask's position with block positions 1..len(choice)."""
    ids = scorer.ids
    prefix = [*context, ids.gmask if gmask else ids.mask]
    n, c = len(prefix), len(choice)
    tokens = [*prefix, ids.sop, *choice[:-1]]
    positions = [list(range(n)) + [n - 1] * c, [0] * n + list(range(1, c + 1))]
    log_probs = row_log_probs(scorer, tokens, positions, sep=n)
    return float(sum(log_probs[n + i, token] for i, token in enumerate(choice)))  # sop predicts choice[0]


@pytest.mark.parametrize("gmask", [False, True], ids=["MASK", "gMASK"])
def test_packed_choices_equal_thudm_rows(original, gmask: bool) -> None:
    scorer, tokenizer = original
    context = tokenizer.tokenize("What is the capital of France? The capital of France is")
    choices = [tokenizer.tokenize(c) for c in (" Paris", " the city of Rome", " Berlin in Germany", " a long answer")]
    packed = scorer.cond_log_prob([(context, choices)], EncodingOptions(use_task_mask=gmask))[0]
    by_hand = [thudm_choice_score(scorer, context, c, gmask) for c in choices]
    assert packed == pytest.approx(by_hand, abs=1e-5)
    assert len(set(round(s, 3) for s in by_hand)) == len(by_hand)  # the scores tell the choices apart


def test_greedy_generation_is_the_argmax_of_a_full_forward(original) -> None:
    scorer, tokenizer = original
    context = tokenizer.tokenize("The sky is")
    generated = scorer.generate_text([context], EncodingOptions(use_task_mask=True), DecodingSettings(max_gen_length=5, end_ids=()))[0]
    ids = scorer.ids
    prefix = [*context, ids.gmask]
    n, m = len(prefix), len(generated)
    tokens = [*prefix, ids.sop, *generated[:-1]]
    positions = [list(range(n)) + [n - 1] * m, [0] * n + list(range(1, m + 1))]  # THUDM/GLM's seq2seq positions
    log_probs = row_log_probs(scorer, tokens, positions, sep=n)
    assert log_probs[n:].argmax(-1).tolist() == generated and len(generated) == 5


@pytest.mark.parametrize("layout", ["thudm", "hf"])
def test_every_shipped_suite_runs_on_the_tiny_original_glm(layout: str, sample_data: Path, tmp_path: Path) -> None:
    from evaluation.cli import main as evaluate_main

    folder = make_tiny_original_glm(tmp_path / "model", layout=layout)
    args = ["--architecture", "glm", "--num-layers", "2", "--hidden-size", "64", "--num-attention-heads", "4",
            "--vocab-size", "20544", "--max-sequence-length", "512", "--tokenizer-model", str(folder / "ice_text.model"),
            "--load", str(folder), "--device", "cpu"]
    code = evaluate_main([str(ROOT / "tasks"), "--data-path", str(sample_data), "--output-dir", str(tmp_path / "out"),
                          "--run-name", "run", "--limit", "3", "--no-progress", *args])
    assert code == 0
    results = json.loads((tmp_path / "out" / "run" / "results.json").read_text())
    assert len(results["tasks"]) == len(list((ROOT / "tasks").glob("*/*.yaml")))
    model = results["model"]["args"]
    assert model["architecture"] == "glm" and model["checkpoint_layout"] == layout.replace("hf", "hub")


def test_flags_that_disagree_with_a_hub_config_are_named(tmp_path: Path) -> None:
    from evaluation.cli import main as evaluate_main

    folder = make_tiny_original_glm(tmp_path / "model", layout="hf")
    code = evaluate_main([str(ROOT / "tasks" / "demo"), "--validate-only", "--architecture", "glm", "--num-layers", "3",
                          "--hidden-size", "64", "--num-attention-heads", "4", "--vocab-size", "20544", "--max-sequence-length", "512",
                          "--tokenizer-model", str(folder / "ice_text.model"), "--load", str(folder), "--device", "cpu"])
    assert code == 2
