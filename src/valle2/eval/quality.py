"""Speech quality: DNSMOS (the paper's quality metric) and model-free signal checks.

DNSMOS (Reddy et al., ICASSP 2021/2022) predicts listener opinion scores from the
audio alone. Microsoft publishes its ONNX models (CC BY 4.0) but they are not part
of valle2: the user passes the folder holding them (:class:`DnsMos`). Two models:

    model_v8.onnx      P.808 MOS from a 120-band mel spectrogram  [N, 900, 120] -> [N, 1]
    sig_bak_ovr.onnx   P.835 SIG / BAK / OVRL from raw samples    [N, 144160]   -> [N, 3]

Both look at 9.01 s of 16 kHz audio. Shorter clips are repeated until long enough;
longer ones are scored on 9.01 s windows with a 1 s hop and the window scores
averaged. The raw P.835 outputs are mapped by fixed quadratics (from Microsoft's
``dnsmos_local.py``). The mel features follow that script's librosa call
(``melspectrogram(n_fft=321, hop_length=160, n_mels=120)``, ``power_to_db(ref=max)``,
``(dB + 40) / 40``), re-implemented here in numpy so librosa is not needed.

:func:`signal_checks` needs no model and always runs: duration (and its ratio to
the expected duration), the share of silent frames, clipping, peak and RMS level.
They catch the failures an AR TTS model actually has — not stopping (duration ratio
far above 1), stopping early or producing silence, exploding amplitudes.
"""

from __future__ import annotations

import functools
import math
import os
import threading
from pathlib import Path
from typing import Protocol, runtime_checkable

import numpy as np

from valle2.audio import resample
from valle2.errors import MissingDependencyError, ModelFileError

__all__ = [
    "signal_checks",
    "DnsMos",
    "SignalQuality",
    "QualityMeter",
    "get_quality",
    "mel_filterbank",
    "mel_power_spectrogram",
    "dnsmos_melspec",
]

# ----------------------------------------------------------------------------- signal checks

FRAME_SECONDS = 0.02
SILENCE_FLOOR_DB = -60.0  # a frame quieter than this (dBFS) is silent whatever the clip's level
SILENCE_BELOW_LOUDEST_DB = 40.0  # ... and so is one this far below the clip's loudest frame
CLIP_LEVEL = 0.999  # |sample| at or above this counts as clipped (int16 full scale is 0.99997)
_DB_FLOOR = -120.0  # reported instead of -inf so the value stays valid JSON


def _db(x: float) -> float:
    return max(_DB_FLOOR, 20.0 * math.log10(x)) if x > 0 else _DB_FLOOR


