"""Inventory of the offline synthetic voices used to build corpora.

A voice is ``engine:name``: ``espeak:en-us+adam`` (espeak-ng voice ``en-us`` with variant
``adam``), ``flite:slt``, ``festival:cmu_us_slt_arctic_hts``. Three disjoint lists:

- ``TRAIN``: voices allowed in training corpora.
- ``HELD_OUT``: our own held-out voices (never trained on; used by codec and TTS benchmarks).
- ``RESERVED``: flite ``rms`` and festival ``ked_diphone``, kept for *independent*
  evaluation. Nothing in valle2 may put them in a corpus (see :func:`assert_not_reserved`).

The espeak variants were chosen greedily so that every pair of chosen voices has a
speaker-similarity (resemblyzer cosine, two sentences each, en-us base) below 0.85: many of
espeak's 97 variants are near-duplicates (``+fast``, ``+klatt``... sound like others).
A few training variants are read with a British or Caribbean accent to vary pronunciation;
that does not change the timbre, which the variant sets. festival ``kal_diphone`` is the
same speaker as flite ``kal16`` (cosine ~0.89) and is kept as a second rendering of him.
"""

from __future__ import annotations

from dataclasses import dataclass

ENGINES = ("espeak", "flite", "festival")
WARP_RANGE = (0.7, 1.4)


@dataclass(frozen=True)
class Voice:
    engine: str  # "espeak" | "flite" | "festival"
    name: str  # engine-specific voice name, e.g. "en-us+adam", "slt", "kal_diphone"
    # Timbre warp: sox `speed W tempo 1/W` scales pitch and formants by W and keeps the duration,
    # which makes a new speaker of an engine voice (id suffix "@W"; 1.0 = the engine's own voice).
    warp: float = 1.0

    def __post_init__(self) -> None:
        if self.engine not in ENGINES:
            raise ValueError(f"unknown engine {self.engine!r}; expected one of {ENGINES}")
        if not self.name or any(c.isspace() for c in self.name) or "@" in self.name:
            raise ValueError(f"bad voice name {self.name!r}")
        if not WARP_RANGE[0] <= self.warp <= WARP_RANGE[1]:
            raise ValueError(f"voice warp {self.warp!r} is outside {WARP_RANGE[0]}..{WARP_RANGE[1]}")

    @property
    def base(self) -> "Voice":
        """The engine voice without its warp (what the reserved and held-out rules look at)."""
        return Voice(self.engine, self.name)

    @property
    def id(self) -> str:
        """The speaker name used in manifests: ``engine:name`` (``engine:name@warp`` when warped)."""
        return f"{self.engine}:{self.name}" + ("" if self.warp == 1.0 else f"@{self.warp:g}")

    @property
    def slug(self) -> str:
        """A file-system-safe form of :attr:`id`."""
        return self.id.replace(":", "_").replace("+", "_").replace("@", "_w")

    @classmethod
    def parse(cls, voice_id: str) -> "Voice":
        engine, sep, name = voice_id.partition(":")
        if not sep:
            raise ValueError(f"voice id {voice_id!r} is not of the form engine:name")
        name, at, warp = name.partition("@")
        if not at:
            return cls(engine, name)
        try:
            return cls(engine, name, float(warp))
        except ValueError:
            raise ValueError(f"voice id {voice_id!r}: the warp after '@' must be a number in "
                             f"{WARP_RANGE[0]}..{WARP_RANGE[1]}") from None


def _espeak(variant: str, accent: str = "en-us") -> Voice:
    return Voice("espeak", f"{accent}+{variant}")


# Accents cycled over every third espeak training voice.
_ACCENTS = ("en-gb", "en-gb-scotland", "en-gb-x-rp", "en-029", "en-gb-x-gbclan")

