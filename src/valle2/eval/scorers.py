"""Candidate scorers for best-of-N: generate N outputs, keep the one that scores best.

VALL-E 2 reports results where several samples are drawn per utterance and the best
kept, "sorted by SIM and WER". A scorer maps N candidate waveforms of one request to
N numbers, **higher is better**::

    scorer = get_scorer("sim,wer")            # loads Resemblyzer and Whisper tiny.en once
    scores = scorer.score(candidates, sr, prompt_wav=prompt, prompt_sr=psr, text=text)
    best = candidates[int(np.argmax(scores))]

Scorers:

- ``sim`` (:class:`SimScorer`): speaker similarity of each candidate to the prompt.
- ``wer`` (:class:`WerScorer`): minus the WER of the candidate's transcript against ``text``.
- ``duration`` (:class:`DurationScorer`): no model; prefers candidates whose speech
  lasts as long as ``text`` should at the prompt speaker's rate. Catches an AR
  decoder that stops early or babbles on, at no cost.
- several names (:class:`CombinedScorer`): rank-sum. Each scorer ranks the candidates
  (0 = best, ties share their mean rank); the candidate with the smallest sum of
  ranks wins, ties broken by the first scorer named. Ranks rather than raw values,
  because SIM differences of 0.01 and WER differences of 10 % are not on one scale.
"""

from __future__ import annotations

import math
from typing import Protocol, Sequence, runtime_checkable

import numpy as np

from valle2.eval.normalize import normalize_for_wer

__all__ = [
    "Scorer",
    "SimScorer",
    "WerScorer",
    "DurationScorer",
    "CombinedScorer",
    "get_scorer",
    "select_best",
    "SCORER_NAMES",
]

SCORER_NAMES = ("sim", "wer", "duration")


@runtime_checkable
class Scorer(Protocol):
    name: str

    def score(
        self,
        candidates: Sequence[np.ndarray],
        sr: int,
        *,
        prompt_wav: np.ndarray | None,
        prompt_sr: int | None,
        text: str,
        prompt_text: str | None = None,
    ) -> list[float]:
        """One score per candidate, higher is better."""
        ...


class SimScorer:
    """Cosine similarity of each candidate's speaker embedding to the prompt's."""

    name = "sim"

    def __init__(self, encoder="resemblyzer") -> None:
        from valle2.eval.speaker import get_speaker_encoder

        self.encoder = get_speaker_encoder(encoder) if isinstance(encoder, str) else encoder

    def score(self, candidates, sr, *, prompt_wav, prompt_sr, text, prompt_text=None) -> list[float]:
        if prompt_wav is None or prompt_sr is None:
            raise ValueError("the sim scorer needs the prompt audio (prompt_wav, prompt_sr)")
        from valle2.eval.speaker import cosine

        ref = self.encoder.embed(prompt_wav, prompt_sr)
        return [cosine(self.encoder.embed(c, sr), ref) for c in candidates]


class WerScorer:
    """Minus the WER of each candidate's ASR transcript against ``text`` (0 is perfect)."""

    name = "wer"

    def __init__(self, asr="faster-whisper") -> None:
        from valle2.eval.asr import get_asr

        self.asr = get_asr(asr) if isinstance(asr, str) else asr

    def score(self, candidates, sr, *, prompt_wav, prompt_sr, text, prompt_text=None) -> list[float]:
        from valle2.eval.wer import word_error_rate

        hyps = self.asr.transcribe_batch([(c, sr) for c in candidates])
        return [-word_error_rate(text, h) for h in hyps]


def _speech_seconds(wav: np.ndarray, sr: int) -> float:
    """Duration between the first and last 20 ms frame within 40 dB of the loudest one."""
    wav = np.asarray(wav, dtype=np.float64)
    frame = max(1, int(0.02 * sr))
    n = len(wav) // frame
    if n == 0:
        return len(wav) / sr
    db = 10 * np.log10(np.maximum(np.mean(wav[: n * frame].reshape(n, frame) ** 2, axis=1), 1e-12))
    voiced = np.flatnonzero(db > max(db.max() - 40.0, -70.0))
    if len(voiced) == 0:
        return 0.0
    return (voiced[-1] - voiced[0] + 1) * frame / sr


class DurationScorer:
    """Minus ``|log(speech duration / expected duration)|``; no model, no packages.

    The expected duration is the number of characters of the normalised ``text``
    divided by a speaking rate: the prompt speaker's own (characters of
    ``prompt_text`` per second of prompt speech) when both prompt audio and text are
    given, else ``chars_per_second`` (default 14.5, about LibriSpeech's mean).
    Leading and trailing silence do not count.
    """

    name = "duration"
    DEFAULT_RATE = 14.5  # characters (letters and spaces) per second

    def __init__(self, chars_per_second: float | None = None) -> None:
        if chars_per_second is not None and chars_per_second <= 0:
            raise ValueError(f"chars_per_second is {chars_per_second}; need a positive rate")
        self.chars_per_second = chars_per_second

    def expected_seconds(self, text: str, *, prompt_wav=None, prompt_sr=None, prompt_text=None) -> float:
        n_chars = len(normalize_for_wer(text))
        if n_chars == 0:
            raise ValueError(f"text {text!r} has no words; cannot expect a duration")
        rate = self.chars_per_second
        if rate is None and prompt_wav is not None and prompt_sr and prompt_text:
            speech = _speech_seconds(prompt_wav, prompt_sr)
            prompt_chars = len(normalize_for_wer(prompt_text))
            if speech >= 0.5 and prompt_chars >= 5:
                # Clamp: a wrong prompt transcript must not make the expectation absurd.
                rate = min(max(prompt_chars / speech, 8.0), 25.0)
        return n_chars / (rate or self.DEFAULT_RATE)

    def score(self, candidates, sr, *, prompt_wav, prompt_sr, text, prompt_text=None) -> list[float]:
        expected = self.expected_seconds(text, prompt_wav=prompt_wav, prompt_sr=prompt_sr, prompt_text=prompt_text)
        out = []
        for c in candidates:
            dur = _speech_seconds(c, sr)
            out.append(-abs(math.log(max(dur, 1e-3) / expected)))
        return out


