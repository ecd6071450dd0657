"""The text front end: raw text -> normalised text -> phone symbols -> ids."""

from __future__ import annotations

import logging
import unicodedata

from valle2.errors import TextError
from valle2.text.g2p import WORD_BOUNDARY, Phonemizer
from valle2.text.normalize import normalize_text
from valle2.text.symbols import SymbolTable, is_phone

__all__ = ["TextFrontend", "DEFAULT_MAX_CHARS"]

logger = logging.getLogger(__name__)

DEFAULT_MAX_CHARS = 5000

# Languages espeak-ng reads in Latin script. For these, text mostly in another script
# is refused: espeak would not read it but name it ("Chinese letter Chinese letter").
_LATIN_SCRIPT_LANGUAGES = frozenset({
    "af", "az", "bs", "ca", "cs", "cy", "da", "de", "en", "eo", "es", "et", "eu", "fi",
    "fr", "ga", "gd", "gl", "hr", "ht", "hu", "ia", "id", "is", "it", "la", "lb", "lt",
    "lv", "mi", "ms", "mt", "nb", "nl", "no", "pl", "pt", "ro", "sk", "sl", "sq", "sv",
    "sw", "tn", "tr", "uz", "vi",
})


def _preview(text: str, n: int = 40) -> str:
    return repr(text if len(text) <= n else text[:n] + "...")


def _foreign_letters(text: str) -> tuple[int, list[str]]:
    """Count the letters of ``text`` and list those not in Latin script."""
    letters = 0
    foreign = []
    for char in text:
        # Modifier letters (ʻ, ʼ) belong to no script in particular.
        if not char.isalpha() or unicodedata.category(char) == "Lm":
            continue
        letters += 1
        if not unicodedata.name(char, "").startswith("LATIN"):
            foreign.append(char)
    return letters, foreign


def _script_name(char: str) -> str:
    # Unicode names begin with the script: "CYRILLIC SMALL LETTER PE", "CJK UNIFIED IDEOGRAPH-4F60".
    first = unicodedata.name(char, "UNKNOWN").split()[0]
    return first if first == "CJK" else first.capitalize()


def _words(symbols: list[str]) -> list[list[str]]:
    """The symbols between word boundaries, empty groups left out."""
    words: list[list[str]] = [[]]
    for s in symbols:
        if s == WORD_BOUNDARY:
            words.append([])
        else:
            words[-1].append(s)
    return [w for w in words if w]


def _tidy_boundaries(symbols: list[str]) -> list[str]:
    """Collapse runs of word boundaries and strip them at the ends (after symbols were dropped)."""
    out: list[str] = []
    for s in symbols:
        if s == WORD_BOUNDARY and (not out or out[-1] == WORD_BOUNDARY):
            continue
        out.append(s)
    if out and out[-1] == WORD_BOUNDARY:
        out.pop()
    return out


