"""Prompts of a data file's items: an item's ``description`` and few-shot examples from the YAML.

A prompt is, as lm-evaluation-harness builds it,

    description + example_1 + separator + ... + example_k + separator + the item's context

where an example is its own context + ``target_delimiter`` + its answer (a multiple-choice
example's labelled choice, a generation example's first target, a continuation example's
target; a partial-scoring example's labelled context + the shared continuation). The
``description`` is an optional item field (MMLU's "The following are multiple choice
questions (with answers) about ..."), put once at the very top, so a 0-shot and a k-shot
prompt of the same item share it; the YAML's ``description`` stands in for items without one
(THUDM/GLM's ``[CLS]`` in front of every LAMBADA passage).

Which examples: ``num_fewshot`` of them from ``fewshot_source``, ``self`` (the same file,
never the item itself, nor a copy of it) or a path template relative to the task's data
folder with the data file's ``{dir}`` (its folder below the task folder), ``{name}`` and
``{stem}`` (MMLU: ``../dev/{dir}/{name}`` reads each subject's dev split). ``first`` takes
the source's first examples in file order; ``random`` draws them with a generator seeded by
``fewshot_seed`` and the item's identity (its ``id`` field, else a hash of its content).
So an item's prompt depends on nothing but the item, the source and the YAML: not on the
rank, the world size, the order of the items, ``--limit`` or a resume. lm-evaluation-harness's
sampler is one ``Random(seed)`` per rank consumed in order, with a TODO to offset it by rank;
its prompts move with the world size.
"""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any, Callable, Optional, Sequence

from .data import ItemError, read_jsonl
from .digests import digest_of
from .errors import InputError, Problem
from .task_config import BaseTaskConfig

SELF = "self"
Raw = dict[str, Any]


def item_identity(raw: Raw) -> str:
    """The item's ``id`` field, or a hash of its content (key order does not matter)."""
    if "id" in raw and isinstance(raw["id"], (str, int)) and not isinstance(raw["id"], bool):
        return f"id:{raw['id']}"
    return "sha:" + digest_of(raw)


def source_path(config: BaseTaskConfig, data_root: Optional[Path], data_file: Path) -> Optional[Path]:
    """The file the examples of ``data_file`` come from (None: the data file itself).
    Without a task folder (a task built by hand), the data file's folder stands for it."""
    if not config.fewshot_source or config.fewshot_source == SELF:
        return None
    data_root = data_root if data_root is not None else data_file.parent
    relative = data_file.relative_to(data_root)
    folder = relative.parent.as_posix()
    try:
        text = config.fewshot_source.format(dir=folder if folder != "." else "", name=relative.name, stem=relative.stem)
    except (KeyError, IndexError, ValueError) as exc:
        raise ValueError(f"fewshot_source {config.fewshot_source!r}: only {{dir}}, {{name}} and {{stem}} can be filled in ({exc})") from None
    return (data_root / text).resolve()


def _text(raw: Raw, key: str) -> str:
    value = raw.get(key)
    if isinstance(value, list) and len(value) >= 1 and isinstance(value[0], str):
        value = value[0]
    if not isinstance(value, str):
        raise ItemError("few-shot prompts are built from text: give this field as a string", key)
    return value


def context_text(raw: Raw) -> str:
    return _text(raw, "inputs_pretokenized")


def answer_text(raw: Raw, kind: str) -> str:
    """The answer an example shows after its context."""
    if kind == "mul":
        choices, label = raw.get("choices_pretokenized"), raw.get("label")
        if not isinstance(choices, list) or not isinstance(label, int) or not 0 <= label < len(choices) or not isinstance(choices[label], str):
            raise ItemError("a few-shot example needs text choices and a valid label", "choices_pretokenized")
        return choices[label]
    return _text(raw, "targets_pretokenized")


def render_example(raw: Raw, kind: str, partial: bool, target_delimiter: str) -> str:
    """One solved example (see the module doc); ``kind`` is the task's metric type."""
    if partial:
        contexts, label = raw.get("contexts_pretokenized"), raw.get("label")
        if not isinstance(contexts, list) or not isinstance(label, int) or not 0 <= label < len(contexts):
            raise ItemError("a few-shot example needs its contexts and a valid label", "contexts_pretokenized")
        return contexts[label] + target_delimiter + _text(raw, "continuation_pretokenized")
    return context_text(raw) + target_delimiter + answer_text(raw, kind)


