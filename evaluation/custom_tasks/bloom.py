"""Short exact answers by generation (the BIG-bench sets of the ``bloom`` suite).

BIG-bench's dyck_languages, operators, simple_arithmetic, cs_algorithms (LCS) and
repeat_copy_logic want an exact short string such as ``} ]``, ``-5`` or ``17``. The
harness's EM/F1 use SQuAD normalisation, which deletes punctuation: every bracket
sequence would normalise to the empty string and match every other one, and ``-5`` would
match ``5``. :class:`ShortAnswerGenerationTask` therefore

* takes the first non-empty line of the generated text as the answer (a model that goes
  on after its answer, e.g. with the next few-shot question, is not penalised for it;
  lm-evaluation-harness stops such tasks at a newline for the same reason), and
* marks it correct when it equals a target exactly, after collapsing runs of whitespace
  and trimming the ends (case and punctuation count): that is ``Accuracy``.

EM/F1 (SQuAD-normalised) may still be listed in a YAML; they then compare the same first
line. The record keeps the full generated text under ``generated_text``.
"""

from __future__ import annotations

from typing import Any

from evaluation.tasks import GenerationItem, GenerationTask


def first_line(text: str) -> str:
    """The first non-empty line of ``text``, trimmed ('' if there is none)."""
    for line in text.splitlines():
        if line.strip():
            return line.strip()
    return ""


def strict_match(prediction: str, target: str) -> bool:
    return " ".join(prediction.split()) == " ".join(target.split())


class ShortAnswerGenerationTask(GenerationTask):
    """``type: gen`` scored on the first generated line, by exact (whitespace-collapsed) match."""

    def make_record(self, item: GenerationItem, generated: list[int]) -> dict[str, Any]:
        text = self.tokenizer.detokenize(generated)
        answer = first_line(text)
        correct = any(strict_match(answer, t) for t in item.targets)
        return {"item": item.raw, "generated_ids": generated, "generated_text": text, "prediction": answer,
                "targets": item.targets, "correct": correct}
