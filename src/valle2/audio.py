"""Audio in and out: load, check, resample, join and save waveforms.

Everything in valle2 handles audio as a mono ``float32`` numpy array ``[N]`` in
``[-1, 1]`` plus a sample rate in Hz. This module is the only place that reads or
writes audio files, so that every bad input fails here with one clear
:class:`~valle2.errors.AudioError` naming what was loaded, where from and the
offending value, e.g. ``prompt audio 'me.wav' is 0.4 s; need 1-30 s``.

Reading uses ``soundfile`` (libsndfile: WAV, FLAC, OGG, MP3, ...); resampling uses
``soxr`` at quality "HQ".
"""

from __future__ import annotations

import io
import math
import numbers
import os
import tempfile
from pathlib import Path
from typing import BinaryIO, Union

import numpy as np
import soundfile as sf
import soxr

from valle2.errors import AudioError

AudioSource = Union[str, os.PathLike, bytes, bytearray, memoryview, BinaryIO, tuple]

MAX_SAMPLE_RATE = 384_000  # highest rate any real recording uses; above it the header is wrong
SILENCE_PEAK = 1e-4  # peak below this is digital silence (about -80 dBFS)
SILENCE_RMS_DBFS = -60.0  # RMS below this has no usable speech in it
PROMPT_MIN_SECONDS = 1.0
PROMPT_MAX_SECONDS = 30.0
PROMPT_TARGET_PEAK = 10 ** (-1 / 20)  # -1 dBFS
PROMPT_QUIET_PEAK = 0.05  # below this (about -26 dBFS) a prompt is boosted to PROMPT_TARGET_PEAK


# ----------------------------------------------------------------------------- loading


def load_audio(
    source: AudioSource,
    target_sr: int | None = None,
    *,
    min_seconds: float | None = None,
    max_seconds: float | None = None,
    what: str = "audio",
    allow_silent: bool = False,
) -> tuple[np.ndarray, int]:
    """Load audio as mono float32 in ``[-1, 1]``, checked and optionally resampled.

    ``source`` is one of:

    - a path (``str`` or ``Path``) to any file libsndfile reads;
    - the file's raw ``bytes`` (e.g. an HTTP upload) or a binary file-like object;
    - a ``(array, sample_rate)`` tuple. ``array`` is ``[N]`` (mono), or 2-D with the
      channel axis taken to be the *smaller* dimension, so both ``[N, C]`` and
      ``[C, N]`` work (a square array is read as ``[N, C]``, soundfile's layout).
      Integer PCM is scaled to ``[-1, 1]`` (int16 by 1/32768, int32 by 1/2^31,
      uint8 is offset by 128); float input is taken as is.

    Several channels are downmixed by averaging. With ``target_sr`` the audio is
    resampled (soxr "HQ") and ``target_sr`` is returned; otherwise the file's rate.

    Raises :class:`AudioError` (naming ``what``, the source and the value) when the
    file is missing or unreadable, has 0 samples, NaN/inf samples, an invalid sample
    rate, lasts less than ``min_seconds`` or more than ``max_seconds``, or is silent
    (peak below 1e-4 or RMS below -60 dBFS; skipped with ``allow_silent=True``).
    For paths, bytes and seekable files the duration is checked from the header
    before the samples are read, so a huge file is refused without loading it.
    """
    if target_sr is not None:
        _check_target_sr(target_sr)
    if isinstance(source, tuple):
        wav, sr, name = _from_array(source, what)
    else:
        wav, sr, name = _read(source, what, min_seconds, max_seconds)

    label = f"{what} {name}" if name else what
    n = wav.shape[0]
    if n == 0:
        raise AudioError(f"{label} is empty (0 samples)")
    finite = np.isfinite(wav)
    if not finite.all():
        bad = int(n - np.count_nonzero(finite))
        raise AudioError(f"{label} contains NaN or infinite samples ({bad} of {n})")
    _check_duration(label, n / sr, min_seconds, max_seconds)
    if not allow_silent:
        peak = float(np.max(np.abs(wav)))
        rms = float(np.sqrt(np.mean(np.square(wav, dtype=np.float64))))
        rms_db = 20 * math.log10(rms) if rms > 0 else -math.inf
        if peak < SILENCE_PEAK or rms_db < SILENCE_RMS_DBFS:
            raise AudioError(f"{label} is silent (peak {peak:.5f}, RMS {rms_db:.0f} dBFS)")

    if target_sr is not None and target_sr != sr:
        wav = resample(wav, sr, target_sr)
        sr = target_sr
    return np.ascontiguousarray(wav, dtype=np.float32), int(sr)


