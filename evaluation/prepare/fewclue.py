"""The FewCLUE suite: the nine FewCLUE tasks, zero-shot, as multiple choice.

Raw data: ``fewclue/<task>/{test_public,dev_few_all}.json`` (jsonl) from
github.com/CLUEbenchmark/FewCLUE ``datasets/`` (see fewclue/SOURCE.md). ``test_public`` is
the labelled public test set that FewCLUE evaluates on; ``dev_few_all`` is the union of the
five few-shot dev splits (the "dev" set on which the GLM-130B paper, following ERNIE 3.0
Titan, reported zero-shot results). The train splits are not used (zero-shot).

Choices: fixed Chinese verbalizers from ``prompts/fewclue.yaml`` (bustm, cluewsc, csl,
eprstmt, ocnli), the item's candidate idioms (chid), or every label name of the task (tnews:
label_zh of label_index2en2zh.json; csldcp: labels_all.txt; iflytek: the label_des of each
label id, gathered over the task's files, which have no separate label file).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable

from .clue import classification_files, label_index, require_count, require_fields, task_prompts
from .common import PrepareError, TaskData, raw_path, read_jsonl

SUITE = "fewclue"
SPLITS = ("test_public", "dev_few_all")

# Published item counts (fewclue/SOURCE.md line counts; one JSON object per line).
COUNTS: dict[str, dict[str, int]] = {
    "bustm": {"test_public": 1772, "dev_few_all": 160},
    "chid": {"test_public": 2002, "dev_few_all": 202},
    "cluewsc": {"test_public": 976, "dev_few_all": 159},
    "csl": {"test_public": 2838, "dev_few_all": 160},
    "csldcp": {"test_public": 1784, "dev_few_all": 2068},
    "eprstmt": {"test_public": 610, "dev_few_all": 160},
    "iflytek": {"test_public": 1749, "dev_few_all": 1373},
    "ocnli": {"test_public": 2520, "dev_few_all": 160},
    "tnews": {"test_public": 2010, "dev_few_all": 1098},
}
LABEL_COUNTS = {"tnews": 15, "csldcp": 67, "iflytek": 119}
TNEWS_LABELS = "fewclue/tnews/label_index2en2zh.json"
CSLDCP_LABELS = "fewclue/csldcp/labels_all.txt"
IFLYTEK_LABEL_SOURCES = ("train_few_all", "dev_few_all", "test_public")
IDIOM_MARK = "#idiom#"
BLANK = "____"

RAW_FILES: tuple[str, ...] = (
    *(f"fewclue/{task}/{split}.json" for task in COUNTS for split in SPLITS),
    TNEWS_LABELS, CSLDCP_LABELS, "fewclue/iflytek/train_few_all.json",
)

SOURCE = ("FewCLUE {task} (github.com/CLUEbenchmark/FewCLUE datasets/{task}/{{test_public,dev_few_all}}.json; "
          "no license stated in the repository, research use)")


def raw_file(raw_dir: Path, task: str, split: str) -> Path:
    return raw_path(raw_dir, f"fewclue/{task}/{split}.json", SUITE)


def read_split(raw_dir: Path, task: str, split: str) -> tuple[Path, list[dict[str, Any]]]:
    path = raw_file(raw_dir, task, split)
    rows = read_jsonl(path)
    require_count(path, len(rows), COUNTS[task][split])
    return path, rows


# ------------------------------------------------------------------ label names
def tnews_labels(raw_dir: Path) -> tuple[list[str], list[str]]:
    """(raw label ids, Chinese names) in the label file's order."""
    path = raw_path(raw_dir, TNEWS_LABELS, SUITE)
    rows = read_jsonl(path)
    for i, row in enumerate(rows):
        require_fields(path, i, row, ("label", "label_zh"))
    ids, names = [str(r["label"]) for r in rows], [r["label_zh"] for r in rows]
    check_label_names(path, "tnews", ids, names)
    return ids, names


