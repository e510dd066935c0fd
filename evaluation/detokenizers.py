"""Detokenizers of THUDM/GLM's language-modelling evaluation (``tasks/language_model/detokenizer.py``).

WikiText and PTB are distributed pre-tokenized (``" @-@ "`` for a hyphen, spaces around
punctuation, ``" 's"``); GLM's zero-shot WikiText protocol (``zero_wikitext.sh``) turns the
text back into ordinary prose before encoding it, so that a BPE tokenizer sees text like
its training data. The rules below are the ones that protocol applies, in its order; one
of its regular expressions (``/' [0-9]/``) only matches that literal slash-delimited text,
which WikiText does not contain, and is kept so the text is exactly theirs.
"""

from __future__ import annotations

import re
from typing import Callable

_WIKITEXT_REPLACEMENTS_BEFORE = (
    ("s '", "s'"),  # plural possessive
    (" @-@ ", "-"), (" @,@ ", ","), (" @.@ ", "."),  # number separators
    (" : ", ": "), (" ; ", "; "), (" . ", ". "), (" ! ", "! "), (" ? ", "? "), (" , ", ", "),
)
_WIKITEXT_BRACKETS = (
    (r"\(\s*([^\)]*?)\s*\)", r"(\1)"),
    (r"\[\s*([^\]]*?)\s*\]", r"[\1]"),
    (r"{\s*([^}]*?)\s*}", r"{\1}"),
    (r"\"\s*([^\"]*?)\s*\"", r'"\1"'),
    (r"'\s*([^']*?)\s*'", r"'\1'"),
)
_WIKITEXT_REPLACEMENTS_AFTER = (
    ("= = = =", "===="), ("= = =", "==="), ("= =", "=="),  # heading markers
    (" \N{DEGREE SIGN} ", "\N{DEGREE SIGN}"),
    (" \n", "\n"), ("\n ", "\n"),
    (" N ", " 1 "), (" 's", "'s"),
)


def wikitext_detokenize(text: str) -> str:
    """WikiText's tokenization undone, as THUDM/GLM's ``wikitext_detokenizer``."""
    for old, new in _WIKITEXT_REPLACEMENTS_BEFORE[:1]:
        text = text.replace(old, new)
    text = re.sub(r"/' [0-9]/", r"/'[0-9]/", text)
    for old, new in _WIKITEXT_REPLACEMENTS_BEFORE[1:]:
        text = text.replace(old, new)
    for pattern, replacement in _WIKITEXT_BRACKETS:
        text = re.sub(pattern, replacement, text)
    for old, new in _WIKITEXT_REPLACEMENTS_AFTER:
        text = text.replace(old, new)
    return text


def ptb_detokenize(text: str) -> str:
    """Penn Treebank's tokenization undone, as THUDM/GLM's ``ptb_detokenizer``."""
    for old, new in ((" '", "'"), (" \n", "\n"), ("\n ", "\n"), (" n't", "n't"), (" N ", "1 "), ("$ 1", "$1"), ("# 1", "#1")):
        text = text.replace(old, new)
    return text


DETOKENIZERS: dict[str, Callable[[str], str]] = {"wikitext": wikitext_detokenize, "ptb": ptb_detokenize}


def original_token_count(text: str) -> int:
    """THUDM/GLM's normaliser for "adjusted" perplexity: ``len(text.strip().split(" "))`` of
    the text *before* detokenization (single spaces: a newline is part of a token)."""
    return len(text.strip().split(" "))