def load_prompt(source: AudioSource, target_sr: int) -> np.ndarray:
    """Load a voice prompt: 1-30 s of non-silent audio, mono, at ``target_sr``.

    Loudness is touched only at the extremes, by peak normalisation to -1 dBFS:
    audio that clips (peak above 1, possible for float input) is scaled down, and
    very quiet audio (peak below 0.05, about -26 dBFS) is scaled up so the codec sees
    speech at a level like its training data. Anything in between is left as
    recorded, because the prompt's level is part of what the model imitates.
    """
    wav, _ = load_audio(
        source,
        target_sr,
        min_seconds=PROMPT_MIN_SECONDS,
        max_seconds=PROMPT_MAX_SECONDS,
        what="prompt audio",
    )
    peak = float(np.max(np.abs(wav)))
    if peak > 1.0 or peak < PROMPT_QUIET_PEAK:
        wav = wav * np.float32(PROMPT_TARGET_PEAK / peak)
    return wav.astype(np.float32, copy=False)


def _read(source, what: str, min_seconds, max_seconds) -> tuple[np.ndarray, int, str]:
    """Read a path, bytes or file-like object -> (mono float32 [N], sr, quoted name)."""
    if isinstance(source, (str, os.PathLike)):
        path = Path(source).expanduser()
        name = f"'{path}'"
        if not path.exists():
            raise AudioError(f"{what} file not found: '{path}'")
        if path.is_dir():
            raise AudioError(f"{what} path '{path}' is a directory, not an audio file")
        if path.stat().st_size == 0:
            raise AudioError(f"{what} file '{path}' is empty (0 bytes)")
        handle = str(path)
    elif isinstance(source, (bytes, bytearray, memoryview)):
        name = ""
        if len(source) == 0:
            raise AudioError(f"{what} is empty (0 bytes)")
        handle = io.BytesIO(bytes(source))
    elif hasattr(source, "read"):
        file_name = getattr(source, "name", None)
        name = f"'{file_name}'" if isinstance(file_name, str) else ""
        handle = source
        if not _seekable(source):
            # libsndfile needs to seek; an unseekable stream (a socket, a pipe) is buffered.
            handle = io.BytesIO(source.read())
    else:
        raise TypeError(
            f"{what}: expected a path, bytes, a file object or an (array, sample_rate) tuple, "
            f"got {type(source).__name__}"
        )

    label = f"{what} {name}" if name else what
    try:
        start = handle.tell() if not isinstance(handle, str) else None
        info = sf.info(handle)
        if start is not None:
            handle.seek(start)
        _check_sample_rate(label, info.samplerate)
        # info.frames is exact for the formats libsndfile writes; checking it here is what
        # keeps a 10-hour upload from being decoded only to be refused.
        if max_seconds is not None and 0 < info.frames < 2**62:
            _check_duration(label, info.frames / info.samplerate, None, max_seconds)
        data, sr = sf.read(handle, dtype="float32", always_2d=True)  # (N, C)
    except (sf.LibsndfileError, sf.SoundFileError, RuntimeError, EOFError) as exc:
        shown = name or "(uploaded data)"
        raise AudioError(f"could not read {what} {shown}: {_reason(exc)}") from None
    _check_sample_rate(label, sr)
    wav = data[:, 0] if data.shape[1] == 1 else data.mean(axis=1)
    return wav.astype(np.float32, copy=False), int(sr), name


def _from_array(source: tuple, what: str) -> tuple[np.ndarray, int, str]:
    """An ``(array, sample_rate)`` tuple -> (mono float32 [N], sr, '')."""
    if len(source) != 2:
        raise TypeError(f"{what}: expected an (array, sample_rate) tuple, got a tuple of {len(source)}")
    array, sr = source
    if hasattr(array, "detach"):  # a torch tensor, without importing torch here
        array = array.detach().cpu().numpy()
    wav = np.asarray(array)
    if not (isinstance(sr, numbers.Real) and float(sr).is_integer()):
        raise AudioError(f"{what} has an invalid sample rate: {sr!r} (need a whole number of Hz)")
    sr = int(sr)
    _check_sample_rate(what, sr)
    if wav.dtype.kind not in "iuf" or wav.ndim not in (1, 2):
        raise AudioError(
            f"{what} array must be 1-D or 2-D of numbers, got dtype {wav.dtype} and shape {wav.shape}"
        )
    wav = _pcm_to_float(wav)
    if wav.ndim == 2:
        channel_axis = 0 if wav.shape[0] < wav.shape[1] else 1
        wav = wav.mean(axis=channel_axis) if wav.shape[channel_axis] > 1 else wav.reshape(-1)
    return wav.astype(np.float32, copy=False), sr, ""


