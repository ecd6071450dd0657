"""Symbol table: specials, encode/decode, save/load, version check, English coverage."""

import json

import pytest

from valle2.errors import ModelFileError, TextError
from valle2.text.g2p import Phonemizer
from valle2.text.normalize import normalize_text
from valle2.text.symbols import BOS, EOS, PAD, PUNCTUATION, UNK, SymbolTable, is_phone


def test_specials_take_ids_zero_to_three():
    table = SymbolTable(["a", "b"])
    assert table.symbols == (PAD, UNK, BOS, EOS, "a", "b")
    assert (table.pad_id, table.unk_id, table.bos_id, table.eos_id) == (0, 1, 2, 3)
    assert len(table) == 6


def test_specials_given_out_of_place_are_moved_to_the_front():
    table = SymbolTable(["a", EOS, "b", PAD])
    assert table.symbols == (PAD, UNK, BOS, EOS, "a", "b")


@pytest.mark.parametrize("symbols", [["a", "a"], ["a", ""], ["a", 3]])
def test_bad_symbol_lists_are_refused(symbols):
    with pytest.raises(ValueError):
        SymbolTable(symbols)


def test_encode_decode_round_trip():
    table = SymbolTable(["h", "i", "_"])
    ids = table.encode(["h", "i", "_", "i"])
    assert ids == [4, 5, 6, 5]
    assert table.decode(ids) == ["h", "i", "_", "i"]


def test_unknown_symbol_policies():
    table = SymbolTable(["a", "b"])
    assert table.unknown(["a", "x", "y", "x"]) == ["x", "y"]
    assert table.encode(["a", "x", "b"], on_unknown="skip") == [4, 5]
    assert table.encode(["a", "x", "b"], on_unknown="unk") == [4, table.unk_id, 5]
    with pytest.raises(TextError, match="x"):
        table.encode(["a", "x"], on_unknown="error")
    with pytest.raises(ValueError, match="on_unknown"):
        table.encode(["a"], on_unknown="ignore")


def test_decode_out_of_range_is_refused():
    with pytest.raises(ValueError, match="99"):
        SymbolTable(["a"]).decode([99])


def test_save_load_round_trip(tmp_path):
    table = SymbolTable.default()
    path = tmp_path / "symbols.json"
    table.save(path)
    data = json.loads(path.read_text(encoding="utf-8"))
    assert data["format"] == "valle2-symbols"
    assert data["version"] == 1
    loaded = SymbolTable.load(path)
    assert loaded == table
    assert loaded.symbols == table.symbols
    assert SymbolTable.from_dict(table.to_dict()) == table


def test_unknown_version_is_refused(tmp_path):
    path = tmp_path / "symbols.json"
    data = SymbolTable(["a"]).to_dict()
    data["version"] = 2
    path.write_text(json.dumps(data), encoding="utf-8")
    with pytest.raises(ModelFileError, match="version 2"):
        SymbolTable.load(path)


@pytest.mark.parametrize(
    "content, message",
    [
        ('{"format": "something-else", "version": 1, "symbols": []}', "not a valle2 symbol table"),
        ("not json", "not valid JSON"),
        ('{"format": "valle2-symbols", "version": 1, "symbols": ["a", "<pad>"]}', "specials"),
        ('{"format": "valle2-symbols", "version": 1, "symbols": ["<pad>", "<unk>", "<bos>", "<eos>", "a", "a"]}',
         "twice"),
    ],
)
def test_corrupt_files_are_refused(tmp_path, content, message):
    path = tmp_path / "symbols.json"
    path.write_text(content, encoding="utf-8")
    with pytest.raises(ModelFileError, match=message):
        SymbolTable.load(path)


def test_missing_file_is_refused(tmp_path):
    with pytest.raises(ModelFileError, match="does not exist"):
        SymbolTable.load(tmp_path / "nope.json")


def test_default_table_has_boundary_punctuation_and_no_duplicates():
    table = SymbolTable.default()
    assert "_" in table
    assert all(p in table for p in ",.!?;:")
    assert len(set(table.symbols)) == len(table)
    assert SymbolTable.default("en-gb") == table


def test_default_table_is_english_only():
    with pytest.raises(TextError, match="fr-fr"):
        SymbolTable.default("fr-fr")


def test_is_phone():
    assert is_phone("ə") and is_phone("ˈ")
    assert not any(is_phone(s) for s in ("_", ",", "!", PAD, EOS))
    assert "_" not in PUNCTUATION


PARAGRAPH = (
    "On Tuesday, 14th March 2023, Dr. Eleanor Whitfield-Nguyen (aged 47) drove her "
    "beige Volkswagen through the foggy Scottish Highlands: past lochs, castles and "
    "thatched cottages. \"Isn't it gorgeous?\" she asked; her husband, a jovial "
    "physicist, just laughed. They'd paid $3,499.99 for the trip - 20% less than "
    "usual! Queues, rhythm, measure, vision, judge, church, thought, this, sing, "
    "button, bottle, little, water, hurry, pleasure, boy, cow, cure, hair, near, "
    "father, cot, caught, nurse, about, happy, kit, dress, trap, strut, foot, goose."
)


@pytest.mark.parametrize("language", ["en-us", "en-gb"])
def test_default_table_covers_a_varied_english_paragraph(language):
    symbols = Phonemizer(language).phonemize(normalize_text(PARAGRAPH, language))
    assert len(symbols) > 300
    assert SymbolTable.default().unknown(symbols) == []


def test_from_texts_builds_a_covering_table():
    table = SymbolTable.from_texts(["Bonjour le monde, ça va?"], "fr-fr")
    symbols = Phonemizer("fr-fr").phonemize("Bonjour le monde, ça va?")
    assert table.unknown(symbols) == []
    assert "ʁ" in table  # the French r, absent from English
    assert "ʁ" not in SymbolTable.default()
