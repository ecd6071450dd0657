"""Speaker encoders for speaker similarity (SIM): cosine of speaker embeddings.

The paper scores SIM with WavLM-TDNN (the UniSpeech speaker-verification model),
which is not available offline. The default here is Resemblyzer (a GE2E d-vector
LSTM whose 17 MB weights ship inside its wheel); a WavLM x-vector model from
transformers can be named when the user has one. Scores from different encoders are
not comparable with each other or with the paper's numbers (Resemblyzer puts
different people at ~0.6 and the same voice at ~0.9); compare a model's SIM with the
ground truth's SIM from the same encoder.

Backends, by name (:func:`get_speaker_encoder`)::

    "resemblyzer"             Resemblyzer VoiceEncoder (default)
    "wavlm"                   microsoft/wavlm-base-plus-sv (from the Hugging Face cache)
    "wavlm:<name|folder>"     any WavLMForXVector checkpoint

``embed`` returns a unit-norm vector, or a zero vector for audio with no signal
(silence cannot be embedded); the similarity of a zero vector to anything is 0.
"""

from __future__ import annotations

import logging
import os
import threading
import warnings
from typing import Protocol, runtime_checkable

import numpy as np

from valle2.audio import resample
from valle2.eval.backends import get_cached
from valle2.errors import MissingDependencyError, ModelFileError

__all__ = [
    "SpeakerEncoder",
    "ResemblyzerEncoder",
    "WavLMEncoder",
    "get_speaker_encoder",
    "cosine",
    "clear_cache",
]

logger = logging.getLogger(__name__)

_SAMPLE_RATE = 16_000
_SILENT_PEAK = 1e-4  # about -80 dBFS: digital silence, nothing to embed
_DEFAULT_WAVLM = "microsoft/wavlm-base-plus-sv"

_CACHE: dict[tuple, "SpeakerEncoder"] = {}
_LOCK = threading.Lock()


@runtime_checkable
class SpeakerEncoder(Protocol):
    name: str

    def embed(self, wav: np.ndarray, sr: int) -> np.ndarray: ...

    def similarity(self, wav_a: np.ndarray, sr_a: int, wav_b: np.ndarray, sr_b: int) -> float: ...


def cosine(a: np.ndarray, b: np.ndarray) -> float:
    """Cosine similarity of two embeddings; 0 when either is the zero vector."""
    na, nb = float(np.linalg.norm(a)), float(np.linalg.norm(b))
    if na == 0.0 or nb == 0.0:
        return 0.0
    return float(np.clip(np.dot(a, b) / (na * nb), -1.0, 1.0))


def _mono_16k(wav: np.ndarray, sr: int) -> np.ndarray:
    wav = np.asarray(wav, dtype=np.float32)
    if wav.ndim != 1:
        raise ValueError(f"speaker encoder expects mono audio [N], got shape {tuple(wav.shape)}")
    return resample(wav, int(sr), _SAMPLE_RATE)


class _Similarity:
    def similarity(self, wav_a: np.ndarray, sr_a: int, wav_b: np.ndarray, sr_b: int) -> float:
        """Cosine similarity of the speakers of two clips, in [-1, 1]."""
        return cosine(self.embed(wav_a, sr_a), self.embed(wav_b, sr_b))