def _pcm_to_float(wav: np.ndarray) -> np.ndarray:
    """Integer PCM -> float in [-1, 1]; float arrays are returned as float32 unchanged."""
    if wav.dtype.kind == "f":
        return wav.astype(np.float32, copy=False)
    bits = wav.dtype.itemsize * 8
    if wav.dtype.kind == "u":  # unsigned PCM (8-bit WAV) is centred on 2^(bits-1)
        return ((wav.astype(np.float64) - 2 ** (bits - 1)) / 2 ** (bits - 1)).astype(np.float32)
    return (wav.astype(np.float64) / 2 ** (bits - 1)).astype(np.float32)


def _seekable(f) -> bool:
    try:
        return bool(f.seekable())
    except (AttributeError, OSError, ValueError):
        return False


def _reason(exc: BaseException) -> str:
    text = str(exc).strip() or type(exc).__name__
    # libsndfile reports "Error opening <_io.BytesIO object at 0x...>: Format not recognised.";
    # the object's repr is noise to the user.
    if text.startswith("Error opening") and ": " in text:
        text = text.split(": ", 1)[1]
    return text.rstrip(".")


def _check_sample_rate(label: str, sr) -> None:
    if not (0 < sr <= MAX_SAMPLE_RATE):
        raise AudioError(f"{label} has an invalid sample rate: {sr} Hz (need 1-{MAX_SAMPLE_RATE})")


def _check_target_sr(sr) -> None:
    if not (isinstance(sr, numbers.Integral) and 0 < sr <= MAX_SAMPLE_RATE):
        raise ValueError(f"target sample rate must be an integer in 1-{MAX_SAMPLE_RATE} Hz, got {sr!r}")


def _check_duration(label: str, seconds: float, min_seconds, max_seconds) -> None:
    too_short = min_seconds is not None and seconds < min_seconds
    too_long = max_seconds is not None and seconds > max_seconds
    if not (too_short or too_long):
        return
    if min_seconds is not None and max_seconds is not None:
        need = f"{min_seconds:g}-{max_seconds:g} s"
    elif min_seconds is not None:
        need = f"at least {min_seconds:g} s"
    else:
        need = f"at most {max_seconds:g} s"
    shown = f"{seconds:.1f}"
    bound = min_seconds if too_short else max_seconds
    if float(shown) == bound:  # 0.96 s would print as "1.0 s; need 1-30 s"
        shown = f"{seconds:.3f}"
    raise AudioError(f"{label} is {shown} s; need {need}")


# ----------------------------------------------------------------------------- processing


def resample(wav: np.ndarray, sr_in: int, sr_out: int) -> np.ndarray:
    """Resample ``[N]`` (or ``[N, C]``) float audio from ``sr_in`` to ``sr_out`` Hz (soxr "HQ").

    The output has ``round(N * sr_out / sr_in)`` samples and dtype float32.
    """
    for sr in (sr_in, sr_out):
        _check_target_sr(sr)
    wav = np.asarray(wav, dtype=np.float32)
    if sr_in == sr_out:
        return wav.copy()
    if wav.shape[0] == 0:
        return np.zeros((0,) + wav.shape[1:], dtype=np.float32)
    out = soxr.resample(wav, sr_in, sr_out, quality="HQ")
    return np.asarray(out, dtype=np.float32)


