"""The CLUE converter on the real raw files in ../shared/data (skipped when they are absent)."""

from __future__ import annotations

from collections import Counter

import copy
import json
from pathlib import Path

import pytest

from evaluation.metrics import answer_tokens, exact_match_score, f1_score
from evaluation.prepare import clue
from evaluation.prepare.__main__ import main as prepare_main
from evaluation.prepare.common import PrepareError, check_counts, check_raw_files, encode_records, load_prompts

RAW = Path(__file__).resolve().parents[2] / "shared" / "data"
pytestmark = pytest.mark.skipif(not all((RAW / f).is_file() for f in clue.RAW_FILES),
                                reason=f"CLUE raw files not found under {RAW}")


@pytest.fixture(scope="module")
def tasks() -> dict[str, clue.TaskData]:
    return {t.task: t for t in clue.build(RAW)}


def split_counts(task: clue.TaskData) -> dict[str, set[int]]:
    counts: dict[str, set[int]] = {}
    for relative, records in task.files.items():
        counts.setdefault(Path(relative).stem, set()).add(len(records))
    return counts


def test_counts_match_the_published_figures(tasks) -> None:
    assert check_counts("clue", list(tasks.values())) == []
    expected = {"afqmc": {"dev": 4316}, "ocnli": {"dev": 2950}, "c3": {"dev": 3816, "test": 3892},
                "cmrc2018": {"dev": 3219}, "drcd": {"dev": 3524, "test": 3493}}
    for name, splits in expected.items():
        assert tasks[name].expected == splits
        assert split_counts(tasks[name]) == {s: {n} for s, n in splits.items()}


def test_prompt_files_and_types(tasks) -> None:
    assert sorted(tasks["afqmc"].files) == [f"{p}/mul/dev.jsonl" for p in
                                            ("Duplicate_Question_en", "Paraphrase_Judgement", "Same_Meaning", "Same_Question_Asked")]
    assert len(tasks["ocnli"].files) == 4
    assert sorted(tasks["c3"].files) == [f"{p}/mul/{s}.jsonl" for p in ("Passage_Question_Answer", "Read_And_Choose") for s in ("dev", "test")]
    assert all("/gen/" in f for f in [*tasks["cmrc2018"].files, *tasks["drcd"].files])
    prompts = load_prompts("clue")
    for name in ("afqmc", "ocnli"):  # classification: at least 3 prompts
        assert len(prompts[name]["prompts"]) >= 3


def test_afqmc_first_item(tasks) -> None:
    first = json.loads((RAW / clue.AFQMC).read_text(encoding="utf-8").split("\n")[0])
    assert first == {"sentence1": "双十一花呗提额在哪", "sentence2": "里可以提花呗额度", "label": "0"}
    record = tasks["afqmc"].files["Same_Meaning/mul/dev.jsonl"][0]
    assert record == {"inputs_pretokenized": "问题一：双十一花呗提额在哪\n问题二：里可以提花呗额度\n这两个问题的意思相同吗？请回答是或否。\n回答：",
                      "choices_pretokenized": ["否", "是"], "label": 0, "id": 0}
    labels = [r["label"] for r in tasks["afqmc"].files["Paraphrase_Judgement/mul/dev.jsonl"]]
    assert (labels.count(0), labels.count(1)) == (2978, 1338)  # SOURCE.md


def test_ocnli_excludes_items_without_gold_label(tasks) -> None:
    raw = [json.loads(line) for line in (RAW / clue.OCNLI).read_text(encoding="utf-8").split("\n") if line.strip()]
    no_gold = {r["id"] for r in raw if r["label"] == "-"}
    assert len(raw) == 3000 and len(no_gold) == 50
    records = tasks["ocnli"].files["Premise_Hypothesis_Relation/mul/dev.jsonl"]
    assert not no_gold & {r["id"] for r in records}
    assert [r["label"] for r in records].count(0) == 947  # entailment
    assert [r["label"] for r in records].count(1) == 1103  # neutral
    assert [r["label"] for r in records].count(2) == 900  # contradiction
    first = raw[0]
    assert records[0]["id"] == first["id"] and first["label"] != "-"
    assert records[0]["inputs_pretokenized"] == f"前提：{first['sentence1']}\n假设：{first['sentence2']}\n前提和假设之间的关系是蕴含、中立还是矛盾？\n答："
    assert records[0]["choices_pretokenized"] == ["蕴含", "中立", "矛盾"]
    assert records[0]["label"] == ["entailment", "neutral", "contradiction"].index(first["label"])


