"""The LM head on scored rows runs in chunks of rows: the chunks cover every row once, none is a
small remainder, and chunked log-probs are the unchunked ones."""

from __future__ import annotations

import torch

from evaluation.scoring.scored_rows import HEAD_CHUNK_ROWS, full_vocab_log_probs, head_chunks


def test_head_chunks_cover_every_row_once_and_are_balanced() -> None:
    for rows in (0, 1, 15, 63, 64, 65, 127, 128, 129, 1000, 1024):
        chunks = head_chunks(rows)
        covered = [i for start, end in chunks for i in range(start, end)]
        assert covered == list(range(rows))
        sizes = [end - start for start, end in chunks]
        assert max(sizes) <= HEAD_CHUNK_ROWS
        if rows > HEAD_CHUNK_ROWS:  # no small remainder: every chunk holds at least half the limit
            assert min(sizes) >= HEAD_CHUNK_ROWS // 2 and max(sizes) - min(sizes) <= 1


def test_chunked_log_probs_equal_one_projection() -> None:
    torch.manual_seed(0)
    weight = torch.randn(5000, 96)
    rows, target = torch.randn(1000, 96) * 3, torch.randint(0, 5000, (1000,))
    project = lambda x: torch.nn.functional.linear(x, weight)  # noqa: E731
    picked, greedy = full_vocab_log_probs(project)(rows, target)
    whole = torch.log_softmax(project(rows).float(), dim=-1)
    assert picked.shape == (1000,) and greedy.shape == (1000,)
    assert torch.allclose(picked, whole.gather(1, target[:, None])[:, 0], atol=1e-6, rtol=0)
    assert torch.equal(greedy, whole.argmax(dim=-1) == target)
    target = whole.argmax(dim=-1)  # every row's greedy pick: all True, in row order
    assert bool(full_vocab_log_probs(project)(rows, target)[1].all())
