"""The ``bloom`` suite: BLOOM-style prompted sets from the MosaicML Eval Gauntlet files.

Raw data: ``RAW/llm_foundry_icl/`` (the in-context-learning jsonl files of MosaicML's
llm-foundry, see its SOURCE.md). Those files are already prompted (``query`` / ``choices``
/ ``gold`` for multiple choice, ``context`` / ``continuation`` otherwise), so every task
first takes the raw fields back out of them, as ``prompts/bloom.yaml`` says (regexes and
option-list parsing), then renders each of its named prompts: OpenBookQA, MathQA,
PubMedQA and a dozen BIG-bench tasks, several prompts per task (promptsource style), one
file per prompt: ``<task>/<Prompt>/<mul|gen>/test.jsonl``.

Every file's item count is checked against the "newline count" column of SOURCE.md.
The conversion is deterministic: raw order is kept; the only reordering (of the options
of the two tasks whose raw gold index is always 0) is a fixed sha256-based order.
"""

from __future__ import annotations

import hashlib
import re
import string
from pathlib import Path
from typing import Any, Callable, Mapping

from .common import PrepareError, TaskData, load_prompts, raw_path, read_jsonl, render

SUITE = "bloom"
RAW_FOLDER = "llm_foundry_icl"
SOURCE_MD = f"{RAW_FOLDER}/SOURCE.md"
SPLIT = "test"
ORIGIN = "mosaicml/llm-foundry scripts/eval/local_data (commit 8c8dd48f)"
LETTERS = string.ascii_uppercase
ANSWER_LINE = "\nAnswer: "
PROMPT_NAME = re.compile(r"[A-Za-z0-9_]+")


def _spec() -> dict[str, Any]:
    spec = load_prompts(SUITE)
    if not isinstance(spec, dict) or not spec:
        raise PrepareError("prompts/bloom.yaml must be a mapping of task name -> task entry")
    return spec


def _raw_files() -> tuple[str, ...]:
    try:
        spec = _spec()
    except PrepareError:  # build() reports the broken prompts file with its message
        return (SOURCE_MD,)
    files = {f"{RAW_FOLDER}/{t['file']}" for t in spec.values() if isinstance(t, dict) and isinstance(t.get("file"), str)}
    return (SOURCE_MD, *sorted(files))


RAW_FILES: tuple[str, ...] = _raw_files()


# ------------------------------------------------------------------------ SOURCE.md counts
def source_counts(raw_dir: Path) -> dict[str, int]:
    """File (relative to llm_foundry_icl/) -> its "newline count" from SOURCE.md's table."""
    path = raw_path(raw_dir, SOURCE_MD, SUITE)
    counts = {}
    for line in path.read_text(encoding="utf-8").splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) == 4 and cells[0].endswith(".jsonl") and cells[2].isdigit():
            counts[cells[0]] = int(cells[2])
    if not counts:
        raise PrepareError(f"{path}: no file table (| file | bytes | newline count | sha256 |) found")
    return counts


# ------------------------------------------------------------------------ field transforms
def strip_section_labels(text: str) -> str:
    """PubMedQA contexts as the Gauntlet wrote them ("BACKGROUND. text" lines) -> the bare
    abstract sentences joined by newlines (as lm-evaluation-harness's pubmedqa shows them)."""
    return "\n".join(re.sub(r"^[A-Z][A-Z0-9 ,&/()\-]*\. ", "", line) for line in text.split("\n"))


TRANSFORMS: dict[str, Callable[[str], str]] = {"strip_section_labels": strip_section_labels}


# ------------------------------------------------------------------------ raw record -> fields
def _match(pattern: str | None, text: str, where: str) -> dict[str, str]:
    if pattern is None:
        return {"text": text.strip()}
    found = re.fullmatch(pattern, text, re.DOTALL)
    if not found:
        raise PrepareError(f"{where}: the text does not have the expected form {pattern!r}: {text[:160]!r}")
    return {k: (v if v is not None else "") for k, v in found.groupdict().items()}


def _split_listed(query: str, count: int, where: str) -> tuple[str, list[str]]:
    """'stem\\nA. x\\nB. y\\nAnswer: ' -> ('stem', ['x', 'y'])."""
    if not query.endswith(ANSWER_LINE):
        raise PrepareError(f"{where}: the query does not end with {ANSWER_LINE!r}: {query[-60:]!r}")
    lines = query[: -len(ANSWER_LINE)].split("\n")
    listed = lines[-count:]
    if len(lines) <= count or any(not line.startswith(f"{LETTERS[i]}. ") for i, line in enumerate(listed)):
        raise PrepareError(f"{where}: the query does not end with a list of {count} options A. .. "
                           f"{LETTERS[count - 1]}. : {query[-200:]!r}")
    return "\n".join(lines[:-count]).rstrip(), [line[3:] for line in listed]


