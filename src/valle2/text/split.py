"""Split long text into sentence-sized pieces for synthesis.

The AR model is trained on utterances of up to ~20 s, so long text is synthesised a
sentence at a time. :func:`split_sentences` breaks after ``. ! ? ;`` (and the CJK
``。！？；``), keeping the punctuation, but not after abbreviations (``Mr.``,
``Dr.``, ``e.g.``, ``i.e.``), initials (``J. K. Rowling``) or inside numbers
(``3.5``). Blank lines always end a piece. A sentence longer than ``max_chars`` is
cut at commas, then at spaces, packing as much as fits into each piece.

With ``min_words`` > 1, a piece of fewer words ("Hello!", "Yes.") is joined to the next piece
of its paragraph (the last one to the previous), as long as the result fits ``max_chars``:
synthesis asks for that, because a one-word piece is shorter than anything the models were
trained on, and the AR tends to run on to its length limit after it.
"""

from __future__ import annotations

import re

__all__ = ["split_sentences"]

# Never a sentence end: titles and Latin abbreviations that precede more words.
_NEVER_BREAK = frozenset({
    "mr", "mrs", "ms", "dr", "prof", "st", "vs", "v", "e.g", "i.e", "cf", "viz",
    "capt", "gen", "lt", "sgt", "col", "gov", "rev", "hon", "mt", "fig", "eq",
    "vol", "ch", "sec", "pp", "p",
})
# A sentence end only when the next word is capitalised: "etc. The" vs "etc. and".
_MAYBE_BREAK = frozenset({
    "etc", "jr", "sr", "inc", "ltd", "co", "corp", "approx", "dept", "al", "ave", "no",
})
# Candidate ends: terminators, then closing quotes/brackets, then a space or the end.
# CJK terminators need no space after them.
_CANDIDATE = re.compile(
    r"(?P<mark>[.!?;…]+)(?P<close>[\"'”’»)\]]*)(?=\s|$)"
    r"|(?P<cjk>[。！？；]+)(?P<cjkclose>[」』”’)）]*)"
)
_PARAGRAPH = re.compile(r"\n\s*\n")
_OPENERS = "\"'“‘«([¿¡"


def _word_before(text: str, end: int) -> str:
    start = text.rfind(" ", 0, end) + 1
    return text[start:end].lstrip(_OPENERS)


def _next_word(text: str, pos: int) -> str:
    return text[pos:].lstrip().lstrip(_OPENERS)


def _is_boundary(text: str, match: re.Match) -> bool:
    if match.group("cjk"):
        return True
    mark, close = match.group("mark"), match.group("close")
    following = _next_word(text, match.end())
    next_upper = not following or following[0].isupper()
    if ";" in mark:
        return True
    if "!" in mark or "?" in mark:
        # '"Why?" he asked.' is one sentence.
        return not (close and following[:1].islower())
    if mark in ("...", "…") or len(mark) > 1:
        return next_upper  # "Well... maybe" goes on; "I see... Then" does not.
    word = _word_before(text, match.start())
    lower = word.lower()
    if lower in _NEVER_BREAK:
        return False
    if len(word) == 1 and word.isupper() and word != "I":
        return not following[:1].isupper()  # an initial: "J. K. Rowling"
    if lower in _MAYBE_BREAK or "." in word:  # "etc.", "U.S.", "p.m."
        return next_upper
    return True


def _sentences(paragraph: str) -> list[str]:
    pieces = []
    start = 0
    for match in _CANDIDATE.finditer(paragraph):
        if _is_boundary(paragraph, match):
            pieces.append(paragraph[start:match.end()].strip())
            start = match.end()
    pieces.append(paragraph[start:].strip())
    return [p for p in pieces if p]


def _pack(parts: list[str], max_chars: int) -> list[str]:
    """Join consecutive parts with spaces while the result fits in ``max_chars``."""
    out: list[str] = []
    current = ""
    for part in parts:
        if not current:
            current = part
        elif len(current) + 1 + len(part) <= max_chars:
            current += " " + part
        else:
            out.append(current)
            current = part
    if current:
        out.append(current)
    return out


def _split_long(sentence: str, max_chars: int) -> list[str]:
    if len(sentence) <= max_chars:
        return [sentence]
    out: list[str] = []
    for clause in _pack(re.split(r"(?<=[,，、])\s*", sentence), max_chars):
        if len(clause) <= max_chars:
            out.append(clause)
            continue
        for chunk in _pack(clause.split(" "), max_chars):
            # A single "word" longer than the limit (a URL, unspaced script) is cut hard.
            out.extend(chunk[i:i + max_chars] for i in range(0, len(chunk), max_chars))
    return [p for p in (s.strip() for s in out) if p]


def _join_short(pieces: list[str], min_words: int, max_chars: int) -> list[str]:
    out: list[str] = []
    held = ""
    for piece in pieces:
        if held and len(held) + 1 + len(piece) > max_chars:
            out.append(held)
            held = ""
        current = f"{held} {piece}" if held else piece
        if len(current.split()) < min_words:
            held = current
        else:
            out.append(current)
            held = ""
    if held:
        if out and len(out[-1]) + 1 + len(held) <= max_chars:
            out[-1] += " " + held
        else:
            out.append(held)
    return out


def split_sentences(text: str, max_chars: int = 300, min_words: int = 1) -> list[str]:
    """Split ``text`` into sentences of at most ``max_chars`` characters.

    Args:
        text: any text; whitespace inside a piece is collapsed to single spaces.
        max_chars: the longest piece returned. Longer sentences are split at
            commas, then at word boundaries, then (for a single longer word) anywhere.
        min_words: pieces of fewer words are joined to a neighbour of the same
            paragraph when that fits ``max_chars`` (1: never).

    Returns:
        The pieces in order, punctuation kept, none empty. ``[]`` for blank text.

    Example:
        >>> split_sentences("Dr. Smith paid $3.50. Did he? Yes; twice.")
        ['Dr. Smith paid $3.50.', 'Did he?', 'Yes;', 'twice.']
        >>> split_sentences("Dr. Smith paid $3.50. Did he? Yes; twice.", min_words=3)
        ['Dr. Smith paid $3.50.', 'Did he? Yes; twice.']
    """
    if max_chars < 1:
        raise ValueError(f"max_chars must be at least 1, got {max_chars}")
    if min_words < 1:
        raise ValueError(f"min_words must be at least 1, got {min_words}")
    pieces: list[str] = []
    for paragraph in _PARAGRAPH.split(text):
        paragraph = " ".join(paragraph.split())
        parts = [p for sentence in _sentences(paragraph) for p in _split_long(sentence, max_chars)]
        pieces.extend(_join_short(parts, min_words, max_chars) if min_words > 1 else parts)
    return pieces
