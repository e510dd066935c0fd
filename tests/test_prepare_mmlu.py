"""The MMLU converter on the real raw CSVs (../shared/data/mmlu): counts, known items, formats."""

from __future__ import annotations

import collections
import shutil
from pathlib import Path

import pytest

from evaluation.prepare import mmlu
from evaluation.prepare.common import PrepareError, check_counts, check_raw_files, encode_records

RAW = Path(__file__).resolve().parents[2] / "shared" / "data"
pytestmark = pytest.mark.skipif(not (RAW / "mmlu" / "test").is_dir(), reason=f"raw MMLU data not found under {RAW}")

MMLU_PAPER_HEAD = "The following are multiple choice questions (with answers) about  {}.\n\n"  # two spaces: hendrycks/test
LM_EVAL_HEAD = "The following are multiple choice questions (with answers) about {}.\n\n"
CATEGORY_SIZES = {"stem": 19, "social_sciences": 12, "humanities": 13, "other": 13}


@pytest.fixture(scope="module")
def tasks() -> dict[str, mmlu.TaskData]:
    return {t.task: t for t in mmlu.build(RAW)}


def record(tasks, task: str, fmt: str, category: str, subject: str, index: int = 0) -> dict:
    return tasks[task].files[f"{fmt}/mul/{category}/{subject}.jsonl"][index]


def test_subject_table_is_the_standard_mapping() -> None:
    table = mmlu.subject_table()
    assert len(table) == 57
    assert collections.Counter(table.values()) == CATEGORY_SIZES
    # lm-eval and GLM-130B put anatomy in STEM (the MMLU repo's categories.py says "other").
    assert table["anatomy"] == "stem"
    assert table["professional_law"] == "humanities"
    assert table["econometrics"] == "social_sciences"
    assert table["global_facts"] == "other"
    assert len(mmlu.RAW_FILES) == 114 and "mmlu/dev/world_religions_dev.csv" in mmlu.RAW_FILES


def test_counts(tasks) -> None:
    assert sorted(tasks) == ["0shot", "5shot", "dev"]
    for name, task in tasks.items():
        assert len(task.files) == 2 * 57  # two prompt formats x 57 subjects
        assert check_counts("mmlu", [task]) == []
        for fmt in ("MMLU_paper", "LM_eval"):
            files = {rel: recs for rel, recs in task.files.items() if rel.startswith(f"{fmt}/")}
            if name == "dev":
                assert all(len(r) == 5 for r in files.values())
                continue
            assert sum(len(r) for r in files.values()) == 14042
            per_category = collections.Counter(rel.split("/")[2] for rel in files)
            assert per_category == CATEGORY_SIZES
            labels = collections.Counter("ABCD"[r["label"]] for recs in files.values() for r in recs)
            assert labels == {"A": 3222, "B": 3462, "C": 3582, "D": 3776}  # SOURCE.md
    assert len(tasks["0shot"].files["MMLU_paper/mul/humanities/professional_law.jsonl"]) == 1534
    assert tasks["0shot"].expected["abstract_algebra"] == 100


def test_first_item_zero_shot(tasks) -> None:
    # test/abstract_algebra_test.csv, row 1:
    # "Find the degree for the given field extension Q(sqrt(2), sqrt(3), sqrt(18)) over Q.",0,4,2,6,1
    question = "Find the degree for the given field extension Q(sqrt(2), sqrt(3), sqrt(18)) over Q.\nA. 0\nB. 4\nC. 2\nD. 6\nAnswer:"
    paper = record(tasks, "0shot", "MMLU_paper", "stem", "abstract_algebra")
    assert paper == {"description": MMLU_PAPER_HEAD.format("abstract algebra"), "inputs_pretokenized": question,
                     "choices_pretokenized": [" A", " B", " C", " D"], "label": 1,
                     "id": "abstract_algebra/0", "subject": "abstract_algebra"}
    lm_eval = record(tasks, "0shot", "LM_eval", "stem", "abstract_algebra")
    assert lm_eval["description"] + lm_eval["inputs_pretokenized"] == LM_EVAL_HEAD.format("abstract algebra") + question
    assert lm_eval["choices_pretokenized"] == [" A", " B", " C", " D"] and lm_eval["label"] == 1


def test_lm_eval_strips_the_question_and_the_paper_format_does_not(tasks) -> None:
    # test/world_religions_test.csv, row 1: " What can murtis be translated as?",Offerings,Prayers,Apparitions,Idols,3
    body = "What can murtis be translated as?\nA. Offerings\nB. Prayers\nC. Apparitions\nD. Idols\nAnswer:"
    paper = record(tasks, "0shot", "MMLU_paper", "humanities", "world_religions")
    lm_eval = record(tasks, "0shot", "LM_eval", "humanities", "world_religions")
    assert paper["description"] + paper["inputs_pretokenized"] == MMLU_PAPER_HEAD.format("world religions") + " " + body
    assert lm_eval["description"] + lm_eval["inputs_pretokenized"] == LM_EVAL_HEAD.format("world religions") + body
    assert paper["label"] == lm_eval["label"] == 3