_TRAIN_VARIANTS = (
    "Alex", "Alicia", "Andy", "Annie", "AnxiousAndy", "Demonic", "Denis", "Gene", "Jacky",
    "Lee", "Marco", "Mario", "Nguyen", "RicishayMax2", "Storm", "UniRobot", "adam", "anika",
    "announcer", "antonio", "aunty", "belinda", "david", "edward", "f1", "grandma", "iven",
    "kaukovalta", "marcelo", "norbert", "pablo", "paul", "pedro", "robosoft", "robosoft5",
    "robosoft6", "robosoft8", "sandro", "steph", "travis", "whisper", "whisperf", "zac",
)
# Held-out voices (split of session 5). The ASR that measures the WER bar (faster-whisper
# tiny.en) must be able to read a held-out voice's own audio, or no model can pass the bar with
# it: awb 8 %, Andy 17 %, f1 23 %, Denis 25 %, quincy 14 % on corpus sentences, against 42-153 %
# for Andrea, boris and shelby, which held out the first split and now train
# (benchmarks/RESULTS.md, "A held-out split the ASR can read"). The accent of each espeak
# variant is still set by its place in _TRAIN_VARIANTS, so no voice id changed.
_HELD_OUT_ESPEAK = (("en-us", "quincy"), ("en-gb", "Andy"), ("en-us", "f1"), ("en-us", "Denis"))
_FORMER_HELD_OUT_VARIANTS = ("Andrea", "boris", "shelby")

HELD_OUT: tuple[Voice, ...] = (Voice("flite", "awb"),) + tuple(_espeak(v, a) for a, v in _HELD_OUT_ESPEAK)

TRAIN: tuple[Voice, ...] = tuple(v for v in (
    Voice("flite", "kal16"),
    Voice("flite", "slt"),
    Voice("festival", "kal_diphone"),
    Voice("festival", "cmu_us_slt_arctic_hts"),
) + tuple(
    _espeak(v, _ACCENTS[(i // 3) % len(_ACCENTS)] if i % 3 == 2 else "en-us")
    for i, v in enumerate(_TRAIN_VARIANTS)
) if v not in HELD_OUT) + tuple(_espeak(v) for v in _FORMER_HELD_OUT_VARIANTS)

RESERVED: tuple[Voice, ...] = (Voice("flite", "rms"), Voice("festival", "ked_diphone"))

# Warped engine voices (session 6): the training voices had 4 renderings of 2 non-espeak speakers
# against 43 espeak variants, and the model's similarity to the one flite voice held out (awb) was
# the lowest (benchmarks/RESULTS.md, "The bundled demo model"). Warps 0.84 and 1.18 give
# resemblyzer cosines of 0.78 / 0.83 to the source voice and 0.69 to each other, and stay readable.
TRAIN_WARPED: tuple[Voice, ...] = tuple(
    Voice(engine, name, warp)
    for engine, name in (("flite", "slt"), ("flite", "kal16"), ("festival", "kal_diphone"),
                         ("festival", "cmu_us_slt_arctic_hts"))
    for warp in (0.84, 1.18)
)


def is_reserved(voice: Voice) -> bool:
    return voice.base in RESERVED


def assert_not_reserved(voice: Voice) -> None:
    """Refuse a reserved evaluation voice (raises :class:`ValueError`)."""
    if is_reserved(voice):
        raise ValueError(
            f"voice {voice.id!r} is reserved for independent evaluation and must never be "
            "used in training data"
        )


def select(which: str) -> list[Voice]:
    """``train`` | ``train-warped`` | ``held-out`` | ``all`` (train + held-out; never the reserved
    voices). ``train-warped`` is kept apart so that building ``train`` still gives the corpora of
    earlier sessions."""
    if which == "train":
        return list(TRAIN)
    if which == "train-warped":
        return list(TRAIN_WARPED)
    if which == "held-out":
        return list(HELD_OUT)
    if which == "all":
        return list(TRAIN) + list(HELD_OUT)
    raise ValueError(f"unknown voice set {which!r}; expected train, train-warped, held-out or all")


# Import-time invariants: the lists are disjoint and no reserved voice sneaks in.
assert not set(TRAIN) & set(RESERVED), "a reserved voice is in TRAIN"
assert not set(HELD_OUT) & set(RESERVED), "a reserved voice is in HELD_OUT"
assert not set(TRAIN) & set(HELD_OUT), "TRAIN and HELD_OUT overlap"
assert not {v.base for v in TRAIN_WARPED} & (set(HELD_OUT) | set(RESERVED)), "a warped voice comes from a held-out one"