def _check_mc(raw: dict[str, Any], where: str) -> tuple[list[str], int]:
    choices, gold = raw.get("choices"), raw.get("gold")
    if not isinstance(choices, list) or not choices or not all(isinstance(c, str) for c in choices):
        raise PrepareError(f"{where}: 'choices' must be a non-empty list of strings")
    if not isinstance(gold, int) or isinstance(gold, bool) or not 0 <= gold < len(choices):
        raise PrepareError(f"{where}: 'gold' must be an index into the {len(choices)} choices, got {gold!r}")
    return choices, gold


def _text_field(raw: dict[str, Any], key: str, where: str) -> str:
    value = raw.get(key)
    if not isinstance(value, str):
        raise PrepareError(f"{where}: missing or non-string field {key!r} (fields: {sorted(raw)})")
    return value


def parse_record(task: str, parse: Mapping[str, Any], raw: dict[str, Any], index: int, where: str) -> dict[str, Any]:
    """One raw Gauntlet record -> template fields (question, options, answer_index, answer, ...)."""
    kind = parse.get("kind")
    pattern = parse.get("pattern")
    fields: dict[str, Any]
    if kind == "mc":
        choices, gold = _check_mc(raw, where)
        fields = _match(pattern, _text_field(raw, "query", where), where)
        fields.update(options=list(choices), answer_index=gold)
        raw_answer = choices[gold]
    elif kind == "mc_listed":
        choices, gold = _check_mc(raw, where)
        stem, listed = _split_listed(_text_field(raw, "query", where), len(choices), where)
        if choices != list(LETTERS[: len(choices)]) and choices != listed:
            raise PrepareError(f"{where}: the choices {choices!r} are neither letters nor the listed options {listed!r}")
        fields = _match(pattern, stem, where)
        fields.update(options=listed, answer_index=gold)
        raw_answer = listed[gold]
    elif kind == "lm":
        fields = _match(pattern, _text_field(raw, "context", where), where)
        raw_answer = _text_field(raw, "continuation", where)
        fields["answer"] = raw_answer
    else:
        raise PrepareError(f"prompts/bloom.yaml, task {task!r}: parse.kind must be mc, mc_listed or lm, got {kind!r}")
    labels = parse.get("labels")
    if labels:
        if raw_answer not in labels:
            raise PrepareError(f"{where}: answer {raw_answer!r} is not one of the labels {list(labels)}")
        fields["answer"] = labels[raw_answer]
    for name, (source, transform) in (parse.get("derive") or {}).items():
        if source not in fields:
            raise PrepareError(f"prompts/bloom.yaml, task {task!r}: derive.{name} reads field {source!r}, "
                               f"which the item does not have (fields: {sorted(fields)})")
        if transform not in TRANSFORMS:
            raise PrepareError(f"prompts/bloom.yaml, task {task!r}: unknown transform {transform!r}; known: {list(TRANSFORMS)}")
        fields[name] = TRANSFORMS[transform](fields[source])
    if parse.get("shuffle_options") and "options" in fields:
        order = sorted(range(len(fields["options"])),
                       key=lambda i: hashlib.sha256(f"{task}\n{index}\n{fields['options'][i]}".encode("utf-8")).hexdigest())
        fields["answer_index"] = order.index(fields["answer_index"])
        fields["options"] = [fields["options"][i] for i in order]
    return fields


# ------------------------------------------------------------------------ fields -> records
def option_list(options: list[str], prompt: Mapping[str, Any]) -> str:
    fmt = prompt.get("option_format", "{letter}. {option}")
    sep = prompt.get("option_separator", "\n")
    return sep.join(fmt.format(letter=LETTERS[i], letter_lower=LETTERS[i].lower(), option=o) for i, o in enumerate(options))