def test_five_shot_uses_the_subject_dev_items_in_order(tasks) -> None:
    # dev/miscellaneous_dev.csv (answers 1, 1, 0, 2, 2 -> B B A C C), then test row 1.
    shots = (
        "How many axles does a standard automobile have?\nA. one\nB. two\nC. four\nD. eight\nAnswer: B\n\n"
        "What place is named in the title of the 1979 live album by rock legends Cheap Trick?\n"
        "A. Budapest\nB. Budokan\nC. Bhutan\nD. Britain\nAnswer: B\n\n"
        "Who is the shortest man to ever win an NBA slam dunk competition?\nA. Anthony 'Spud' Webb\n"
        "B. Michael 'Air' Jordan\nC. Tyrone 'Muggsy' Bogues\nD. Julius 'Dr J' Erving\nAnswer: A\n\n"
        "What is produced during photosynthesis?\nA. hydrogen\nB. nylon\nC. oxygen\nD. light\nAnswer: C\n\n"
        "Which of these songs was a Top 10 hit for the rock band The Police?\nA. 'Radio Ga-Ga'\n"
        "B. 'Ob-la-di Ob-la-da'\nC. 'De Do Do Do De Da Da Da'\nD. 'In-a-Gadda-Da-Vida'\nAnswer: C\n\n"
    )
    question = ("An important source of information on the credit rating of retail businesses is\n"
                "A. the Retail Merchants Association\nB. the local chamber of commerce\nC. Dun & Bradstreet, Inc.\n"
                "D. the United States Retail Credit Association\nAnswer:")
    for fmt, head in (("MMLU_paper", MMLU_PAPER_HEAD), ("LM_eval", LM_EVAL_HEAD)):
        item = record(tasks, "5shot", fmt, "other", "miscellaneous")
        assert item["inputs_pretokenized"] == head.format("miscellaneous") + shots + question
        assert item["label"] == 2
    # Every 5-shot context holds exactly five answered examples and ends with the 0-shot question.
    for rel, records in tasks["5shot"].files.items():
        zero = tasks["0shot"].files[rel]
        for five, one in zip(records[:3], zero[:3]):
            head = (MMLU_PAPER_HEAD if rel.startswith("MMLU_paper") else LM_EVAL_HEAD).format(five["subject"].replace("_", " "))
            assert five["inputs_pretokenized"].startswith(head)
            assert one["description"] == head
            assert five["inputs_pretokenized"].endswith(one["inputs_pretokenized"])
            assert (five["label"], five["id"]) == (one["label"], one["id"])


def test_deterministic(tasks) -> None:
    again = {t.task: t for t in mmlu.build(RAW)}
    for name, task in tasks.items():
        assert list(task.files) == list(again[name].files)
        for rel, records in task.files.items():
            assert encode_records(records) == encode_records(again[name].files[rel])


def copy_raw(tmp_path: Path) -> Path:
    shutil.copytree(RAW / "mmlu", tmp_path / "mmlu", ignore=shutil.ignore_patterns("SOURCE.md"))
    return tmp_path


def test_missing_raw_file_is_named(tmp_path: Path) -> None:
    raw = copy_raw(tmp_path)
    (raw / "mmlu" / "dev" / "virology_dev.csv").unlink()
    problems = check_raw_files(raw, "mmlu", mmlu.RAW_FILES)
    assert len(problems) == 1 and "virology_dev.csv" in problems[0] and "'mmlu'" in problems[0]
    with pytest.raises(PrepareError, match="virology_dev.csv"):
        mmlu.build(raw)


def test_wrong_count_is_an_error_naming_the_csv(tmp_path: Path) -> None:
    raw = copy_raw(tmp_path)
    path = raw / "mmlu" / "test" / "anatomy_test.csv"
    path.write_text("".join(path.read_text(encoding="utf-8").splitlines(keepends=True)[:-1]), encoding="utf-8")
    with pytest.raises(PrepareError, match=r"anatomy_test\.csv: 134 questions, the published count is 135"):
        mmlu.build(raw)


def test_bad_rows_and_unknown_subjects_are_errors(tmp_path: Path) -> None:
    raw = copy_raw(tmp_path)
    path = raw / "mmlu" / "dev" / "astronomy_dev.csv"
    lines = path.read_text(encoding="utf-8").splitlines(keepends=True)
    path.write_text(lines[0] + lines[1].rstrip("\n").rsplit(",", 1)[0] + ",B\n" + "".join(lines[2:]), encoding="utf-8")
    with pytest.raises(PrepareError, match=r"astronomy_dev\.csv:2: answer 'B' is not an index 0-3"):
        mmlu.build(raw)
    path.write_text("".join(lines), encoding="utf-8")
    shutil.copy(raw / "mmlu" / "test" / "anatomy_test.csv", raw / "mmlu" / "test" / "astrology_test.csv")
    with pytest.raises(PrepareError, match="astrology"):
        mmlu.build(raw)