def signal_checks(wav: np.ndarray, sr: int, expected_seconds: float | None = None) -> dict:
    """Model-free measurements of a mono clip.

    Returns a dict:

    - ``duration_s``: length in seconds;
    - ``duration_ratio``: ``duration_s / expected_seconds`` (``None`` without an expectation);
    - ``silence_ratio``: share of 20 ms frames that are silent — RMS below -60 dBFS, or
      more than 40 dB below the loudest frame (1.0 for an all-silent clip);
    - ``clipping_ratio``: share of samples with ``|x| >= 0.999``;
    - ``peak``: largest ``|x|``; ``rms_db``: RMS level in dBFS (floored at -120).
    """
    wav = np.asarray(wav, dtype=np.float64)
    if wav.ndim != 1:
        raise ValueError(f"signal_checks expects mono audio [N], got shape {tuple(wav.shape)}")
    if sr <= 0:
        raise ValueError(f"sample rate is {sr}; need a positive number of Hz")
    n = len(wav)
    duration = n / sr
    if expected_seconds is not None and expected_seconds <= 0:
        raise ValueError(f"expected_seconds is {expected_seconds}; need a positive duration")
    ratio = duration / expected_seconds if expected_seconds else None
    if n == 0:
        return dict(duration_s=0.0, duration_ratio=ratio, silence_ratio=1.0, clipping_ratio=0.0,
                    peak=0.0, rms_db=_DB_FLOOR)
    frame = max(1, int(round(FRAME_SECONDS * sr)))
    n_frames = max(1, n // frame)
    frames = wav[: n_frames * frame].reshape(n_frames, -1) if n >= frame else wav[None, :]
    frame_db = 10.0 * np.log10(np.maximum(np.mean(frames**2, axis=1), 1e-12))  # (F,)
    threshold = max(SILENCE_FLOOR_DB, float(frame_db.max()) - SILENCE_BELOW_LOUDEST_DB)
    return dict(
        duration_s=duration,
        duration_ratio=ratio,
        silence_ratio=float(np.mean(frame_db < threshold)),
        clipping_ratio=float(np.mean(np.abs(wav) >= CLIP_LEVEL)),
        peak=float(np.max(np.abs(wav))),
        rms_db=_db(float(np.sqrt(np.mean(wav**2)))),
    )


# ----------------------------------------------------------------------------- DNSMOS features

DNSMOS_SR = 16_000
DNSMOS_WINDOW = 144_160  # 9.01 s
_N_FFT, _HOP, _N_MELS = 321, 160, 120
_P835_POLY = {  # raw -> MOS, highest power first (numpy.polyval order)
    "sig": (-0.08397278, 1.22083953, 0.0052439),
    "bak": (-0.13166888, 1.60915514, -0.39604546),
    "ovrl": (-0.06766283, 1.11546468, 0.04602535),
}


def _hz_to_mel(f: np.ndarray) -> np.ndarray:
    """Slaney mel scale (librosa's default, ``htk=False``): linear below 1 kHz, log above."""
    f = np.asarray(f, dtype=np.float64)
    f_sp, min_log_hz = 200.0 / 3, 1000.0
    min_log_mel, logstep = min_log_hz / f_sp, math.log(6.4) / 27.0
    return np.where(f >= min_log_hz, min_log_mel + np.log(np.maximum(f, 1e-10) / min_log_hz) / logstep, f / f_sp)


def _mel_to_hz(m: np.ndarray) -> np.ndarray:
    m = np.asarray(m, dtype=np.float64)
    f_sp, min_log_hz = 200.0 / 3, 1000.0
    min_log_mel, logstep = min_log_hz / f_sp, math.log(6.4) / 27.0
    return np.where(m >= min_log_mel, min_log_hz * np.exp(logstep * (m - min_log_mel)), f_sp * m)


def mel_filterbank(sr: int, n_fft: int, n_mels: int) -> np.ndarray:
    """Slaney-normalised triangular mel filters ``[n_mels, n_fft // 2 + 1]`` (= ``librosa.filters.mel``)."""
    fft_freqs = np.fft.rfftfreq(n_fft, 1.0 / sr)  # for odd n_fft the top bin is below sr / 2
    mel_f = _mel_to_hz(np.linspace(_hz_to_mel(0.0), _hz_to_mel(sr / 2), n_mels + 2))
    fdiff = np.diff(mel_f)
    ramps = mel_f[:, None] - fft_freqs[None, :]
    lower = -ramps[:-2] / fdiff[:-1, None]
    upper = ramps[2:] / fdiff[1:, None]
    weights = np.maximum(0.0, np.minimum(lower, upper))
    weights *= (2.0 / (mel_f[2 : n_mels + 2] - mel_f[:n_mels]))[:, None]
    return weights


def mel_power_spectrogram(
    audio: np.ndarray, sr: int, n_fft: int, hop_length: int, n_mels: int, *, pad_mode: str = "reflect"
) -> np.ndarray:
    """Mel power spectrogram ``[T, n_mels]``, equal to ``librosa.feature.melspectrogram(...).T``.

    Centred frames (``n_fft // 2`` of ``pad_mode`` padding each side), periodic Hann
    window, ``|STFT|**2``, Slaney mel filters; T = 1 + len(audio) // hop_length.
    """
    audio = np.asarray(audio, dtype=np.float64)
    pad = n_fft // 2
    padded = np.pad(audio, pad, mode=pad_mode)
    n_frames = 1 + (len(padded) - n_fft) // hop_length
    window = 0.5 - 0.5 * np.cos(2 * np.pi * np.arange(n_fft) / n_fft)
    idx = np.arange(n_fft)[None, :] + hop_length * np.arange(n_frames)[:, None]  # (T, n_fft)
    spec = np.abs(np.fft.rfft(padded[idx] * window, axis=1)) ** 2  # (T, n_fft // 2 + 1)
    return spec @ _filterbank(sr, n_fft, n_mels).T  # (T, n_mels)


@functools.lru_cache(maxsize=8)
def _filterbank(sr: int, n_fft: int, n_mels: int) -> np.ndarray:
    return mel_filterbank(sr, n_fft, n_mels)


def dnsmos_melspec(audio: np.ndarray) -> np.ndarray:
    """P.808 input features ``[T, 120]`` of 16 kHz ``audio`` (T = 900 for 144000 samples).

    The mel power spectrogram (reflect padding, as the librosa of Microsoft's script),
    dB relative to the maximum with an 80 dB floor, then ``(dB + 40) / 40``.
    """
    mel = mel_power_spectrogram(audio, DNSMOS_SR, _N_FFT, _HOP, _N_MELS)
    db = 10.0 * np.log10(np.maximum(mel, 1e-10))
    db -= 10.0 * np.log10(max(float(mel.max()), 1e-10))
    db = np.maximum(db, db.max() - 80.0)
    return ((db + 40.0) / 40.0).astype(np.float32)


def _dnsmos_windows(audio: np.ndarray) -> list[np.ndarray]:
    """The 9.01 s windows DNSMOS scores, exactly as ``dnsmos_local.py`` cuts them."""
    while len(audio) < DNSMOS_WINDOW:
        audio = np.concatenate([audio, audio])
    num_hops = int(np.floor(len(audio) / DNSMOS_SR) - DNSMOS_WINDOW / DNSMOS_SR) + 1
    windows = [audio[i * DNSMOS_SR : i * DNSMOS_SR + DNSMOS_WINDOW] for i in range(num_hops)]
    return [w for w in windows if len(w) == DNSMOS_WINDOW]


class DnsMos:
    """DNSMOS P.808 and P.835 from a folder holding ``model_v8.onnx`` and ``sig_bak_ovr.onnx``.

    ``score(wav, sr)`` returns ``{"ovrl", "sig", "bak", "p808"}`` on the 1-5 MOS scale.
    """

    P808_FILE = "model_v8.onnx"
    P835_FILE = "sig_bak_ovr.onnx"

    def __init__(self, model_dir: str | os.PathLike, *, threads: int = 0) -> None:
        try:
            import onnxruntime as ort
        except ImportError as exc:
            raise MissingDependencyError(
                'DNSMOS needs onnxruntime, which is not installed: pip install "valle2[eval]" '
                "(or: pip install onnxruntime)"
            ) from exc
        model_dir = Path(model_dir).expanduser()
        if not model_dir.is_dir():
            raise ModelFileError(f"DNSMOS model folder {str(model_dir)!r} does not exist")
        missing = [f for f in (self.P808_FILE, self.P835_FILE) if not (model_dir / f).is_file()]
        if missing:
            raise ModelFileError(
                f"DNSMOS model folder {str(model_dir)!r} lacks {', '.join(missing)} "
                "(from microsoft/DNS-Challenge, folder DNSMOS/DNSMOS)"
            )
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = threads
        opts.inter_op_num_threads = 1
        providers = ["CPUExecutionProvider"]
        try:
            self._p808 = ort.InferenceSession(str(model_dir / self.P808_FILE), opts, providers=providers)
            self._p835 = ort.InferenceSession(str(model_dir / self.P835_FILE), opts, providers=providers)
        except Exception as exc:  # onnxruntime's own error types are not exported stably
            raise ModelFileError(f"cannot load the DNSMOS models in {str(model_dir)!r}: {exc}") from exc
        self.name = f"dnsmos:{model_dir}"

    def score(self, wav: np.ndarray, sr: int) -> dict:
        wav = np.asarray(wav, dtype=np.float32)
        if wav.ndim != 1:
            raise ValueError(f"DNSMOS expects mono audio [N], got shape {tuple(wav.shape)}")
        audio = resample(wav, int(sr), DNSMOS_SR)
        if len(audio) == 0:
            raise ValueError("DNSMOS cannot score an empty clip")
        windows = _dnsmos_windows(audio)
        raw = np.stack(windows).astype(np.float32)  # (W, 144160)
        mels = np.stack([dnsmos_melspec(w[:-_HOP]) for w in windows])  # (W, 900, 120)
        p808 = self._p808.run(None, {"input_1": mels})[0][:, 0]  # (W,)
        sig_bak_ovr = self._p835.run(None, {"input_1": raw})[0]  # (W, 3)
        out = {"p808": float(np.mean(p808))}
        for j, key in enumerate(("sig", "bak", "ovrl")):
            out[key] = float(np.mean(np.polyval(_P835_POLY[key], sig_bak_ovr[:, j].astype(np.float64))))
        return {k: out[k] for k in ("ovrl", "sig", "bak", "p808")}


# ----------------------------------------------------------------------------- factory


@runtime_checkable
class QualityMeter(Protocol):
    name: str

    def score(self, wav: np.ndarray, sr: int) -> dict: ...


class SignalQuality:
    """:func:`signal_checks` behind the :class:`QualityMeter` interface."""

    name = "signal"

    def score(self, wav: np.ndarray, sr: int, expected_seconds: float | None = None) -> dict:
        return signal_checks(wav, sr, expected_seconds)


_CACHE: dict[str, QualityMeter] = {}
_LOCK = threading.Lock()


def get_quality(name_or_dir: str | os.PathLike = "signal") -> QualityMeter:
    """A quality meter: ``"signal"``, ``"dnsmos:<folder>"`` or just the DNSMOS ``<folder>``.

    Loaded DNSMOS models are cached per folder.
    """
    name = str(name_or_dir)
    if name == "signal":
        return SignalQuality()
    if name.lower() == "dnsmos":
        raise ValueError(
            "DNSMOS needs the folder holding model_v8.onnx and sig_bak_ovr.onnx: dnsmos:<folder>"
        )
    folder = name[len("dnsmos:"):] if name.lower().startswith("dnsmos:") else name
    if not folder.strip():
        raise ValueError("DNSMOS needs the folder holding model_v8.onnx and sig_bak_ovr.onnx: dnsmos:<folder>")
    with _LOCK:
        if folder not in _CACHE:
            _CACHE[folder] = DnsMos(folder)
        return _CACHE[folder]
