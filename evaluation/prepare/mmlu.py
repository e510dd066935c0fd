"""MMLU (Hendrycks et al., ICLR 2021): 57 subjects in four category groups, 0-shot and 5-shot.

Raw: ``RAW/mmlu/{dev,test}/<subject>_{dev,test}.csv`` (header row
``question,choice0,choice1,choice2,choice3,answer``, answer 0-3). Written:
``mmlu/<k>shot/<PromptName>/mul/<category>/<subject>.jsonl``, one file per subject, so that a
YAML gathers a category with one glob (``MMLU_paper/mul/stem/*.jsonl``) and the file stem is
the subject, against which the published per-subject count is checked. The k-shot examples
are the first k dev items of the same subject, in dev order. Prompt formats, the subject ->
category table and the published counts live in ``prompts/mmlu.yaml``.

0-shot items carry the format's description ("The following are multiple choice questions
...") in their own ``description`` field and the bare question in ``inputs_pretokenized``;
the task puts the description first (the context is the same text as before). That, and the
dev split written as ``mmlu/dev/<PromptName>/mul/<category>/<subject>.jsonl`` in the same
layout, is what a YAML needs to build k-shot prompts itself (``num-fewshot: 5``,
``fewshot-source: ../dev/{dir}/{name}``, ``fewshot-sampler: first``; see
``evaluation/fewshot.py``): the prompts it builds equal the k-shot files written here.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from .common import PrepareError, TaskData, load_prompts, raw_path, read_csv, render

SUITE = "mmlu"
HEADER = ["question", "choice0", "choice1", "choice2", "choice3", "answer"]
LETTERS = "ABCD"
SOURCE = ("MMLU (Hendrycks et al., ICLR 2021; MIT), CSVs of github.com/HaeChan0305/MLILAB-FedLLM "
          "data/mmlu at d92730e8 (see RAW/mmlu/SOURCE.md)")


def subject_table() -> dict[str, str]:
    """subject -> category, in the order of ``prompts/mmlu.yaml``."""
    return {subject: category for category, subjects in load_prompts(SUITE)["categories"].items()
            for subject in subjects}


RAW_FILES: tuple[str, ...] = tuple(f"mmlu/{split}/{subject}_{split}.csv"
                                   for subject in subject_table() for split in ("test", "dev"))


def read_items(raw_dir: Path, subject: str, split: str) -> list[dict[str, Any]]:
    """The rows of one subject's CSV as dicts; every malformed row is an error naming file and row."""
    path = raw_path(raw_dir, f"mmlu/{split}/{subject}_{split}.csv", SUITE)
    rows = read_csv(path, header=False)
    if not rows or rows[0] != HEADER:
        raise PrepareError(f"{path}: expected the header row {','.join(HEADER)}, got {rows[0] if rows else 'an empty file'}")
    items = []
    for number, row in enumerate(rows[1:], start=2):
        if len(row) != len(HEADER):
            raise PrepareError(f"{path}:{number}: {len(row)} fields, expected {len(HEADER)}")
        if row[5] not in ("0", "1", "2", "3"):
            raise PrepareError(f"{path}:{number}: answer {row[5]!r} is not an index 0-3")
        if not row[0].strip():
            raise PrepareError(f"{path}:{number}: empty question")
        items.append({"question": row[0], "choices": row[1:5], "answer": int(row[5])})
    return items


def fields(item: dict[str, Any], subject: str) -> dict[str, str]:
    a, b, c, d = item["choices"]
    return {"subject": subject.replace("_", " "), "question": item["question"],
            "question_stripped": item["question"].strip(), "A": a, "B": b, "C": c, "D": d,
            "answer": LETTERS[item["answer"]]}


def build_prompt(fmt: dict[str, Any], name: str, subject: str, shots: list[dict[str, Any]], item: dict[str, Any]) -> str:
    text = render(fmt["description"], fields(item, subject), f"{name}.description")
    for example in shots:
        values = fields(example, subject)
        text += render(fmt["question"], values, f"{name}.question") + render(fmt["example_answer"], values, f"{name}.example_answer")
    return text + render(fmt["question"], fields(item, subject), f"{name}.question")