class PromptBuilder:
    """Turns the raw items of one data file into the raw items the task tokenizes: the
    context fields carry the whole prompt, and ``fewshot`` lists the examples' identities."""

    def __init__(self, config: BaseTaskConfig, kind: str, data_root: Optional[Path]) -> None:
        self.config = config
        self.kind = kind
        self.partial = bool(getattr(config, "partial_scoring", False))
        self.data_root = data_root
        self._pools: dict[Path, list[Raw]] = {}

    def _pool(self, path: Path) -> list[Raw]:
        if path not in self._pools:
            if not path.is_file():
                raise InputError([Problem(path, f"the few-shot source (fewshot_source {self.config.fewshot_source!r}) does not exist")])
            pool, problems = [], []
            for number, raw in read_jsonl(path):
                if isinstance(raw, ItemError):
                    problems.append(Problem(path, str(raw), number))
                else:
                    pool.append(raw)
            if problems:
                raise InputError(problems)
            self._pools[path] = pool
        return self._pools[path]

    def sources(self, data_file: Path) -> list[Path]:
        """Files other than ``data_file`` that its prompts read (for the run's identity)."""
        source = source_path(self.config, self.data_root, data_file) if self.config.num_fewshot else None
        return [source] if source is not None else []

    def for_file(self, data_file: Path) -> Callable[[Raw], Raw]:
        """A function raw item -> prompted raw item, for the items of ``data_file``."""
        k = self.config.num_fewshot
        if k == 0:
            return self._apply_description
        source = source_path(self.config, self.data_root, data_file)
        pool = self._pool(source if source is not None else data_file)
        identities = [item_identity(r) for r in pool]
        origin = source if source is not None else data_file
        everyone = list(range(len(pool)))
        positions: dict[str, list[int]] = {}  # identity -> its positions in the pool (copies of an item share one)
        for position, identity in enumerate(identities):
            positions.setdefault(identity, []).append(position)

        def build(raw: Raw) -> Raw:
            own = item_identity(raw)
            candidates = everyone
            if source is None and own in positions:  # never the item itself (nor a copy): the same list less those
                candidates = everyone.copy()
                for position in reversed(positions[own]):
                    del candidates[position]
            if len(candidates) < k:
                raise ItemError(f"num_fewshot is {k} but {origin} holds only {len(candidates)} other items to draw from", "num_fewshot")
            if self.config.fewshot_sampler == "first":
                chosen = candidates[:k]
            else:
                chosen = random.Random(f"{self.config.fewshot_seed}:{own}").sample(candidates, k)
            examples = []
            for index in chosen:
                try:
                    examples.append(render_example(pool[index], self.kind, self.partial, self.config.target_delimiter))
                except ItemError as exc:
                    raise ItemError(f"few-shot example {identities[index]} of {origin}: {exc}", exc.field) from None
            description = raw.get("description", self.config.description or "")
            prefix = str(description) + "".join(e + self.config.fewshot_separator for e in examples)
            return self._with_prefix(raw, prefix, [identities[i] for i in chosen])

        return build

    def _apply_description(self, raw: Raw) -> Raw:
        if "description" not in raw:
            if self.config.description is None:
                return raw
            return self._with_prefix(raw, self.config.description, None)
        if not isinstance(raw["description"], str):
            raise ItemError("must be a string (the text put before the item's context)", "description")
        return self._with_prefix(raw, raw["description"], None)

    def _with_prefix(self, raw: Raw, prefix: str, fewshot: Optional[Sequence[str]]) -> Raw:
        prompted = {key: value for key, value in raw.items() if key != "description"}
        if self.partial:
            contexts = raw.get("contexts_pretokenized")
            if not isinstance(contexts, list) or not all(isinstance(c, str) for c in contexts):
                raise ItemError("must be a list of strings (the alternative contexts)", "contexts_pretokenized")
            prompted["contexts_pretokenized"] = [prefix + c for c in contexts]
        else:
            prompted["inputs_pretokenized"] = prefix + context_text(raw)
        if fewshot is not None:
            prompted["fewshot"] = list(fewshot)
        return prompted
