"""Word error rate on normalised text (jiwer).

    WER = (S + D + I) / N

S, D, I are the substituted, deleted and inserted words of the minimum-edit
alignment of hypothesis to reference, N the number of reference words. Both sides
are first passed through :func:`~valle2.eval.normalize.normalize_for_wer`, so case,
punctuation, number formatting and hyphenation are not errors.

For several pairs the result is the *corpus* WER (errors summed over all pairs,
divided by all reference words), as the paper reports it; the mean of per-utterance
WERs weighs short utterances more and is what a per-utterance table averages.
WER is a fraction (0.05 = 5 %); it can exceed 1 when the hypothesis inserts words.

:func:`char_error_rate` is the same count over characters (spaces included) of the normalised
text. It is not the paper's measure; it tells near misses ("that weather" for "the weather")
from babble where WER counts both as wrong words.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

from valle2.errors import MissingDependencyError, TextError
from valle2.eval.normalize import normalize_for_wer

__all__ = ["WerDetails", "char_error_rate", "word_error_rate", "wer_details"]


@dataclass(frozen=True)
class WerDetails:
    """Corpus-level alignment counts; ``wer = (substitutions + deletions + insertions) / reference_words``."""

    wer: float
    substitutions: int
    deletions: int
    insertions: int
    hits: int
    reference_words: int
    hypothesis_words: int

    def as_dict(self) -> dict:
        return asdict(self)


def _as_lists(refs: list[str] | str, hyps: list[str] | str) -> tuple[list[str], list[str]]:
    if isinstance(refs, str) != isinstance(hyps, str):
        raise TypeError("refs and hyps must both be strings or both be lists of strings")
    if isinstance(refs, str):
        refs, hyps = [refs], [hyps]
    refs, hyps = list(refs), list(hyps)
    if len(refs) != len(hyps):
        raise ValueError(f"{len(refs)} references but {len(hyps)} hypotheses; need one each")
    if not refs:
        raise ValueError("no reference/hypothesis pairs given")
    return refs, hyps


def _jiwer():
    try:
        import jiwer
    except ImportError as exc:
        raise MissingDependencyError(
            'WER needs jiwer, which is not installed: pip install "valle2[eval]" (or: pip install jiwer)'
        ) from exc
    return jiwer


def wer_details(refs: list[str] | str, hyps: list[str] | str, *, language: str = "en-us") -> WerDetails:
    """Alignment counts and WER of ``hyps`` against ``refs`` (one string or parallel lists).

    Raises :class:`~valle2.errors.TextError` when the references hold no words after
    normalisation (WER is undefined), and
    :class:`~valle2.errors.MissingDependencyError` when jiwer is not installed.
    """
    refs, hyps = _as_lists(refs, hyps)
    jiwer = _jiwer()
    norm_refs = [normalize_for_wer(r, language) for r in refs]
    norm_hyps = [normalize_for_wer(h, language) for h in hyps]
    n_ref = sum(len(r.split()) for r in norm_refs)
    if n_ref == 0:
        raise TextError(f"reference text has no words after normalisation: {refs[:3]!r}")
    out = jiwer.process_words(norm_refs, norm_hyps)
    errors = out.substitutions + out.deletions + out.insertions
    return WerDetails(
        wer=errors / n_ref,
        substitutions=out.substitutions,
        deletions=out.deletions,
        insertions=out.insertions,
        hits=out.hits,
        reference_words=n_ref,
        hypothesis_words=sum(len(h.split()) for h in norm_hyps),
    )


def word_error_rate(refs: list[str] | str, hyps: list[str] | str, *, language: str = "en-us") -> float:
    """Corpus WER (a fraction) of ``hyps`` against ``refs`` after :func:`normalize_for_wer`."""
    return wer_details(refs, hyps, language=language).wer


def char_error_rate(refs: list[str] | str, hyps: list[str] | str, *, language: str = "en-us") -> float:
    """Corpus character error rate (a fraction) of ``hyps`` against ``refs`` after :func:`normalize_for_wer`."""
    refs, hyps = _as_lists(refs, hyps)
    norm_refs = [normalize_for_wer(r, language) for r in refs]
    empty = [r for r, n in zip(refs, norm_refs) if not n]
    if empty:
        raise TextError(f"reference text has no words after normalisation: {empty[:3]!r}")
    out = _jiwer().process_characters(norm_refs, [normalize_for_wer(h, language) for h in hyps])
    return (out.substitutions + out.deletions + out.insertions) / sum(len(r) for r in norm_refs)
