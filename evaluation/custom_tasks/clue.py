"""Multiple choice over many label names (FewCLUE IFLYTEK: 119 choices, CSLDCP: 67).

The harness packs every choice of an item into one sequence after the context. When the
choices together take more tokens than the sequence allows (the 512-position tiny model;
a tokenizer that splits Chinese into bytes), :class:`MultiChoiceTask` rejects the item.
:class:`ChunkedMultiChoiceTask` instead scores the choices in several packed sequences
that share one context:

* If everything fits, it asks the scorer exactly what :class:`MultiChoiceTask` asks (one
  packed sequence per item), so on GLM-130B (2048 positions, a few tokens per label name)
  its scores are those of ``type: mul``.
* Otherwise the choices are split, in order, into chunks of at most half the sequence,
  and the context is left-truncated once to what the largest chunk leaves, so every chunk
  sees the same context. Each choice block only ever attends to the context and itself
  (block-diagonal mask, positions restarting after the context), so a choice's score does
  not depend on which other choices share its sequence: chunking changes only how much
  context survives truncation, never how a choice is scored against it.
"""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np

from evaluation.data import ItemError, require
from evaluation.scoring.api import Scorer
from evaluation.scoring.packing import truncate_left
from evaluation.tasks import FileData, MultiChoiceItem, MultiChoiceTask, choice_lengths


def packed_length(choices: Sequence[Sequence[int]]) -> int:
    """Target tokens a packed sequence needs for these choices (one sop row if all are single tokens)."""
    return 1 if all(len(c) == 1 for c in choices) else sum(len(c) for c in choices)


def plan_chunks(choices: Sequence[Sequence[int]], max_length: int) -> list[list[int]]:
    """Indices of the choices scored together: one chunk when they fit, else consecutive
    chunks of at most ``max_length // 2`` target tokens (a longer choice stands alone)."""
    if packed_length(choices) + 2 < max_length:
        return [list(range(len(choices)))]
    budget = max(max_length // 2, 1)
    chunks: list[list[int]] = []
    current: list[int] = []
    for index, choice in enumerate(choices):
        trial = current + [index]
        if current and packed_length([choices[i] for i in trial]) > budget:
            chunks.append(current)
            trial = [index]
        current = trial
    chunks.append(current)
    return chunks


class ChunkedMultiChoiceTask(MultiChoiceTask):
    """``type: mul`` whose items may have more choice tokens than one sequence holds."""

    def load_item(self, raw: dict[str, Any]) -> MultiChoiceItem:
        key = "choices_pretokenized" if "choices_pretokenized" in raw else "choices"
        context, choice_ids = self.context_and_choices(raw)
        longest = max(len(c) for c in choice_ids)
        if longest + 2 >= self.max_length:
            raise ItemError(f"a choice takes {longest} tokens, too many for a sequence of {self.max_length}", key)
        label = require(raw, "label")
        if not isinstance(label, int) or isinstance(label, bool):
            raise ItemError(f"must be an integer choice index, got {label!r}", "label")
        if not 0 <= label < len(choice_ids):
            raise ItemError(f"{label} is outside the {len(choice_ids)} choices (0..{len(choice_ids) - 1})", "label")
        return MultiChoiceItem(raw, context, choice_ids, label)

    def requests(self, item: MultiChoiceItem) -> tuple[list[tuple[list[int], list[list[int]]]], list[list[int]]]:
        """The scorer requests of one item and, for each, the indices of its choices."""
        chunks = plan_chunks(item.choices, self.max_length)
        if len(chunks) == 1:
            return [(item.context, item.choices)], chunks
        largest = max(packed_length([item.choices[i] for i in chunk]) for chunk in chunks)
        context = truncate_left(item.context, self.max_length - largest - 2)
        return [(context, [item.choices[i] for i in chunk]) for chunk in chunks], chunks

    def predict(self, scorer: Scorer, data: FileData, progress: bool = True) -> list[dict[str, Any]]:
        records = []
        requests, layout = [], []
        for item in data.items:
            item_requests, chunks = self.requests(item)
            layout.append((len(requests), chunks))
            requests.extend(item_requests)
        # The bar counts scorer requests (an item split into chunks is several).
        with self._progress_bar(len(requests), data.path.name, progress, unit="request") as bar:
            scores = scorer.cond_log_prob(requests, self.options, self.config.micro_batch_size, progress=bar.update)
        for item, (first, chunks) in zip(data.items, layout):
            item_scores = [0.0] * len(item.choices)
            for offset, chunk in enumerate(chunks):
                for index, value in zip(chunk, scores[first + offset]):
                    item_scores[index] = value
            prediction = int(np.argmax(item_scores))
            records.append({"item": item.raw, "scores": item_scores, "prediction": prediction,
                            "target": item.label, "correct": prediction == item.label,
                            **choice_lengths(self.choice_texts(item), [len(c) for c in item.choices])})
        return records
