"""The WER normaliser, WER and CER on hand-made pairs with known answers."""

import importlib.util
import sys

import pytest

from valle2.errors import MissingDependencyError, TextError
from valle2.eval.normalize import normalize_for_wer
from valle2.eval.wer import char_error_rate, wer_details, word_error_rate

needs_jiwer = pytest.mark.skipif(
    importlib.util.find_spec("jiwer") is None, reason='jiwer is not installed (pip install "valle2[eval]")'
)


@pytest.mark.parametrize(
    "text, expected",
    [
        ("Hello, World!", "hello world"),
        ("DON'T  stop\tnow...", "don't stop now"),
        ("\u201cQuoted\u201d and \u2018single\u2019 words", "quoted and single words"),
        ("It\u2019s John\u2019s book", "it's john's book"),
        ("twenty-one well-known e-mails", "twenty one well known e mails"),
        ("a -- pause \u2014 here", "a pause here"),
        ("Mr. Smith paid $3.50.", "mister smith paid three dollars and fifty cents"),
        ("In 1999 he was 21.", "in nineteen ninety nine he was twenty one"),
        ("the 3rd of 10", "the third of ten"),
        ("at 10:30 a.m.", "at ten thirty am"),
        ("", ""),
        ("  ?!  ", ""),
    ],
)
def test_normalize_for_wer(text, expected):
    assert normalize_for_wer(text) == expected


def test_written_and_spoken_numbers_compare_equal():
    assert normalize_for_wer("I have 2 cats and 21 dogs") == normalize_for_wer("i have two cats and twenty-one dogs")


@needs_jiwer
@pytest.mark.parametrize(
    "ref, hyp, wer",
    [
        ("the cat sat on the mat", "the cat sat on the mat", 0.0),
        ("the cat sat on the mat", "The cat sat on the mat.", 0.0),  # case and punctuation are free
        ("the cat sat on the mat", "the cat sit on the mat", 1 / 6),  # 1 substitution
        ("the cat sat on the mat", "the cat on the mat", 1 / 6),  # 1 deletion
        ("the cat sat on the mat", "the black cat sat on the mat", 1 / 6),  # 1 insertion
        ("one two three", "", 1.0),  # everything deleted
        ("one two", "one two three four", 1.0),  # two insertions over two words
        ("He paid 5 dollars", "he paid five dollars", 0.0),
    ],
)
def test_word_error_rate_known_answers(ref, hyp, wer):
    assert word_error_rate(ref, hyp) == pytest.approx(wer)


@needs_jiwer
@pytest.mark.parametrize(
    "ref, hyp, cer",
    [
        ("the cat", "The cat.", 0.0),  # normalised first
        ("the cat", "the bat", 1 / 7),  # 1 substituted character of 7 (the space counts)
        ("the cat", "the cats", 1 / 7),
        ("the cat", "", 1.0),
        (["ab", "cd"], ["ab", "xy"], 2 / 4),  # corpus CER: errors over all reference characters
    ],
)
def test_char_error_rate_known_answers(ref, hyp, cer):
    assert char_error_rate(ref, hyp) == pytest.approx(cer)


@needs_jiwer
def test_cer_tells_a_near_miss_from_babble():
    ref = "the weather is nice today"
    assert word_error_rate(ref, "that weather is thanks tonight") == pytest.approx(0.6)
    assert char_error_rate(ref, "that weather is thanks tonight") < 0.6 < char_error_rate(ref, "or maybe pills go on")


@needs_jiwer
def test_cer_refuses_an_empty_reference():
    with pytest.raises(TextError, match="no words"):
        char_error_rate(["a b", " ?! "], ["a b", "c"])


@needs_jiwer
def test_corpus_wer_sums_errors_over_all_words():
    d = wer_details(["a b c", "d e"], ["a x c y", "d"])
    # "a b c" -> "a x c y": 1 S + 1 I; "d e" -> "d": 1 D; 5 reference words.
    assert (d.substitutions, d.deletions, d.insertions, d.hits) == (1, 1, 1, 3)
    assert d.reference_words == 5 and d.hypothesis_words == 5
    assert d.wer == pytest.approx(3 / 5)
    assert word_error_rate(["a b c", "d e"], ["a x c y", "d"]) == pytest.approx(0.6)
    assert d.as_dict()["wer"] == pytest.approx(0.6)


@needs_jiwer
def test_empty_reference_is_an_error_and_empty_pairs_count_insertions():
    with pytest.raises(TextError, match="no words"):
        word_error_rate("...", "hello")
    # One empty reference among others: its hypothesis words are insertions.
    assert word_error_rate(["a b", ""], ["a b", "c"]) == pytest.approx(0.5)


def test_mismatched_inputs():
    with pytest.raises(ValueError, match="2 references but 1 hypotheses"):
        word_error_rate(["a", "b"], ["a"])
    with pytest.raises(TypeError):
        word_error_rate("a", ["a"])


def test_missing_jiwer_names_the_install(monkeypatch):
    monkeypatch.setitem(sys.modules, "jiwer", None)
    with pytest.raises(MissingDependencyError, match=r'pip install "valle2\[eval\]".*jiwer'):
        word_error_rate("a", "a")
