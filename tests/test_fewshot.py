"""Few-shot prompts from the task YAML (evaluation/fewshot.py): MMLU 5-shot built from the
0-shot items and the dev split equals the 5-shot files the converter writes, item by item;
an item's prompt depends on nothing but the item (not the order, the limit or the rank);
an item is never its own example; bad settings are named before any scoring."""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest

from evaluation.data import read_jsonl
from evaluation.fewshot import PromptBuilder, item_identity
from evaluation.prepare import mmlu
from evaluation.prepare.common import write_suite
from evaluation.task_config import load_tasks

RAW = Path(__file__).resolve().parents[2] / "shared" / "data"
needs_mmlu = pytest.mark.skipif(not (RAW / "mmlu" / "test").is_dir(), reason=f"raw MMLU data not found under {RAW}")

FIVE_SHOT_YAML = """name: mmlu-5shot-from-yaml
type: mul
module: evaluation.custom_tasks.mmlu.MMLU
path: mmlu/0shot
file-pattern:
  stem: "{fmt}/mul/stem/*.jsonl"
  social_sciences: "{fmt}/mul/social_sciences/*.jsonl"
  humanities: "{fmt}/mul/humanities/*.jsonl"
  other: "{fmt}/mul/other/*.jsonl"
num-fewshot: 5
fewshot-source: ../dev/{{dir}}/{{name}}
fewshot-sampler: first
fewshot-separator: "\\n\\n"
"""


@pytest.fixture(scope="module")
def mmlu_data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("data")
    write_suite(out, "mmlu", mmlu.build(RAW))
    return out


def raw_items(path: Path) -> list[dict]:
    return [raw for _, raw in read_jsonl(path)]


@needs_mmlu
@pytest.mark.parametrize("fmt", ["LM_eval", "MMLU_paper"])
def test_mmlu_five_shot_from_yaml_equals_the_prepared_files(mmlu_data: Path, tmp_path: Path, fmt: str) -> None:
    yaml_path = tmp_path / "five.yaml"
    yaml_path.write_text(FIVE_SHOT_YAML.format(fmt=fmt), encoding="utf-8")
    tasks, problems = load_tasks([yaml_path], mmlu_data)
    assert problems == []
    loaded = tasks[0]
    builder = PromptBuilder(loaded.config, "mul", loaded.data_root)
    compared = 0
    for files in loaded.files.values():
        for path in files:
            prompt = builder.for_file(path)
            prepared = raw_items(mmlu_data / "mmlu" / "5shot" / path.relative_to(loaded.data_root))
            built = [prompt(raw) for raw in raw_items(path)]
            assert len(built) == len(prepared)
            for mine, theirs in zip(built, prepared):
                assert mine["inputs_pretokenized"] == theirs["inputs_pretokenized"], (path, mine["id"])
                assert (mine["choices_pretokenized"], mine["label"], mine["id"]) == (theirs["choices_pretokenized"], theirs["label"], theirs["id"])
                assert mine["fewshot"] == [f"id:{theirs['subject']}/dev/{k}" for k in range(5)]  # recorded in the predictions
                compared += 1
    assert compared == 14042


@needs_mmlu
def test_zero_shot_items_keep_their_old_context(mmlu_data: Path) -> None:
    """The 0-shot files carry the description apart; the task joins it back: same text as
    the 5-shot file's head + question with the examples removed."""
    from evaluation.task_config import MultiChoiceTaskConfig

    config = MultiChoiceTaskConfig(name="m", type="mul", path="mmlu/0shot")
    builder = PromptBuilder(config, "mul", mmlu_data / "mmlu" / "0shot")
    path = mmlu_data / "mmlu" / "0shot" / "LM_eval" / "mul" / "stem" / "anatomy.jsonl"
    first = raw_items(path)[0]
    prompted = builder.for_file(path)(first)
    assert prompted["inputs_pretokenized"] == first["description"] + first["inputs_pretokenized"]
    assert prompted["inputs_pretokenized"].startswith("The following are multiple choice questions (with answers) about anatomy.\n\n")
    assert "description" not in prompted and "fewshot" not in prompted


def random_task(tmp_path: Path, items: list[dict], k: int = 3, extra: str = "") -> tuple:
    data = tmp_path / "data" / "qa"
    data.mkdir(parents=True, exist_ok=True)
    (data / "test.jsonl").write_text("".join(json.dumps(i) + "\n" for i in items), encoding="utf-8")
    yaml_path = tmp_path / "qa.yaml"
    yaml_path.write_text(f"name: qa\ntype: gen\npath: qa\nnum-fewshot: {k}\nfewshot-source: self\nfewshot-seed: 7\n"
                         f"target-delimiter: ' '\n{extra}", encoding="utf-8")
    tasks, problems = load_tasks([yaml_path], tmp_path / "data")
    return tasks, problems, data / "test.jsonl"