def crossfade_concat(
    pieces: list[np.ndarray],
    sr: int,
    crossfade_ms: float = 20.0,
    gap_ms: float = 0.0,
    *,
    curve: str = "equal_power",
) -> np.ndarray:
    """Join mono pieces into one waveform without clicks at the joins.

    With ``gap_ms == 0`` consecutive pieces overlap by ``f`` samples, the end of one
    fading out while the start of the next fades in; the result has
    ``sum(len(p)) - sum(f_i)`` samples, where ``f_i = min(fade, len(joined so far),
    len(piece i))`` and ``fade = round(crossfade_ms * sr / 1000)``, so pieces shorter
    than the fade are still joined (with a shorter fade).

    With ``gap_ms > 0`` the pieces do not overlap: each join fades the end of the
    previous piece to zero, inserts ``round(gap_ms * sr / 1000)`` samples of silence
    and fades the next piece in; the result has ``sum(len(p)) + (n - 1) * gap``
    samples.

    ``curve`` is "equal_power" (sin/cos, for unrelated signals such as separately
    generated sentences) or "linear". Empty pieces are skipped; no pieces give ``[0]``.
    """
    if curve not in ("equal_power", "linear"):
        raise ValueError(f"crossfade curve must be 'equal_power' or 'linear', got {curve!r}")
    if crossfade_ms < 0 or gap_ms < 0:
        raise ValueError(f"crossfade_ms and gap_ms must be >= 0, got {crossfade_ms} and {gap_ms}")
    arrays = []
    for i, piece in enumerate(pieces):
        a = np.asarray(piece, dtype=np.float32)
        if a.ndim != 1:
            raise ValueError(f"crossfade_concat expects mono [N] pieces; piece {i} has shape {a.shape}")
        if a.size:
            arrays.append(a)
    if not arrays:
        return np.zeros(0, dtype=np.float32)

    fade = int(round(crossfade_ms * sr / 1000))
    gap = int(round(gap_ms * sr / 1000))
    out = arrays[0].copy()
    for nxt in arrays[1:]:
        if gap > 0:
            f_out, f_in = min(fade, len(out)), min(fade, len(nxt))
            nxt = nxt.copy()
            if f_out:
                out[-f_out:] *= _fade_out(f_out, curve)
            if f_in:
                nxt[:f_in] *= _fade_in(f_in, curve)
            out = np.concatenate([out, np.zeros(gap, dtype=np.float32), nxt])
            continue
        f = min(fade, len(out), len(nxt))
        if f == 0:
            out = np.concatenate([out, nxt])
            continue
        mixed = out[-f:] * _fade_out(f, curve) + nxt[:f] * _fade_in(f, curve)
        out = np.concatenate([out[:-f], mixed, nxt[f:]])
    return out.astype(np.float32, copy=False)


def _fade_in(n: int, curve: str) -> np.ndarray:
    t = (np.arange(n, dtype=np.float64) + 0.5) / n  # (0, 1), symmetric, never exactly 0 or 1
    gain = np.sin(t * np.pi / 2) if curve == "equal_power" else t
    return gain.astype(np.float32)


def _fade_out(n: int, curve: str) -> np.ndarray:
    return _fade_in(n, curve)[::-1].copy()


# ----------------------------------------------------------------------------- writing

_FORMATS = {"wav": "WAV", "flac": "FLAC"}


def save_audio(path: str | os.PathLike, wav: np.ndarray, sr: int, format: str | None = None) -> Path:
    """Write mono audio to ``path`` as 16-bit PCM WAV (default) or FLAC; return the path.

    The format is ``format`` ("wav" or "flac"), else taken from a ``.flac`` suffix,
    else WAV. Samples are clipped to ``[-1, 1]``. The file is written next to its
    destination under a temporary name and moved into place with ``os.replace``, so
    a failed write never leaves a half-written file nor damages an existing one.
    Missing parent directories are created.
    """
    path = Path(path)
    fmt = _resolve_format(format if format is not None else path.suffix.lstrip(".") or "wav",
                          explicit=format is not None)
    data = _prepare_for_writing(wav, sr)
    path.parent.mkdir(parents=True, exist_ok=True)
    # Keep an existing file's permissions; mkstemp would otherwise leave 0600.
    mode = path.stat().st_mode & 0o777 if path.exists() else 0o644
    fd, tmp_name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            sf.write(f, data, sr, format=fmt, subtype="PCM_16")
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp_name, mode)
        os.replace(tmp_name, path)
    except BaseException:
        try:
            os.unlink(tmp_name)
        except FileNotFoundError:
            pass
        raise
    return path


def encode_audio_bytes(wav: np.ndarray, sr: int, format: str = "wav") -> bytes:
    """Mono audio -> file bytes: "wav" (16-bit PCM), "flac" (16-bit) or "pcm".

    "pcm" is headerless little-endian signed 16-bit samples (``s16le``), mono at ``sr``.
    """
    fmt = format.lower()
    data = _prepare_for_writing(wav, sr)
    buf = io.BytesIO()
    if fmt == "pcm":
        # libsndfile's RAW writer, so "pcm" is sample for sample the payload of the "wav" bytes.
        sf.write(buf, data, sr, format="RAW", subtype="PCM_16", endian="LITTLE")
    else:
        sf.write(buf, data, sr, format=_resolve_format(fmt, explicit=True), subtype="PCM_16")
    return buf.getvalue()


def _resolve_format(fmt: str, *, explicit: bool) -> str:
    key = fmt.lower()
    if key in _FORMATS:
        return _FORMATS[key]
    if explicit:
        raise ValueError(f"unsupported audio format {fmt!r}; use one of: wav, flac")
    return "WAV"  # unknown suffix such as ".out": write WAV, the documented default


