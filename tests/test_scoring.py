"""GLM scoring semantics: packing, positions, masks, KV cache, batching, decoding."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from evaluation.scoring.decoding import DecodingSettings, beam_search, greedy_decode
from evaluation.scoring.glm_scorer import EncodingOptions, GLMScorer, collate

CONTEXT = "What is the capital of France? The capital of France is"
MULTI_CHOICES = [" Paris", " the city of Rome", " Berlin in Germany", " a very long answer about Madrid and Spain"]
SINGLE_CHOICES = ["A", "B", "C", "D"]


@torch.no_grad()
def full_log_probs(scorer: GLMScorer, tokens, positions, mask) -> torch.Tensor:
    """Whole-sequence log-softmax for one hand-built sequence (no packing code involved)."""
    t = torch.tensor([tokens])
    p = torch.tensor(np.asarray(positions))[None]
    m = torch.tensor(np.asarray(mask))[None]
    hidden, _ = scorer.model(t, p, m)
    return torch.log_softmax(scorer.model.logits(hidden[0]), dim=-1).double()  # sums in float64


def separate_choice_score(scorer: GLMScorer, context: list[int], choice: list[int], gmask: bool) -> float:
    """Score one choice in a sequence of its own, built by hand from the reference rules:
    context + mask (bidirectional), then sop + choice[:-1] (causal); positions continue
    linearly after the context with [gMASK], or all equal the mask position with [MASK]."""
    ids = scorer.ids
    prefix = [*context, ids.gmask if gmask else ids.mask]
    tokens = [*prefix, ids.sop, *choice[:-1]]
    n, c = len(prefix), len(choice)
    positions = list(range(n)) + (list(range(n, n + c)) if gmask else [n - 1] * c)
    mask = np.tril(np.ones((n + c, n + c), dtype=bool))
    mask[:n, :n] = True
    log_probs = full_log_probs(scorer, tokens, positions, mask)
    return float(sum(log_probs[n + i, tok] for i, tok in enumerate(choice)))


@pytest.mark.parametrize("gmask", [False, True], ids=["MASK", "gMASK"])
def test_packed_equals_separate_multi_token(scorer: GLMScorer, tokenizer, gmask: bool) -> None:
    context = tokenizer.tokenize(CONTEXT)
    choices = [tokenizer.tokenize(c) for c in MULTI_CHOICES]
    assert len({len(c) for c in choices}) > 1 and min(len(c) for c in choices) > 1
    packed = scorer.cond_log_prob([(context, choices)], EncodingOptions(use_task_mask=gmask))[0]
    separate = [separate_choice_score(scorer, context, c, gmask) for c in choices]
    np.testing.assert_allclose(packed, separate, atol=1e-5, rtol=0)
    assert max(separate) - min(separate) > 1.0  # the test can tell choices apart


@pytest.mark.parametrize("gmask", [False, True], ids=["MASK", "gMASK"])
def test_single_token_shortcut_equals_separate(scorer: GLMScorer, tokenizer, gmask: bool) -> None:
    context = tokenizer.tokenize(CONTEXT)
    choices = [tokenizer.tokenize(c)[-1:] for c in SINGLE_CHOICES]
    packed_sequence = scorer.pack_choices(context, choices, EncodingOptions(use_task_mask=gmask))
    assert len(packed_sequence) == len(context) + 2  # one sop serves every choice
    packed = scorer.cond_log_prob([(context, choices)], EncodingOptions(use_task_mask=gmask))[0]
    separate = [separate_choice_score(scorer, context, c, gmask) for c in choices]
    np.testing.assert_allclose(packed, separate, atol=1e-5, rtol=0)


def test_mask_versus_gmask_positions(scorer: GLMScorer) -> None:
    ids = scorer.ids
    context, choices = [30, 31, 32], [[40, 41], [50, 51, 52]]
    mask_seq = scorer.pack_choices(context, choices, EncodingOptions(use_task_mask=False))
    gmask_seq = scorer.pack_choices(context, choices, EncodingOptions(use_task_mask=True))
    assert mask_seq.tokens.tolist() == [30, 31, 32, ids.mask, ids.sop, 40, ids.sop, 50, 51]
    assert gmask_seq.tokens.tolist() == [30, 31, 32, ids.gmask, ids.sop, 40, ids.sop, 50, 51]
    assert mask_seq.positions.tolist() == [0, 1, 2, 3, 3, 3, 3, 3, 3]
    assert gmask_seq.positions.tolist() == [0, 1, 2, 3, 4, 5, 4, 5, 6]
    # Block-diagonal: the second choice block never sees the first one.
    assert not gmask_seq.mask[6:, 4:6].any()
    assert gmask_seq.mask[6:, :4].all()
    assert not gmask_seq.mask[:4, 4:].any()  # context does not see choices


def test_blank_filling_uses_existing_mask(scorer: GLMScorer) -> None:
    ids = scorer.ids
    packed = scorer.pack_choices([30, ids.mask, 32], [[40, 41]], EncodingOptions())
    assert packed.tokens.tolist() == [30, ids.mask, 32, ids.sop, 40]
    assert packed.positions.tolist() == [0, 1, 2, 1, 1]


def test_unidirectional_packed_equals_plain_causal_lm(scorer: GLMScorer, tokenizer) -> None:
    context = tokenizer.tokenize(CONTEXT)
    choices = [tokenizer.tokenize(c) for c in MULTI_CHOICES[:3]]
    options = EncodingOptions(use_task_mask=True, unidirectional=True)
    packed = scorer.cond_log_prob([(context, choices)], options)[0]
    ids = scorer.ids
    for choice, got in zip(choices, packed):
        tokens = [ids.gmask, ids.sop, *context, *choice[:-1]]
        n = len(tokens)
        log_probs = full_log_probs(scorer, tokens, list(range(n)), np.tril(np.ones((n, n), dtype=bool)))
        start = len(context) + 1  # row of the last context token
        expected = float(sum(log_probs[start + i, tok] for i, tok in enumerate(choice)))
        assert got == pytest.approx(expected, abs=1e-5)


def test_2d_positions_packed_equals_separate(scorer_2d: GLMScorer, tokenizer) -> None:
    context = tokenizer.tokenize(CONTEXT)
    choices = [tokenizer.tokenize(c) for c in MULTI_CHOICES]
    options = EncodingOptions(use_task_mask=True)
    packed = scorer_2d.cond_log_prob([(context, choices)], options)[0]
    separate = [scorer_2d.cond_log_prob([(context, [c])], options)[0][0] for c in choices]
    np.testing.assert_allclose(packed, separate, atol=1e-5, rtol=0)
    seq = scorer_2d.pack_choices(context, choices[:1], options)
    n = len(context) + 1
    assert seq.positions.shape == (2, len(seq))
    assert seq.positions[0, n:].tolist() == [len(context)] * len(choices[0])
    assert seq.positions[1, n:].tolist() == list(range(1, len(choices[0]) + 1))


def test_batched_scoring_equals_one_by_one(scorer: GLMScorer, tokenizer) -> None:
    requests = [
        (tokenizer.tokenize(CONTEXT), [tokenizer.tokenize(c) for c in MULTI_CHOICES]),
        (tokenizer.tokenize("Short."), [tokenizer.tokenize(c)[-1:] for c in SINGLE_CHOICES]),
        (tokenizer.tokenize("A medium context about the sea and the sky."), [tokenizer.tokenize(" yes"), tokenizer.tokenize(" no")]),
    ]
    for gmask in (False, True):
        options = EncodingOptions(use_task_mask=gmask)
        batched = scorer.cond_log_prob(requests, options, batch_size=3)
        single = [scorer.cond_log_prob([r], options)[0] for r in requests]
        for a, b in zip(batched, single):
            np.testing.assert_allclose(a, b, atol=1e-5, rtol=0)


def test_left_truncation_keeps_the_end(scorer: GLMScorer) -> None:
    context = list(range(20100, 20100 + 300))
    choices = [[20400, 20401], [20402]]
    seq = scorer.pack_choices(context, choices, EncodingOptions(max_seq_length=64))
    assert len(seq) <= 64
    kept = 64 - 3 - 2
    assert seq.tokens[:kept].tolist() == context[-kept:]


def test_collate_pads_to_multiple_of_32(scorer: GLMScorer) -> None:
    seqs = [scorer.pack_choices(list(range(20100, 20100 + n)), [[20400, 20401]], EncodingOptions()) for n in (5, 40)]
    tokens, positions, mask, _ = collate(seqs, scorer.ids.pad)
    assert tokens.shape == (2, 64) and mask.shape == (2, 64, 64)
    assert mask.any(dim=-1).all()  # every row (padding too) attends somewhere: no NaN softmax


def generation_reference_sequence(scorer: GLMScorer, context: list[int], generated: list[int], gmask: bool):
    """Full (no cache) inputs for context + mask + sop + generated tokens, by hand."""
    ids = scorer.ids
    tokens = [*context, ids.gmask if gmask else ids.mask, ids.sop, *generated]
    c = len(context) + 2
    n = len(tokens)
    positions = list(range(n)) if gmask else list(range(c - 1)) + [c - 2] * (n - c + 1)
    mask = np.tril(np.ones((n, n), dtype=bool))
    mask[: c - 1, : c - 1] = True
    return tokens, positions, mask


@pytest.mark.parametrize("gmask", [False, True], ids=["MASK", "gMASK"])
@torch.no_grad()
def test_kv_cache_matches_full_forward(scorer: GLMScorer, tokenizer, gmask: bool) -> None:
    context = tokenizer.tokenize(CONTEXT)
    generated = tokenizer.tokenize(" Paris is a large city")
    tokens, positions, mask = generation_reference_sequence(scorer, context, generated, gmask)
    full = full_log_probs(scorer, tokens, positions, mask)
    c = len(context) + 2
    # Incremental: the context in one call, then one token at a time with the cache.
    model = scorer.model
    hidden, cache = model(torch.tensor([tokens[:c]]), torch.tensor([positions[:c]]), torch.tensor(mask[None, :c, :c]))
    steps = [torch.log_softmax(model.logits(hidden[0, -1]), -1)]
    for i in range(len(generated)):
        at = c + i
        hidden, cache = model(torch.tensor([[tokens[at]]]), torch.tensor([[positions[at]]]), torch.tensor(mask[None, at : at + 1, : at + 1]), past=cache)
        steps.append(torch.log_softmax(model.logits(hidden[0, -1]), -1))
    incremental = torch.stack(steps)
    torch.testing.assert_close(incremental.double(), full[c - 1 :], atol=1e-5, rtol=0)


@pytest.mark.parametrize("beams", [1, 3], ids=["greedy", "beam3"])
def test_batched_generation_equals_one_by_one(scorer: GLMScorer, tokenizer, beams: int) -> None:
    contexts = [tokenizer.tokenize(t) for t in (CONTEXT, "The sky is", "Water boils at one hundred degrees and freezes at")]
    settings = DecodingSettings(max_gen_length=6, end_ids=(tokenizer.eop_id, tokenizer.eos_id), num_beams=beams,
                                no_repeat_ngram_size=3 if beams > 1 else 0)
    for gmask in (False, True):
        options = EncodingOptions(use_task_mask=gmask)
        batched = scorer.generate_text(contexts, options, settings, batch_size=3)
        single = [scorer.generate_text([c], options, settings)[0] for c in contexts]
        assert batched == single
        assert all(len(out) > 0 for out in batched)


def test_greedy_generation_is_argmax_of_full_forward(scorer: GLMScorer, tokenizer) -> None:
    context = tokenizer.tokenize("The sky is")
    settings = DecodingSettings(max_gen_length=5, end_ids=())
    generated = scorer.generate_text([context], EncodingOptions(use_task_mask=True), settings)[0]
    tokens, positions, mask = generation_reference_sequence(scorer, context, generated, gmask=True)
    full = full_log_probs(scorer, tokens, positions, mask)
    c = len(context) + 2
    assert full[c - 1 : c - 1 + len(generated)].argmax(-1).tolist() == generated


class TableDecoder:
    """A toy decoder whose next-token logits depend only on the last token fed."""

    def __init__(self, table: dict[int, list[float]], rows: int) -> None:
        self.table = table
        self.rows = rows

    def reorder(self, rows: torch.Tensor) -> None:
        self.rows = len(rows)

    def step(self, tokens: torch.Tensor, step_index: int) -> torch.Tensor:
        return torch.log(torch.tensor([self.table[int(t)] for t in tokens]))


def test_beam_search_finds_better_sequence_than_greedy() -> None:
    # Token 0 = end. Token 1 looks best first (0.6) but then ends with only 0.34
    # (path 0.204); token 2 (0.4) ends with 0.98 (path 0.392): beam search must prefer it.
    table = {1: [0.34, 0.33, 0.33], 2: [0.98, 0.01, 0.01]}
    first = torch.log(torch.tensor([[0.0001, 0.6, 0.4]]))
    settings = DecodingSettings(max_gen_length=4, end_ids=(0,), num_beams=2, length_penalty=0.0)
    greedy = greedy_decode(first, TableDecoder(table, 1), DecodingSettings(max_gen_length=4, end_ids=(0,)))
    beam = beam_search(first, TableDecoder(table, 2), settings, context_lengths=[3], context_tails=[[]])
    assert greedy == [[1]]
    assert beam == [[2]]


def test_beam_search_bans_repeated_ngrams() -> None:
    # Without bans the best path repeats "1 2" forever.
    table = {1: [0.01, 0.01, 0.97, 0.01], 2: [0.01, 0.97, 0.01, 0.01], 3: [0.01, 0.97, 0.01, 0.01]}
    first = torch.log(torch.tensor([[0.01, 0.97, 0.01, 0.01]]))
    plain = DecodingSettings(max_gen_length=5, end_ids=(0,), num_beams=2, no_repeat_ngram_size=0)
    banned = DecodingSettings(max_gen_length=5, end_ids=(0,), num_beams=2, no_repeat_ngram_size=2)
    out_plain = beam_search(first, TableDecoder(table, 2), plain, [3], [[]])[0]
    out_banned = beam_search(first, TableDecoder(table, 2), banned, [3], [[9]])[0]
    assert out_plain[:4] == [1, 2, 1, 2]
    bigrams = list(zip(out_banned, out_banned[1:]))
    assert len(bigrams) == len(set(bigrams)), out_banned


def test_min_gen_length_blocks_end_tokens() -> None:
    table = {1: [0.9, 0.1], 0: [0.9, 0.1]}
    first = torch.log(torch.tensor([[0.9, 0.1]]))
    out = greedy_decode(first, TableDecoder(table, 1), DecodingSettings(max_gen_length=5, end_ids=(0,), min_gen_length=3))
    assert out == [[1, 1, 1]]


def test_lm_windows_score_every_token_once(scorer: GLMScorer, tokenizer) -> None:
    tokens = [20050 + (i * 7) % 400 for i in range(500)]
    options = EncodingOptions(max_seq_length=128)
    windows = scorer.lm_windows(tokens, options, generation_length=32)
    scored = [t for w in windows for t in w.target_ids[0].tolist()]
    assert scored == tokens
    assert all(len(w) <= 128 for w in windows)
    # Later windows carry max_seq_length - 1 - generation_length tokens of prompt.
    assert windows[1].tokens[: 128 - 1 - 32].tolist() == tokens[32 : 32 + 95]
    losses = scorer.calculate_loss(windows, batch_size=4)
    one_by_one = scorer.calculate_loss(windows, batch_size=1)
    np.testing.assert_allclose([l for l, _ in losses], [l for l, _ in one_by_one], rtol=1e-5)
    assert sum(n for _, n in losses) == len(tokens)


def test_lm_window_loss_matches_hand_computation(scorer: GLMScorer, tokenizer) -> None:
    tokens = tokenizer.tokenize("The quick brown fox jumps over the lazy dog while the farmer watches.")
    window = scorer.lm_windows(tokens, EncodingOptions(max_seq_length=128), generation_length=32)
    assert len(window) == 1
    ids = scorer.ids
    inputs = [ids.mask, ids.sop, *tokens[:-1]]
    n = len(inputs)
    mask = np.tril(np.ones((n, n), dtype=bool))
    log_probs = full_log_probs(scorer, inputs, list(range(n)), mask)
    expected = -float(sum(log_probs[1 + i, t] for i, t in enumerate(tokens)))
    assert scorer.calculate_loss(window)[0][0] == pytest.approx(expected, rel=1e-5)
