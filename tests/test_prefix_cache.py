"""The read-only prefix cache (``scoring/prefix_cache.py``): a batch scored on it gets the
hidden states transformers' ``DynamicCache`` gives, bit for bit, and the cache still holds
only the prefix afterwards (``DynamicCache`` keeps every layer's batch keys and values,
which is the memory this saves)."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("transformers")

import torch  # noqa: E402

from evaluation.scoring import hf_scorer as hf_scorer_module  # noqa: E402
from evaluation.scoring.hf_scorer import HFScorer  # noqa: E402
from evaluation.scoring.prefix_cache import (  # noqa: E402
    dynamic_prefix_cache, read_only_prefix_cache, read_only_prefix_cache_available)


@pytest.fixture(scope="module")
def scorer_and_batch(hf_model):
    """A scorer, a 24-token prefix's cache and three packed samples that follow it."""
    model, tok = hf_model
    scorer = HFScorer(model, tok, max_batch_tokens=256, log=lambda *_: None, prefix_forward_cost=0)
    prefix_ids = tok.encode("Question: what is two plus two? Answer: four.\n\nQuestion: and three plus three?")[:24]
    contexts = [prefix_ids + tok.encode(f" Answer: {word}") for word in ("six", "seven or so", "a number")]
    samples = [scorer._pack(c, [tok.encode(" yes"), tok.encode(" no, not at all")], 128) for c in contexts]
    rests = [s.after_prefix(len(prefix_ids)) for s in samples]
    return scorer, scorer._prefix_cache(np.asarray(prefix_ids)), rests


def test_scores_on_the_read_only_cache_equal_the_dynamic_caches_bit_for_bit(scorer_and_batch, monkeypatch) -> None:
    scorer, prefix, rests = scorer_and_batch
    assert read_only_prefix_cache_available() and scorer.prefix_cache_read_only
    read_only = scorer._hidden_or_logits(rests, prefix)
    monkeypatch.setattr(scorer, "prefix_cache_read_only", False)
    dynamic = scorer._hidden_or_logits(rests, prefix)
    assert torch.equal(read_only, dynamic)


def test_a_model_that_scores_differently_on_the_read_only_cache_gets_the_dynamic_one(hf_model, monkeypatch) -> None:
    """The start-up probe compares scores after a cached prefix with the plain forward; where
    the read-only cache fails it (here: a layer that drops the prefix), the scorer keeps
    prefix reuse on transformers' DynamicCache instead of switching reuse off."""
    from evaluation.scoring import prefix_cache

    model, tok = hf_model
    broken = prefix_cache._layer_class()
    monkeypatch.setattr(broken, "update", lambda self, k, v, *a, **kw: (k, v))  # forgets the prefix
    scorer = HFScorer(model, tok, log=lambda *_: None)
    assert scorer.prefix_reuse and not scorer.prefix_cache_read_only


def test_the_read_only_cache_holds_only_the_prefix_after_a_forward(scorer_and_batch, monkeypatch) -> None:
    scorer, prefix, rests = scorer_and_batch
    made: list = []

    def remember(builder):
        def build(prefix_states, rows, read_only=True):
            made.append(builder(prefix_states, rows))
            return made[-1]
        return build

    prefix_length = prefix[0][0].shape[2]
    longest = max(len(r) for r in rests)
    monkeypatch.setattr(hf_scorer_module, "batch_cache_on_prefix", remember(read_only_prefix_cache))
    scorer._hidden_or_logits(rests, prefix)
    monkeypatch.setattr(hf_scorer_module, "batch_cache_on_prefix", remember(dynamic_prefix_cache))
    scorer._hidden_or_logits(rests, prefix)
    read_only, dynamic = made
    for layer, (keys, _) in zip(read_only.layers, prefix):
        assert layer.keys.shape[2] == prefix_length and layer.keys.stride(0) == 0  # the prefix, broadcast, never copied
        assert layer.keys.untyped_storage().data_ptr() == keys.untyped_storage().data_ptr()
    # what the read-only cache saves: DynamicCache kept rows x (prefix + own tokens) in every layer
    assert all(layer.keys.shape[:3] == (len(rests), prefix[0][0].shape[1], prefix_length + longest) for layer in dynamic.layers)


def test_the_cache_budget_counts_one_layer_at_a_time(hf_model) -> None:
    """With the read-only cache a group's batches are budgeted by one layer's keys and values
    (plus the prefix): a budget that holds every row of one layer, but only half the rows
    of every layer, scores the group in one batch where DynamicCache's accounting needs two,
    with the same scores; the reported peak is what one batch needed at once."""
    from evaluation.scoring.glm_scorer import EncodingOptions

    model, tok = hf_model
    prefix = tok.encode("The same long instruction before every question, repeated to make it long. " * 3)
    requests = [(prefix + tok.encode(f" Question {q}?"), [tok.encode(" yes"), tok.encode(" no")]) for q in range(6)]
    results, calls, peaks = [], [], []
    for read_only in (True, False):
        scorer = HFScorer(model, tok, max_batch_tokens=4096, log=lambda *_: None, prefix_forward_cost=0)
        scorer.prefix_cache_read_only = read_only
        per_token, layers = scorer.kv_bytes_per_token, model.config.num_hidden_layers
        longest = max(len(scorer._pack(c, ch, 2048).tokens) for c, ch in requests) - len(prefix) + 1
        scorer.prefix_cache_bytes = len(prefix) * per_token + 6 * (len(prefix) + longest) * per_token // layers
        count = [0]
        score = scorer._score
        scorer._score = lambda samples, greedy, prefix=None, score=score: (count.__setitem__(0, count[0] + 1), score(samples, greedy, prefix))[1]
        results.append(np.array(scorer.cond_log_prob(requests, EncodingOptions(max_seq_length=2048))))
        assert scorer.prefix_stats.groups == 1
        calls.append(count[0])
        peaks.append(scorer.prefix_stats.peak_cache_bytes)
        assert len(prefix) * per_token < peaks[-1] <= scorer.prefix_cache_bytes
    assert calls == [1, 2]
    assert np.allclose(results[0], results[1], rtol=1e-5, atol=1e-5)