def _prepare_for_writing(wav, sr: int) -> np.ndarray:
    _check_target_sr(sr)
    if hasattr(wav, "detach"):
        wav = wav.detach().cpu().numpy()
    data = np.asarray(wav, dtype=np.float32)
    if data.ndim == 2 and 1 in data.shape:
        data = data.reshape(-1)
    if data.ndim != 1:
        raise ValueError(f"expected mono audio [N], got shape {data.shape}")
    if not np.isfinite(data).all():
        raise AudioError("refusing to write audio that contains NaN or infinite samples")
    return np.clip(data, -1.0, 1.0)


def time_stretch(wav: np.ndarray, sr: int, speed: float) -> np.ndarray:
    """Change tempo by ``speed`` (2.0 = twice as fast) without changing pitch (WSOLA).

    Used for the ``speed`` option (OpenAI's API has one). It must run before the watermark
    is embedded, which is why ``VallE2.synthesize_batch`` applies it, not the caller.

    Frames of 30 ms, windowed with Hann at 50 % overlap on the output side, are taken
    from the input every ``speed`` x 15 ms, each shifted by up to +-10 ms to the
    position that best continues the previous frame (the maximum of the
    cross-correlation), so that periodic speech is not smeared into a chorus. The
    output has ``round(len(wav) / speed)`` samples.
    """
    if speed == 1.0 or len(wav) == 0:
        return wav
    frame = max(2 * int(0.015 * sr), 4)
    hop = frame // 2
    tol = int(0.010 * sr)
    n_out = int(round(len(wav) / speed))
    window = np.hanning(frame + 2)[1:-1].astype(np.float32)  # no zero end-points: overlap-add sums to ~1
    pad = frame + tol  # room for the +-tol search before the first sample; output sample j <- input j * speed
    x = np.concatenate([np.zeros(pad, np.float32), wav.astype(np.float32), np.zeros(2 * pad + frame, np.float32)])
    n_frames = n_out // hop + 2
    out = np.zeros(n_frames * hop + frame, np.float32)
    norm = np.zeros_like(out)
    prev = None  # input position of the previous frame
    for k in range(n_frames):
        nominal = pad + int(round(k * hop * speed))
        if prev is None:
            pos = nominal
        else:
            target = x[prev + hop : prev + hop + frame]  # what would naturally follow the previous frame
            lo = max(nominal - tol, 0)
            region = x[lo : nominal + tol + frame]
            corr = np.correlate(region, target, mode="valid")
            pos = lo + int(np.argmax(corr)) if corr.size and np.any(corr) else nominal
        out[k * hop : k * hop + frame] += window * x[pos : pos + frame]
        norm[k * hop : k * hop + frame] += window
        prev = pos
    out = out / np.maximum(norm, 1e-3)
    return np.ascontiguousarray(out[:n_out])


LOSSY_TOOLS = {"mp3": ("lame",), "opus": ("opusenc", "opusdec")}


def lossy_roundtrip(wav: np.ndarray, sr: int, kind: str, kbps: int) -> tuple[np.ndarray, int]:
    """Encode ``wav`` as MP3 (lame) or Opus (opusenc) at ``kbps`` and decode it back.

    The lossy channel of the watermark and detector robustness checks; needs the tools of
    ``LOSSY_TOOLS[kind]`` on PATH. Returns float32 audio and its sample rate.
    """
    import subprocess

    if kind not in LOSSY_TOOLS:
        raise ValueError(f"unknown lossy codec {kind!r}; expected one of {', '.join(LOSSY_TOOLS)}")
    with tempfile.TemporaryDirectory(prefix="valle2-lossy-") as tmp:
        src, enc, dec = Path(tmp) / "in.wav", Path(tmp) / f"enc.{kind}", Path(tmp) / "dec.wav"
        sf.write(src, np.clip(wav, -1, 1), sr, subtype="PCM_16")
        if kind == "mp3":
            subprocess.run(["lame", "--quiet", "-b", str(kbps), str(src), str(enc)], check=True)
            subprocess.run(["lame", "--quiet", "--decode", str(enc), str(dec)], check=True)
        else:
            subprocess.run(["opusenc", "--quiet", "--bitrate", str(kbps), str(src), str(enc)], check=True)
            subprocess.run(["opusdec", "--quiet", "--rate", str(sr), str(enc), str(dec)], check=True)
        out, out_sr = sf.read(dec, dtype="float32")
    return out, out_sr
