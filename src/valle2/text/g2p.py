"""Grapheme-to-phoneme conversion with espeak-ng (through the ``phonemizer`` package).

The espeak-ng shared library and its data come from the ``espeakng-loader`` wheel,
so no system package is needed and every machine produces the same phones for the
same text (a symbol table is only valid for the espeak-ng version that built it).
Set ``PHONEMIZER_ESPEAK_LIBRARY`` / ``ESPEAK_DATA_PATH`` to use another espeak-ng.

Symbols. espeak's IPA string is split into one symbol per unicode character (after
NFC normalisation)::

    "həlˈoʊ, wˈɜːld!"  ->  h ə l ˈ o ʊ , _ w ˈ ɜ ː l d !

Stress marks (ˈ ˌ), the length mark (ː) and combining diacritics (the nasal tilde
of French "ɔ̃") are therefore symbols of their own. That keeps the inventory small
and closed (any new combination of known characters is still encodable) and makes
the split trivially reversible: ``"".join(symbols).replace("_", " ")`` gives back
espeak's string. The model learns the combinations. Spaces between words become the
word-boundary symbol ``"_"`` (one per gap); punctuation is kept as symbols because
it drives pauses and intonation.
"""

from __future__ import annotations

import logging
import os
import threading
import unicodedata

from valle2.errors import MissingDependencyError, TextError

__all__ = ["Phonemizer", "WORD_BOUNDARY", "supported_languages", "espeak_version"]

logger = logging.getLogger(__name__)

WORD_BOUNDARY = "_"

# Creating the first backend loads the library; phonemizer keeps the library path
# as class state, so configuring it is serialised across threads.
_SETUP_LOCK = threading.Lock()
_configured = False


class _PhonemizerLog(logging.LoggerAdapter):
    """phonemizer's log, with its info and warnings lowered to debug.

    phonemizer warns on every call whose output has a different word count from
    its input ("$3.50" -> four words) or in which espeak switched language; neither
    is a problem here, and a server would log one per request.
    """

    def log(self, level: int, msg: object, *args: object, **kwargs: object) -> None:
        super().log(logging.DEBUG if level <= logging.WARNING else level, msg, *args, **kwargs)


def _configure_espeak() -> None:
    """Point phonemizer at the espeak-ng library and data bundled in ``espeakng-loader``.

    Done lazily (never at import) and once per process. An espeak-ng chosen by the
    user through ``PHONEMIZER_ESPEAK_LIBRARY`` / ``ESPEAK_DATA_PATH`` is left alone.
    """
    global _configured
    with _SETUP_LOCK:
        if _configured:
            return
        try:
            import espeakng_loader
            from phonemizer.backend.espeak.wrapper import EspeakWrapper
        except ImportError as e:
            raise MissingDependencyError(
                f"the text front end needs phonemizer and espeakng-loader ({e}); "
                "install them with: pip install phonemizer espeakng-loader"
            ) from e
        if not os.environ.get("PHONEMIZER_ESPEAK_LIBRARY"):
            EspeakWrapper.set_library(espeakng_loader.get_library_path())
        if not os.environ.get("ESPEAK_DATA_PATH"):
            # phonemizer >= 3.3 takes the data path directly; older ones read the environment.
            if hasattr(EspeakWrapper, "set_data_path"):
                EspeakWrapper.set_data_path(espeakng_loader.get_data_path())
            else:
                os.environ["ESPEAK_DATA_PATH"] = espeakng_loader.get_data_path()
        _configured = True


def supported_languages() -> dict[str, str]:
    """The espeak-ng language codes available, mapped to their names (``{"en-us": "English_(America)"}``)."""
    _configure_espeak()
    from phonemizer.backend import EspeakBackend

    return dict(EspeakBackend.supported_languages())


def espeak_version() -> str:
    """The version of the espeak-ng library in use, e.g. ``"1.52.0"``."""
    _configure_espeak()
    from phonemizer.backend import EspeakBackend

    return ".".join(str(v) for v in EspeakBackend.version())


def _language_error(language: str, available: dict[str, str]) -> TextError:
    base = language.lower().split("-")[0]
    close = sorted(code for code in available if code.split("-")[0] == base)
    hint = f"close matches: {', '.join(close)}" if close else (
        f"{len(available)} are available, e.g. {', '.join(sorted(available)[:12])}, ...; "
        "list them all with valle2.text.g2p.supported_languages() (the codes of `espeak-ng --voices`)"
    )
    return TextError(f"language {language!r} is not supported by espeak-ng; {hint}")


def ipa_to_symbols(ipa: str) -> list[str]:
    """Split an espeak IPA string into symbols: one per character, spaces -> one ``"_"``.

    Leading and trailing word boundaries are dropped.
    """
    symbols: list[str] = []
    for char in unicodedata.normalize("NFC", ipa):
        if char.isspace():
            if symbols and symbols[-1] != WORD_BOUNDARY:
                symbols.append(WORD_BOUNDARY)
        else:
            symbols.append(char)
    if symbols and symbols[-1] == WORD_BOUNDARY:
        symbols.pop()
    return symbols


class Phonemizer:
    """espeak-ng G2P for one language, returning a list of symbols.

    The espeak backend is created once, in the constructor (so an unknown language
    fails early), and reused. espeak-ng keeps global state in its C library, so calls
    are serialised with a lock: one instance can be shared by the threads of a server.

    Example:
        >>> Phonemizer("en-us").phonemize("Hello world!")
        ['h', 'ə', 'l', 'ˈ', 'o', 'ʊ', '_', 'w', 'ˈ', 'ɜ', 'ː', 'l', 'd', '!']

    Raises:
        TextError: ``language`` is not an espeak-ng language.
        MissingDependencyError: phonemizer or espeakng-loader is not installed.
    """

    def __init__(self, language: str = "en-us") -> None:
        if not isinstance(language, str) or not language.strip():
            raise TextError(f"language must be an espeak-ng code such as 'en-us', got {language!r}")
        self.language = language.strip()
        self._lock = threading.Lock()
        self._backend = self._create_backend()

    def _create_backend(self):
        _configure_espeak()
        from phonemizer.backend import EspeakBackend

        available = EspeakBackend.supported_languages()
        if self.language not in available:
            raise _language_error(self.language, available)
        with _SETUP_LOCK:
            return EspeakBackend(
                self.language,
                preserve_punctuation=True,
                with_stress=True,
                # espeak marks words it reads in another language with "(en)...(fr)";
                # those letters would become bogus symbols.
                language_switch="remove-flags",
                logger=_PhonemizerLog(logging.getLogger(f"{__name__}.phonemizer"), {}),
            )

    def phonemize(self, text: str) -> list[str]:
        """Phonemize ``text`` (already normalised) into symbols; ``[]`` for blank text."""
        if not isinstance(text, str):
            raise TypeError(f"text must be a str, got {type(text).__name__}")
        # phonemizer treats each line as an utterance; one text is one utterance here.
        text = " ".join(text.split())
        if not text:
            return []
        with self._lock:
            ipa = self._backend.phonemize([text], strip=True, njobs=1)[0]
        return ipa_to_symbols(ipa)

    def __repr__(self) -> str:
        return f"Phonemizer(language={self.language!r})"
