"""espeak-ng G2P and the text front end's refusal policy."""

import logging
import threading

import pytest

from valle2.errors import TextError
from valle2.text import Phonemizer, SymbolTable, TextFrontend
from valle2.text.g2p import espeak_version, ipa_to_symbols, supported_languages


@pytest.fixture(scope="module")
def en():
    return Phonemizer("en-us")


@pytest.fixture(scope="module")
def frontend(en):
    return TextFrontend(SymbolTable.default(), "en-us", phonemizer=en)


# -- Phonemizer ---------------------------------------------------------------

def test_hello_world_en_us(en):
    assert en.phonemize("hello world") == ["h", "ə", "l", "ˈ", "o", "ʊ", "_", "w", "ˈ", "ɜ", "ː", "l", "d"]


def test_punctuation_is_kept_as_symbols(en):
    symbols = en.phonemize("Hello, world! How are you?")
    assert symbols[symbols.index(",") + 1] == "_"
    assert symbols.count("!") == 1
    assert symbols[-1] == "?"
    assert " " not in symbols


def test_multiline_text_is_one_utterance(en):
    assert en.phonemize("hello\n\nworld") == en.phonemize("hello world")


def test_blank_text_gives_no_symbols(en):
    assert en.phonemize("  ") == []


def test_french(en):
    symbols = Phonemizer("fr-fr").phonemize("Bonjour le monde")
    # "ʒ" and the uvular "ʁ" of "bonjour", the nasal "ɔ̃" as base + combining tilde.
    assert symbols[:3] == ["b", "ɔ", "\u0303"]
    assert "ʁ" in symbols
    assert symbols != en.phonemize("Bonjour le monde")


def test_unknown_language_names_it_and_suggests():
    with pytest.raises(TextError, match="'xx-yy'.*supported_languages"):
        Phonemizer("xx-yy")
    with pytest.raises(TextError, match="close matches: .*en-us"):
        Phonemizer("en-xx")


def test_supported_languages_and_version():
    languages = supported_languages()
    assert "en-us" in languages and "fr-fr" in languages
    assert espeak_version().count(".") == 2


def test_ipa_to_symbols_collapses_spaces_and_is_reversible():
    ipa = "  həlˈoʊ,   wˈɜːld!  "
    symbols = ipa_to_symbols(ipa)
    assert symbols[0] == "h" and symbols[-1] == "!"
    assert "".join(symbols).replace("_", " ") == " ".join(ipa.split())


def test_shared_instance_is_thread_safe(en):
    texts = [f"sentence number {i} is here" for i in range(16)]
    expected = [en.phonemize(t) for t in texts]
    results: dict[int, list[str]] = {}

    def work(i: int) -> None:
        results[i] = en.phonemize(texts[i])

    threads = [threading.Thread(target=work, args=(i,)) for i in range(16)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert [results[i] for i in range(16)] == expected


# -- TextFrontend -------------------------------------------------------------

def test_frontend_normalises_then_phonemizes(frontend, en):
    assert frontend.phonemes("Dr. Smith paid $5.") == en.phonemize("doctor Smith paid five dollars.")


def test_frontend_encode_round_trips_through_the_table(frontend):
    ids = frontend.encode("Hello, world!")
    assert all(i >= 4 for i in ids)  # no specials
    assert frontend.symbols.decode(ids) == frontend.phonemes("Hello, world!")


@pytest.mark.parametrize("text", ["", "   \n\t"])
def test_empty_text_is_refused(frontend, text):
    with pytest.raises(TextError, match="text is empty"):
        frontend.encode(text)


def test_too_long_text_is_refused_naming_the_length(en):
    short = TextFrontend(SymbolTable.default(), "en-us", max_chars=20, phonemizer=en)
    with pytest.raises(TextError, match="21 characters; the limit is 20"):
        short.encode("a" * 21)
    assert short.encode("a" * 20)


@pytest.mark.parametrize("text", ["!!!", "...", "?!, ;"])
def test_only_punctuation_is_refused(frontend, text):
    with pytest.raises(TextError, match="nothing to speak"):
        frontend.encode(text)


def test_text_in_another_script_is_refused(frontend):
    with pytest.raises(TextError, match="CJK"):
        frontend.encode("你好世界")
    with pytest.raises(TextError, match="Cyrillic"):
        frontend.encode("Привет, мир")


def test_mostly_unknown_symbols_are_refused(en):
    tiny = TextFrontend(SymbolTable(["_", "h", "ə"]), "en-us", phonemizer=en)
    with pytest.raises(TextError, match="not in the model's symbol table.*ˈ") as info:
        tiny.encode("hello world")
    assert "en-us" in str(info.value)


def test_other_language_through_an_english_table_is_refused():
    # Mandarin shares many symbols with English but every word carries a tone digit.
    cmn = TextFrontend(SymbolTable.default(), "cmn")
    with pytest.raises(TextError, match="cmn.*not in the model's symbol table"):
        cmn.encode("你好世界")


def test_a_few_unknown_symbols_are_dropped_with_a_warning(en, caplog):
    table = SymbolTable([s for s in SymbolTable.default().symbols if s != "ʊ"])
    fe = TextFrontend(table, "en-us", phonemizer=en)
    with caplog.at_level(logging.WARNING, logger="valle2.text.frontend"):
        ids = fe.encode("hello world, how are you doing today?")
    assert "ʊ" in caplog.text
    assert "ʊ" not in table.decode(ids)
    expected = [s for s in en.phonemize("hello world, how are you doing today?") if s != "ʊ"]
    assert table.decode(ids) == expected


def test_phonemizer_language_must_match(en):
    with pytest.raises(ValueError, match="fr-fr"):
        TextFrontend(SymbolTable.default(), "fr-fr", phonemizer=en)
