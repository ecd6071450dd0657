"""Text normalisation for WER: make a reference and an ASR output comparable.

A transcript and an ASR hypothesis differ in ways that are not recognition errors:
case ("DON'T" / "don't"), punctuation, numbers ("21" / "twenty-one"), abbreviations
("Mr." / "mister"), hyphenation ("well-known" / "well known") and spacing. Both sides
go through the same function so that only the words are compared::

    "Mr. Smith paid $3.50, didn't he?"  -> "mister smith paid three dollars and fifty cents didn't he"
    "TWENTY-ONE well-known 'quotes'"    -> "twenty one well known quotes"

Steps, in order:

1. :func:`valle2.text.normalize.normalize_text` (the synthesiser's own normaliser)
   spells out numbers, currencies, times, ordinals and abbreviations. Running it
   on both sides means "1999" and "nineteen ninety-nine" compare equal.
2. Unicode NFKC, lower case.
3. Hyphens and dashes become spaces: "twenty-one" and "twenty one" are the same
   words, and ASR systems hyphenate inconsistently.
4. Apostrophes inside a word are kept ("don't", "o'clock", "john's"); quote marks
   around words are dropped.
5. Every other non-alphanumeric character becomes a space; whitespace collapses.

British/American spelling variants are not unified (LibriSpeech and Whisper both
use American spelling for the vast majority of words).
"""

from __future__ import annotations

import re
import unicodedata

from valle2.errors import Valle2Error

__all__ = ["normalize_for_wer"]

_APOSTROPHES = str.maketrans({"\u2018": "'", "\u2019": "'", "\u02bc": "'", "`": "'", "\u00b4": "'"})
_DASHES = re.compile(r"[-\u2010-\u2015\u2212_/]+")
# Anything that is not a letter, a digit, an apostrophe or whitespace.
_PUNCT = re.compile(r"[^\w'\s]|_", re.UNICODE)
# An apostrophe not between two word characters is a quote mark.
_QUOTE_APOSTROPHE = re.compile(r"(?<!\w)'|'(?!\w)")
_WHITESPACE = re.compile(r"\s+")


def normalize_for_wer(text: str, language: str = "en-us") -> str:
    """Return ``text`` as lower-case words separated by single spaces, for WER.

    ``language`` selects the number/abbreviation rules of
    :func:`~valle2.text.normalize.normalize_text` (full rules for English only).
    An empty or punctuation-only input gives ``""``.
    """
    if not isinstance(text, str):
        raise TypeError(f"text must be a str, got {type(text).__name__}")
    if not text.strip():
        return ""
    from valle2.text.normalize import normalize_text

    try:
        text = normalize_text(text, language)
    except Valle2Error:
        # The synthesiser's normaliser refuses some inputs (e.g. unknown symbols); for
        # scoring we still want the plain words rather than an exception mid-run.
        pass
    text = unicodedata.normalize("NFKC", text).translate(_APOSTROPHES).lower()
    text = _DASHES.sub(" ", text)
    text = _PUNCT.sub(" ", text)
    text = _QUOTE_APOSTROPHE.sub(" ", text)
    return _WHITESPACE.sub(" ", text).strip()
