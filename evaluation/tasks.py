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
from typing import Any, Callable, ClassVar, Optional, Sequence

import numpy as np
from tqdm import tqdm

from .aggregation import FileScore
from .data import ItemError, check_ids, list_of_texts_or_ids, parse_items, require, text_or_ids
from .errors import InputError, Problem
from .detokenizers import DETOKENIZERS, original_token_count
from .fewshot import PromptBuilder
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
    sources: list[Path] = field(default_factory=list)  # other files its prompts read (few-shot examples)

    def __len__(self) -> int:
        return len(self.items)


class BaseTask:
    """Common machinery; subclasses set ``config_class`` and ``metric_type``."""

    config_class: ClassVar[type[BaseTaskConfig]] = BaseTaskConfig
    metric_type: ClassVar[str] = "mul"

    def __init__(self, config: BaseTaskConfig, tokenizer: GLM130BTokenizer, limit: Optional[int] = None,
                 model_max_length: Optional[int] = None, data_root: Optional[Path] = None) -> None:
        self.config = config
        self.tokenizer = tokenizer
        self.limit = limit  # score only the first N items (smoke tests); the whole file is still validated
        self.max_length = config.effective_max_length(model_max_length)
        self.data_root = data_root  # the task's data folder: few-shot source templates are relative to it
        self._prompts: Optional[PromptBuilder] = None

    @property
    def options(self) -> EncodingOptions:
        c = self.config
        return EncodingOptions(c.use_task_mask, c.unidirectional, c.use_multitask_encoding, c.max_seq_length,
                               unidirectional_prefix=c.unidirectional_prefix, context_eos=c.context_eos,
                               lm_window_layout=getattr(c, "window_layout", "glm-130b"))

    def load_file(self, path: Path) -> FileData:
        builder = self.prompt_builder()
        prompt = builder.for_file(path)
        parsed = parse_items(path, lambda raw: self.load_item(prompt(raw)))[: self.limit]
        return FileData(path, [item for _, item in parsed], [line for line, _ in parsed], sources=builder.sources(path))

    def prompt_builder(self) -> PromptBuilder:
        """Item description and few-shot examples (``fewshot.py``), applied to each raw item
        before ``load_item`` tokenizes it."""
        if self._prompts is None:
            self._prompts = PromptBuilder(self.config, self.metric_type, self.data_root)
        return self._prompts

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
    choice_texts: Optional[list[str]] = None  # what AccuracyNorm measures (``choice_lengths``); None: from the raw item
    contexts: Optional[list[list[int]]] = None  # partial scoring: one context per choice, ``choices`` = [continuation]


def choice_lengths(texts: Sequence[str], token_counts: Sequence[int]) -> dict[str, list[int]]:
    """The lengths the normalised accuracies divide by, kept in every record so that they are
    computed from the predictions without rescoring. Characters and UTF-8 bytes are those of
    the choice text as the data writes it, less one leading space (lm-evaluation-harness's
    target delimiter: its ``acc_norm`` divides by ``len(choice)`` of the bare choice), so GLM
    (which scores the bare choice after [MASK]) and a causal model (which scores " " + choice)
    divide by the same numbers. Tokens are the ones the backend scored."""
    bare = [t[1:] if t.startswith(" ") else t for t in texts]
    return {"choice_chars": [len(t) for t in bare], "choice_bytes": [len(t.encode("utf-8")) for t in bare],
            "choice_tokens": list(token_counts)}