def test_c3_items(tasks) -> None:
    dev = tasks["c3"].files["Passage_Question_Answer/mul/dev.jsonl"]
    assert dev[0] == {"inputs_pretokenized": "男：听说你们公司要派你去南方工作?\n女：是呀，虽说那边环境好，待遇也不错，可我还是觉得在家里最好。\n问题：他们在谈论什么?\n答案：",
                      "choices_pretokenized": ["旅行", "坏境", "工作", "家庭"], "label": 2, "id": "47-275-0", "subset": "d",
                      "passage_id": "d/47-275"}
    assert all(r["passage_id"] == f"{r['subset']}/{r['id'].rsplit('-', 1)[0]}" for r in dev)
    per_passage = Counter(r["passage_id"] for r in dev)  # questions about one text share a cluster
    assert max(per_passage.values()) > 1 and len(per_passage) < len(dev)
    assert dev[1825]["subset"] == "m" and dev[1825]["id"] == "11-67-0"  # d questions first, then m
    assert dev[1825]["choices_pretokenized"][dev[1825]["label"]] == "他是一个很虚心的人"
    listed = tasks["c3"].files["Read_And_Choose/mul/dev.jsonl"][0]["inputs_pretokenized"]
    assert "选项：\nA. 旅行\nB. 坏境\nC. 工作\nD. 家庭\n" in listed
    counts = {n: sum(len(r["choices_pretokenized"]) == n for r in dev) for n in (2, 3, 4)}
    assert counts == {2: 170, 3: 465, 4: 3181}  # 2-4 options per question


def test_cmrc2018_and_drcd_items(tasks) -> None:
    cmrc = tasks["cmrc2018"].files["Read_Passage_Answer/gen/dev.jsonl"][0]
    assert cmrc["id"] == "DEV_0_QUERY_0"
    assert cmrc["targets_pretokenized"] == ["光荣和ω-force"] * 3
    assert cmrc["inputs_pretokenized"].startswith("阅读文章：")
    assert cmrc["inputs_pretokenized"].endswith("\n问题：《战国无双3》是由哪两个公司合作开发的？\n答案：")
    drcd = tasks["drcd"].files["Read_Passage_Answer/gen/dev.jsonl"][0]
    assert drcd["id"] == "1147-5-1" and drcd["targets_pretokenized"] == ["歐洲", "歐洲"]
    assert drcd["inputs_pretokenized"].startswith("閱讀文章：在歐洲，梵語的學術研究，由德國學者陸特和漢斯雷頓開創。")
    assert drcd["inputs_pretokenized"].endswith("\n問題：陸特和漢斯雷頓開創了哪一地區對梵語的學術研究？\n答案：")
    assert tasks["drcd"].files["Answer_From_Context/gen/test.jsonl"][0]["targets_pretokenized"] == ["梵語", "梵語"]


def test_character_level_metrics_on_traditional_chinese_and_fullwidth_punctuation() -> None:
    assert answer_tokens("陸特和漢斯雷頓") == list("陸特和漢斯雷頓")
    assert exact_match_score("「歐洲」。", "歐洲") == 1.0
    assert exact_match_score("（梵語）", "梵語") == 1.0
    assert f1_score("歐洲大陸", "歐洲") == pytest.approx(2 * 0.5 * 1.0 / 1.5)
    assert answer_tokens("光荣和ω-force") == ["光", "荣", "和", "ωforce"]


def test_build_is_deterministic(tasks) -> None:
    again = {t.task: t for t in clue.build(RAW)}
    for name, task in tasks.items():
        assert sorted(again[name].files) == sorted(task.files)
        for relative, records in task.files.items():
            assert encode_records(again[name].files[relative]) == encode_records(records)


def partial_raw(tmp_path: Path, leave_out: str) -> Path:
    """A raw folder of symlinks to every CLUE file but one."""
    for relative in clue.RAW_FILES:
        if relative != leave_out:
            (tmp_path / relative).parent.mkdir(parents=True, exist_ok=True)
            (tmp_path / relative).symlink_to(RAW / relative)
    return tmp_path


def test_missing_raw_file_is_named(tmp_path: Path, capsys) -> None:
    raw = partial_raw(tmp_path / "raw", "c3/c3-m-test.json")
    problems = check_raw_files(raw, "clue", clue.RAW_FILES)
    assert len(problems) == 1 and "c3/c3-m-test.json" in problems[0] and "'clue'" in problems[0]
    with pytest.raises(PrepareError, match="c3-m-test.json"):
        clue.build_c3(raw)
    assert prepare_main(["--raw", str(raw), "--out", str(tmp_path / "out"), "clue"]) == 2
    err = capsys.readouterr().err
    assert "c3/c3-m-test.json" in err and "clue" in err
    assert not (tmp_path / "out" / "clue").exists()


def test_count_mismatch_is_an_error(tmp_path: Path) -> None:
    raw = partial_raw(tmp_path, clue.OCNLI)
    lines = (RAW / clue.OCNLI).read_text(encoding="utf-8").split("\n")
    (raw / clue.OCNLI).parent.mkdir(parents=True, exist_ok=True)
    kept = [line for line in lines if line.strip()][:-1]
    (raw / clue.OCNLI).write_text("\n".join(kept) + "\n", encoding="utf-8")
    with pytest.raises(PrepareError, match=r"ocnli/dev.json: 2999 items, the published count is 3000"):
        clue.build_ocnli(raw)


def test_prompt_with_wrong_verbalizers_is_rejected(monkeypatch) -> None:
    config = copy.deepcopy(load_prompts("clue"))
    config["afqmc"]["prompts"]["Same_Meaning"]["choices"] = ["是"]
    monkeypatch.setattr(clue, "load_prompts", lambda name: config)
    with pytest.raises(PrepareError, match="Same_Meaning.*one non-empty verbalizer per label"):
        clue.task_prompts("clue", "afqmc", labelled=True)
