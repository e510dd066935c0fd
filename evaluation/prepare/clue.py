"""The CLUE suite: AFQMC, OCNLI, C3 (multiple choice) and CMRC2018, DRCD (generation).

Raw data (``--raw`` laid out as ../shared/data; counts and licenses in each SOURCE.md):

* ``clue/afqmc/dev.json``   AFQMC dev, 4316 pairs (jsonl: sentence1, sentence2, label "0"/"1")
* ``ocnli/dev.json``        OCNLI dev, 3000 pairs of which 50 carry the label "-" (no majority
  among the five annotators); the OCNLI README says to exclude them, so 2950 are written
* ``c3/c3-{d,m}-{dev,test}.json``  C3, dev 1825 + 1991 = 3816, test 1890 + 2002 = 3892 questions
  (2-4 options each), the dialogue (d) and mixed-genre (m) halves merged as in CLUE
* ``cmrc2018/cmrc2018_dev.json``   CMRC2018 dev, 3219 questions (SQuAD format)
* ``drcd/DRCD_{dev,test}.json``    DRCD dev 3524 / test 3493 questions (SQuAD format, Traditional)

Prompts are data: ``prompts/clue.yaml``. The helpers here (prompt validation, one file per
prompt) are shared with the FewCLUE converter.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable, Mapping, Optional, Sequence

from .common import PrepareError, TaskData, load_prompts, raw_path, read_json, read_jsonl, render

SUITE = "clue"

AFQMC = "clue/afqmc/dev.json"
OCNLI = "ocnli/dev.json"
C3_FILES = {("dev", "d"): "c3/c3-d-dev.json", ("dev", "m"): "c3/c3-m-dev.json",
            ("test", "d"): "c3/c3-d-test.json", ("test", "m"): "c3/c3-m-test.json"}
CMRC2018 = "cmrc2018/cmrc2018_dev.json"
DRCD_FILES = {"dev": "drcd/DRCD_dev.json", "test": "drcd/DRCD_test.json"}

RAW_FILES: tuple[str, ...] = (AFQMC, OCNLI, *C3_FILES.values(), CMRC2018, *DRCD_FILES.values())

# Published counts (SOURCE.md of each raw folder; the CLUE / dataset papers).
AFQMC_DEV = 4316
OCNLI_DEV_RAW, OCNLI_NO_GOLD = 3000, 50
C3_COUNTS = {("dev", "d"): 1825, ("dev", "m"): 1991, ("test", "d"): 1890, ("test", "m"): 2002}
CMRC2018_DEV = 3219
DRCD_COUNTS = {"dev": 3524, "test": 3493}

SOURCES = {
    "afqmc": "AFQMC dev (Ant Financial, via CLUE); file from github.com/jsksxs360/How-to-use-Transformers data/afqmc_public/dev.json",
    "ocnli": "OCNLI dev, github.com/CLUEbenchmark/OCNLI data/ocnli/dev.json (CC BY-NC 2.0); '-' (no gold label) items excluded",
    "c3": "C3 dev/test, github.com/nlpdata/c3 data/c3-{d,m}-{dev,test}.json (non-commercial research use)",
    "cmrc2018": "CMRC2018 dev, github.com/ymcui/cmrc2018 squad-style-data/cmrc2018_dev.json (CC BY-SA 4.0)",
    "drcd": "DRCD dev/test, github.com/DRCKnowledgeTeam/DRCD DRCD_{dev,test}.json (CC BY-SA 3.0)",
}


# ------------------------------------------------------------------ shared helpers
class Prompt:
    """One validated prompt template: name, template, and (classification) verbalizers."""

    def __init__(self, name: str, template: str, choices: Optional[list[str]], where: str) -> None:
        self.name, self.template, self.choices, self.where = name, template, choices, where

    def text(self, fields: Mapping[str, Any]) -> str:
        return render(self.template, fields, self.where)


def task_prompts(config_name: str, task: str, labelled: bool) -> tuple[list[str], list[Prompt]]:
    """The labels and prompts of ``task`` in ``prompts/<config_name>.yaml``, checked.

    ``labelled``: the task has fixed verbalizers (every prompt must give one choice per
    label); otherwise the choices come from the item or a label file and prompts give none.
    """
    config = load_prompts(config_name)
    where = f"prompts/{config_name}.yaml, task {task!r}"
    entry = config.get(task) if isinstance(config, dict) else None
    if not isinstance(entry, dict) or not isinstance(entry.get("prompts"), dict) or not entry["prompts"]:
        raise PrepareError(f"{where}: missing, or without a non-empty 'prompts' mapping")
    labels = entry.get("labels")
    if labelled:
        if not (isinstance(labels, list) and labels and all(isinstance(v, str) for v in labels)):
            raise PrepareError(f"{where}: 'labels' must be a non-empty list of strings")
    elif labels is not None:
        raise PrepareError(f"{where}: takes its choices from the data, so 'labels' makes no sense")
    prompts = []
    for name, spec in entry["prompts"].items():
        here = f"{where}, prompt {name!r}"
        if not isinstance(spec, dict) or not isinstance(spec.get("template"), str):
            raise PrepareError(f"{here}: needs a string 'template'")
        unknown = set(spec) - {"template", "choices"}
        if unknown:
            raise PrepareError(f"{here}: unknown key(s) {sorted(unknown)}")
        choices = spec.get("choices")
        if labelled:
            if not (isinstance(choices, list) and len(choices) == len(labels) and all(isinstance(c, str) and c for c in choices)):
                raise PrepareError(f"{here}: 'choices' must list one non-empty verbalizer per label {labels}")
            if len(set(choices)) != len(choices):
                raise PrepareError(f"{here}: 'choices' {choices} repeat a verbalizer")
        elif choices is not None:
            raise PrepareError(f"{here}: the choices come from the data; remove 'choices'")
        prompts.append(Prompt(str(name), spec["template"], choices, here))
    return (list(labels) if labelled else []), prompts


def label_index(labels: Sequence[str], value: Any, path: Path, position: int) -> int:
    """Position of the raw label ``value`` in ``labels``; an unknown label names file and item."""
    try:
        return list(labels).index(str(value))
    except ValueError:
        raise PrepareError(f"{path}: item {position + 1} has label {value!r}, not one of {list(labels)}") from None


def classification_files(prompts: Sequence[Prompt], split: str, items: Sequence[Mapping[str, Any]],
                         extra: Callable[[Mapping[str, Any]], dict[str, Any]]) -> dict[str, list[dict[str, Any]]]:
    """One mul file per prompt. ``items`` hold ``fields`` (for the template), ``label`` (an
    index) and optionally ``choices`` (item-specific choices when the prompt has none)."""
    files = {}
    for prompt in prompts:
        records = []
        for item in items:
            choices = prompt.choices if prompt.choices is not None else item["choices"]
            records.append({"inputs_pretokenized": prompt.text(item["fields"]), "choices_pretokenized": list(choices),
                            "label": item["label"], **extra(item)})
        files[f"{prompt.name}/mul/{split}.jsonl"] = records
    return files


def generation_files(prompts: Sequence[Prompt], split: str, items: Sequence[Mapping[str, Any]]) -> dict[str, list[dict[str, Any]]]:
    files = {}
    for prompt in prompts:
        files[f"{prompt.name}/gen/{split}.jsonl"] = [
            {"inputs_pretokenized": prompt.text(item["fields"]), "targets_pretokenized": list(item["targets"]), "id": item["id"]}
            for item in items]
    return files


def require_count(path: Path, got: int, expected: int, what: str = "items") -> None:
    if got != expected:
        raise PrepareError(f"{path}: {got} {what}, the published count is {expected}")


def require_fields(path: Path, position: int, record: Any, keys: Sequence[str]) -> None:
    if not isinstance(record, dict):
        raise PrepareError(f"{path}: item {position + 1} is not a JSON object")
    missing = [k for k in keys if k not in record]
    if missing:
        raise PrepareError(f"{path}: item {position + 1} lacks field(s) {missing}")


# ------------------------------------------------------------------ tasks
def build_afqmc(raw_dir: Path) -> TaskData:
    path = raw_path(raw_dir, AFQMC, SUITE)
    labels, prompts = task_prompts(SUITE, "afqmc", labelled=True)
    rows = read_jsonl(path)
    items = []
    for i, row in enumerate(rows):
        require_fields(path, i, row, ("sentence1", "sentence2", "label"))
        items.append({"fields": row, "label": label_index(labels, row["label"], path, i), "id": i})
    return TaskData("afqmc", classification_files(prompts, "dev", items, lambda it: {"id": it["id"]}),
                    {"dev": AFQMC_DEV}, SOURCES["afqmc"])


def build_ocnli(raw_dir: Path) -> TaskData:
    path = raw_path(raw_dir, OCNLI, SUITE)
    labels, prompts = task_prompts(SUITE, "ocnli", labelled=True)
    rows = read_jsonl(path)
    require_count(path, len(rows), OCNLI_DEV_RAW)
    items = []
    for i, row in enumerate(rows):
        require_fields(path, i, row, ("sentence1", "sentence2", "label", "id"))
        if row["label"] == "-":
            continue
        items.append({"fields": row, "label": label_index(labels, row["label"], path, i), "id": row["id"], "genre": row.get("genre")})
    require_count(path, len(rows) - len(items), OCNLI_NO_GOLD, "items labelled '-'")
    files = classification_files(prompts, "dev", items, lambda it: {"id": it["id"], "genre": it["genre"]})
    return TaskData("ocnli", files, {"dev": OCNLI_DEV_RAW - OCNLI_NO_GOLD}, SOURCES["ocnli"])


def option_list(choices: Sequence[str]) -> str:
    return "\n".join(f"{chr(ord('A') + k)}. {c}" for k, c in enumerate(choices))


def build_c3(raw_dir: Path) -> TaskData:
    _, prompts = task_prompts(SUITE, "c3", labelled=False)
    files: dict[str, list[dict[str, Any]]] = {}
    for split in ("dev", "test"):
        items = []
        for subset in ("d", "m"):
            path = raw_path(raw_dir, C3_FILES[(split, subset)], SUITE)
            documents = read_json(path)
            if not isinstance(documents, list):
                raise PrepareError(f"{path}: expected a JSON list of [paragraphs, questions, id]")
            count = 0
            for d, document in enumerate(documents):
                if not (isinstance(document, list) and len(document) == 3):
                    raise PrepareError(f"{path}: document {d + 1} is not [paragraphs, questions, id]")
                paragraphs, questions, doc_id = document
                for q, question in enumerate(questions):
                    require_fields(path, count, question, ("question", "choice", "answer"))
                    choices = question["choice"]
                    if question["answer"] not in choices:
                        raise PrepareError(f"{path}: document {doc_id}, question {q + 1}: the answer is not among the choices")
                    fields = {"passage": "\n".join(paragraphs), "question": question["question"], "options": option_list(choices)}
                    items.append({"fields": fields, "choices": choices, "label": choices.index(question["answer"]),
                                  "id": f"{doc_id}-{q}", "subset": subset, "passage_id": f"{subset}/{doc_id}"})
                    count += 1
            require_count(path, count, C3_COUNTS[(split, subset)], "questions")
        # passage_id: the questions of one dialogue or text share it (tasks/clue/c3.yaml clusters by it)
        files.update(classification_files(prompts, split, items, lambda it: {"id": it["id"], "subset": it["subset"],
                                                                             "passage_id": it["passage_id"]}))
    return TaskData("c3", files, {s: C3_COUNTS[(s, "d")] + C3_COUNTS[(s, "m")] for s in ("dev", "test")}, SOURCES["c3"])


def squad_items(path: Path) -> list[dict[str, Any]]:
    """Questions of a SQuAD-format file in file order; targets = every answer text."""
    data = read_json(path)
    if not isinstance(data, dict) or not isinstance(data.get("data"), list):
        raise PrepareError(f"{path}: not SQuAD format (a 'data' list of articles)")
    items = []
    for article in data["data"]:
        for paragraph in article.get("paragraphs", []):
            for qa in paragraph.get("qas", []):
                texts = [a.get("text", "") for a in qa.get("answers", [])]
                if not texts or not all(isinstance(t, str) and t.strip() for t in texts):
                    raise PrepareError(f"{path}: question {qa.get('id')!r} has no answer text")
                fields = {"context": paragraph["context"], "question": qa["question"], "title": article.get("title", "")}
                items.append({"fields": fields, "targets": texts, "id": qa["id"]})
    return items


def build_cmrc2018(raw_dir: Path) -> TaskData:
    _, prompts = task_prompts(SUITE, "cmrc2018", labelled=False)
    path = raw_path(raw_dir, CMRC2018, SUITE)
    items = squad_items(path)
    require_count(path, len(items), CMRC2018_DEV, "questions")
    return TaskData("cmrc2018", generation_files(prompts, "dev", items), {"dev": CMRC2018_DEV}, SOURCES["cmrc2018"])


def build_drcd(raw_dir: Path) -> TaskData:
    _, prompts = task_prompts(SUITE, "drcd", labelled=False)
    files: dict[str, list[dict[str, Any]]] = {}
    for split, relative in DRCD_FILES.items():
        path = raw_path(raw_dir, relative, SUITE)
        items = squad_items(path)
        require_count(path, len(items), DRCD_COUNTS[split], "questions")
        files.update(generation_files(prompts, split, items))
    return TaskData("drcd", files, dict(DRCD_COUNTS), SOURCES["drcd"])


def build(raw_dir: Path) -> list[TaskData]:
    return [build_afqmc(raw_dir), build_ocnli(raw_dir), build_c3(raw_dir), build_cmrc2018(raw_dir), build_drcd(raw_dir)]
