"""Record THUDM/GLM's zero-shot protocol inputs (LAMBADA, WikiText / LM windows) as fixtures for
``tests/test_glm_paper_protocols.py`` (run by hand, never by CI; THUDM/GLM is not a dependency).

THUDM/GLM's own ``tasks/language_model/dataset.py`` (``LMDataset``, ``LambadaDataset``) and
``tasks/language_model/detokenizer.py`` run unchanged; stubbed: ``mpu`` (imported by
``tasks/data_utils.py`` for functions not reached here) and ``utils.print_rank_0``. A toy word
tokenizer stands in for GPT-2 BPE (the layouts do not depend on which ids the words get):

* ``lm``: ``LMDataset`` rows (``--block-lm --task-mask``, [gMASK]) for a synthetic document of
  ``n`` ids, for several (seq_length, overlapping_eval, n), bidirectional and ``--unidirectional``;
* ``lambada``: ``LambadaDataset`` rows (strict) for synthetic passages, both modes, with the
  token lists its ``get_tokens`` produced;
* ``wikitext_detokenized_sha256``: sha256 of ``wikitext_detokenizer`` applied to the UTF-8 text
  of ``../shared/data/wikitext/wiki.test.raw`` with ``\\r\\n`` read as ``\\n`` (what the converter
  writes), plus THUDM/GLM's ``len(text.strip().split(" "))`` count of it.

    mkdir -p /tmp/thudm_glm && git --git-dir=<bare clone of THUDM/GLM> archive HEAD | tar -x -C /tmp/thudm_glm
    /tmp/glmref/bin/python scripts/reference/make_glm_protocol_fixtures.py --glm-src /tmp/thudm_glm \\
        --wikitext ../shared/data/wikitext/wiki.test.raw --out tests/fixtures/glm_protocols.json
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
import tempfile
import types
from pathlib import Path

SPECIAL = {"pad": 0, "eos": 0, "ENC": 1, "sep": 2, "MASK": 3, "gMASK": 4, "sop": 5}


class _Command:
    def __init__(self, ident: int) -> None:
        self.Id = ident


class _Encoded:
    def __init__(self, ids: list[int]) -> None:
        self.tokenization = ids


class WordTokenizer:
    """Words (split on spaces) -> ids from 10 on; a leading space is part of no word."""

    def __init__(self) -> None:
        self.vocab: dict[str, int] = {}

    def get_command(self, name: str) -> _Command:
        return _Command(SPECIAL[name])

    def EncodeAsIds(self, text: str) -> _Encoded:  # noqa: N802 - THUDM/GLM's name
        return _Encoded([self.vocab.setdefault(w, 10 + len(self.vocab)) for w in text.split()])


def _args(**values) -> types.SimpleNamespace:
    base = dict(seq_length=16, overlapping_eval=4, unidirectional=False, block_lm=True, task_mask=True,
                no_block_position=False, sentinel_token=False, masked_lm=False, valid_data=None)
    base.update(values)
    return types.SimpleNamespace(**base)


def _row(sample: dict) -> dict:
    return {key: value.tolist() for key, value in sample.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--glm-src", type=Path, required=True)
    parser.add_argument("--wikitext", type=Path, required=True)
    parser.add_argument("--out", type=Path, required=True)
    ns = parser.parse_args()
    sys.modules["mpu"] = types.ModuleType("mpu")
    utils = types.ModuleType("utils")
    utils.print_rank_0 = lambda *a, **k: None
    sys.modules["utils"] = utils
    sys.path.insert(0, str(ns.glm_src))
    from tasks.language_model.dataset import LambadaDataset, LMDataset  # noqa: E402
    from tasks.language_model.detokenizer import get_detokenizer  # noqa: E402

    tokenizer = WordTokenizer()
    lm_cases = []
    for seq_length, overlap, n in ((16, 4, 40), (16, 4, 15), (16, 4, 9), (12, 5, 33), (1024, 256, 3000)):
        for unidirectional in (False, True):
            document = [100 + i for i in range(n)]
            dataset = LMDataset(_args(seq_length=seq_length, overlapping_eval=overlap, unidirectional=unidirectional),
                                [document], tokenizer, n, n)
            rows = [_row(dataset[i]) for i in range(len(dataset))]
            if seq_length == 1024:  # keep the fixture small: the layout of the big case as tokens scored per window
                rows = [{"scored": int(sum(r["loss_mask"])), "first_target": r["target"][r["loss_mask"].index(1)]} for r in rows]
            lm_cases.append({"seq_length": seq_length, "overlapping_eval": overlap, "n": n,
                             "unidirectional": unidirectional, "document": document, "rows": rows})
    passages = ["the cat sat on the mat and looked at the dog",
                "she opened the door and said hello to her friend anna",
                "one two three four"]
    lambada_cases = []
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "lambada.jsonl"
        path.write_text("".join(json.dumps({"text": t}) + "\n" for t in passages))
        for unidirectional in (False, True):
            dataset = LambadaDataset(_args(seq_length=64, valid_data=[str(path)], unidirectional=unidirectional), tokenizer)
            lambada_cases.append({"unidirectional": unidirectional, "seq_length": 64,
                                  "tokens": dataset.tokens, "labels": dataset.labels,
                                  "rows": [_row(dataset[i]) for i in range(len(dataset))]})
    raw = ns.wikitext.read_bytes().decode("utf-8").replace("\r\n", "\n")
    detokenized = get_detokenizer("wikitext")(raw)
    out = {"special": SPECIAL, "lm": lm_cases, "lambada": lambada_cases,
           "wikitext": {"original_tokens": len(raw.strip().split(" ")),
                        "detokenized_sha256": hashlib.sha256(detokenized.encode("utf-8")).hexdigest(),
                        "detokenized_chars": len(detokenized)},
           "made_with": "THUDM/GLM commit 4f61ed7237a3b0187f4d62062429348276a78c84, scripts/reference/make_glm_protocol_fixtures.py"}
    ns.out.write_text(json.dumps(out, separators=(",", ":")) + "\n")
    print(f"wrote {ns.out} ({ns.out.stat().st_size} bytes)")


if __name__ == "__main__":
    main()
