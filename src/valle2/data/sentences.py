"""Seeded English sentence generator: a small grammar over a word list.

The corpus builder needs many varied sentences that, together, contain every English
phoneme (checked against espeak-ng's phonemes in ``tests/data/test_sentences.py``).
The word lists deliberately include rare sounds: /ʒ/ (measure, vision, garage), /ɔɪ/
(boy, coin), /ʊ/ (book, wool), /θ/ and /ð/ (thick, those), /ŋ/ (singing), /tʃ/, /dʒ/.

A sentence is built from one of a few templates (statement, question, exclamation,
two clauses joined by a conjunction), so punctuation-driven prosody varies as well.
Same seed -> same sentences. Changing the word lists or templates changes every corpus
built afterwards (texts are regenerated from the seed when manifests are written): rebuild
corpora from scratch after such a change.
"""

from __future__ import annotations

import random
import re
from pathlib import Path

from valle2.errors import MissingDependencyError, Valle2Error

ADJECTIVES = (
    "big", "small", "quiet", "noisy", "yellow", "purple", "gentle", "angry", "happy",
    "tired", "brave", "clever", "shiny", "heavy", "thick", "thin", "smooth", "rough",
    "ancient", "modern", "usual", "casual", "visual", "joyful", "loyal", "foolish",
    "wooden", "golden", "frozen", "cheerful", "jealous", "curious", "obvious", "genuine",
    "huge", "vague", "sharp", "fresh", "warm", "cool", "lazy", "busy", "pleasant",
    "strange", "friendly", "careful", "hungry", "muddy", "windy", "sunny", "poor", "pure",
    "rural", "fierce", "early", "sure",
)
NOUNS = (
    "boy", "girl", "teacher", "doctor", "farmer", "singer", "judge", "child", "author",
    "sailor", "pilot", "dog", "cat", "horse", "mouse", "goose", "owl", "fox", "whale",
    "bird", "cow", "zebra", "giraffe", "treasure", "garage", "village", "bridge",
    "mountain", "river", "cloud", "window", "book", "coin", "toy", "voice", "engine",
    "measure", "vision", "decision", "television", "leisure", "question", "picture",
    "kitchen", "chair", "shoe", "sheep", "thumb", "feather", "mother", "father",
    "brother", "weather", "orange", "banana", "pizza", "juice", "cheese", "jacket",
    "wool", "cushion", "oyster", "noise", "thunder", "rainbow", "flower", "tower",
    "heart", "garden", "beach", "journey", "message", "letter", "bottle", "hammer",
    "tourist", "jury", "pier", "chair", "fairy", "beard", "bear", "door", "nurse", "shirt",
)
NAMES = (
    "Joseph", "Ruth", "Charlotte", "Zoe", "George", "Hugh", "Nancy", "Victor", "Sheila",
    "Thomas", "Judith", "Oliver", "Ingrid", "Usha", "Yusuf", "Megan", "Arthur", "Chloe",
)
VERBS_PAST = (
    "found", "saw", "pushed", "pulled", "watched", "chased", "bought", "brought",
    "thought about", "enjoyed", "measured", "carried", "painted", "judged", "touched",
    "borrowed", "washed", "fixed", "joined", "avoided", "threw", "caught", "heard",
    "noticed", "changed", "followed", "visited", "ignored", "remembered", "destroyed",
)
VERBS_INTRANSITIVE = (
    "laughed", "sang", "slept", "jumped", "shouted", "whispered", "vanished", "waited",
    "stumbled", "smiled", "wandered", "argued", "listened", "rejoiced", "breathed",
)
ADVERBS = (
    "quickly", "slowly", "quietly", "loudly", "usually", "rarely", "happily", "nearly",
    "gently", "suddenly", "thoroughly", "honestly", "already", "together", "outside",
)
PLACES = (
    "near the bridge", "in the kitchen", "under the tower", "behind the garage",
    "at the beach", "through the village", "beside the river", "on the mountain",
    "inside the museum", "across the street", "over the fence", "in the garden",
    "at the airport", "within the castle", "along the shore",
)
TIMES = (
    "yesterday", "this morning", "on Thursday", "last June", "at noon", "every August",
    "in the evening", "before dawn", "three years ago", "after the storm", "tonight",
)
CONJUNCTIONS = ("and", "but", "so", "because", "while", "although", "when")
QUESTION_STARTS = ("Did you know that", "Is it true that", "Who told you that", "Why do they say that")
EXCLAMATIONS = ("Oh", "Wow", "Look", "Hey", "Well", "Ah")

