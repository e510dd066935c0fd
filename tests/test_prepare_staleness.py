"""``python -m evaluation.prepare --if-stale``: a prepared suite is reused only when the
converter code that wrote it is the current one and its files are intact.

Why: the quick start reuses ``.cache/quickstart-data`` between runs; when a pull changed
the quick-start subjects, the old data was evaluated against the new YAMLs and failed.
Uses the ``demo`` suite (generated, no raw files needed) so the test is fast.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from evaluation.prepare import common
from evaluation.prepare.__main__ import main as prepare_main


def manifest(out: Path) -> dict:
    return json.loads((out / "demo" / common.MANIFEST).read_text(encoding="utf-8"))


def test_current_suite_is_not_rebuilt(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    assert prepare_main(["--out", str(tmp_path), "demo"]) == 0
    assert manifest(tmp_path)["recipe"] == common.recipe_fingerprint()
    marker = tmp_path / "demo" / "untouched"
    marker.write_text("x")
    capsys.readouterr()
    assert prepare_main(["--if-stale", "--out", str(tmp_path), "demo"]) == 0
    assert "up to date" in capsys.readouterr().out
    assert marker.exists(), "a current suite must be left as it is"


@pytest.mark.parametrize("damage", ["recipe", "sample", "edited file", "missing file", "malformed manifest"])
def test_stale_suite_is_rebuilt(tmp_path: Path, damage: str) -> None:
    assert prepare_main(["--out", str(tmp_path), "demo"]) == 0
    data = manifest(tmp_path)
    first = tmp_path / "demo" / data["files"][0]["file"]
    if damage == "recipe":  # written by older converter code
        data["recipe"] = "0" * 64
        (tmp_path / "demo" / common.MANIFEST).write_text(json.dumps(data), encoding="utf-8")
    elif damage == "sample":
        data["sample"] = 3
        (tmp_path / "demo" / common.MANIFEST).write_text(json.dumps(data), encoding="utf-8")
    elif damage == "malformed manifest":  # e.g. hand-edited: an entry without its sha256
        del data["files"][0]["sha256"]
        (tmp_path / "demo" / common.MANIFEST).write_text(json.dumps(data), encoding="utf-8")
    elif damage == "edited file":
        first.write_text(first.read_text(encoding="utf-8") + "\n", encoding="utf-8")
    else:
        first.unlink()
    assert not common.suite_is_current(tmp_path, "demo")
    marker = tmp_path / "demo" / "gone-after-rebuild"
    marker.write_text("x")
    assert prepare_main(["--if-stale", "--out", str(tmp_path), "demo"]) == 0
    assert not marker.exists(), "a stale suite must be rewritten from scratch"
    assert common.suite_is_current(tmp_path, "demo")


def test_fingerprint_follows_the_converter_code(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    code = tmp_path / "prepare"
    code.mkdir()
    (code / "suite.py").write_text("SUBJECTS = ['a']\n")
    monkeypatch.setattr(common, "RECIPE_ROOTS", (code,))
    before = common.recipe_fingerprint()
    (code / "suite.py").write_text("SUBJECTS = ['b']\n")
    assert common.recipe_fingerprint() != before


def test_raw_folder_is_required_only_by_suites_that_read_it(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    with pytest.raises(SystemExit):
        prepare_main(["--out", str(tmp_path), "lambada"])
    assert "--raw is required" in capsys.readouterr().err
