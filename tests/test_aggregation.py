"""Group statistics and the GLM-130B console formats."""

from __future__ import annotations

import pytest

from evaluation.aggregation import (
    FileScore,
    format_all_done,
    format_file_line,
    format_group_lines,
    format_task_done,
    group_statistics,
)

COLA = [42.665, 56.951, 65.197, 57.622, 65.197]


def test_reference_cola_example() -> None:
    files = [FileScore(f"prompt{i}.jsonl", 1043, {"Accuracy": v}) for i, v in enumerate(COLA)]
    stats = group_statistics(files)["Accuracy"]
    assert stats["max"] == pytest.approx(65.197)
    assert stats["median"] == pytest.approx(57.622)
    assert stats["average"] == pytest.approx(57.526, abs=5e-4)  # README of GLM-130B
    assert format_group_lines("validation", {"Accuracy": stats}) == [
        "    Group validation Accuracy: max = 65.197, median = 57.622, average = 57.526"
    ]


def test_average_is_weighted_by_item_count() -> None:
    files = [FileScore("a", 10, {"Accuracy": 50.0}), FileScore("b", 30, {"Accuracy": 90.0}), FileScore("c", 60, {"Accuracy": 20.0})]
    stats = group_statistics(files)["Accuracy"]
    # By hand: (10*50 + 30*90 + 60*20) / 100 = (500 + 2700 + 1200) / 100 = 44.0
    assert stats["average"] == pytest.approx(44.0)
    assert stats["median"] == pytest.approx(50.0)
    assert stats["max"] == pytest.approx(90.0)


def test_even_number_of_files_median_is_midpoint() -> None:
    files = [FileScore(str(i), 1, {"EM": v}) for i, v in enumerate([10.0, 40.0, 20.0, 30.0])]
    assert group_statistics(files)["EM"]["median"] == pytest.approx(25.0)


def test_multi_metric_format() -> None:
    files = [FileScore("x/test.jsonl", 4, {"EM": 25.0, "F1": 37.5})]
    stats = group_statistics(files)
    assert format_file_line(files[0]) == "        Finish x/test.jsonl, EM = 25.000, F1 = 37.500"
    assert format_group_lines("test", stats) == [
        "    Group test:",
        "        Metric EM: max = 25.000, median = 25.000, average = 25.000",
        "        Metric F1: max = 37.500, median = 37.500, average = 37.500",
    ]


def test_task_and_run_lines() -> None:
    assert format_task_done("cola", 12.345) == "Finish task cola in 12.3s."
    assert format_all_done(1, 3.0) == "Finish 1 task in 3.0s"
    assert format_all_done(3, 3.04) == "Finish 3 tasks in 3.0s"
