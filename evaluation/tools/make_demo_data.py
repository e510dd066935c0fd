"""Write the small demo data set that ``tasks/demo/*.yaml`` evaluate.

    python -m evaluation.tools.make_demo_data DATA_PATH

Creates ``DATA_PATH/demo/`` with a multiple-choice task in three prompt phrasings
(so the group lines show max / median / average over prompts), a generation task
and a language-modelling text. The content is generated here (no downloads) and is
the same on every run.
"""

from __future__ import annotations

import argparse
import json
import random
import sys
from pathlib import Path

NUMBER_WORDS = ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten",
                "eleven", "twelve", "thirteen", "fourteen", "fifteen", "sixteen", "seventeen", "eighteen"]
ARITHMETIC_PROMPTS = {
    "Question_Answer": "Question: What is {a} plus {b}? Answer:",
    "Equation": "{a} + {b} =",
    "Add_The_Numbers": "Add {a} and {b}. The sum is",
}
CAPITALS = [("France", "Paris"), ("Italy", "Rome"), ("Germany", "Berlin"), ("Spain", "Madrid"), ("Japan", "Tokyo"),
            ("China", "Beijing"), ("Egypt", "Cairo"), ("Peru", "Lima"), ("Kenya", "Nairobi"), ("Canada", "Ottawa")]
TEXT = Path(__file__).with_name("tiny_corpus.txt")


def write_jsonl(path: Path, items: list[dict]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(item, ensure_ascii=False) + "\n" for item in items), encoding="utf-8")


def arithmetic_items(rng: random.Random, count: int = 24) -> list[tuple[int, int, list[int], int]]:
    items = []
    for _ in range(count):
        a, b = rng.randint(0, 9), rng.randint(0, 9)
        wrong = rng.sample([n for n in range(19) if n != a + b], 3)
        choices = [a + b, *wrong]
        rng.shuffle(choices)
        items.append((a, b, choices, choices.index(a + b)))
    return items


def make_demo_data(data_path: Path, seed: int = 0) -> Path:
    rng = random.Random(seed)
    root = data_path / "demo"
    questions = arithmetic_items(rng)
    for prompt_name, template in ARITHMETIC_PROMPTS.items():
        items = [{"inputs_pretokenized": template.format(a=NUMBER_WORDS[a], b=NUMBER_WORDS[b]),
                  "choices_pretokenized": [NUMBER_WORDS[c] for c in choices], "label": label}
                 for a, b, choices, label in questions]
        write_jsonl(root / "arithmetic" / prompt_name / "mul" / "test.jsonl", items)
    capitals = [{"inputs_pretokenized": f"What is the capital of {country}? The capital of {country} is",
                 "targets_pretokenized": [city]} for country, city in CAPITALS]
    write_jsonl(root / "capitals" / "Capital_Of" / "gen" / "test.jsonl", capitals)
    text_dir = root / "text"
    text_dir.mkdir(parents=True, exist_ok=True)
    (text_dir / "corpus.test.txt").write_text(TEXT.read_text(encoding="utf-8"), encoding="utf-8")
    return root


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("data_path", type=Path, help="DATA_PATH to write demo/ into")
    args = parser.parse_args(argv)
    root = make_demo_data(args.data_path)
    print(f"demo data written to {root}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