class ResemblyzerEncoder(_Similarity):
    """Resemblyzer's GE2E d-vector (256-d), averaged over 1.6 s windows of the clip.

    The clip is loudness-normalised and long silences are cut (Resemblyzer's own
    ``preprocess_wav``, WebRTC VAD), so pauses and level do not move the score.
    :meth:`embed` is Resemblyzer's ``embed_utterance`` with its librosa mel
    spectrogram replaced by the numpy one of :mod:`valle2.eval.quality` (identical
    values): librosa's first use imports scipy.signal and numba, seconds per process.
    """

    name = "resemblyzer"
    dim = 256
    # Resemblyzer's hparams: 25 ms windows, 10 ms hop, 40 mel bands at 16 kHz; partial
    # utterances at 1.3 per second, the last kept when 75 % covered.
    _N_FFT, _HOP, _N_MELS, _RATE, _MIN_COVERAGE = 400, 160, 40, 1.3, 0.75

    def __init__(self, *, device: str = "cpu") -> None:
        try:
            with warnings.catch_warnings():
                # webrtcvad imports pkg_resources, which warns that it is deprecated.
                warnings.simplefilter("ignore")
                from resemblyzer import VoiceEncoder, preprocess_wav
        except ImportError as exc:
            if getattr(exc, "name", None) == "pkg_resources":
                raise MissingDependencyError(
                    "resemblyzer's webrtcvad needs pkg_resources, removed in setuptools 81: "
                    'pip install "setuptools<81"'
                ) from exc
            raise MissingDependencyError(
                "the resemblyzer speaker encoder is not installed: "
                'pip install "valle2[eval]" (or: pip install resemblyzer "setuptools<81")'
            ) from exc
        self._preprocess = preprocess_wav
        self.encoder = VoiceEncoder(device, verbose=False)

    def embed(self, wav: np.ndarray, sr: int) -> np.ndarray:
        import torch

        from valle2.eval.quality import mel_power_spectrogram

        wav16 = _mono_16k(wav, sr)
        if len(wav16) == 0 or float(np.max(np.abs(wav16))) < _SILENT_PEAK:
            return np.zeros(self.dim, dtype=np.float32)
        speech = self._preprocess(wav16)  # already at 16 kHz: no resampling inside
        if len(speech) < 0.3 * _SAMPLE_RATE:
            # The VAD found (almost) no speech; embed the whole clip rather than nothing.
            speech = wav16
        wav_slices, mel_slices = self.encoder.compute_partial_slices(len(speech), self._RATE, self._MIN_COVERAGE)
        if wav_slices[-1].stop >= len(speech):
            speech = np.pad(speech, (0, wav_slices[-1].stop - len(speech)))
        # librosa >= 0.10 pads with zeros ("constant"); match the installed Resemblyzer + librosa.
        mel = mel_power_spectrogram(speech, _SAMPLE_RATE, self._N_FFT, self._HOP, self._N_MELS, pad_mode="constant")
        mels = np.stack([mel[s] for s in mel_slices]).astype(np.float32)  # (P, 160, 40)
        with torch.inference_mode():
            partials = self.encoder(torch.from_numpy(mels).to(self.encoder.device)).cpu().numpy()  # (P, 256)
        emb = partials.mean(axis=0)
        norm = float(np.linalg.norm(emb))
        return (emb / norm).astype(np.float32) if norm > 0 else np.zeros(self.dim, dtype=np.float32)


class WavLMEncoder(_Similarity):
    """A WavLM x-vector speaker-verification model (``WavLMForXVector``) from transformers."""

    def __init__(self, model: str = _DEFAULT_WAVLM, *, device: str = "cpu") -> None:
        import torch
        from transformers import AutoFeatureExtractor, WavLMForXVector

        from valle2.eval.asr import hf_offline

        self.name = f"wavlm:{model}"
        local_only = os.path.isdir(model) or hf_offline()
        try:
            self.extractor = AutoFeatureExtractor.from_pretrained(model, local_files_only=local_only)
            self.model = WavLMForXVector.from_pretrained(model, local_files_only=local_only).to(device).eval()
        except Exception as exc:  # hub errors, missing files, a model of another kind
            raise ModelFileError(f"cannot load WavLM speaker model {model!r}: {exc}") from exc
        self.device = torch.device(device)
        self.dim = int(self.model.config.xvector_output_dim)

    def embed(self, wav: np.ndarray, sr: int) -> np.ndarray:
        import torch

        wav16 = _mono_16k(wav, sr)
        if len(wav16) == 0 or float(np.max(np.abs(wav16))) < _SILENT_PEAK:
            return np.zeros(self.dim, dtype=np.float32)
        inputs = self.extractor(wav16, sampling_rate=_SAMPLE_RATE, return_tensors="pt")
        with torch.inference_mode():
            emb = self.model(**{k: v.to(self.device) for k, v in inputs.items()}).embeddings[0]  # (D,)
        emb = emb.float().cpu().numpy()
        norm = float(np.linalg.norm(emb))
        return emb / norm if norm > 0 else np.zeros(self.dim, dtype=np.float32)


def _build(name: str, kw: dict) -> SpeakerEncoder:
    backend, _, model = name.partition(":")
    backend = backend.strip().lower()
    model = model.strip()
    if backend == "resemblyzer" and not model:
        return ResemblyzerEncoder(**kw)
    if backend == "wavlm":
        return WavLMEncoder(model or _DEFAULT_WAVLM, **kw)
    raise ValueError(f"unknown speaker encoder {name!r}; use resemblyzer, wavlm or wavlm:<name-or-folder>")


def get_speaker_encoder(name: str = "resemblyzer", **kw) -> SpeakerEncoder:
    """Return the (cached) speaker encoder called ``name``; ``kw`` go to its constructor.

    Raises :class:`~valle2.errors.MissingDependencyError` naming what to install when
    the backend's package is missing, :class:`~valle2.errors.ModelFileError` when the
    model cannot be loaded.
    """
    return get_cached(_CACHE, _LOCK, name, kw, _build, "speaker encoder")


def clear_cache() -> None:
    """Forget the loaded speaker encoders."""
    with _LOCK:
        _CACHE.clear()
