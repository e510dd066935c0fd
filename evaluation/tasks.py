"""Task classes: how each task type reads its files, asks the scorer, and makes records.

A task works file by file. ``load_file`` parses and tokenizes (before the model is
loaded, so bad data fails fast); ``predict`` turns the items into per-item records
in the original order (the unit that later data-parallel sharding and resuming work
on); metrics are computed from records. Custom tasks (``module:`` in a YAML)
subclass one of these and override ``load_item``, ``make_record`` or ``config_class``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Optional, Sequence

import numpy as np
from tqdm import tqdm

from .aggregation import FileScore
from .data import ItemError, check_ids, list_of_texts_or_ids, parse_items, require, text_or_ids
from .errors import InputError, Problem
from .metrics import METRICS, exact_match_score
from .scoring.decoding import DecodingSettings
from .scoring.api import EncodingOptions, Scorer
from .task_config import (BaseTaskConfig, ContinuationTaskConfig, GenerationTaskConfig, LanguageModelTaskConfig,
                          MultiChoiceTaskConfig)
from .tokenization import GLM130BTokenizer, encode_context_and_target


@dataclass
class FileData:
    """Parsed items of one data file plus file-level statistics (LM words/bytes)."""

    path: Path
    items: list[Any]
    lines: list[int]
    stats: dict[str, float] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.items)


class BaseTask:
    """Common machinery; subclasses set ``config_class`` and ``metric_type``."""

    config_class: ClassVar[type[BaseTaskConfig]] = BaseTaskConfig
    metric_type: ClassVar[str] = "mul"

    def __init__(self, config: BaseTaskConfig, tokenizer: GLM130BTokenizer, limit: Optional[int] = None,
                 model_max_length: Optional[int] = None) -> None:
        self.config = config
        self.tokenizer = tokenizer
        self.limit = limit  # score only the first N items (smoke tests); the whole file is still validated
        self.max_length = config.effective_max_length(model_max_length)

    @property
    def options(self) -> EncodingOptions:
        c = self.config
        return EncodingOptions(c.use_task_mask, c.unidirectional, c.use_multitask_encoding, c.max_seq_length)

    def load_file(self, path: Path) -> FileData:
        parsed = parse_items(path, self.load_item)[: self.limit]
        return FileData(path, [item for _, item in parsed], [line for line, _ in parsed])

    def load_item(self, raw: dict[str, Any]) -> Any:
        raise NotImplementedError

    def predict(self, scorer: Scorer, data: FileData, progress: bool = True) -> list[dict[str, Any]]:
        raise NotImplementedError

    def compute_metrics(self, records: Sequence[dict[str, Any]], data: FileData) -> dict[str, float]:
        return {name: METRICS[name].fn(records, data.stats) for name in self.config.metrics}

    def extra_groups(self, scores_by_group: dict[str, list[FileScore]]) -> dict[str, list[FileScore]]:
        """Further groups built from the files of the configured ones, printed and saved
        after them (MMLU's ``overall`` line over its four categories). None by default."""
        return {}

    # helpers ---------------------------------------------------------------------------
    def _progress_bar(self, total: int, description: str, progress: bool, unit: str = "item") -> tqdm:
        """One bar per data file. The whole file goes to the scorer in one call (so a scorer
        may sort it by length and batch it to a token budget); the scorer reports each
        finished batch through ``bar.update``, so the bar shows items/s and the ETA."""
        return tqdm(total=total, desc=description, unit=unit, disable=not progress, leave=False, dynamic_ncols=True)


@dataclass
class MultiChoiceItem:
    raw: dict[str, Any]
    context: list[int]
    choices: list[list[int]]
    label: int


class MultiChoiceTask(BaseTask):
    """Argmax over summed choice log-probs; all choices packed in one sequence."""

    config_class = MultiChoiceTaskConfig
    metric_type = "mul"

    def context_and_choices(self, raw: dict[str, Any]) -> tuple[list[int], list[list[int]]]:
        """Token ids of an item's context and choices. When both are text, the tokenizer's
        ``encode_continuations`` decides how they are split (GLM: each on its own; a causal
        LM: lm-eval's joint rule). An empty choice is scored as <eop> ("the blank is
        empty"), as the reference does."""
        vocab = self.tokenizer.num_tokens
        choices = list_of_texts_or_ids(raw, "choices", self.tokenizer.tokenize, vocab)
        if not choices:
            raise ItemError("empty choice list", "choices_pretokenized" if "choices_pretokenized" in raw else "choices")
        context_text = raw.get("inputs_pretokenized")
        if isinstance(context_text, str) and all(isinstance(c, str) for c in choices):
            context, choice_ids = self.tokenizer.encode_continuations(context_text, choices)
        else:
            context = text_or_ids(raw, "inputs", self.tokenizer.tokenize, vocab)
            choice_ids = [self.tokenizer.tokenize(c) if isinstance(c, str) else c for c in choices]
        return context, [c if c else [self.tokenizer.eop_id] for c in choice_ids]

    def load_item(self, raw: dict[str, Any]) -> MultiChoiceItem:
        context, choice_ids = self.context_and_choices(raw)
        answer_tokens = 1 if all(len(c) == 1 for c in choice_ids) else sum(len(c) for c in choice_ids)
        if answer_tokens + 2 >= self.max_length:
            raise ItemError(f"the choices take {answer_tokens} tokens, too many for a sequence of {self.max_length}",
                            "choices_pretokenized" if "choices_pretokenized" in raw else "choices")
        label = require(raw, "label")
        if not isinstance(label, int) or isinstance(label, bool):
            raise ItemError(f"must be an integer choice index, got {label!r}", "label")
        if not 0 <= label < len(choice_ids):
            raise ItemError(f"{label} is outside the {len(choice_ids)} choices (0..{len(choice_ids) - 1})", "label")
        return MultiChoiceItem(raw, context, choice_ids, label)

    def predict(self, scorer: Scorer, data: FileData, progress: bool = True) -> list[dict[str, Any]]:
        records = []
        with self._progress_bar(len(data), data.path.name, progress) as bar:
            scores = scorer.cond_log_prob([(i.context, i.choices) for i in data.items], self.options,
                                          self.config.micro_batch_size, progress=bar.update)
        for item, item_scores in zip(data.items, scores):
            prediction = int(np.argmax(item_scores))
            records.append({"item": item.raw, "scores": item_scores, "prediction": prediction,
                            "target": item.label, "correct": prediction == item.label})
        return records


@dataclass
class GenerationItem:
    raw: dict[str, Any]
    context: list[int]
    targets: list[str]


class GenerationTask(BaseTask):
    """Generate after the mask, compare with the targets (EM/F1; Accuracy = exact match)."""

    config_class = GenerationTaskConfig
    metric_type = "gen"
    config: GenerationTaskConfig

    def load_item(self, raw: dict[str, Any]) -> GenerationItem:
        vocab = self.tokenizer.num_tokens
        context = text_or_ids(raw, "inputs", self.tokenizer.tokenize, vocab)
        targets = list_of_texts_or_ids(raw, "targets", self.tokenizer.tokenize, vocab, allow_single=True)
        if not targets:
            raise ItemError("empty target list", "targets_pretokenized" if "targets_pretokenized" in raw else "targets")
        texts = [t if isinstance(t, str) else self.tokenizer.detokenize(t) for t in targets]
        return GenerationItem(raw, context, texts)

    def decoding_settings(self) -> DecodingSettings:
        c = self.config
        beam = c.sampling_strategy == "BeamSearchStrategy"
        return DecodingSettings(
            max_gen_length=c.max_gen_length,
            end_ids=(self.tokenizer.eop_id, self.tokenizer.eos_id),
            min_gen_length=c.min_gen_length,
            num_beams=c.num_beams if beam else 1,
            length_penalty=c.length_penalty,
            no_repeat_ngram_size=c.no_repeat_ngram_size if beam else 0,
        )

    def make_record(self, item: GenerationItem, generated: list[int]) -> dict[str, Any]:
        text = self.tokenizer.detokenize(generated)
        correct = any(exact_match_score(text, t) for t in item.targets)
        return {"item": item.raw, "generated_ids": generated, "prediction": text, "targets": item.targets, "correct": correct}

    def predict(self, scorer: Scorer, data: FileData, progress: bool = True) -> list[dict[str, Any]]:
        settings = self.decoding_settings()
        with self._progress_bar(len(data), data.path.name, progress) as bar:
            outputs = scorer.generate_text([i.context for i in data.items], self.options, settings,
                                           self.config.micro_batch_size, progress=bar.update)
        return [self.make_record(item, out) for item, out in zip(data.items, outputs)]


@dataclass
class Document:
    text: str
    tokens: list[int]


class LanguageModelTask(BaseTask):
    """Perplexity of raw text: a whole text file is one document; a ``.jsonl`` file holds
    one document per line in its ``text`` field (the Pile layout)."""

    config_class = LanguageModelTaskConfig
    metric_type = "lm"
    config: LanguageModelTaskConfig

    def load_item(self, raw: dict[str, Any]) -> Document:
        text = require(raw, "text")
        if not isinstance(text, str) or not text.strip():
            raise ItemError("must be a non-empty string", "text")
        return Document(text, self.tokenizer.tokenize(text))

    def load_file(self, path: Path) -> FileData:
        if path.suffix == ".jsonl":
            parsed = parse_items(path, self.load_item)
            data = FileData(path, [item for _, item in parsed], [line for line, _ in parsed])
        else:
            try:
                text = path.read_text(encoding="utf-8")
            except UnicodeDecodeError as exc:
                raise InputError([Problem(path, f"not UTF-8 text: {exc}")]) from None
            if not text.strip():
                raise InputError([Problem(path, "empty text file")])
            data = FileData(path, [Document(text, self.tokenizer.tokenize(text))], [1])
        data.stats = {
            "words": float(sum(len(d.text.split()) for d in data.items)),
            "bytes": float(sum(len(d.text.encode("utf-8")) for d in data.items)),
            "tokens": float(sum(len(d.tokens) for d in data.items)),
        }
        return data

    def predict(self, scorer: Scorer, data: FileData, progress: bool = True) -> list[dict[str, Any]]:
        windows = [(doc_index, w) for doc_index, doc in enumerate(data.items)
                   for w in scorer.lm_windows(doc.tokens, self.options, self.config.generation_length)]
        if self.limit is not None and self.limit < len(windows):
            # Smoke runs: score the first windows and measure words/bytes on what was scored.
            windows = windows[: self.limit]
            text = self.tokenizer.detokenize([t for _, w in windows for t in w.target_ids[0].tolist()])
            data.stats = {"words": float(len(text.split())), "bytes": float(len(text.encode("utf-8"))),
                          "tokens": float(sum(w.target_ids[0].size for _, w in windows))}
        with self._progress_bar(len(windows), data.path.name, progress, unit="window") as bar:
            losses = scorer.calculate_loss([w for _, w in windows], self.config.micro_batch_size, progress=bar.update)
        return [{"document": doc_index, "window": index, "scored_tokens": count, "loss": loss}
                for index, ((doc_index, _), (loss, count)) in enumerate(zip(windows, losses))]


@dataclass
class ContinuationItem:
    raw: dict[str, Any]
    context: list[int]
    target: list[int]


class ContinuationTask(BaseTask):
    """Log-likelihood of a given target continuation (lm-evaluation-harness's ``loglikelihood``
    requests, e.g. its ``lambada_openai``). Items: ``inputs_pretokenized`` (the context) and
    ``targets_pretokenized`` (the continuation: a string, or a list holding one string;
    write it as it follows the context, e.g. with its leading space), or ``inputs`` /
    ``targets`` as token ids. Records carry the target's summed log-probability and
    ``correct`` = the target is the greedy continuation under teacher forcing (every
    target token is the argmax at its position), so ``Accuracy`` is lm-eval's ``acc`` and
    ``ContinuationPPL`` its ``perplexity``. The scorer request is
    ``continuation_scores``; the YAML's use_task_mask / unidirectional choose GLM's encoding
    (unidirectional + [gMASK] is a plain causal LM). YAML: ``type: continuation``."""

    config_class = ContinuationTaskConfig
    metric_type = "continuation"

    def load_item(self, raw: dict[str, Any]) -> ContinuationItem:
        vocab = self.tokenizer.num_tokens
        if "targets_pretokenized" in raw:
            key = "targets_pretokenized"
            target = raw[key]
            if isinstance(target, list) and len(target) == 1:
                target = target[0]
            if not isinstance(target, str) or not target:
                raise ItemError("must be a non-empty string (or a list of one)", key)
            if isinstance(raw.get("inputs_pretokenized"), str):
                context, target_ids = encode_context_and_target(self.tokenizer.tokenize, raw["inputs_pretokenized"], target)
            else:
                context, target_ids = text_or_ids(raw, "inputs", self.tokenizer.tokenize, vocab), self.tokenizer.tokenize(target)
        elif "targets" in raw:
            key = "targets"
            target_ids = check_ids(raw[key], key, vocab)
            context = text_or_ids(raw, "inputs", self.tokenizer.tokenize, vocab)
        else:
            raise ItemError("missing (give 'targets_pretokenized' as text or 'targets' as token ids)", "targets_pretokenized")
        if not target_ids:
            raise ItemError("the target has no tokens", key)
        if len(target_ids) + 2 >= self.max_length:
            raise ItemError(f"the target takes {len(target_ids)} tokens, too many for a sequence of {self.max_length}", key)
        return ContinuationItem(raw, context, target_ids)

    def predict(self, scorer: Scorer, data: FileData, progress: bool = True) -> list[dict[str, Any]]:
        with self._progress_bar(len(data), data.path.name, progress) as bar:
            scores = scorer.continuation_scores([(i.context, i.target) for i in data.items], self.options,
                                                self.config.micro_batch_size, progress=bar.update)
        return [{"item": item.raw, "target_ids": item.target, "loglikelihood": loglikelihood, "greedy": greedy, "correct": greedy}
                for item, (loglikelihood, greedy) in zip(data.items, scores)]


TASK_CLASS_BY_TYPE: dict[str, type[BaseTask]] = {
    "mul": MultiChoiceTask,
    "gen": GenerationTask,
    "lm": LanguageModelTask,
    "continuation": ContinuationTask,
}