class TextFrontend:
    """Turns text into the symbol ids a model was trained on.

    ``phonemes(text)`` normalises the text (:func:`normalize_text`) and phonemizes it
    with espeak-ng (:class:`Phonemizer`); ``encode(text)`` maps the symbols to ids
    with the model's :class:`SymbolTable`.

    Policy (every refusal is a :class:`TextError` naming the problem):

    * empty or whitespace-only text is refused ("text is empty");
    * text longer than ``max_chars`` characters is refused, naming its length
      (split long text with :func:`valle2.text.split.split_sentences` first);
    * for a Latin-script language (English, French, ...), text in which more than
      half of the letters are of another script is refused, naming the script;
      espeak-ng would otherwise read "Chinese letter" for every character;
    * text with nothing to speak (only punctuation or symbols, e.g. ``"!!!"``) is
      refused;
    * symbols missing from the symbol table are dropped and a warning lists them,
      unless more than half of the phone symbols (word boundaries not counted) are
      unknown, more than half of the words hold an unknown symbol, or no phone
      remains: then the text is refused, naming the unknown symbols and the
      language. That happens when text of another language reaches the model:
      Mandarin through an English table gives tone digits and ɕ, χ in every word,
      though two thirds of its symbols are English ones - hence the word count.

    Args:
        symbols: the model's symbol table.
        language: espeak-ng language code of the text.
        max_chars: the longest text accepted, in characters.
        phonemizer: an existing :class:`Phonemizer` for ``language`` to share;
            one is created when omitted.

    Thread-safe: the phonemizer serialises espeak calls; everything else is stateless.
    """

    def __init__(
        self,
        symbols: SymbolTable,
        language: str = "en-us",
        max_chars: int = DEFAULT_MAX_CHARS,
        phonemizer: Phonemizer | None = None,
    ) -> None:
        if max_chars < 1:
            raise ValueError(f"max_chars must be at least 1, got {max_chars}")
        if phonemizer is not None and phonemizer.language != language:
            raise ValueError(
                f"the phonemizer is for {phonemizer.language!r} but the front end for {language!r}"
            )
        self.symbols = symbols
        self.language = language
        self.max_chars = max_chars
        self.phonemizer = phonemizer if phonemizer is not None else Phonemizer(language)

    def _check_text(self, text: str) -> None:
        if not isinstance(text, str):
            raise TextError(f"text must be a string, got {type(text).__name__}")
        if not text.strip():
            raise TextError("text is empty")
        if len(text) > self.max_chars:
            raise TextError(
                f"text is {len(text)} characters; the limit is {self.max_chars} "
                "(split it into sentences and synthesise them one by one)"
            )
        if self.language.lower().split("-")[0] in _LATIN_SCRIPT_LANGUAGES:
            letters, foreign = _foreign_letters(text)
            if foreign and 2 * len(foreign) > letters:
                script = _script_name(foreign[0])
                raise TextError(
                    f"text {_preview(text)} is mostly in {script} script, which the "
                    f"{self.language!r} front end cannot read; use a model for that language"
                )
            if foreign:
                logger.warning(
                    "text has %d letter(s) outside Latin script (%s); espeak-ng %s will name or spell them",
                    len(foreign), "".join(dict.fromkeys(foreign))[:20], self.language,
                )

    def phonemes(self, text: str) -> list[str]:
        """Normalise and phonemize ``text``; see the class docstring for the refusals."""
        self._check_text(text)
        normalized = normalize_text(text, self.language)
        symbols = self.phonemizer.phonemize(normalized)
        if not any(is_phone(s) for s in symbols):
            raise TextError(
                f"text {_preview(text)} has nothing to speak (only punctuation or symbols)"
            )
        return symbols

    def encode(self, text: str) -> list[int]:
        """The symbol ids of ``text`` (no ``<bos>``/``<eos>``); see the class docstring for the policy."""
        symbols = self.phonemes(text)
        unknown = self.symbols.unknown(symbols)
        if unknown:
            counted = [s for s in symbols if s != WORD_BOUNDARY]
            n_unknown = sum(s not in self.symbols for s in counted)
            words = _words(symbols)
            n_broken = sum(any(s not in self.symbols for s in w) for w in words)
            known = _tidy_boundaries([s for s in symbols if s in self.symbols])
            if (
                2 * n_unknown > len(counted)
                or 2 * n_broken > len(words)
                or not any(is_phone(s) for s in known)
            ):
                raise TextError(
                    f"{n_unknown} of {len(counted)} phone symbols ({n_broken} of {len(words)} words) "
                    f"of {self.language} text {_preview(text)} are not in the model's symbol table: "
                    f"{' '.join(unknown)}; is the text in the language the model was trained on?"
                )
            logger.warning(
                "dropping %d symbol(s) the model does not know (%s) from %s text %s",
                n_unknown, " ".join(unknown), self.language, _preview(text),
            )
            symbols = known
        return self.symbols.encode(symbols, on_unknown="error")

    def __repr__(self) -> str:
        return f"TextFrontend(language={self.language!r}, symbols={len(self.symbols)}, max_chars={self.max_chars})"
