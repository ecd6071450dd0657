"""The symbol table: phoneme symbols <-> integer ids, saved next to every model.

Ids 0-3 are the specials ``<pad>``, ``<unk>``, ``<bos>``, ``<eos>``; the symbols
follow in the order they were given. A model's text embedding is indexed by these
ids, so a table is saved with the model (JSON, no pickle) and never rebuilt::

    {"format": "valle2-symbols", "version": 1, "symbols": ["<pad>", "<unk>", "<bos>", "<eos>", "_", "!", ...]}
"""

from __future__ import annotations

import json
import string
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from valle2.errors import ModelFileError, TextError

__all__ = [
    "SymbolTable",
    "PAD", "UNK", "BOS", "EOS", "SPECIALS",
    "WORD_BOUNDARY", "PUNCTUATION", "ENGLISH_PHONES",
    "is_phone",
]

PAD = "<pad>"
UNK = "<unk>"
BOS = "<bos>"
EOS = "<eos>"
SPECIALS: tuple[str, ...] = (PAD, UNK, BOS, EOS)

FORMAT = "valle2-symbols"
VERSION = 1

WORD_BOUNDARY = "_"
# ASCII punctuation plus the non-ASCII marks phonemizer preserves. "_" is the word
# boundary, not punctuation.
PUNCTUATION: tuple[str, ...] = tuple(c for c in string.punctuation if c != WORD_BOUNDARY) + (
    "¡", "¿", "—", "…", "«", "»", "“", "”",
)

# Every phone symbol espeak-ng 1.52.0 (espeakng-loader 0.2.4) produces for the
# English voices en-us, en-us-nyc, en-gb, en-gb-x-rp, en-gb-scotland,
# en-gb-x-gbclan, en-gb-x-gbcwmd and en-029. Derived with
# ``SymbolTable.from_texts`` over the ~470k characters of Python's pydoc topics,
# the alphabet spelled letter by letter, 20k random letter strings (to exercise
# espeak's letter-to-sound rules) and foreign names (loch, Llanelli, Dvořák).
# en-us uses all but five of them (ɒ ʉ ʍ ʲ and the dental mark come from the
# British, Scottish and Caribbean voices).
# The order is frozen: ids of existing default tables depend on it.
ENGLISH_PHONES: tuple[str, ...] = (
    "a", "b", "d", "e", "f", "h", "i", "j", "k", "l", "m", "n", "o", "p", "r", "s",
    "t", "u", "v", "w", "x", "z",
    "æ", "ð", "ŋ", "ɐ", "ɑ", "ɒ", "ɔ", "ə", "ɚ", "ɛ", "ɜ", "ɡ", "ɪ", "ɬ", "ɹ", "ɾ",
    "ʃ", "ʉ", "ʊ", "ʌ", "ʍ", "ʒ", "ʔ", "ʲ", "θ", "ᵻ",
    "ˈ",  # primary stress
    "ˌ",  # secondary stress
    "ː",  # length
    "\u0329",  # combining vertical line below: syllabic consonant (en-us "bottle" -> bˈɑːɾl̩)
    "\u032a",  # combining bridge below: dental (en-029 "t̪")
)


def is_phone(symbol: str) -> bool:
    """True for a symbol that is spoken: not a special, a word boundary or punctuation."""
    return symbol not in SPECIALS and symbol != WORD_BOUNDARY and symbol not in PUNCTUATION


def _is_english(language: str) -> bool:
    return language.lower().replace("_", "-").split("-")[0] == "en"


