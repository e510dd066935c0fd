"""Beam search with the beams of an item in one cache row (``hf_scorer._HFBeamTreeDecoder``)
against one cache row per beam (the decoder it replaces by default), on the tiny Llama:
the logits of every step, and the generated tokens of whole beam searches (token for token),
including left padding, n-gram bans, several beam widths and batches of different sizes."""

from __future__ import annotations

import pytest
import torch

pytest.importorskip("transformers")

from conftest import load_llama_rejecting_4d_masks  # noqa: E402
from evaluation.scoring.decoding import DecodingSettings  # noqa: E402
from evaluation.scoring.glm_scorer import EncodingOptions  # noqa: E402
from evaluation.scoring.hf_scorer import HFScorer, _HFBeamTreeDecoder, _HFCachedDecoder  # noqa: E402

OPTIONS = EncodingOptions(max_seq_length=2048)
TEXTS = ["The", "Once upon a time there was a small village near the river, and", "2 + 2 =",
         "A long time ago in a village near the", "She opened the door and saw", "Answer:"]


def quiet(model, tok, **kwargs) -> HFScorer:
    return HFScorer(model, tok, max_batch_tokens=256, log=lambda *_: None, **kwargs)


def test_tree_steps_give_the_logits_of_one_row_per_beam(hf_model) -> None:
    """Four steps with a reorder before each (beams dying and forking, as beam search does):
    every beam's logits in the tree equal those of its own cache row."""
    model, tok = hf_model
    scorer = quiet(model, tok)
    contexts = [tok.tokenize(t) for t in TEXTS[:4]]
    beams, items = 5, len(contexts)
    generator = torch.Generator().manual_seed(3)
    reorders = [torch.zeros(items * beams, dtype=torch.long)] + [
        torch.randint(0, beams, (items * beams,), generator=generator) for _ in range(3)]
    tokens = [torch.randint(3, tok.num_tokens, (items * beams,), generator=generator) for _ in reorders]
    base = torch.arange(items).repeat_interleave(beams) * beams
    logits = {}
    for tree in (False, True):
        cache, valid, lengths, _ = scorer._prefill(contexts)
        if tree:
            decoder = _HFBeamTreeDecoder(model, cache, valid, lengths, beams, torch.float32)
        else:
            decoder = _HFCachedDecoder(model, cache, valid, lengths)
            decoder.reorder(torch.arange(items).repeat_interleave(beams))
        steps = []
        with torch.no_grad():
            for step, (parents, fed) in enumerate(zip(reorders, tokens)):
                decoder.reorder(base + parents)
                steps.append(decoder.step(fed, step))
        logits[tree] = torch.stack(steps)
    torch.testing.assert_close(logits[True], logits[False], rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("settings", [
    DecodingSettings(max_gen_length=6, end_ids=(2,), num_beams=4, no_repeat_ngram_size=3),
    DecodingSettings(max_gen_length=5, end_ids=(2,), num_beams=7, length_penalty=0.6, min_gen_length=2),
    DecodingSettings(max_gen_length=4, end_ids=(2, 5), num_beams=16, no_repeat_ngram_size=2),
], ids=["beams4-ngram3", "beams7-min2", "beams16-two-ends"])
def test_beam_search_outputs_are_token_identical(hf_model, settings: DecodingSettings) -> None:
    model, tok = hf_model
    tree, rows = quiet(model, tok), quiet(model, tok, beam_tree=False)
    assert tree.beam_tree and not rows.beam_tree
    contexts = [tok.tokenize(t) for t in TEXTS]
    got = tree.generate_text(contexts, OPTIONS, settings)
    assert got == rows.generate_text(contexts, OPTIONS, settings)
    assert got == [rows.generate_text([c], OPTIONS, settings)[0] for c in contexts]
    small_batches = HFScorer(model, tok, max_batch_tokens=16, log=lambda *_: None)  # one or two items per batch
    assert small_batches.generate_text(contexts, OPTIONS, settings) == got
    assert any(len(out) > 1 for out in got)


def test_a_model_that_rejects_4d_masks_keeps_one_row_per_beam(tiny_llama_dir, hf_model) -> None:
    reference, tok = hf_model
    scorer = quiet(load_llama_rejecting_4d_masks(tiny_llama_dir), tok)
    assert not scorer.beam_tree and not scorer.describe()["beam_tree"]
    settings = DecodingSettings(max_gen_length=5, end_ids=(tok.eos_id,), num_beams=4, no_repeat_ngram_size=3)
    contexts = [tok.tokenize(t) for t in TEXTS[:3]]
    assert scorer.generate_text(contexts, OPTIONS, settings) == quiet(reference, tok).generate_text(contexts, OPTIONS, settings)