class MultiChoiceTask(BaseTask):
    """Argmax over summed choice log-probs; all choices packed in one sequence.

    With ``partial_scoring: true`` (lm-evaluation-harness's "multiple input", its WinoGrande
    protocol) the choices are alternative *contexts*: items give ``contexts_pretokenized``
    (a list of strings), ``continuation_pretokenized`` (one string, written as it follows
    each context, e.g. with its leading space) and ``label`` (the right context). Choice i
    scores log p(continuation | context i): a ``continuation_scores`` request per context,
    so GLM puts each context before its [MASK]/[gMASK] and scores the continuation in the
    blank, and a causal model scores it after the context. Records are those of plain
    multiple choice; their choice lengths are the contexts' (as lm-eval's ``acc_norm``, which
    divides by the lengths of ``doc_to_choice``, the contexts, in this mode)."""

    config_class = MultiChoiceTaskConfig
    metric_type = "mul"
    config: MultiChoiceTaskConfig

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

    def contexts_and_continuation(self, raw: dict[str, Any]) -> tuple[list[list[int]], list[list[int]], list[str]]:
        """Partial scoring: per context, its ids and the continuation's ids (lm-eval's joint rule)."""
        contexts = require(raw, "contexts_pretokenized")
        if not isinstance(contexts, list) or not contexts or not all(isinstance(c, str) for c in contexts):
            raise ItemError("must be a non-empty list of strings (the alternative contexts)", "contexts_pretokenized")
        continuation = require(raw, "continuation_pretokenized")
        if not isinstance(continuation, str) or not continuation:
            raise ItemError("must be a non-empty string (the continuation shared by every context)", "continuation_pretokenized")
        pairs = [encode_context_and_target(self.tokenizer.tokenize, c, continuation) for c in contexts]
        if any(not target for _, target in pairs):
            raise ItemError("the continuation has no tokens", "continuation_pretokenized")
        return [c for c, _ in pairs], [t for _, t in pairs], contexts

    def load_item(self, raw: dict[str, Any]) -> MultiChoiceItem:
        contexts = None
        if self.config.partial_scoring:
            contexts, choice_ids, texts = self.contexts_and_continuation(raw)
            answer_tokens = max(len(c) for c in choice_ids)
            key = "continuation_pretokenized"
        else:
            context, choice_ids = self.context_and_choices(raw)
            answer_tokens = 1 if all(len(c) == 1 for c in choice_ids) else sum(len(c) for c in choice_ids)
            key = "choices_pretokenized" if "choices_pretokenized" in raw else "choices"
            texts = None
        if answer_tokens + 2 >= self.max_length:
            raise ItemError(f"the choices take {answer_tokens} tokens, too many for a sequence of {self.max_length}", key)
        label = require(raw, "label")
        if not isinstance(label, int) or isinstance(label, bool):
            raise ItemError(f"must be an integer choice index, got {label!r}", "label")
        if not 0 <= label < len(choice_ids):
            raise ItemError(f"{label} is outside the {len(choice_ids)} choices (0..{len(choice_ids) - 1})", "label")
        if contexts is not None:
            return MultiChoiceItem(raw, [], choice_ids, label, texts, contexts)
        return MultiChoiceItem(raw, context, choice_ids, label, texts)

    def choice_texts(self, item: MultiChoiceItem) -> list[str]:
        """The texts whose lengths normalise the scores: as the item gives them, else the
        data's ``choices_pretokenized`` (custom tasks), else the decoded choice ids."""
        if item.choice_texts is not None:
            return item.choice_texts
        listed = item.raw.get("choices_pretokenized")
        if isinstance(listed, list) and len(listed) == len(item.choices) and all(isinstance(c, str) for c in listed):
            return listed
        return [self.tokenizer.detokenize(c) for c in item.choices]

    def score(self, scorer: Scorer, items: Sequence[MultiChoiceItem], bar: tqdm) -> list[list[float]]:
        if not self.config.partial_scoring:
            return scorer.cond_log_prob([(i.context, i.choices) for i in items], self.options,
                                        self.config.micro_batch_size, progress=bar.update)
        owners = [n for n, item in enumerate(items) for _ in item.choices]
        requests = [(context, target) for item in items for context, target in zip(item.contexts or [], item.choices)]
        results = scorer.continuation_scores(requests, self.options, self.config.micro_batch_size, progress=bar.update)
        scores: list[list[float]] = [[] for _ in items]
        for owner, (loglikelihood, _) in zip(owners, results):
            scores[owner].append(loglikelihood)
        return scores

    def predict(self, scorer: Scorer, data: FileData, progress: bool = True) -> list[dict[str, Any]]:
        records = []
        partial = self.config.partial_scoring
        total = sum(len(i.choices) for i in data.items) if partial else len(data)
        with self._progress_bar(total, data.path.name, progress, unit="context" if partial else "item") as bar:
            scores = self.score(scorer, data.items, bar)
        for item, item_scores in zip(data.items, scores):
            prediction = int(np.argmax(item_scores))
            records.append({"item": item.raw, "scores": item_scores, "prediction": prediction,
                            "target": item.label, "correct": prediction == item.label,
                            **choice_lengths(self.choice_texts(item), [len(c) for c in item.choices])})
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
            stop_strings=tuple(c.until),
            stopped=self.stop_check() if c.until else None,
        )

    def stop_check(self) -> Callable[[Sequence[int]], bool]:
        """Whether the decoded text of some generated ids holds a stop string. The whole
        generation is decoded each time (not a tail of it, as lm-eval's criterion does): a
        tail decoded alone may lose or gain a leading space, and the check must agree with
        the cut ``make_record`` makes on the full text."""
        until, detokenize = tuple(self.config.until), self.tokenizer.detokenize
        return lambda ids: any(stop in detokenize(list(ids)) for stop in until)

    def cut_at_stop(self, text: str) -> tuple[str, Optional[str]]:
        """The text before the first stop string, and that string (as lm-eval's
        ``generate_until``, which splits the decoded text at every stop string in turn)."""
        first, found = len(text), None
        for stop in self.config.until:
            index = text.find(stop)
            if index != -1 and index < first:
                first, found = index, stop
        return text[:first], found

    def make_record(self, item: GenerationItem, generated: list[int]) -> dict[str, Any]:
        text = self.tokenizer.detokenize(generated)
        record: dict[str, Any] = {"item": item.raw, "generated_ids": generated}
        if self.config.until:
            cut, stop = self.cut_at_stop(text)
            if stop is not None:
                record.update(generated_text=text, stopped_at=stop)
            text = cut
        correct = any(exact_match_score(text, t) for t in item.targets)
        record.update(prediction=text, targets=item.targets, correct=correct)
        return record

    def predict(self, scorer: Scorer, data: FileData, progress: bool = True) -> list[dict[str, Any]]:
        settings = self.decoding_settings()
        with self._progress_bar(len(data), data.path.name, progress) as bar:
            outputs = scorer.generate_text([i.context for i in data.items], self.options, settings,
                                           self.config.micro_batch_size, progress=bar.update)
        return [self.make_record(item, out) for item, out in zip(data.items, outputs)]