def render_prompt(task: str, name: str, prompt: Mapping[str, Any], task_type: str, fields: dict[str, Any],
                  index: int) -> dict[str, Any]:
    where = f"prompts/bloom.yaml, task {task!r}, prompt {name!r}"
    values = dict(fields)
    if "options" in fields:
        values["option_list"] = option_list(fields["options"], prompt)
    record: dict[str, Any] = {"inputs_pretokenized": render(prompt["input"], values, where).rstrip()}
    if task_type == "gen":
        record["targets_pretokenized"] = [render(prompt.get("target", "{answer}"), values, where)]
    else:
        choices = prompt.get("choices")
        if choices == "options" or choices == "letters":
            if "options" not in fields:
                raise PrepareError(f"{where}: choices: {choices} needs a task whose items have options")
            options = fields["options"]
            record["choices_pretokenized"] = list(options) if choices == "options" else list(LETTERS[: len(options)])
            record["label"] = fields["answer_index"]
        elif isinstance(choices, dict) and choices:
            if fields.get("answer") not in choices:
                raise PrepareError(f"{where}: item {index}: answer {fields.get('answer')!r} has no verbalizer in {list(choices)}")
            record["choices_pretokenized"] = [str(v) for v in choices.values()]
            record["label"] = list(choices).index(fields["answer"])
        else:
            raise PrepareError(f"{where}: choices must be 'options', 'letters' or a mapping label -> text, got {choices!r}")
    record["idx"] = index
    return record


def build_task(task: str, entry: Mapping[str, Any], raw_dir: Path, counts: Mapping[str, int],
               cache: dict[str, list[dict[str, Any]]]) -> tuple[TaskData, list[int]]:
    """One task's files; also returns the raw line indices it used (to check ``select`` splits)."""
    for key in ("file", "parse", "prompts"):
        if key not in entry:
            raise PrepareError(f"prompts/bloom.yaml, task {task!r}: missing {key!r}")
    relative = entry["file"]
    path = raw_path(raw_dir, f"{RAW_FOLDER}/{relative}", SUITE)
    if relative not in cache:
        cache[relative] = read_jsonl(path)
    raw_records = cache[relative]
    select = entry.get("select")
    if select is None:
        if relative not in counts:
            raise PrepareError(f"{raw_dir / SOURCE_MD} lists no count for {relative}")
        expected = counts[relative]
    elif "count" not in entry:
        raise PrepareError(f"prompts/bloom.yaml, task {task!r}: a task with 'select' needs its 'count'")
    else:
        expected = int(entry["count"])
    task_type = entry.get("type", "mul")
    if task_type not in ("mul", "gen"):
        raise PrepareError(f"prompts/bloom.yaml, task {task!r}: type must be mul or gen, got {task_type!r}")
    items: list[tuple[int, dict[str, Any]]] = []
    for index, raw in enumerate(raw_records):
        where = f"{path}: item {index + 1}"
        if not isinstance(raw, dict):
            raise PrepareError(f"{where}: not a JSON object")
        if select is not None:
            text = raw.get("query", raw.get("context"))
            if not isinstance(text, str) or not re.search(select, text):
                continue
        items.append((index, parse_record(task, entry["parse"], raw, index, where)))
    files: dict[str, list[dict[str, Any]]] = {}
    for name, prompt in entry["prompts"].items():
        if not PROMPT_NAME.fullmatch(name) or not isinstance(prompt, dict) or "input" not in prompt:
            raise PrepareError(f"prompts/bloom.yaml, task {task!r}: prompt {name!r} needs a name of letters/digits/_ "
                               "and an 'input' template")
        files[f"{name}/{task_type}/{SPLIT}.jsonl"] = [
            render_prompt(task, name, prompt, task_type, fields, index) for index, fields in items]
    source = f"{entry.get('source', relative)}; raw file {RAW_FOLDER}/{relative} from {ORIGIN}"
    return TaskData(task, files, {SPLIT: expected}, source), [index for index, _ in items]


def build(raw_dir: Path) -> list[TaskData]:
    spec = _spec()
    counts = source_counts(raw_dir)
    cache: dict[str, list[dict[str, Any]]] = {}
    tasks, used = [], {}
    for task, entry in spec.items():
        data, indices = build_task(task, entry, raw_dir, counts, cache)
        tasks.append(data)
        if "select" in entry:
            used.setdefault(entry["file"], []).extend(indices)
    for relative, indices in used.items():
        total = len(cache[relative])
        if sorted(indices) != list(range(total)):
            raise PrepareError(f"{raw_dir / RAW_FOLDER / relative}: the tasks that select from it cover "
                               f"{len(set(indices))} distinct of its {total} items ({len(indices)} selections); "
                               "each item must belong to exactly one")
        if relative not in counts:
            raise PrepareError(f"{raw_dir / SOURCE_MD} lists no count for {relative}")
        if total != counts[relative]:
            raise PrepareError(f"suite {SUITE!r}: {raw_dir / RAW_FOLDER / relative}: {total} items, "
                               f"the published count (SOURCE.md) is {counts[relative]}")
    return tasks
