"""Known-answer tests for the English normaliser and the number-to-words helpers."""

import pytest

from valle2.text.normalize import (
    decimal_to_words,
    normalize_text,
    number_to_words,
    ordinal_to_words,
    year_to_words,
)


@pytest.mark.parametrize(
    "n, words",
    [
        (0, "zero"),
        (7, "seven"),
        (13, "thirteen"),
        (20, "twenty"),
        (21, "twenty-one"),
        (99, "ninety-nine"),
        (100, "one hundred"),
        (101, "one hundred one"),
        (999, "nine hundred ninety-nine"),
        (1000, "one thousand"),
        (1234, "one thousand two hundred thirty-four"),
        (1_000_001, "one million one"),
        (2_500_000_000, "two billion five hundred million"),
        (-42, "minus forty-two"),
    ],
)
def test_number_to_words(n, words):
    assert number_to_words(n) == words


def test_huge_numbers_are_read_digit_by_digit():
    assert number_to_words(10**21) == "one" + " zero" * 21


@pytest.mark.parametrize(
    "n, words",
    [
        (1, "first"), (2, "second"), (3, "third"), (4, "fourth"), (5, "fifth"),
        (8, "eighth"), (9, "ninth"), (11, "eleventh"), (12, "twelfth"), (20, "twentieth"),
        (21, "twenty-first"), (42, "forty-second"), (100, "one hundredth"),
        (101, "one hundred first"), (1000, "one thousandth"),
    ],
)
def test_ordinal_to_words(n, words):
    assert ordinal_to_words(n) == words


@pytest.mark.parametrize(
    "n, words",
    [
        (1999, "nineteen ninety-nine"),
        (1905, "nineteen oh five"),
        (1900, "nineteen hundred"),
        (2000, "two thousand"),
        (2005, "two thousand five"),
        (2010, "twenty ten"),
        (2024, "twenty twenty-four"),
        (1066, "ten sixty-six"),
    ],
)
def test_year_to_words(n, words):
    assert year_to_words(n) == words


@pytest.mark.parametrize(
    "number, words",
    [("3.14", "three point one four"), ("0.5", "zero point five"), (".5", "point five"),
     ("-2.05", "minus two point zero five"), ("1,234.5", "one thousand two hundred thirty-four point five")],
)
def test_decimal_to_words(number, words):
    assert decimal_to_words(number) == words


@pytest.mark.parametrize(
    "text, expected",
    [
        # numbers
        ("I have 3 cats.", "I have three cats."),
        ("It was -7 outside.", "It was minus seven outside."),
        ("Pi is 3.14.", "Pi is three point one four."),
        ("1,234,567 people", "one million two hundred thirty-four thousand five hundred sixty-seven people"),
        ("Agent 007", "Agent zero zero seven"),
        ("a 3D film", "a three D film"),
        ("COVID-19", "COVID-nineteen"),
        # ordinals
        ("the 21st century", "the twenty-first century"),
        ("my 2nd and 3rd tries", "my second and third tries"),
        ("on the 12th", "on the twelfth"),
        # years and decades
        ("Born in 1999.", "Born in nineteen ninety-nine."),
        ("In 2005 and 2010.", "In two thousand five and twenty ten."),
        ("the 1990s", "the nineteen nineties"),
        ("the '80s", "the eighties"),
        ("from 1990–1999", "from nineteen ninety to nineteen ninety-nine"),
        # currency
        ("It costs $3.50.", "It costs three dollars and fifty cents."),
        ("$1", "one dollar"),
        ("$0.99", "ninety-nine cents"),
        ("$1,000", "one thousand dollars"),
        ("$2.5 million", "two point five million dollars"),
        ("£5 and €10", "five pounds and ten euros"),
        ("-$5", "minus five dollars"),
        # percentages and degrees
        ("50% off", "fifty percent off"),
        ("-3.5%", "minus three point five percent"),
        ("It is 20°C.", "It is twenty degrees Celsius."),
        ("1°", "one degree"),
        # times
        ("at 10:30", "at ten thirty"),
        ("at 10:05", "at ten oh five"),
        ("at 10:00", "at ten o'clock"),
        ("at 3pm", "at three PM"),
        ("at 10:30 a.m. today", "at ten thirty AM today"),
        ("Call at 9 a.m.", "Call at nine AM."),
        # abbreviations
        ("Mr. and Mrs. Smith", "mister and missus Smith"),
        ("Dr. Jones", "doctor Jones"),
        ("Mr Brown", "mister Brown"),
        ("Ms. Lee", "miz Lee"),
        ("It took 5 ms. Then", "It took five ms. Then"),
        ("St. Louis", "Saint Louis"),
        ("on Baker St.", "on Baker street."),
        ("Gen. Lee and the gen. pool", "general Lee and the gen. pool"),
        ("cats, dogs, etc. are pets", "cats, dogs, et cetera are pets"),
        ("cats, dogs, etc. The end", "cats, dogs, et cetera. The end"),
        ("Tom vs. Jerry", "Tom versus Jerry"),
        ("fruit, e.g. apples, i.e. food", "fruit, for example apples, that is food"),
        ("No. 5", "number five"),
        # symbols
        ("salt & pepper", "salt and pepper"),
        ("1 + 1 = 2", "one plus one equals two"),
        ("me@example.com", "me at example.com"),
        ("#1 hit", "number one hit"),
        # unicode punctuation and whitespace
        ("“Hi,” she said — ‘yes’…", "\"Hi,\" she said, 'yes'..."),
        ("wait - what", "wait, what"),
        ("  lots \t of\n\nspace  ", "lots of space"),
    ],
)
def test_english_known_answers(text, expected):
    assert normalize_text(text, "en-us") == expected


def test_english_variants_get_the_english_rules():
    assert normalize_text("21st", "en-gb") == "twenty-first"


def test_other_languages_get_only_neutral_cleanup():
    # Digits, "%" and abbreviations are left to espeak-ng's rules for that language.
    assert normalize_text("  «Il a 3,5 %» — dit M. Dupont  ", "fr-fr") == '"Il a 3,5 %", dit M. Dupont'
    assert normalize_text("1990–1999", "de") == "1990-1999"


def test_blank_text_normalises_to_empty():
    assert normalize_text(" \n\t ") == ""


def test_non_string_is_refused():
    with pytest.raises(TypeError, match="str"):
        normalize_text(42)  # type: ignore[arg-type]
