"""The ``bloom`` suite converter on the real MosaicML Eval Gauntlet files in ../shared/data:
counts, known items field by field, the prompts that reproduce the raw prompt or
lm-evaluation-harness's, determinism, and errors that name the raw file."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import yaml

from evaluation.custom_tasks.bloom import first_line, strict_match
from evaluation.prepare import bloom
from evaluation.prepare.__main__ import main as prepare_main
from evaluation.prepare.common import PrepareError, TaskData, check_counts, encode_records

ROOT = Path(__file__).resolve().parents[1]
RAW = Path(__file__).resolve().parents[2] / "shared" / "data"
ICL = RAW / "llm_foundry_icl"

pytestmark = pytest.mark.skipif(not ICL.is_dir(), reason=f"raw Eval Gauntlet files not found at {ICL}")

# The prompts that must reproduce the Gauntlet's own prompt text (raw query/context, stripped).
GAUNTLET_PROMPTS = {
    "mathqa": "Lettered_Options", "pubmedqa": "Context_Options", "bigbench_strategy_qa": "Q_A",
    "bigbench_strange_stories": "Context_Answer", "bigbench_novel_concepts": "Instruction_A",
    "bigbench_conceptual_combinations": "Listed_Options", "bigbench_understanding_fables": "Letter_Answer",
    "bigbench_misconceptions": "Output_T_F", "bigbench_language_identification": "Letter_Answer",
    "bigbench_movie_recommendation": "Letter_Answer", "bigbench_logical_deduction": "Listed_Options",
    "bigbench_cs_algorithms_valid_parentheses": "Valid_Invalid", "bigbench_cs_algorithms_lcs": "Gauntlet",
    "bigbench_dyck_languages": "Gauntlet", "bigbench_operators": "Gauntlet", "bigbench_simple_arithmetic": "Gauntlet",
    "bigbench_repeat_copy_logic": "Gauntlet", "bigbench_qa_wikidata": "Gauntlet", "bigbench_conlang_translation": "Gauntlet",
}
COUNTS = {
    "openbookqa": 500, "mathqa": 2983, "pubmedqa": 1000, "bigbench_strategy_qa": 2289, "bigbench_strange_stories": 174,
    "bigbench_novel_concepts": 32, "bigbench_conceptual_combinations": 103, "bigbench_understanding_fables": 189,
    "bigbench_misconceptions": 219, "bigbench_language_identification": 10000, "bigbench_movie_recommendation": 500,
    "bigbench_logical_deduction": 1500, "bigbench_cs_algorithms_valid_parentheses": 1000, "bigbench_cs_algorithms_lcs": 320,
    "bigbench_dyck_languages": 1000, "bigbench_operators": 210, "bigbench_simple_arithmetic": 60,
    "bigbench_repeat_copy_logic": 32, "bigbench_qa_wikidata": 20321, "bigbench_conlang_translation": 164,
}


@pytest.fixture(scope="module")
def built() -> dict[str, TaskData]:
    return {t.task: t for t in bloom.build(RAW)}


def raw_records(relative: str) -> list[dict]:
    return [json.loads(line) for line in (ICL / relative).read_text(encoding="utf-8").splitlines() if line.strip()]


def first(built: dict[str, TaskData], task: str, prompt: str) -> dict:
    (relative,) = [r for r in built[task].files if r.startswith(f"{prompt}/")]
    return built[task].files[relative][0]


def test_counts_match_source_md_and_published(built: dict[str, TaskData]) -> None:
    assert check_counts("bloom", list(built.values())) == []
    assert {task: data.expected["test"] for task, data in built.items()} == COUNTS
    source = bloom.source_counts(RAW)
    spec = bloom._spec()
    for task, data in built.items():
        if "select" not in spec[task]:
            assert data.expected["test"] == source[spec[task]["file"]]
        for relative, records in data.files.items():
            assert relative.endswith("/test.jsonl") and len(records) == COUNTS[task], relative
            assert [r["idx"] for r in records] == sorted(r["idx"] for r in records)  # raw order kept
    # The two cs_algorithms tasks split one file between them.
    assert COUNTS["bigbench_cs_algorithms_valid_parentheses"] + COUNTS["bigbench_cs_algorithms_lcs"] == \
        source["symbolic_problem_solving/bigbench_cs_algorithms.jsonl"]


def test_prompt_families(built: dict[str, TaskData]) -> None:
    """At least 3 prompts for every multiple-choice task; every record well formed."""
    for task, data in built.items():
        kinds = {relative.split("/")[1] for relative in data.files}
        assert len(kinds) == 1
        if kinds == {"mul"}:
            assert len(data.files) >= 3, task
            for records in data.files.values():
                for r in records[:50]:
                    assert 0 <= r["label"] < len(r["choices_pretokenized"]) and r["inputs_pretokenized"] == r["inputs_pretokenized"].rstrip()
        else:
            assert all(len(r["targets_pretokenized"]) == 1 for records in data.files.values() for r in records)


def test_gauntlet_prompts_reproduce_the_raw_prompt(built: dict[str, TaskData]) -> None:
    spec = bloom._spec()
    for task, prompt in GAUNTLET_PROMPTS.items():
        raw = raw_records(spec[task]["file"])
        (relative,) = [r for r in built[task].files if r.startswith(f"{prompt}/")]
        differing = [r["idx"] for r in built[task].files[relative]
                     if r["inputs_pretokenized"] != (raw[r["idx"]].get("query") or raw[r["idx"]]["context"]).rstrip()]
        # language_identification has two items without a sentence ("Sentence:" -> "Sentence: ").
        assert differing == ([1637, 3572] if task == "bigbench_language_identification" else []), task


def test_openbookqa_first_item(built: dict[str, TaskData]) -> None:
    stem = ("A person wants to start saving money so that they can afford a nice vacation at the end of the year. "
            "After looking over their budget and expenses, they decide the best way to save money is to")
    options = ["make more phone calls", "quit eating lunch out", "buy less with monopoly money", "have lunch with friends"]
    # lm-evaluation-harness openbookqa: doc_to_text = question_stem, choices = the option texts.
    assert first(built, "openbookqa", "lm_eval") == {"inputs_pretokenized": stem, "choices_pretokenized": options,
                                                     "label": 1, "idx": 0}
    lettered = first(built, "openbookqa", "Lettered_Options")
    assert lettered["inputs_pretokenized"] == f"Question: {stem}\nA. {options[0]}\nB. {options[1]}\nC. {options[2]}\nD. {options[3]}\nAnswer:"
    assert lettered["choices_pretokenized"] == ["A", "B", "C", "D"] and lettered["label"] == 1


def test_mathqa_first_item(built: dict[str, TaskData]) -> None:
    problem = ("a shopkeeper sold an article offering a discount of 5 % and earned a profit of 31.1 % . "
               "what would have been the percentage of profit earned if no discount had been offered ?")
    options = ["30", "data inadequate", "none of these", "38"]
    # lm-evaluation-harness mathqa: "Question: {Problem}\nAnswer:", choices = option texts.
    assert first(built, "mathqa", "lm_eval") == {"inputs_pretokenized": f"Question: {problem}\nAnswer:",
                                                 "choices_pretokenized": options, "label": 3, "idx": 0}
    assert first(built, "mathqa", "Problem_Options")["inputs_pretokenized"] == (
        f"Problem: {problem}\nOptions: a ) 30 , b ) data inadequate , c ) none of these , d ) 38\nAnswer:")
    assert first(built, "mathqa", "Lettered_Options")["choices_pretokenized"] == ["A", "B", "C", "D"]


def test_pubmedqa_first_item(built: dict[str, TaskData]) -> None:
    item = first(built, "pubmedqa", "lm_eval")
    text = item["inputs_pretokenized"]
    assert text.startswith("Abstract: Programmed cell death (PCD) is the regulated death of cells within an organism.")
    assert "\nThe following paper elucidates the role of mitochondrial dynamics" in text  # "RESULTS. " label dropped
    assert "BACKGROUND." not in text and "RESULTS." not in text
    assert text.endswith("\nQuestion: Do mitochondria play a role in remodelling lace plant leaves during programmed cell death?\nAnswer:")
    assert item["choices_pretokenized"] == ["yes", "no", "maybe"] and item["label"] == 0
    labels = [r["label"] for r in built["pubmedqa"].files["lm_eval/mul/test.jsonl"]]
    assert [labels.count(i) for i in range(3)] == [552, 338, 110]  # PQA-L: yes / no / maybe


def test_classification_items(built: dict[str, TaskData]) -> None:
    strategy = first(built, "bigbench_strategy_qa", "Yes_Or_No")
    assert strategy == {"inputs_pretokenized": "Was the Louisiana Purchase made with bitcoin? Yes or no?",
                        "choices_pretokenized": ["Yes", "No"], "label": 1, "idx": 0}
    misconceptions = built["bigbench_misconceptions"].files["Fact_Or_Misconception/mul/test.jsonl"]
    assert misconceptions[1]["inputs_pretokenized"] == ("Is the following statement a fact or a misconception?\n"
                                                        "Snakes cannot unhinge their jaws.\nAnswer:")
    assert [r["label"] for r in misconceptions[:2]] == [1, 0]  # raw gold F, T
    parens = first(built, "bigbench_cs_algorithms_valid_parentheses", "Balanced_Yes_No")
    assert parens["inputs_pretokenized"] == "Is the following sequence of brackets balanced?\n) ) ) { [ ] { } ] )\nAnswer:"
    assert parens["label"] == 1 and parens["idx"] == 256


def test_constant_gold_tasks_get_a_fixed_option_order(built: dict[str, TaskData]) -> None:
    """novel_concepts and strange_stories list the right option first in every raw item; the
    converter reorders options (sha256 order) so a lettered prompt is not solved by 'A'."""
    for task in ("bigbench_novel_concepts", "bigbench_strange_stories"):
        raw = raw_records(bloom._spec()[task]["file"])
        assert {r["gold"] for r in raw} == {0}
        for relative, records in built[task].files.items():
            assert len({r["label"] for r in records}) > 1, relative
            for r in records:
                if "Lettered" not in relative:
                    assert r["choices_pretokenized"][r["label"]] == raw[r["idx"]]["choices"][0]
                    assert sorted(r["choices_pretokenized"]) == sorted(raw[r["idx"]]["choices"])
    novel = first(built, "bigbench_novel_concepts", "In_Common")
    assert novel["inputs_pretokenized"] == "What do the following have in common? 1) lawyers 2) basketball 3) walled yards\nAnswer:"
    assert novel["choices_pretokenized"][novel["label"]] == "They all involve courts."


def test_generation_items(built: dict[str, TaskData]) -> None:
    assert first(built, "bigbench_dyck_languages", "Gauntlet")["targets_pretokenized"] == ["} ]"]
    lcs = first(built, "bigbench_cs_algorithms_lcs", "Gauntlet")
    assert lcs["targets_pretokenized"] == ["8"] and lcs["idx"] == 0
    assert lcs["inputs_pretokenized"].endswith("\nLength of longest common subsequence:")
    assert first(built, "bigbench_qa_wikidata", "Gauntlet") == {
        "inputs_pretokenized": "The native language of Daniel Schneidermann is", "targets_pretokenized": ["French"], "idx": 0}


def test_short_answer_matching() -> None:
    assert first_line("\n  } ]  \nInput: ( )") == "} ]"
    assert first_line("") == ""
    assert strict_match("}  ]", "} ]") and not strict_match("]", "} ]") and not strict_match("5", "-5")


def test_build_is_deterministic(built: dict[str, TaskData]) -> None:
    again = {t.task: t for t in bloom.build(RAW)}
    for task, data in built.items():
        assert sorted(again[task].files) == sorted(data.files)
        for relative, records in data.files.items():
            assert encode_records(again[task].files[relative]) == encode_records(records), relative


def test_task_yamls_match_the_built_tasks(built: dict[str, TaskData]) -> None:
    yamls = sorted((ROOT / "tasks" / "bloom").glob("*.yaml"))
    paths = {}
    for path in yamls:
        config = yaml.safe_load(path.read_text(encoding="utf-8"))
        assert config["name"] == f"bloom-{path.stem}" and config["path"] == f"bloom/{path.stem}"
        kind = next(iter(built[path.stem].files)).split("/")[1]
        assert config["type"] == kind and config["file-pattern"] == {"test": f"*/{kind}/test.jsonl"}
        paths[path.stem] = config
    assert set(paths) == set(built)


def test_missing_raw_file_is_named(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    raw = tmp_path / "raw"
    (raw / "llm_foundry_icl").mkdir(parents=True)
    shutil.copy(ICL / "SOURCE.md", raw / "llm_foundry_icl" / "SOURCE.md")
    assert prepare_main(["--raw", str(raw), "--out", str(tmp_path / "out"), "bloom"]) == 2
    err = capsys.readouterr().err
    assert "suite 'bloom'" in err and "commonsense_reasoning/openbook_qa.jsonl" in err
    assert not (tmp_path / "out" / "bloom").exists()
    with pytest.raises(PrepareError, match="pubmed_qa_labeled.jsonl"):
        bloom.build_task("pubmedqa", bloom._spec()["pubmedqa"], raw, bloom.source_counts(RAW), {})


def test_count_mismatch_and_malformed_items_are_errors(tmp_path: Path) -> None:
    spec = bloom._spec()
    folder = tmp_path / "llm_foundry_icl" / "symbolic_problem_solving"
    folder.mkdir(parents=True)
    lines = (ICL / "symbolic_problem_solving" / "math_qa.jsonl").read_text(encoding="utf-8").splitlines(keepends=True)
    (folder / "math_qa.jsonl").write_text("".join(lines[:10]), encoding="utf-8")
    data, _ = bloom.build_task("mathqa", spec["mathqa"], tmp_path, bloom.source_counts(RAW), {})
    problems = check_counts("bloom", [data])
    assert len(problems) == 3 and all("10 items, the published count is 2983" in p for p in problems)

    broken = json.loads(lines[1])
    broken["query"] = broken["query"].replace("\nD. ", "\nE. ")
    (folder / "math_qa.jsonl").write_text(lines[0] + json.dumps(broken) + "\n", encoding="utf-8")
    with pytest.raises(PrepareError, match=r"math_qa\.jsonl: item 2: .*list of 4 options"):
        bloom.build_task("mathqa", spec["mathqa"], tmp_path, bloom.source_counts(RAW), {})