def csldcp_labels(raw_dir: Path) -> tuple[list[str], list[str]]:
    path = raw_path(raw_dir, CSLDCP_LABELS, SUITE)
    names = [line.strip() for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    check_label_names(path, "csldcp", names, names)
    return names, names


def iflytek_labels(raw_dir: Path) -> tuple[list[str], list[str]]:
    """Label ids 0..118 and their names (label_des), gathered over the task's files."""
    names: dict[int, str] = {}
    for split in IFLYTEK_LABEL_SOURCES:
        path = raw_file(raw_dir, "iflytek", split)
        for i, row in enumerate(read_jsonl(path)):
            require_fields(path, i, row, ("label", "label_des"))
            label = int(row["label"])
            if names.setdefault(label, row["label_des"]) != row["label_des"]:
                raise PrepareError(f"{path}: item {i + 1}: label {label} is named {row['label_des']!r} here "
                                   f"and {names[label]!r} elsewhere")
    ids = sorted(names)
    where = raw_path(raw_dir, "fewclue/iflytek", SUITE)
    if ids != list(range(len(ids))):
        raise PrepareError(f"{where}: label ids are not 0..{len(ids) - 1}: {ids}")
    check_label_names(where, "iflytek", [str(i) for i in ids], [names[i] for i in ids])
    return [str(i) for i in ids], [names[i] for i in ids]


def check_label_names(path: Path, task: str, ids: list[str], names: list[str]) -> None:
    if len(ids) != LABEL_COUNTS[task]:
        raise PrepareError(f"{path}: {len(ids)} labels, FewCLUE {task} has {LABEL_COUNTS[task]}")
    if len(set(ids)) != len(ids) or len(set(names)) != len(names) or not all(names):
        raise PrepareError(f"{path}: label ids or names are empty or repeated")


LABEL_NAMES: dict[str, Callable[[Path], tuple[list[str], list[str]]]] = {
    "tnews": tnews_labels, "csldcp": csldcp_labels, "iflytek": iflytek_labels,
}


# ------------------------------------------------------------------ per-task fields
def pair_fields(row: dict[str, Any]) -> dict[str, Any]:
    return row


def cluewsc_fields(row: dict[str, Any]) -> dict[str, Any]:
    target, text = row["target"], row["text"]
    start, pronoun = int(target["span2_index"]), target["span2_text"]
    if text[start : start + len(pronoun)] != pronoun:
        raise ValueError(f"span2 {pronoun!r} is not at index {start}")
    marked = f"{text[:start]}【{pronoun}】{text[start + len(pronoun):]}"
    return {"text": text, "span1": target["span1_text"], "span2": pronoun, "marked_text": marked}


def csl_fields(row: dict[str, Any]) -> dict[str, Any]:
    return {"abst": row["abst"], "keywords": "、".join(row["keyword"])}


def chid_fields(row: dict[str, Any]) -> dict[str, Any]:
    if row["content"].count(IDIOM_MARK) != 1:
        raise ValueError(f"the content has {row['content'].count(IDIOM_MARK)} {IDIOM_MARK} blanks, expected 1")
    return {"text": row["content"].replace(IDIOM_MARK, BLANK), "candidates": "、".join(row["candidates"])}


# task -> (fields needed in the raw item, label field, id field, fields for the template)
TASKS: dict[str, tuple[tuple[str, ...], str, str, Callable[[dict[str, Any]], dict[str, Any]]]] = {
    "bustm": (("sentence1", "sentence2", "label", "id"), "label", "id", pair_fields),
    "chid": (("content", "candidates", "answer", "id"), "answer", "id", chid_fields),
    "cluewsc": (("text", "target", "label", "idx"), "label", "idx", cluewsc_fields),
    "csl": (("abst", "keyword", "label", "id"), "label", "id", csl_fields),
    "csldcp": (("content", "label", "id"), "label", "id", pair_fields),
    "eprstmt": (("sentence", "label", "id"), "label", "id", pair_fields),
    "iflytek": (("sentence", "label", "id"), "label", "id", pair_fields),
    "ocnli": (("sentence1", "sentence2", "label", "id"), "label", "id", pair_fields),
    "tnews": (("sentence", "label", "id"), "label", "id", pair_fields),
}


def build_task(raw_dir: Path, task: str) -> TaskData:
    required, label_key, id_key, make_fields = TASKS[task]
    fixed = task not in LABEL_NAMES and task != "chid"
    labels, prompts = task_prompts(SUITE, task, labelled=fixed)
    names: list[str] = []
    if task in LABEL_NAMES:
        labels, names = LABEL_NAMES[task](raw_dir)
    files: dict[str, list[dict[str, Any]]] = {}
    for split in SPLITS:
        path, rows = read_split(raw_dir, task, split)
        items = []
        for i, row in enumerate(rows):
            require_fields(path, i, row, required)
            try:
                fields = make_fields(row)
            except (ValueError, KeyError, TypeError) as exc:
                raise PrepareError(f"{path}: item {i + 1}: {exc}") from None
            if task == "chid":
                candidates = row["candidates"]
                answer = row["answer"]
                if not (isinstance(answer, int) and 0 <= answer < len(candidates)):
                    raise PrepareError(f"{path}: item {i + 1}: answer {answer!r} is not an index into the {len(candidates)} candidates")
                items.append({"fields": fields, "choices": candidates, "label": answer, "id": row[id_key]})
                continue
            item = {"fields": fields, "label": label_index(labels, row[label_key], path, i), "id": row[id_key]}
            if names:
                item["choices"] = names
            items.append(item)
        files.update(classification_files(prompts, split, items, lambda it: {"id": it["id"]}))
    return TaskData(task, files, dict(COUNTS[task]), SOURCE.format(task=task))


def build(raw_dir: Path) -> list[TaskData]:
    return [build_task(raw_dir, task) for task in COUNTS]
