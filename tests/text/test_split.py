"""Sentence splitting: abbreviations, decimals, long sentences, no empty pieces."""

import pytest

from valle2.text.split import split_sentences


def test_splits_on_terminators_and_keeps_them():
    assert split_sentences("Hello there. How are you? Great! Fine; thanks.") == [
        "Hello there.", "How are you?", "Great!", "Fine;", "thanks.",
    ]


def test_abbreviations_do_not_end_sentences():
    text = "Mr. and Mrs. Smith met Dr. Jones in St. Louis. They talked, e.g. about cats, i.e. pets. Then they left."
    assert split_sentences(text) == [
        "Mr. and Mrs. Smith met Dr. Jones in St. Louis.",
        "They talked, e.g. about cats, i.e. pets.",
        "Then they left.",
    ]


def test_decimals_and_money_do_not_end_sentences():
    assert split_sentences("Pi is 3.14 or so. It cost $3.50 today.") == ["Pi is 3.14 or so.", "It cost $3.50 today."]


def test_initials_do_not_end_sentences_but_the_pronoun_does():
    assert split_sentences("J. K. Rowling wrote it. So did I. Then we stopped.") == [
        "J. K. Rowling wrote it.", "So did I.", "Then we stopped.",
    ]


def test_etc_ends_a_sentence_only_before_a_capital():
    assert split_sentences("Cats, dogs etc. are pets. I like them etc. The end.") == [
        "Cats, dogs etc. are pets.", "I like them etc.", "The end.",
    ]


def test_quoted_question_with_attribution_stays_one_sentence():
    assert split_sentences('"Why?" he asked. Nobody knew.') == ['"Why?" he asked.', "Nobody knew."]


def test_ellipsis_followed_by_lowercase_continues():
    assert split_sentences("Well... maybe. I see... Then go.") == ["Well... maybe.", "I see...", "Then go."]


def test_blank_lines_end_a_piece_and_whitespace_collapses():
    assert split_sentences("A title\n\nThe  first\nline.") == ["A title", "The first line."]


def test_cjk_terminators():
    assert split_sentences("你好。世界！") == ["你好。", "世界！"]


def test_long_sentence_is_split_at_commas_first():
    text = "one two three, four five six, seven eight nine, ten eleven twelve."
    pieces = split_sentences(text, max_chars=30)
    assert pieces == ["one two three, four five six,", "seven eight nine,", "ten eleven twelve."]
    assert all(len(p) <= 30 for p in pieces)


def test_long_clause_is_split_at_word_boundaries():
    words = [f"word{i}" for i in range(40)]
    pieces = split_sentences(" ".join(words) + ".", max_chars=50)
    assert all(len(p) <= 50 for p in pieces)
    assert len(pieces) > 1
    # Nothing lost, nothing cut inside a word.
    assert " ".join(pieces).rstrip(".").split() == words


def test_a_word_longer_than_the_limit_is_cut():
    pieces = split_sentences("x" * 25, max_chars=10)
    assert pieces == ["x" * 10, "x" * 10, "x" * 5]


@pytest.mark.parametrize("text", ["", "   ", "\n\n\n"])
def test_blank_text_gives_no_pieces(text):
    assert split_sentences(text) == []


def test_no_empty_pieces_and_nothing_lost():
    text = "A.  B!  ... ; C?"
    pieces = split_sentences(text)
    assert all(p.strip() for p in pieces)
    assert "".join(pieces).replace(" ", "") == text.replace(" ", "")


def test_invalid_max_chars():
    with pytest.raises(ValueError, match="max_chars"):
        split_sentences("Hi.", max_chars=0)


@pytest.mark.parametrize("text, expected", [
    ("Hello! This sentence was never recorded.", ["Hello! This sentence was never recorded."]),
    ("Yes.", ["Yes."]),  # nothing to join it to
    ("The first sentence is long enough. Ok.", ["The first sentence is long enough. Ok."]),  # last joins back
    ("Hi. Yo. Go now, please.", ["Hi. Yo. Go now, please."]),  # short ones chain until long enough
    ("Hi.\n\nThe next paragraph starts here.", ["Hi.", "The next paragraph starts here."]),  # not across paragraphs
])
def test_short_pieces_join_a_neighbour(text, expected):
    assert split_sentences(text, min_words=3) == expected
    assert split_sentences(text) == split_sentences(text, min_words=1)  # the default never joins


def test_joining_respects_max_chars_and_loses_nothing():
    text = "Ok. " + "word " * 10 + "end. No."
    pieces = split_sentences(text, max_chars=40, min_words=3)
    assert all(len(p) <= 40 for p in pieces)
    assert " ".join(pieces).split() == text.split()
    with pytest.raises(ValueError, match="min_words"):
        split_sentences("Hi.", min_words=0)