@dataclass
class Document:
    text: str  # as scored (after detokenization, if any)
    tokens: list[int]
    original_tokens: int  # len(text.strip().split(" ")) before detokenization (THUDM/GLM's count)


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

    def _document(self, text: str) -> Document:
        """A document as scored: detokenized first when the YAML asks (THUDM/GLM's WikiText
        protocol), keeping the original text's token count for ``AdjustedPPL``."""
        original = original_token_count(text)
        if self.config.detokenizer:
            text = DETOKENIZERS[self.config.detokenizer](text)
        return Document(text, self.tokenizer.tokenize(text), original)

    def load_item(self, raw: dict[str, Any]) -> Document:
        text = require(raw, "text")
        if not isinstance(text, str) or not text.strip():
            raise ItemError("must be a non-empty string", "text")
        return self._document(text)

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
            if self.config.documents == "line":  # zero_lm.sh: every line a document, stripped; empty lines skipped
                numbered = [(number, line.strip()) for number, line in enumerate(text.split("\n"), 1) if line.strip()]
                data = FileData(path, [self._document(line) for _, line in numbered], [number for number, _ in numbered])
            else:
                data = FileData(path, [self._document(text)], [1])
        data.stats = self._stats(data.items)
        return data

    @staticmethod
    def _stats(documents: Sequence[Document]) -> dict[str, float]:
        return {
            "words": float(sum(len(d.text.split()) for d in documents)),
            "bytes": float(sum(len(d.text.encode("utf-8")) for d in documents)),
            "tokens": float(sum(len(d.tokens) for d in documents)),
            # THUDM/GLM's "adjusted ppl" normaliser: original tokens less one
            "original_tokens": float(sum(d.original_tokens for d in documents) - 1),
        }

    def predict(self, scorer: Scorer, data: FileData, progress: bool = True) -> list[dict[str, Any]]:
        glm_layout = self.config.window_layout == "glm"  # the first token is never scored: skip 1-token documents
        windows = [(doc_index, w) for doc_index, doc in enumerate(data.items) if not (glm_layout and len(doc.tokens) < 2)
                   for w in scorer.lm_windows(doc.tokens, self.options, self.config.generation_length)]
        if self.limit is not None and self.limit < len(windows):
            # Smoke runs: score the first windows and measure words/bytes on what was scored.
            windows = windows[: self.limit]
            text = self.tokenizer.detokenize([t for _, w in windows for t in w.target_ids[0].tolist()])
            data.stats = {"words": float(len(text.split())), "bytes": float(len(text.encode("utf-8"))),
                          "tokens": float(sum(w.target_ids[0].size for _, w in windows)),
                          "original_tokens": float(len(text.strip().split(" ")))}
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