ITEMS = [{"id": f"q{n}", "inputs_pretokenized": f"Q: {n} + {n}?\nA:", "targets_pretokenized": [str(2 * n)]} for n in range(30)]


def test_random_shots_depend_only_on_the_item(tmp_path: Path) -> None:
    tasks, problems, path = random_task(tmp_path, ITEMS)
    assert problems == []
    prompts = {r["id"]: r for r in map(PromptBuilder(tasks[0].config, "gen", tasks[0].data_root).for_file(path), ITEMS)}
    shuffled = list(ITEMS)
    random.Random(1).shuffle(shuffled)
    again = PromptBuilder(tasks[0].config, "gen", tasks[0].data_root).for_file(path)
    for item in shuffled[:11]:  # another order, a part only (as --limit or a data-parallel share would ask)
        assert again(item) == prompts[item["id"]]
    for item in ITEMS:
        record = prompts[item["id"]]
        assert len(record["fewshot"]) == 3 and f"id:{item['id']}" not in record["fewshot"]  # never its own example
        shots = [next(i for i in ITEMS if f"id:{i['id']}" == s) for s in record["fewshot"]]
        expected = "".join(s["inputs_pretokenized"] + " " + s["targets_pretokenized"][0] + "\n\n" for s in shots)
        assert record["inputs_pretokenized"] == expected + item["inputs_pretokenized"]
    assert len({tuple(r["fewshot"]) for r in prompts.values()}) > 20  # drawn per item, not one fixed set


def test_items_without_an_id_are_told_apart_by_content(tmp_path: Path) -> None:
    items = [{k: v for k, v in i.items() if k != "id"} for i in ITEMS[:6]]
    tasks, _, path = random_task(tmp_path, items, k=5)
    build = PromptBuilder(tasks[0].config, "gen", tasks[0].data_root).for_file(path)
    for item in items:
        assert item_identity(item) not in build(item)["fewshot"]


def test_few_shot_settings_are_checked_before_scoring(tmp_path: Path) -> None:
    _, problems, _ = random_task(tmp_path, ITEMS, extra="fewshot-sampler: best\n")
    assert [(p.field, p.line) for p in problems] == [("fewshot-sampler", 8)]
    _, problems, _ = random_task(tmp_path, ITEMS, extra="fewshot-source: ../dev/{dir}/{name}\n")
    assert any("given more than once" in p.message for p in problems)
    yaml_path = tmp_path / "missing.yaml"
    yaml_path.write_text("name: m\ntype: gen\npath: qa\nnum-fewshot: 2\nfewshot-source: ../dev/{name}\n", encoding="utf-8")
    _, problems = load_tasks([yaml_path], tmp_path / "data")
    assert len(problems) == 1 and problems[0].field == "fewshot-source" and problems[0].line == 5 and "does not exist" in problems[0].message
    yaml_path.write_text("name: m\ntype: gen\npath: qa\nnum-fewshot: 2\n", encoding="utf-8")
    _, problems = load_tasks([yaml_path], tmp_path / "data")
    assert len(problems) == 1 and problems[0].field == "num-fewshot" and "fewshot_source" in problems[0].message


def test_too_few_examples_name_the_file_and_line(tmp_path: Path, tokenizer) -> None:
    from evaluation.errors import InputError
    from evaluation.tasks import GenerationTask

    tasks, problems, path = random_task(tmp_path, ITEMS[:3], k=3)
    assert problems == []
    task = GenerationTask(tasks[0].config, tokenizer, data_root=tasks[0].data_root)
    with pytest.raises(InputError) as caught:
        task.load_file(path)
    text = str(caught.value)
    assert "test.jsonl:1" in text and "num_fewshot is 3" in text and "only 2 other items" in text


def test_prompts_on_a_language_modelling_task_are_refused(tmp_path: Path) -> None:
    (tmp_path / "data" / "text").mkdir(parents=True)
    (tmp_path / "data" / "text" / "test.txt").write_text("some text\n", encoding="utf-8")
    yaml_path = tmp_path / "lm.yaml"
    yaml_path.write_text("name: lm\ntype: lm\npath: text\ndescription: '[CLS]'\n", encoding="utf-8")
    _, problems = load_tasks([yaml_path], tmp_path / "data")
    assert [(p.field, p.line) for p in problems] == [("description", 4)] and "ignored" in problems[0].message