class SymbolTable:
    """A fixed mapping between symbols and ids.

    Args:
        symbols: the symbols in id order. The specials ``<pad>`` (0), ``<unk>`` (1),
            ``<bos>`` (2) and ``<eos>`` (3) always take ids 0-3: they are prepended
            when missing and moved to the front when given elsewhere.

    Raises:
        ValueError: a symbol is not a non-empty string or appears twice.
    """

    def __init__(self, symbols: Iterable[str]) -> None:
        given = list(symbols)
        seen: set[str] = set()
        for s in given:
            if not isinstance(s, str) or not s:
                raise ValueError(f"symbols must be non-empty strings, got {s!r}")
            if s in seen:
                raise ValueError(f"symbol {s!r} appears twice in the symbol table")
            seen.add(s)
        self._symbols: tuple[str, ...] = SPECIALS + tuple(s for s in given if s not in SPECIALS)
        self._ids: dict[str, int] = {s: i for i, s in enumerate(self._symbols)}

    # -- ids of the specials ------------------------------------------------
    pad_id = 0
    unk_id = 1
    bos_id = 2
    eos_id = 3

    @property
    def symbols(self) -> tuple[str, ...]:
        """All symbols in id order, specials included."""
        return self._symbols

    def __len__(self) -> int:
        return len(self._symbols)

    def __contains__(self, symbol: object) -> bool:
        return symbol in self._ids

    def __eq__(self, other: object) -> bool:
        return isinstance(other, SymbolTable) and self._symbols == other._symbols

    def __hash__(self) -> int:
        return hash(self._symbols)

    def __repr__(self) -> str:
        return f"SymbolTable({len(self)} symbols)"

    def separator_ids(self) -> list[int]:
        """What joins prompt text and target text in one AR sequence (inference and training pairs):
        the word boundary, when the table has one."""
        return [self.id(WORD_BOUNDARY)] if WORD_BOUNDARY in self else []

    def id(self, symbol: str) -> int:
        """The id of ``symbol``; ``KeyError`` if it is not in the table."""
        return self._ids[symbol]

    # -- encoding -----------------------------------------------------------
    def unknown(self, symbols: Iterable[str]) -> list[str]:
        """The distinct symbols of ``symbols`` that are not in the table, in order of appearance."""
        missing: dict[str, None] = {}
        for s in symbols:
            if s not in self._ids:
                missing[s] = None
        return list(missing)

    def encode(self, symbols: Iterable[str], on_unknown: str = "skip") -> list[int]:
        """Map symbols to ids.

        Args:
            symbols: symbols as produced by :class:`valle2.text.g2p.Phonemizer`.
            on_unknown: what to do with a symbol that is not in the table:
                ``"skip"`` drops it, ``"unk"`` maps it to ``<unk>``, ``"error"``
                raises :class:`TextError` naming the unknown symbols.
        """
        if on_unknown not in ("skip", "unk", "error"):
            raise ValueError(f"on_unknown must be 'skip', 'unk' or 'error', got {on_unknown!r}")
        symbols = list(symbols)
        if on_unknown == "error":
            missing = self.unknown(symbols)
            if missing:
                raise TextError(
                    f"{len(missing)} symbol(s) not in the symbol table: {' '.join(missing)}"
                )
        ids = []
        for s in symbols:
            i = self._ids.get(s)
            if i is not None:
                ids.append(i)
            elif on_unknown == "unk":
                ids.append(self.unk_id)
        return ids

    def decode(self, ids: Iterable[int]) -> list[str]:
        """Map ids back to symbols (specials included); ``ValueError`` for an id out of range."""
        if hasattr(ids, "tolist"):  # torch tensors and numpy arrays
            ids = ids.tolist()
        out = []
        for i in ids:
            i = int(i)
            if not 0 <= i < len(self._symbols):
                raise ValueError(f"symbol id {i} is out of range for a table of {len(self)} symbols")
            out.append(self._symbols[i])
        return out

    # -- serialisation ------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        """The JSON-ready form: ``{"format": "valle2-symbols", "version": 1, "symbols": [...]}``."""
        return {"format": FORMAT, "version": VERSION, "symbols": list(self._symbols)}

    @classmethod
    def from_dict(cls, data: dict[str, Any], source: str = "symbol table") -> SymbolTable:
        """Rebuild a table from :meth:`to_dict`'s output.

        Raises:
            ModelFileError: not a valle2 symbol table, an unknown version, or a
                malformed symbol list. ``source`` names the file in the message.
        """
        if not isinstance(data, dict) or data.get("format") != FORMAT:
            got = data.get("format") if isinstance(data, dict) else type(data).__name__
            raise ModelFileError(f"{source} is not a valle2 symbol table (format {got!r}, expected {FORMAT!r})")
        version = data.get("version")
        if version != VERSION:
            raise ModelFileError(
                f"{source} has symbol-table format version {version!r}; this valle2 reads "
                f"version {VERSION}. Use the valle2 release that wrote it, or upgrade valle2."
            )
        symbols = data.get("symbols")
        if not isinstance(symbols, list):
            raise ModelFileError(f"{source} has no 'symbols' list")
        if tuple(symbols[: len(SPECIALS)]) != SPECIALS:
            # Ids are baked into the model: a table whose specials moved would silently shift them.
            raise ModelFileError(f"{source} does not start with the specials {list(SPECIALS)}")
        try:
            return cls(symbols)
        except ValueError as e:
            raise ModelFileError(f"{source} is corrupt: {e}") from e

    def save(self, path: str | Path) -> None:
        """Write the table as UTF-8 JSON."""
        path = Path(path)
        path.write_text(json.dumps(self.to_dict(), ensure_ascii=False, indent=1) + "\n", encoding="utf-8")

    @classmethod
    def load(cls, path: str | Path) -> SymbolTable:
        """Read a table written by :meth:`save`.

        Raises:
            ModelFileError: the file is missing, not JSON, or not a supported table.
        """
        path = Path(path)
        try:
            text = path.read_text(encoding="utf-8")
        except FileNotFoundError as e:
            raise ModelFileError(f"symbol table {path} does not exist") from e
        except (OSError, UnicodeDecodeError) as e:
            raise ModelFileError(f"cannot read symbol table {path}: {e}") from e
        try:
            data = json.loads(text)
        except json.JSONDecodeError as e:
            raise ModelFileError(f"symbol table {path} is not valid JSON: {e}") from e
        return cls.from_dict(data, source=f"symbol table {path}")

    # -- construction -------------------------------------------------------
    @classmethod
    def default(cls, language: str = "en-us") -> SymbolTable:
        """The built-in table for English: specials, ``_``, punctuation, :data:`ENGLISH_PHONES`.

        It covers every English voice of espeak-ng (en-us, en-gb, ...), so one table
        serves them all. Other languages have no built-in table: build one from
        training texts with :meth:`from_texts`.

        Raises:
            TextError: ``language`` is not English.
        """
        if not _is_english(language):
            raise TextError(
                f"no built-in symbol table for language {language!r} (only English); "
                f"build one from your training texts with SymbolTable.from_texts(texts, {language!r})"
            )
        return cls((WORD_BOUNDARY,) + PUNCTUATION + ENGLISH_PHONES)

    @classmethod
    def from_texts(cls, texts: Iterable[str], language: str = "en-us") -> SymbolTable:
        """Build a table covering the phones espeak-ng produces for ``texts``.

        The texts are normalised and phonemized; the table is specials, ``_``, all
        :data:`PUNCTUATION`, then the phones found, sorted by code point.
        """
        from valle2.text.g2p import Phonemizer
        from valle2.text.normalize import normalize_text

        phonemizer = Phonemizer(language)
        found: set[str] = set()
        for text in texts:
            found.update(phonemizer.phonemize(normalize_text(text, language)))
        phones = sorted(s for s in found if is_phone(s))
        return cls((WORD_BOUNDARY,) + PUNCTUATION + tuple(phones))
