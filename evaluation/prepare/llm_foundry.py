"""The ``llm-foundry`` suite: five MosaicML Eval Gauntlet tasks in llm-foundry's own formats.

Raw data: ``RAW/llm_foundry_icl/`` (the in-context-learning jsonl files of mosaicml/llm-foundry
``scripts/eval/local_data`` at commit 8c8dd48f, see its SOURCE.md and EVAL_GAUNTLET.md). Unlike
the ``bloom`` suite, which takes the raw questions back out of these files and re-prompts them,
this suite keeps the Gauntlet's own prompt text, so that an evaluation here can be put next to
llm-foundry's published Gauntlet numbers:

``triviaqa/Gauntlet/gen/test.jsonl`` (3000, ``world_knowledge/triviaqa_sm_sub.jsonl``)
    ``inputs_pretokenized`` = the raw ``context`` ("Question: ...\\nAnswer:"),
    ``targets_pretokenized`` = the raw ``answer`` first, then its ``aliases`` in raw order
    (stripped, duplicates removed): any of them counts; few-shot examples show the first.
``jeopardy/Gauntlet/gen/<category>.jsonl`` (2117 in 5 files, ``world_knowledge/jeopardy_all.jsonl``)
    ``context`` ("CATEGORY: clue") + ``"\\nAnswer:"`` (the Gauntlet's continuation delimiter
    ``"\\nAnswer: "`` without its trailing space, which llm-foundry strips too), targets
    ``[continuation]``; one file per ``category`` (the field is kept), as llm-foundry's
    ``has_categories`` splits it, so few-shot examples drawn from the same file share the
    category, as in the Gauntlet.
``gsm8k/Gauntlet/gen/test.jsonl`` (1319, ``symbolic_problem_solving/gsm8k_prepended_8shot.jsonl``)
    ``context`` (8 chain-of-thought shots "Q: ...\\n\\nA: ... The answer is N.", then
    "Q: question") + ``"\\n\\nA:"``, targets ``[answer]`` (the final number as written, "2,125").
``svamp/Q_A/gen/test.jsonl`` (300, ``symbolic_problem_solving/svamp.jsonl``)
    ``"Q: " + context + "\\nA:"``, targets ``[answer]``; 0-shot items, the YAML adds the shots.
``wsc273/Gauntlet/mul/test.jsonl`` (273, ``language_understanding/winograd_wsc.jsonl``)
    partial scoring (lm-eval's "multiple input"): ``contexts_pretokenized`` = the two raw
    ``context_options`` (the sentence up to the pronoun, each with one candidate),
    ``continuation_pretokenized`` = ``" " + continuation`` (the shared rest of the sentence, as
    it follows each context), ``label`` = ``gold``.

Every record keeps ``id``, the item's 0-based position in its raw file. Templates are in
``prompts/llm_foundry.yaml``. Item counts are checked against the figures of EVAL_GAUNTLET.md
(for Jeopardy, the five per-category counts, which add up to its 2,117); every malformed raw
line is an error that names the file and the line.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any, Callable

from .common import PrepareError, TaskData, load_prompts, raw_path, read_jsonl_lines, render

SUITE = "llm-foundry"
PROMPTS = "llm_foundry"
RAW_FOLDER = "llm_foundry_icl"
SPLIT = "test"
ORIGIN = "mosaicml/llm-foundry scripts/eval/local_data (commit 8c8dd48f, Apache-2.0 repository)"
PROMPT_NAME = re.compile(r"[A-Za-z0-9_]+")

TRIVIAQA = "world_knowledge/triviaqa_sm_sub.jsonl"
JEOPARDY = "world_knowledge/jeopardy_all.jsonl"
GSM8K = "symbolic_problem_solving/gsm8k_prepended_8shot.jsonl"
SVAMP = "symbolic_problem_solving/svamp.jsonl"
WSC = "language_understanding/winograd_wsc.jsonl"
RAW_FILES: tuple[str, ...] = tuple(f"{RAW_FOLDER}/{f}" for f in (TRIVIAQA, JEOPARDY, GSM8K, SVAMP, WSC))

# Published item counts (EVAL_GAUNTLET.md: "3,000 questions", "2,117 Jeopardy questions",
# "1,319 ... problems", "300 ...", "273 scenarios"; SOURCE.md's newline counts agree).
PUBLISHED = {"triviaqa": 3000, "jeopardy": 2117, "gsm8k": 1319, "svamp": 300, "wsc273": 273}
# Jeopardy's five categories (EVAL_GAUNTLET.md names them; the per-category counts are those of
# jeopardy_all.jsonl at the commit above, and add up to the published 2,117).
JEOPARDY_CATEGORIES = {"american_history": 413, "literature": 490, "science": 476,
                       "word_origins": 365, "world_history": 373}
GSM8K_SHOTS = 8

SOURCES = {
    "triviaqa": "TriviaQA (Joshi et al. 2017; Apache-2.0), the Gauntlet's 3000-question subsample "
                "with answers clipped to 10 tokens",
    "jeopardy": "Jeopardy! clues (HF dataset 'jeopardy'; no license stated), the Gauntlet's 5-category selection",
    "gsm8k": "GSM8K test (Cobbe et al. 2021; MIT) with the 8 chain-of-thought shots of Wei et al. 2022 prepended",
    "svamp": "SVAMP (Patel et al. 2021; MIT), the Gauntlet's 300 problems",
    "wsc273": "Winograd Schema Challenge WSC273 (Levesque et al. 2012; CC BY 4.0), as llm-foundry's schema items",
}
NUMBER = re.compile(r"-?\d{1,3}(?:,\d{3})+(?:\.\d+)?|-?\d+(?:\.\d+)?")

Raw = tuple[str, dict[str, Any]]  # ("path:line", record)


# ------------------------------------------------------------------------ reading
def read_records(raw_dir: Path, relative: str) -> list[Raw]:
    """Every non-blank line of a raw file as (``"path:line"``, object); errors name file and line."""
    path = raw_path(raw_dir, f"{RAW_FOLDER}/{relative}", SUITE)
    return [(f"{path}:{number}", value) for number, value in read_jsonl_lines(path)]


def text(raw: dict[str, Any], key: str, where: str) -> str:
    """A non-empty string field, stripped (llm-foundry's loader strips every string field)."""
    value = raw.get(key)
    if not isinstance(value, str) or not value.strip():
        got = "missing" if key not in raw else f"{type(value).__name__} {value!r}"[:80]
        raise PrepareError(f"{where}: field {key!r} must be a non-empty string, got {got} (fields: {sorted(raw)})")
    return value.strip()


def texts(raw: dict[str, Any], key: str, where: str) -> list[str]:
    value = raw.get(key)
    if not isinstance(value, list) or not value or not all(isinstance(v, str) and v.strip() for v in value):
        got = "missing" if key not in raw else repr(value)[:80]
        raise PrepareError(f"{where}: field {key!r} must be a non-empty list of non-empty strings, got {got}")
    return [v.strip() for v in value]


def number(raw: dict[str, Any], key: str, where: str) -> str:
    value = text(raw, key, where)
    if not NUMBER.fullmatch(value):
        raise PrepareError(f"{where}: field {key!r} must be a number (e.g. 18, -3, 2,125), got {value!r}")
    return value


def unique(values: list[str]) -> list[str]:
    return list(dict.fromkeys(values))


# ------------------------------------------------------------------------ templates
def templates() -> dict[str, dict[str, str]]:
    spec = load_prompts(PROMPTS)
    where = f"prompts/{PROMPTS}.yaml"
    if not isinstance(spec, dict):
        raise PrepareError(f"{where} must be a mapping of task name -> {{prompt, input}}")
    for task in ("triviaqa", "jeopardy", "gsm8k", "svamp"):
        entry = spec.get(task)
        if not isinstance(entry, dict) or not isinstance(entry.get("input"), str) \
                or not PROMPT_NAME.fullmatch(str(entry.get("prompt", ""))):
            raise PrepareError(f"{where}: task {task!r} needs 'prompt' (letters, digits, _) and an 'input' template")
    return spec


# ------------------------------------------------------------------------ raw record -> item
def triviaqa_item(index: int, raw: dict[str, Any], where: str, template: str) -> dict[str, Any]:
    context = text(raw, "context", where)
    if not re.fullmatch(r"Question: .+\nAnswer:", context, re.DOTALL):
        raise PrepareError(f"{where}: 'context' is not of the form 'Question: ...\\nAnswer:': {context[:120]!r}")
    targets = unique([text(raw, "answer", where), *texts(raw, "aliases", where)])
    return {"inputs_pretokenized": render(template, {"context": context}, f"prompts/{PROMPTS}.yaml triviaqa"),
            "targets_pretokenized": targets, "id": index}


def jeopardy_item(index: int, raw: dict[str, Any], where: str, template: str) -> dict[str, Any]:
    context = text(raw, "context", where)
    category = text(raw, "category", where)
    if category not in JEOPARDY_CATEGORIES:
        raise PrepareError(f"{where}: unknown category {category!r}; the Gauntlet's are {sorted(JEOPARDY_CATEGORIES)}")
    label, _, clue = context.partition(": ")
    if label.lower().replace(" ", "_") != category or not clue.strip():
        raise PrepareError(f"{where}: 'context' should read '{category.upper().replace('_', ' ')}: clue', got {context[:80]!r}")
    return {"inputs_pretokenized": render(template, {"context": context}, f"prompts/{PROMPTS}.yaml jeopardy"),
            "targets_pretokenized": [text(raw, "continuation", where)], "category": category, "id": index}


def gsm8k_item(index: int, raw: dict[str, Any], where: str, template: str) -> dict[str, Any]:
    context = text(raw, "context", where)
    shots = context.count("\n\nA: ")
    if shots != GSM8K_SHOTS or not context.startswith("Q: ") or context.rfind("\n\nQ: ") < context.rfind("\n\nA: "):
        raise PrepareError(f"{where}: 'context' should hold {GSM8K_SHOTS} shots 'Q: ...\\n\\nA: ...' and end with "
                           f"'Q: question' ({shots} shots found): ...{context[-80:]!r}")
    return {"inputs_pretokenized": render(template, {"context": context}, f"prompts/{PROMPTS}.yaml gsm8k"),
            "targets_pretokenized": [number(raw, "answer", where)], "id": index}


def svamp_item(index: int, raw: dict[str, Any], where: str, template: str) -> dict[str, Any]:
    context = text(raw, "context", where)
    return {"inputs_pretokenized": render(template, {"context": context}, f"prompts/{PROMPTS}.yaml svamp"),
            "targets_pretokenized": [number(raw, "answer", where)], "id": index}


def wsc_item(index: int, raw: dict[str, Any], where: str) -> dict[str, Any]:
    options = texts(raw, "context_options", where)
    if len(options) != 2 or options[0] == options[1]:
        raise PrepareError(f"{where}: 'context_options' must be two different contexts, got {len(options)}")
    gold = raw.get("gold")
    if not isinstance(gold, int) or isinstance(gold, bool) or not 0 <= gold < len(options):
        raise PrepareError(f"{where}: 'gold' must be 0 or 1 (an index into context_options), got {gold!r}")
    return {"contexts_pretokenized": options, "continuation_pretokenized": " " + text(raw, "continuation", where),
            "label": gold, "id": index}


def convert(records: list[Raw], make: Callable[[int, dict[str, Any], str], dict[str, Any]]) -> list[dict[str, Any]]:
    return [make(index, raw, where) for index, (where, raw) in enumerate(records)]


def source(task: str, relative: str) -> str:
    return f"{SOURCES[task]}; raw file {RAW_FOLDER}/{relative} from {ORIGIN}"


# ------------------------------------------------------------------------ tasks
def build(raw_dir: Path) -> list[TaskData]:
    spec = templates()

    def single(task: str, relative: str, kind: str, make: Callable[..., dict[str, Any]], prompt: str) -> TaskData:
        items = convert(read_records(raw_dir, relative), make)
        return TaskData(task, {f"{prompt}/{kind}/{SPLIT}.jsonl": items}, {SPLIT: PUBLISHED[task]}, source(task, relative))

    def templated(task: str, make: Callable[..., dict[str, Any]]) -> Callable[[int, dict[str, Any], str], dict[str, Any]]:
        return lambda index, raw, where: make(index, raw, where, spec[task]["input"])

    tasks = [
        single("triviaqa", TRIVIAQA, "gen", templated("triviaqa", triviaqa_item), spec["triviaqa"]["prompt"]),
        single("gsm8k", GSM8K, "gen", templated("gsm8k", gsm8k_item), spec["gsm8k"]["prompt"]),
        single("svamp", SVAMP, "gen", templated("svamp", svamp_item), spec["svamp"]["prompt"]),
        single("wsc273", WSC, "mul", wsc_item, "Gauntlet"),
    ]

    jeopardy = convert(read_records(raw_dir, JEOPARDY), templated("jeopardy", jeopardy_item))
    if len(jeopardy) != PUBLISHED["jeopardy"]:
        raise PrepareError(f"suite {SUITE!r}: {raw_dir / RAW_FOLDER / JEOPARDY}: {len(jeopardy)} items, "
                           f"the published count is {PUBLISHED['jeopardy']}")
    prompt = spec["jeopardy"]["prompt"]
    files = {f"{prompt}/gen/{category}.jsonl": [r for r in jeopardy if r["category"] == category]
             for category in JEOPARDY_CATEGORIES}
    tasks.append(TaskData("jeopardy", files, dict(JEOPARDY_CATEGORIES), source("jeopardy", JEOPARDY)))
    return tasks
