"""The FewCLUE converter on the real raw files in ../shared/data (skipped when they are absent),
and the chunked multiple-choice class that its many-label tasks (IFLYTEK, CSLDCP) use."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from evaluation.data import ItemError
from evaluation.custom_tasks.clue import ChunkedMultiChoiceTask, packed_length, plan_chunks
from evaluation.prepare import fewclue
from evaluation.prepare.common import PrepareError, check_counts, check_raw_files, encode_records, load_prompts
from evaluation.scoring.packing import truncate_left
from evaluation.task_config import MultiChoiceTaskConfig
from evaluation.tasks import FileData, MultiChoiceTask

RAW = Path(__file__).resolve().parents[2] / "shared" / "data"
HAVE_RAW = all((RAW / f).is_file() for f in fewclue.RAW_FILES)
needs_raw = pytest.mark.skipif(not HAVE_RAW, reason=f"FewCLUE raw files not found under {RAW}")


def raw_rows(task: str, split: str = "test_public") -> list[dict]:
    # split on "\n" only: some texts hold characters that str.splitlines() also breaks at
    text = (RAW / f"fewclue/{task}/{split}.json").read_text(encoding="utf-8")
    return [json.loads(line) for line in text.split("\n") if line.strip()]


@pytest.fixture(scope="module")
def tasks() -> dict[str, fewclue.TaskData]:
    return {t.task: t for t in fewclue.build(RAW)}


@needs_raw
def test_counts_match_the_published_figures(tasks) -> None:
    assert sorted(tasks) == sorted(fewclue.COUNTS)
    assert check_counts("fewclue", list(tasks.values())) == []
    prompts = load_prompts("fewclue")
    for name, task in tasks.items():
        assert task.expected == fewclue.COUNTS[name]
        assert len(prompts[name]["prompts"]) >= 3
        assert len(task.files) == 2 * len(prompts[name]["prompts"])
        for relative, records in task.files.items():
            split = Path(relative).stem
            assert relative.endswith(f"/mul/{split}.jsonl") and len(records) == fewclue.COUNTS[name][split]


@needs_raw
def test_fixed_verbalizer_tasks(tasks) -> None:
    bustm = tasks["bustm"].files["Same_Meaning/mul/test_public.jsonl"][0]
    assert raw_rows("bustm")[0] == {"id": 591, "sentence1": "喊我老公", "sentence2": "以后就叫我老公", "label": "1"}
    assert bustm == {"inputs_pretokenized": "句子一：喊我老公\n句子二：以后就叫我老公\n这两句话的意思相同吗？请回答是或否。\n回答：",
                     "choices_pretokenized": ["否", "是"], "label": 1, "id": 591}
    eprstmt = tasks["eprstmt"].files["Good_Or_Bad_Review/mul/test_public.jsonl"][0]
    assert eprstmt["inputs_pretokenized"] == "呵呵了 这物流速度也是没谁了 同城网购竟然三天了还不到\n这是一条好评还是差评？\n答："
    assert eprstmt["choices_pretokenized"] == ["差评", "好评"] and eprstmt["label"] == 0 and eprstmt["id"] == 835
    ocnli = tasks["ocnli"].files["GPT3_Style_en/mul/test_public.jsonl"][0]
    assert ocnli["inputs_pretokenized"] == "可是你好多是给别人打的呀.\nQuestion: 你没给我打过 True, False or Neither?\nAnswer:"
    assert ocnli["choices_pretokenized"] == ["True", "Neither", "False"] and ocnli["label"] == 1
    csl = tasks["csl"].files["Keywords_Statement/mul/test_public.jsonl"][0]
    assert "\n说法：这篇论文的关键词是综述、循环肿瘤细胞、免疫磁珠技术。\n" in csl["inputs_pretokenized"]
    assert csl["label"] == 1 and csl["id"] == 1429
    for task in ("bustm", "csl", "eprstmt", "cluewsc"):  # balanced test sets stay balanced
        labels = [r["label"] for r in tasks[task].files[next(iter(tasks[task].files))]]
        assert labels.count(0) == labels.count(1)


@needs_raw
def test_cluewsc_marks_the_pronoun(tasks) -> None:
    record = tasks["cluewsc"].files["Marked_Pronoun/mul/test_public.jsonl"][0]
    assert record["id"] == 1180 and record["label"] == 1
    assert record["inputs_pretokenized"].startswith("不过，在面子上，毛豆还下不来，一半是因为他确实很生气；另一半也是因为，【他】毛豆怎么能")
    assert record["inputs_pretokenized"].endswith("\n上文中【】标出的“他”指代的是“毛豆”吗？请回答是或否。\n回答：")
    assert tasks["cluewsc"].files["Refers_To/mul/test_public.jsonl"][1]["label"] == 0


@needs_raw
def test_chid_blank_and_candidates(tasks) -> None:
    raw = raw_rows("chid")[0]
    record = tasks["chid"].files["Fill_Blank/mul/test_public.jsonl"][0]
    assert record["choices_pretokenized"] == raw["candidates"] and record["label"] == raw["answer"] == 1
    assert record["inputs_pretokenized"] == raw["content"].replace("#idiom#", "____") + "\n上文横线处应填入的成语是："
    assert all("#idiom#" not in r["inputs_pretokenized"] for f in tasks["chid"].files.values() for r in f)
    listed = tasks["chid"].files["Choose_From_Candidates/mul/test_public.jsonl"][0]["inputs_pretokenized"]
    assert "\n候选成语：严阵以待、改朝换代、不共戴天、天南海北、物归原主、波谲云诡、高视阔步\n" in listed


@needs_raw
def test_label_name_tasks(tasks) -> None:
    tnews = tasks["tnews"].files["News_Category/mul/test_public.jsonl"][0]
    assert tnews["choices_pretokenized"] == ["故事", "文化", "娱乐", "体育", "财经", "房产", "汽车", "教育", "科技",
                                             "军事", "旅游", "国际", "股票", "农业", "电竞"]
    assert tnews["inputs_pretokenized"] == "新闻标题：农村依然很重视土葬\n这条新闻属于哪个栏目？\n答：" and tnews["label"] == 0
    iflytek = tasks["iflytek"].files["App_Category/mul/test_public.jsonl"]
    assert len(iflytek[0]["choices_pretokenized"]) == 119
    for record, raw in zip(iflytek, raw_rows("iflytek")):
        assert record["choices_pretokenized"][record["label"]] == raw["label_des"] and record["label"] == raw["label"]
    csldcp = tasks["csldcp"].files["Discipline/mul/dev_few_all.jsonl"]
    names = (RAW / fewclue.CSLDCP_LABELS).read_text(encoding="utf-8").split()
    assert csldcp[0]["choices_pretokenized"] == names and len(names) == 67
    for record, raw in zip(csldcp, raw_rows("csldcp", "dev_few_all")):
        assert names[record["label"]] == raw["label"]


@needs_raw
def test_build_is_deterministic(tasks) -> None:
    names = ("chid", "cluewsc", "iflytek")  # one of each kind of choices (candidates, verbalizers, label names)
    again = {name: fewclue.build_task(RAW, name) for name in names}
    for name in names:
        task = tasks[name]
        assert sorted(again[name].files) == sorted(task.files)
        for relative, records in task.files.items():
            assert encode_records(again[name].files[relative]) == encode_records(records)


@needs_raw
def test_missing_label_file_is_named(tmp_path: Path) -> None:
    for relative in fewclue.RAW_FILES:
        if relative != fewclue.TNEWS_LABELS:
            (tmp_path / relative).parent.mkdir(parents=True, exist_ok=True)
            (tmp_path / relative).symlink_to(RAW / relative)
    problems = check_raw_files(tmp_path, "fewclue", fewclue.RAW_FILES)
    assert len(problems) == 1 and "label_index2en2zh.json" in problems[0]
    with pytest.raises(PrepareError, match="label_index2en2zh.json"):
        fewclue.build_task(tmp_path, "tnews")
    fewclue.build_task(tmp_path, "bustm")  # the other tasks do not need it


@needs_raw
def test_unknown_label_is_an_error(tmp_path: Path) -> None:
    for relative in fewclue.RAW_FILES:
        (tmp_path / relative).parent.mkdir(parents=True, exist_ok=True)
        if relative != "fewclue/eprstmt/dev_few_all.json":
            (tmp_path / relative).symlink_to(RAW / relative)
    rows = raw_rows("eprstmt", "dev_few_all")
    rows[3]["label"] = "Neutral"
    (tmp_path / "fewclue/eprstmt/dev_few_all.json").write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    with pytest.raises(PrepareError, match=r"eprstmt/dev_few_all.json: item 4 has label 'Neutral'"):
        fewclue.build_task(tmp_path, "eprstmt")


# ---------------------------------------------------------------- ChunkedMultiChoiceTask
def test_plan_chunks() -> None:
    assert plan_chunks([[1], [2], [3]], 8) == [[0, 1, 2]]  # single tokens share one row
    assert plan_chunks([[1, 2]] * 3, 16) == [[0, 1, 2]]  # fits: one sequence, as type: mul
    chunks = plan_chunks([[1, 2, 3]] * 10, 16)  # 30 tokens > 16: chunks of at most 8 target tokens
    assert chunks == [[0, 1], [2, 3], [4, 5], [6, 7], [8, 9]]
    assert plan_chunks([[1] * 9, [2], [3, 4]], 12) == [[0], [1, 2]]  # a long choice stands alone
    assert all(packed_length([[1, 2, 3]] * len(c)) <= 8 for c in chunks)


def make_task(cls, tokenizer, max_seq_length: int = 2048, batch: int = 4):
    config = MultiChoiceTaskConfig(name="t", type="mul", path="p", max_seq_length=max_seq_length, micro_batch_size=batch)
    return cls(config, tokenizer, model_max_length=512)


def items_for(task, rows: list[dict]) -> FileData:
    return FileData(Path("x.jsonl"), [task.load_item(r) for r in rows], list(range(1, len(rows) + 1)))


def test_chunked_equals_plain_multiple_choice_when_choices_fit(scorer, tokenizer) -> None:
    rows = [{"inputs_pretokenized": "新闻标题：农村依然很重视土葬\n这条新闻属于哪个栏目？\n答：",
             "choices_pretokenized": ["故事", "文化", "娱乐", "体育"], "label": 0},
            {"inputs_pretokenized": "评论：还不错\n答：", "choices_pretokenized": ["消极", "积极"], "label": 1}]
    plain, chunked = make_task(MultiChoiceTask, tokenizer), make_task(ChunkedMultiChoiceTask, tokenizer)
    expected = plain.predict(scorer, items_for(plain, rows), progress=False)
    got = chunked.predict(scorer, items_for(chunked, rows), progress=False)
    assert [r["scores"] for r in got] == [r["scores"] for r in expected]
    assert [r["prediction"] for r in got] == [r["prediction"] for r in expected]


@needs_raw
def test_chunked_scores_equal_each_choice_scored_alone(scorer, tokenizer) -> None:
    """119 IFLYTEK label names (over 1000 tiny-model tokens) against a 512-position model."""
    raw = raw_rows("iflytek")[:1]
    names = fewclue.iflytek_labels(RAW)[1]
    rows = [{"inputs_pretokenized": f"应用介绍：{r['sentence']}\n这款应用属于哪个类别？\n答：", "choices_pretokenized": names,
             "label": int(r["label"])} for r in raw]
    plain = make_task(MultiChoiceTask, tokenizer)
    with pytest.raises(ItemError, match="too many"):
        plain.load_item(rows[0])
    task = make_task(ChunkedMultiChoiceTask, tokenizer, batch=8)
    data = items_for(task, rows)
    records = task.predict(scorer, data, progress=False)
    for item, record in zip(data.items, records):
        requests, chunks = task.requests(item)
        assert len(chunks) > 1 and sorted(i for c in chunks for i in c) == list(range(119))
        assert len({tuple(context) for context, _ in requests}) == 1  # one context for every chunk
        context = requests[0][0]
        assert context == truncate_left(item.context, len(context))
        alone = [scorer.cond_log_prob([(context, [choice])], task.options)[0][0] for choice in item.choices[:3] + item.choices[-3:]]
        np.testing.assert_allclose(record["scores"][:3] + record["scores"][-3:], alone, rtol=1e-4, atol=1e-4)
        assert record["prediction"] == int(np.argmax(record["scores"])) and len(record["scores"]) == 119