# Hand-picked sentences that pack rare phonemes; mixed in so coverage never depends on luck.
SEED_SENTENCES = (
    "The usual measure of pleasure is a casual vision of treasure in the garage.",
    "The poor tourist stayed sure that the jury saw four birds near the pier and a bear in the air.",
    "The boy enjoyed the noisy toy and the shiny coin.",
    "Those thick feathers could hardly push the wooden book through the wool.",
    "Judge Charlotte chose the orange jacket and the cheap cheese.",
    "How now, brown cow? The loud crowd shouted about the cloud.",
    "Singing and ringing, the young king thanked his brother for the thing.",
)


def _noun_phrase(rng: random.Random) -> str:
    r = rng.random()
    if r < 0.2:
        return rng.choice(NAMES)
    if r < 0.6:
        return f"the {rng.choice(ADJECTIVES)} {rng.choice(NOUNS)}"
    if r < 0.8:
        adjective = rng.choice(ADJECTIVES)
        article = "an" if adjective[0] in "aeio" else "a"
        return f"{article} {adjective} {rng.choice(NOUNS)}"
    return f"the {rng.choice(NOUNS)}"


def _clause(rng: random.Random) -> str:
    subject = _noun_phrase(rng)
    if rng.random() < 0.6:
        parts = [subject, rng.choice(VERBS_PAST), _noun_phrase(rng)]
    else:
        parts = [subject, rng.choice(ADVERBS), rng.choice(VERBS_INTRANSITIVE)]
    if rng.random() < 0.5:
        parts.append(rng.choice(PLACES))
    if rng.random() < 0.35:
        parts.append(rng.choice(TIMES))
    return " ".join(parts)


def _capitalise(text: str) -> str:
    return text[0].upper() + text[1:]


def make_sentence(rng: random.Random) -> str:
    """One sentence from a randomly chosen template."""
    r = rng.random()
    if r < 0.45:
        return _capitalise(_clause(rng)) + "."
    if r < 0.75:
        return _capitalise(_clause(rng)) + f", {rng.choice(CONJUNCTIONS)} " + _clause(rng) + "."
    if r < 0.9:
        return f"{rng.choice(QUESTION_STARTS)} {_clause(rng)}?"
    return f"{rng.choice(EXCLAMATIONS)}, {_clause(rng)}!"


def generate_sentences(n: int, seed: int = 0, min_words: int = 5, max_words: int = 20) -> list[str]:
    """``n`` distinct sentences (the hand-picked ones first), deterministic in ``seed``.

    Word counts are kept in [min_words, max_words] so that spoken durations land around 2-8 s.
    """
    if n < 0:
        raise ValueError(f"n must be >= 0, got {n}")
    rng = random.Random(seed)
    out: list[str] = list(SEED_SENTENCES[:n])
    seen = set(out)
    attempts = 0
    while len(out) < n:
        attempts += 1
        if attempts > 100 * n + 1000:
            raise RuntimeError(f"could not generate {n} distinct sentences (got {len(out)})")
        s = make_sentence(rng)
        words = len(s.split())
        if s in seen or not (min_words <= words <= max_words):
            continue
        seen.add(s)
        out.append(s)
    return out


# ----------------------------------------------------------------------------- broader text
# The grammar above knows ~300 words. A model trained on it alone learns those words' sounds and
# little else (benchmarks/RESULTS.md, "The bundled demo model": 78 % of the words of the
# robustness sentences never occur in that corpus). Two further sources give the corpus the
# vocabulary and the sentence shapes of ordinary English:

WORDNET_DIR = Path("/usr/share/wordnet")  # Debian/Ubuntu: apt-get install wordnet-base
_PLAIN = re.compile(r"[A-Za-z][A-Za-z ,.'?!;:-]*")


