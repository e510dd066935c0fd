"""LAMBADA under GLM-130B's own protocol: generate, then judge the first whole word.

GLM-130B (THUDM/GLM-130B ``tasks/lambada/task.py`` and ``strategy.py``) evaluates LAMBADA
as a generation task: the passage without its last word, ``[gMASK]``, beam search with 16
beams and at most 5 new tokens, punctuation banned as the first token; the first word of
the best generation is compared with the target word (exact match after stripping outer
whitespace, case-sensitive). :class:`LAMBADA` does the same on top of
:class:`~evaluation.tasks.GenerationTask`, with these choices (see tasks/lambada/README.md):

* Banned first tokens: every vocabulary entry that renders as punctuation (possibly with
  spaces) when it follows a word (``"."``, ``" ."``, ``"``"``, ...), found by decoding
  each id after a probe word, so that it works for every tokenizer. A bare space piece
  is not banned (SentencePiece spells many words as ``"▁"`` + pieces). The reference
  banned the single-token spellings of ``string.punctuation`` characters (plus three
  hard-coded icetk ids) at *every* step, and multi-token spellings as a prefix; here the
  ban applies to the first step (``DecodingSettings.banned_first_ids``) and trailing
  punctuation of the first word is dropped instead (``"signs."`` counts as ``"signs"``),
  which is what banning it at later steps achieves for the first word.
* The first word is the first *whitespace*-separated word (the reference split on a
  single space only, so ``"signs\\nThe"`` was one word).
* The reference preferred, among all finished beams, one whose text was ``"word <punct>"``;
  our beam search returns the best beam only, so that rule is not reproduced.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from ..prepare.lambada import is_punctuation, strip_punctuation  # the rule that cut the targets
from ..scoring.decoding import DecodingSettings
from ..tasks import GenerationItem, GenerationTask

__all__ = ["LAMBADA", "first_word", "is_punctuation", "punctuation_token_ids", "strip_punctuation"]

PROBE_WORD = "a"


def first_word(text: str) -> str:
    """The first whitespace-separated word of a generation, trailing punctuation removed."""
    words = text.split()
    if not words:
        return ""
    word = words[0]
    end = len(word)
    while end > 0 and is_punctuation(word[end - 1]):
        end -= 1
    return word[:end]


_BANNED_CACHE: dict[int, tuple[Any, tuple[int, ...]]] = {}


def punctuation_token_ids(tokenizer: Any) -> tuple[int, ...]:
    """Ids of every token that, written after a word, adds punctuation and nothing else
    but whitespace (``"."``, ``"▁."``, ``"Ġ,"``...). Whitespace-only tokens are *not*
    included: SentencePiece spells many words as a bare ``"▁"`` followed by the word's
    pieces, so banning the bare space would ban those words. Special ids are never included.

    Each id is decoded after the ids of a probe word and the probe's own text is removed,
    so the space that SentencePiece's ``"▁."`` or GPT-2's ``"Ġ."`` adds is seen (a text's
    first ``"▁"`` decodes to nothing). Cached per tokenizer object.
    """
    cached = _BANNED_CACHE.get(id(tokenizer))
    if cached is not None and cached[0] is tokenizer:
        return cached[1]
    probe = list(tokenizer.tokenize(PROBE_WORD))
    probe_text = tokenizer.detokenize(probe)
    special = set(tokenizer.special_tokens.values())
    banned = []
    for token in range(tokenizer.num_tokens):
        if token in special:
            continue
        text = tokenizer.detokenize([*probe, token])
        if not text.startswith(probe_text):
            continue
        added = text[len(probe_text):]
        if added.strip() and "\ufffd" not in added and all(ch.isspace() or is_punctuation(ch) for ch in added):
            banned.append(token)
    result = tuple(banned)
    _BANNED_CACHE[id(tokenizer)] = (tokenizer, result)
    return result


class LAMBADA(GenerationTask):
    """GLM-130B's LAMBADA: beam search, punctuation banned first, first word vs target.

    Items are ordinary generation items (``inputs_pretokenized``: the passage without its
    last word; ``targets_pretokenized``: ``[word]``). Records add ``generation`` (the
    decoded text) next to ``prediction`` (its first word); ``correct`` is the exact,
    case-sensitive match of prediction and target, both without outer whitespace and
    outer punctuation."""

    def decoding_settings(self) -> DecodingSettings:
        settings = super().decoding_settings()
        return dataclasses.replace(settings, banned_first_ids=punctuation_token_ids(self.tokenizer))

    def make_record(self, item: GenerationItem, generated: list[int]) -> dict[str, Any]:
        text = self.tokenizer.detokenize(generated)
        word = first_word(text)
        correct = bool(word) and any(word == strip_punctuation(t.strip()) for t in item.targets)
        return {"item": item.raw, "generated_ids": generated, "generation": text, "prediction": word,
                "targets": item.targets, "correct": correct}
