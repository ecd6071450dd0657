"""Evaluation: the paper's protocol (WER, speaker similarity, quality) on LibriSpeech or your own voices.

- :mod:`~valle2.eval.lists` — test lists (continuation / cross-sentence), seeded, shareable files.
- :mod:`~valle2.eval.normalize`, :mod:`~valle2.eval.wer` — text normalisation and WER (jiwer).
- :mod:`~valle2.eval.asr` — ASR backends (faster-whisper default, transformers CTC).
- :mod:`~valle2.eval.speaker` — speaker encoders (Resemblyzer default, WavLM x-vector).
- :mod:`~valle2.eval.quality` — DNSMOS from a user-supplied model folder; signal checks.
- :mod:`~valle2.eval.scorers` — best-of-N candidate selection (sim, wer, duration, rank-sum).

Every model-backed metric is loaded on first use; importing this package loads none
and needs none of the optional packages (``pip install "valle2[eval]"``).
"""

from valle2.eval.asr import get_asr
from valle2.eval.lists import (
    EvalItem,
    Utterance,
    build_list,
    from_folder,
    from_lhotse,
    from_librispeech,
    load_list,
    save_list,
)
from valle2.eval.normalize import normalize_for_wer
from valle2.eval.quality import DnsMos, get_quality, signal_checks
from valle2.eval.scorers import CombinedScorer, DurationScorer, SimScorer, WerScorer, get_scorer, select_best
from valle2.eval.speaker import get_speaker_encoder
from valle2.eval.wer import wer_details, word_error_rate

__all__ = [
    "get_asr",
    "EvalItem",
    "Utterance",
    "build_list",
    "from_folder",
    "from_lhotse",
    "from_librispeech",
    "load_list",
    "save_list",
    "normalize_for_wer",
    "DnsMos",
    "get_quality",
    "signal_checks",
    "CombinedScorer",
    "DurationScorer",
    "SimScorer",
    "WerScorer",
    "get_scorer",
    "select_best",
    "get_speaker_encoder",
    "wer_details",
    "word_error_rate",
]