def _ranks(scores: Sequence[float]) -> np.ndarray:
    """0 for the highest score; tied scores share the mean of their ranks."""
    s = np.asarray(scores, dtype=np.float64)
    s = np.where(np.isnan(s), -np.inf, s)
    order = np.argsort(-s, kind="stable")
    ranks = np.empty(len(s))
    ranks[order] = np.arange(len(s), dtype=np.float64)
    for value in np.unique(s):
        tied = s == value
        ranks[tied] = ranks[tied].mean()
    return ranks


class CombinedScorer:
    """Rank-sum of several scorers (see the module docstring); ``CombinedScorer(["sim", "wer"])``."""

    def __init__(self, scorers: Sequence[str | Scorer], *, asr="faster-whisper", speaker="resemblyzer") -> None:
        if not scorers:
            raise ValueError("CombinedScorer needs at least one scorer")
        self.scorers = [_make(s, asr=asr, speaker=speaker) if isinstance(s, str) else s for s in scorers]
        self.name = ",".join(s.name for s in self.scorers)

    def score_all(self, candidates, sr, *, prompt_wav, prompt_sr, text, prompt_text=None) -> dict[str, list[float]]:
        """Each scorer's scores by name, plus the rank-sum result under ``"combined"``."""
        kw = dict(prompt_wav=prompt_wav, prompt_sr=prompt_sr, text=text, prompt_text=prompt_text)
        parts = {s.name: list(s.score(candidates, sr, **kw)) for s in self.scorers}
        ranks = [_ranks(v) for v in parts.values()]
        n = len(candidates)
        # Rank sums are multiples of 0.5 apart; the tie-break term ranks[0] / 2n is below 0.5,
        # so it only orders candidates whose rank sums are equal.
        combined = -np.sum(ranks, axis=0) - ranks[0] / (2 * max(n, 1))
        parts["combined"] = [float(x) for x in combined]
        return parts

    def score(self, candidates, sr, *, prompt_wav, prompt_sr, text, prompt_text=None) -> list[float]:
        return self.score_all(
            candidates, sr, prompt_wav=prompt_wav, prompt_sr=prompt_sr, text=text, prompt_text=prompt_text
        )["combined"]


def _make(name: str, *, asr, speaker) -> Scorer:
    key = name.strip().lower()
    if key == "sim":
        return SimScorer(speaker)
    if key == "wer":
        return WerScorer(asr)
    if key in {"duration", "dur"}:
        return DurationScorer()
    raise ValueError(f"unknown scorer {name!r}; use {', '.join(SCORER_NAMES)} or a comma-separated list of them")


def get_scorer(spec: str, *, asr="faster-whisper", speaker="resemblyzer") -> Scorer:
    """A scorer from a spec like ``"sim"``, ``"wer"``, ``"duration"`` or ``"sim,wer"``.

    ``asr`` / ``speaker`` name the backends (see :func:`valle2.eval.asr.get_asr` and
    :func:`valle2.eval.speaker.get_speaker_encoder`) or are backend objects. The
    models are loaded here, so a missing package fails before any synthesis.
    """
    names = [n for n in (p.strip() for p in spec.split(",")) if n]
    if not names:
        raise ValueError(f"empty scorer spec {spec!r}; use e.g. sim,wer")
    if len(set(n.lower() for n in names)) != len(names):
        raise ValueError(f"scorer spec {spec!r} names a scorer twice")
    if len(names) == 1:
        return _make(names[0], asr=asr, speaker=speaker)
    return CombinedScorer(names, asr=asr, speaker=speaker)


def select_best(
    candidates: Sequence[np.ndarray],
    sr: int,
    scorer: Scorer,
    *,
    prompt_wav: np.ndarray | None = None,
    prompt_sr: int | None = None,
    text: str,
    prompt_text: str | None = None,
) -> tuple[int, list[float]]:
    """Index of the best candidate under ``scorer`` and all the scores (first wins ties)."""
    if not candidates:
        raise ValueError("no candidates to select from")
    scores = scorer.score(
        candidates, sr, prompt_wav=prompt_wav, prompt_sr=prompt_sr, text=text, prompt_text=prompt_text
    )
    if len(scores) != len(candidates):
        raise RuntimeError(f"scorer {scorer.name} gave {len(scores)} scores for {len(candidates)} candidates")
    s = np.where(np.isnan(np.asarray(scores, dtype=np.float64)), -np.inf, scores)
    return int(np.argmax(s)), [float(x) for x in scores]