def wordnet_examples(root: str | Path = WORDNET_DIR, min_words: int = 3, max_words: int = 20) -> list[str]:
    """The usage examples of WordNet 3.0's glosses ("she put the slippers under the bed neatly"):
    about 41,000 phrases and sentences over 29,000 words, capitalised, ending in punctuation, unique
    (case-insensitively), sorted. Examples with digits, backquotes or other symbols are left out.
    """
    root = Path(root)
    files = sorted(root.glob("data.*"))
    if not files:
        raise MissingDependencyError(f"no WordNet database in {root} (data.noun, ...): apt-get install wordnet-base, "
                                     "or give the folder that holds it")
    out: dict[str, str] = {}
    for path in files:
        for line in path.read_text(encoding="latin-1").splitlines():
            if line.startswith("  ") or "|" not in line:  # the licence header; lines without a gloss
                continue
            for example in re.findall(r'"([^"]+)"', line.split("|", 1)[1]):
                text = " ".join(example.split()).strip(" ;:,")
                if not _PLAIN.fullmatch(text) or "--" in text or not min_words <= len(text.split()) <= max_words:
                    continue
                text = _capitalise(text) + ("" if text[-1] in ".?!" else ".")
                out.setdefault(text.lower(), text)
    return sorted(out.values())


_MONTHS = ("January", "February", "March", "April", "May", "June", "July", "August", "September",
           "October", "November", "December")
_THINGS = ("books", "tickets", "apples", "chairs", "students", "cars", "boxes", "letters", "trees", "houses")


def _number_sentence(rng: random.Random) -> str:
    n, m = rng.randint(2, 999), rng.randint(1, 59)
    year, thing, place = rng.randint(1850, 2030), rng.choice(_THINGS), rng.choice(PLACES)
    templates = (
        f"I paid ${rng.randint(1, 99)}.{rng.randint(0, 99):02d} for {rng.randint(2, 9)} {thing}.",
        f"The train leaves at {rng.randint(1, 12)}:{m:02d} in the {rng.choice(('morning', 'evening'))}.",
        f"She was born on {rng.choice(_MONTHS)} {rng.randint(1, 28)}, {year}.",
        f"There are {n} {thing} {place}.",
        f"Call me back at {rng.randint(200, 999)}-{rng.randint(0, 9999):04d}.",
        f"The temperature reached {rng.randint(2, 45)} degrees {rng.choice(TIMES)}.",
        f"Sales grew by {rng.randint(2, 95)}% in {year}.",
        f"Is it really {n} miles to the {rng.choice(NOUNS)}?",
        f"Room {n} is on floor {rng.randint(2, 30)}.",
        f"Did you count {n} or {n + m} {thing}?",
        f"We sold {n:,}{rng.randint(0, 999):03d} copies by {rng.choice(_MONTHS)} {year}.",
    )
    return rng.choice(templates)


def number_sentences(n: int, seed: int = 0, language: str = "en-us") -> list[str]:
    """``n`` distinct sentences with prices, times, dates, years, counts and phone numbers, written
    out in words by valle2's own text normaliser, so that the voice engine reads exactly the
    words the model is trained on ("$23.50" -> "twenty-three dollars and fifty cents")."""
    from valle2.text.normalize import normalize_text

    rng = random.Random(seed)
    out: dict[str, None] = {}
    for _ in range(100 * n + 1000):
        if len(out) >= n:
            break
        out.setdefault(normalize_text(_number_sentence(rng), language))
    if len(out) < n:
        raise RuntimeError(f"could not generate {n} distinct number sentences (got {len(out)})")
    return list(out)


def read_sentences(path: str | Path) -> list[str]:
    """One sentence per line (blank lines and lines starting with ``#`` are skipped)."""
    try:
        lines = Path(path).read_text(encoding="utf-8").splitlines()
    except FileNotFoundError:
        raise Valle2Error(f"sentence file {str(path)!r} not found") from None
    except UnicodeDecodeError as e:
        raise Valle2Error(f"sentence file {str(path)!r} is not UTF-8 text ({e})") from None
    out = [s.strip() for s in lines if s.strip() and not s.lstrip().startswith("#")]
    if not out:
        raise Valle2Error(f"sentence file {str(path)!r} holds no sentences")
    return out
