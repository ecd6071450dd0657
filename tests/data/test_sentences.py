import shutil
import subprocess

import pytest

from valle2.data.sentences import SEED_SENTENCES, generate_sentences

# English phonemes as espeak-ng (en-us) writes them in IPA, rhotic vowels included.
ENGLISH_PHONEMES = (
    "p b t d k ɡ f v θ ð s z ʃ ʒ h tʃ dʒ m n ŋ l ɹ w j "
    "iː ɪ eɪ ɛ æ ɑː ɔː oʊ ʊ uː ʌ ə ɚ ɜː aɪ aʊ ɔɪ ɑːɹ oːɹ ɛɹ ɪɹ ʊɹ"
).split()


def test_deterministic_and_seed_dependent():
    assert generate_sentences(50, seed=3) == generate_sentences(50, seed=3)
    assert generate_sentences(50, seed=3) != generate_sentences(50, seed=4)


def test_distinct_well_formed_sentences():
    sentences = generate_sentences(300, seed=0)
    assert len(set(sentences)) == 300
    assert sentences[: len(SEED_SENTENCES)] == list(SEED_SENTENCES)
    for s in sentences:
        assert 5 <= len(s.split()) <= 20, s
        assert s[0].isupper() and s[-1] in ".?!", s


def test_prefix_stable():
    # A voice asked for more sentences keeps the ones it already has (resumable corpora).
    assert generate_sentences(80, seed=1)[:40] == generate_sentences(40, seed=1)


@pytest.mark.skipif(shutil.which("espeak-ng") is None, reason="espeak-ng is not on PATH")
@pytest.mark.parametrize("seed", [0, 1])
def test_covers_all_english_phonemes(seed):
    sentences = generate_sentences(60, seed=seed)
    ipa = subprocess.run(
        ["espeak-ng", "-q", "--ipa", "-v", "en-us", "--stdin"],
        input="\n".join(sentences), capture_output=True, text=True, check=True,
    ).stdout
    missing = [p for p in ENGLISH_PHONEMES if p not in ipa]
    assert not missing, f"phonemes never produced: {missing}"


@pytest.mark.skipif(shutil.which("espeak-ng") is None, reason="espeak-ng is not on PATH")
def test_seed_sentences_alone_cover_all_phonemes():
    ipa = subprocess.run(
        ["espeak-ng", "-q", "--ipa", "-v", "en-us", "--stdin"],
        input="\n".join(SEED_SENTENCES), capture_output=True, text=True, check=True,
    ).stdout
    assert [p for p in ENGLISH_PHONEMES if p not in ipa] == []
