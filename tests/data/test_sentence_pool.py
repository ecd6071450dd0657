"""Broader text for the corpus: WordNet's usage examples, number sentences written out in words,
sentence files, per-voice samples of a pool, and `valle2 corpus sentences`."""

import re
from pathlib import Path

import pytest

from valle2.cli import main
from valle2.data.corpus_synth import voice_sentences
from valle2.data.sentences import number_sentences, read_sentences, wordnet_examples
from valle2.data.voices import Voice
from valle2.errors import MissingDependencyError, Valle2Error
from valle2.text.normalize import normalize_text

# Two lines in WordNet's data-file layout (offset, lex file, words, pointers | gloss; "examples"),
# after the licence header, whose lines start with two spaces.
WORDNET = """  1 This software and database is being provided to you, the LICENSEE, by "Princeton"
00001740 03 n 01 entity 0 003 ~ 00001930 n 0000 | that which exists; "the cat sat on the mat"; "a thing in 1999"
00002137 03 n 02 abstraction 0 000 | a general concept; "the cat sat on the mat"; "it's  a `quoted' word"; "done"
00002452 03 v 01 go 0 000 | move; "they went to the old mill before dawn"; "Is it raining outside?"
"""


@pytest.fixture
def wordnet(tmp_path: Path) -> Path:
    (tmp_path / "data.noun").write_text(WORDNET, encoding="latin-1")
    return tmp_path


def test_wordnet_examples_are_clean_unique_sentences(wordnet: Path):
    assert wordnet_examples(wordnet) == [
        "Is it raining outside?",            # keeps its question mark
        "The cat sat on the mat.",           # capitalised, full stop added, twice in the file: once here
        "They went to the old mill before dawn.",
    ]  # left out: digits ("1999"), backquotes, the one-word "done", the licence line


def test_wordnet_missing_names_the_package(tmp_path: Path):
    with pytest.raises(MissingDependencyError, match="wordnet-base"):
        wordnet_examples(tmp_path / "nowhere")


def test_number_sentences_are_written_out_and_deterministic():
    a = number_sentences(200, seed=3)
    assert a == number_sentences(200, seed=3) and a != number_sentences(200, seed=4)
    assert len(set(a)) == 200
    assert not any(re.search(r"[0-9$%]", s) for s in a)  # the engine reads exactly these words
    assert all(normalize_text(s) == s for s in a)
    assert any("dollars" in s for s in a) and any("percent" in s for s in a)


def test_read_sentences(tmp_path: Path):
    f = tmp_path / "s.txt"
    f.write_text("# a comment\nFirst one.\n\n  Second one.  \n", encoding="utf-8")
    assert read_sentences(f) == ["First one.", "Second one."]
    (tmp_path / "empty.txt").write_text("\n# nothing\n")
    with pytest.raises(Valle2Error, match="holds no sentences"):
        read_sentences(tmp_path / "empty.txt")
    with pytest.raises(Valle2Error, match="not found"):
        read_sentences(tmp_path / "missing.txt")
    (tmp_path / "bin.txt").write_bytes(b"\xff\xfe\x00bad")
    with pytest.raises(Valle2Error, match="not UTF-8"):
        read_sentences(tmp_path / "bin.txt")


def test_each_voice_reads_its_own_sample_of_a_pool():
    pool = [f"Sentence number {i}." for i in range(50)]
    a, b = Voice("espeak", "en-us+adam"), Voice("flite", "slt")
    sa = voice_sentences(a, 10, seed=0, pool=pool)
    assert sa == voice_sentences(a, 10, seed=0, pool=pool)  # deterministic
    assert len(set(sa)) == 10 and set(sa) <= set(pool)
    assert sa != voice_sentences(b, 10, seed=0, pool=pool) and sa != voice_sentences(a, 10, seed=1, pool=pool)
    big = [f"Line {i}." for i in range(1000)]  # (random.sample of 10 and of 400 of these differ)
    assert voice_sentences(a, 400, seed=0, pool=big)[:10] == voice_sentences(a, 10, seed=0, pool=big)  # prefix-stable
    assert voice_sentences(a, 3, seed=0) != voice_sentences(a, 3, seed=0, pool=pool)  # no pool: the grammar
    with pytest.raises(Valle2Error, match="pool holds only 50"):
        voice_sentences(a, 51, seed=0, pool=pool)


def test_corpus_sentences_command_excludes_an_evaluation_set(wordnet: Path, tmp_path: Path, capsys):
    exclude = tmp_path / "eval.txt"
    exclude.write_text("the cat sat on the mat\n")  # compared after WER normalisation
    out = tmp_path / "pool" / "sentences.txt"
    assert main(["corpus", "sentences", "--out", str(out), "--wordnet", str(wordnet), "--numbers", "5",
                 "--grammar", "4", "--exclude", str(exclude)]) == 0
    pool = read_sentences(out)
    assert len(pool) == 2 + 5 + 4 and "The cat sat on the mat." not in pool
    assert "Is it raining outside?" in pool
    assert "1 excluded" in capsys.readouterr().out
    assert main(["corpus", "sentences", "--out", str(out), "--wordnet", str(tmp_path / "none")]) == 2