def check_table(config: dict[str, Any]) -> None:
    subjects = subject_table()
    counts = [n for group in config["categories"].values() for n in group.values()]
    if len(subjects) != 57 or len(counts) != 57:
        raise PrepareError(f"prompts/mmlu.yaml lists {len(counts)} subject entries ({len(subjects)} distinct), MMLU has 57")
    if sum(counts) != config["total_test"]:
        raise PrepareError(f"prompts/mmlu.yaml: the subject counts add up to {sum(counts)}, not {config['total_test']}")
    for name, fmt in config["formats"].items():
        if len(fmt["choices"]) != 4:
            raise PrepareError(f"prompts/mmlu.yaml: format {name} needs 4 choices, has {len(fmt['choices'])}")


def build(raw_dir: Path) -> list[TaskData]:
    config = load_prompts(SUITE)
    check_table(config)
    table = subject_table()
    published = {s: n for group in config["categories"].values() for s, n in group.items()}
    for split in ("test", "dev"):
        present = {p.name.rsplit("_", 1)[0] for p in (raw_dir / "mmlu" / split).glob(f"*_{split}.csv")}
        unknown = sorted(present - set(table))
        if unknown:
            raise PrepareError(f"{raw_dir / 'mmlu' / split}: CSVs of subjects outside the 57 of MMLU: {unknown}")

    data: dict[str, tuple[list[dict[str, Any]], list[dict[str, Any]]]] = {}
    for subject in table:
        test, dev = read_items(raw_dir, subject, "test"), read_items(raw_dir, subject, "dev")
        if len(test) != published[subject]:
            raise PrepareError(f"{raw_dir / 'mmlu/test' / f'{subject}_test.csv'}: {len(test)} questions, "
                               f"the published count is {published[subject]}")
        if len(dev) != config["dev_per_subject"]:
            raise PrepareError(f"{raw_dir / 'mmlu/dev' / f'{subject}_dev.csv'}: {len(dev)} questions, "
                               f"the published dev split has {config['dev_per_subject']} per subject")
        data[subject] = (test, dev)
    total = sum(len(test) for test, _ in data.values())
    if total != config["total_test"]:
        raise PrepareError(f"{raw_dir / 'mmlu/test'}: {total} questions in all, the published count is {config['total_test']}")

    tasks = []
    dev_files: dict[str, Any] = {}
    for name, fmt in config["formats"].items():
        for subject, category in table.items():
            dev_files[f"{name}/mul/{category}/{subject}.jsonl"] = [
                {"description": render(fmt["description"], fields(item, subject), f"{name}.description"),
                 "inputs_pretokenized": render(fmt["question"], fields(item, subject), f"{name}.question"),
                 "choices_pretokenized": list(fmt["choices"]),
                 "label": item["answer"],
                 "id": f"{subject}/dev/{index}",
                 "subject": subject}
                for index, item in enumerate(data[subject][1])]
    for task, k in config["shots"].items():
        if k > config["dev_per_subject"]:
            raise PrepareError(f"prompts/mmlu.yaml: {task} asks for {k} examples, the dev split has {config['dev_per_subject']}")
        files: dict[str, Any] = {}
        for name, fmt in config["formats"].items():
            for subject, category in table.items():
                test, dev = data[subject]
                files[f"{name}/mul/{category}/{subject}.jsonl"] = [
                    {**zero_shot_fields(fmt, name, subject, item),
                     "choices_pretokenized": list(fmt["choices"]),
                     "label": item["answer"],
                     "id": f"{subject}/{index}",
                     "subject": subject}
                    if k == 0 else
                    {"inputs_pretokenized": build_prompt(fmt, name, subject, dev[:k], item),
                     "choices_pretokenized": list(fmt["choices"]),
                     "label": item["answer"],
                     "id": f"{subject}/{index}",
                     "subject": subject}
                    for index, item in enumerate(test)]
        tasks.append(TaskData(task, files, expected=dict(published), source=SOURCE))
    tasks.append(TaskData("dev", dev_files, expected={s: config["dev_per_subject"] for s in table}, source=SOURCE))
    return tasks


def zero_shot_fields(fmt: dict[str, Any], name: str, subject: str, item: dict[str, Any]) -> dict[str, str]:
    """A 0-shot item's description and bare question (the task joins them)."""
    values = fields(item, subject)
    return {"description": render(fmt["description"], values, f"{name}.description"),
            "inputs_pretokenized": render(fmt["question"], values, f"{name}.question")}
