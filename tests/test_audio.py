"""valle2.audio: loading, checks, resampling, joining and atomic saving."""

from __future__ import annotations

import io
import os
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from valle2 import audio
from valle2.audio import (
    crossfade_concat,
    encode_audio_bytes,
    load_audio,
    load_prompt,
    resample,
    save_audio,
)
from valle2.errors import AudioError


def sine(freq: float, sr: int, seconds: float, amp: float = 0.5) -> np.ndarray:
    t = np.arange(int(round(sr * seconds))) / sr
    return (amp * np.sin(2 * np.pi * freq * t)).astype(np.float32)


def peak_frequency(wav: np.ndarray, sr: int) -> float:
    spectrum = np.abs(np.fft.rfft(wav * np.hanning(len(wav))))
    return float(np.fft.rfftfreq(len(wav), 1 / sr)[np.argmax(spectrum)])


# ----------------------------------------------------------------------------- channels and formats


def test_mono_file_roundtrip(tmp_path):
    path = tmp_path / "mono.wav"
    sf.write(path, sine(440, 16000, 1.5), 16000, subtype="FLOAT")
    wav, sr = load_audio(path)
    assert sr == 16000
    assert wav.dtype == np.float32 and wav.ndim == 1 and len(wav) == 24000
    np.testing.assert_allclose(wav, sine(440, 16000, 1.5), atol=1e-6)


def test_stereo_file_is_averaged(tmp_path):
    left, right = sine(440, 16000, 1.0, 0.6), sine(440, 16000, 1.0, 0.2)
    path = tmp_path / "stereo.wav"
    sf.write(path, np.stack([left, right], axis=1), 16000, subtype="FLOAT")
    wav, _ = load_audio(path)
    assert wav.shape == (16000,)
    np.testing.assert_allclose(wav, (left + right) / 2, atol=1e-6)


@pytest.mark.parametrize("layout", ["NC", "CN"])
def test_array_tuple_either_channel_axis(layout):
    left, right = sine(300, 8000, 1.0, 0.8), np.zeros(8000, dtype=np.float32)
    stereo = np.stack([left, right], axis=1 if layout == "NC" else 0)
    wav, sr = load_audio((stereo, 8000))
    assert sr == 8000 and wav.shape == (8000,)
    np.testing.assert_allclose(wav, left / 2, atol=1e-6)


def test_array_tuple_int16_scaled():
    pcm = (sine(440, 16000, 1.0, 0.5) * 32767).astype(np.int16)
    wav, _ = load_audio((pcm, 16000))
    assert wav.dtype == np.float32
    assert abs(float(np.max(np.abs(wav))) - 0.5) < 1e-3


def test_int16_file_is_float_in_range(tmp_path):
    path = tmp_path / "pcm16.wav"
    full_scale = np.array([32767, -32768, 16384, 0] * 4000, dtype=np.int16)
    sf.write(path, full_scale, 16000, subtype="PCM_16")
    wav, _ = load_audio(path)
    assert wav.dtype == np.float32
    assert wav.max() <= 1.0 and wav.min() >= -1.0
    assert wav.min() == -1.0 and abs(wav[2] - 0.5) < 1e-4


def test_bytes_and_file_object_sources(tmp_path):
    data = encode_audio_bytes(sine(440, 16000, 1.0), 16000, "flac")
    from_bytes, sr1 = load_audio(data)
    from_file, sr2 = load_audio(io.BytesIO(data))
    assert sr1 == sr2 == 16000
    np.testing.assert_array_equal(from_bytes, from_file)
    assert len(from_bytes) == 16000


@pytest.mark.parametrize("sr_in", [8000, 16000, 44100, 48000])
def test_resampled_to_24k_keeps_length_and_pitch(tmp_path, sr_in):
    path = tmp_path / f"s{sr_in}.wav"
    sf.write(path, sine(440, sr_in, 2.0), sr_in, subtype="PCM_16")
    wav, sr = load_audio(path, 24000)
    assert sr == 24000
    assert abs(len(wav) - 48000) <= 1
    assert abs(peak_frequency(wav, 24000) - 440) < 2  # FFT bins are 0.5 Hz wide here
    assert 0.45 < float(np.max(np.abs(wav[1000:-1000]))) < 0.55


def test_resample_identity_and_length():
    x = sine(1000, 16000, 0.5)
    assert np.array_equal(resample(x, 16000, 16000), x)
    y = resample(x, 16000, 22050)
    assert len(y) == round(len(x) * 22050 / 16000)
    assert abs(peak_frequency(y, 22050) - 1000) < 5


# ----------------------------------------------------------------------------- errors


def test_missing_file(tmp_path):
    with pytest.raises(AudioError, match=r"prompt audio file not found: '.*nope\.wav'"):
        load_audio(tmp_path / "nope.wav", what="prompt audio")


def test_corrupt_bytes_and_file(tmp_path):
    with pytest.raises(AudioError, match="could not read prompt audio"):
        load_audio(b"RIFF\x00\x00\x00\x00WAVEjunkjunkjunk", what="prompt audio")
    path = tmp_path / "x.wav"
    path.write_bytes(b"this is not audio" * 10)
    with pytest.raises(AudioError, match=r"could not read prompt audio '.*x\.wav': .+"):
        load_audio(path, what="prompt audio")


def test_empty_file_and_zero_samples(tmp_path):
    empty = tmp_path / "empty.wav"
    empty.write_bytes(b"")
    with pytest.raises(AudioError, match="empty"):
        load_audio(empty)
    zero = tmp_path / "zero.wav"
    sf.write(zero, np.zeros(0, dtype=np.float32), 16000)
    with pytest.raises(AudioError, match=r"empty \(0 samples\)"):
        load_audio(zero)


def test_silent(tmp_path):
    path = tmp_path / "quiet.wav"
    sf.write(path, np.full(16000, 3e-5, dtype=np.float32), 16000, subtype="FLOAT")
    with pytest.raises(AudioError, match=r"prompt audio '.*quiet\.wav' is silent \(peak 0\.00003"):
        load_audio(path, what="prompt audio")
    # A click in silence has a peak but no energy: caught by the RMS rule.
    click = np.zeros(160000, dtype=np.float32)
    click[0] = 0.1  # RMS 0.1 / 400 = -72 dBFS
    with pytest.raises(AudioError, match="silent"):
        load_audio((click, 16000))
    wav, _ = load_audio((click, 16000), allow_silent=True)
    assert abs(wav[0] - 0.1) < 1e-7


def test_too_short_and_too_long():
    with pytest.raises(AudioError, match=r"prompt audio is 0\.4 s; need 1-30 s"):
        load_audio((sine(440, 16000, 0.4), 16000), min_seconds=1, max_seconds=30, what="prompt audio")
    with pytest.raises(AudioError, match=r"is 31\.0 s; need 1-30 s"):
        load_audio((sine(440, 8000, 31), 8000), min_seconds=1, max_seconds=30)
    with pytest.raises(AudioError, match=r"0\.960 s; need at least 1 s"):
        load_audio((sine(440, 8000, 0.96), 8000), min_seconds=1)


def test_too_long_file_is_refused_before_reading(tmp_path, monkeypatch):
    path = tmp_path / "long.wav"
    sf.write(path, sine(440, 8000, 40), 8000)

    def no_read(*args, **kwargs):
        raise AssertionError("sf.read called on a file that is too long")

    monkeypatch.setattr(audio.sf, "read", no_read)
    with pytest.raises(AudioError, match=r"'.*long\.wav' is 40\.0 s; need at most 30 s"):
        load_audio(path, max_seconds=30)


def test_nan_and_inf():
    x = sine(440, 16000, 1.0)
    x[100] = np.nan
    with pytest.raises(AudioError, match=r"NaN or infinite samples \(1 of 16000\)"):
        load_audio((x, 16000))
    x[100] = np.inf
    with pytest.raises(AudioError, match="NaN or infinite"):
        load_audio((x, 16000))


@pytest.mark.parametrize("bad_sr", [0, -16000, 1_000_000])
def test_invalid_sample_rate(bad_sr):
    with pytest.raises(AudioError, match=f"invalid sample rate: {bad_sr}"):
        load_audio((sine(440, 16000, 1.0), bad_sr))


# ----------------------------------------------------------------------------- prompts


def test_load_prompt_normalises_only_extremes():
    quiet = sine(220, 16000, 2.0, amp=0.01)
    wav = load_prompt((quiet, 16000), 24000)
    assert abs(float(np.max(np.abs(wav))) - 10 ** (-1 / 20)) < 0.01
    normal = sine(220, 16000, 2.0, amp=0.3)
    wav = load_prompt((normal, 16000), 16000)
    np.testing.assert_allclose(wav, normal, atol=1e-6)
    loud = sine(220, 16000, 2.0, amp=2.0)
    assert float(np.max(np.abs(load_prompt((loud, 16000), 16000)))) <= 0.9
    with pytest.raises(AudioError, match="prompt audio is 0.5 s; need 1-30 s"):
        load_prompt((sine(220, 16000, 0.5), 16000), 16000)


# ----------------------------------------------------------------------------- saving


@pytest.mark.parametrize("fmt", ["wav", "flac"])
def test_save_roundtrip_pcm16_and_clipping(tmp_path, fmt):
    x = sine(440, 24000, 1.0, amp=0.5)
    x[10] = 3.0  # out of range: clipped, not wrapped
    path = save_audio(tmp_path / f"out.{fmt}", x, 24000)
    info = sf.info(path)
    assert info.format == fmt.upper() and info.subtype == "PCM_16" and info.samplerate == 24000
    y, _ = sf.read(path, dtype="float32")
    assert abs(y[10] - 1.0) < 1e-4
    np.testing.assert_allclose(np.delete(y, 10), np.delete(x, 10), atol=1 / 32767 + 1e-6)


def test_save_failure_keeps_existing_file(tmp_path, monkeypatch):
    path = tmp_path / "keep.wav"
    save_audio(path, sine(440, 16000, 1.0), 16000)
    before = path.read_bytes()

    def broken_write(file, data, samplerate, **kwargs):
        file.write(b"RIFF half a header")  # a partial write, then the disk "fills up"
        raise OSError("No space left on device")

    monkeypatch.setattr(audio.sf, "write", broken_write)
    with pytest.raises(OSError, match="No space left"):
        save_audio(path, sine(880, 16000, 2.0), 16000)
    assert path.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["keep.wav"]  # no temp file left behind


def test_save_refuses_nan_and_bad_format(tmp_path):
    x = sine(440, 16000, 0.1)
    x[0] = np.nan
    with pytest.raises(AudioError, match="NaN"):
        save_audio(tmp_path / "a.wav", x, 16000)
    with pytest.raises(ValueError, match="unsupported audio format 'mp3'"):
        save_audio(tmp_path / "a.wav", sine(440, 16000, 0.1), 16000, format="mp3")
    assert not any(tmp_path.iterdir())


def test_save_creates_parents_and_keeps_readable_mode(tmp_path):
    path = save_audio(tmp_path / "a" / "b" / "c.wav", sine(440, 16000, 0.1), 16000)
    assert path.is_file()
    assert os.stat(path).st_mode & 0o644 == 0o644


def test_encode_audio_bytes_formats():
    x = sine(440, 16000, 0.25)
    pcm = encode_audio_bytes(x, 16000, "pcm")
    assert len(pcm) == 2 * len(x)
    ints = np.frombuffer(pcm, dtype="<i2")
    wav_bytes = encode_audio_bytes(x, 16000, "wav")
    assert wav_bytes[:4] == b"RIFF"
    from_wav, _ = sf.read(io.BytesIO(wav_bytes), dtype="int16")
    np.testing.assert_array_equal(from_wav, ints)
    assert encode_audio_bytes(x, 16000, "flac")[:4] == b"fLaC"
    with pytest.raises(ValueError):
        encode_audio_bytes(x, 16000, "ogg")


# ----------------------------------------------------------------------------- crossfade


def test_crossfade_length_arithmetic():
    sr = 1000  # 1 sample per ms keeps the arithmetic readable
    a, b, c = (np.ones(n, dtype=np.float32) for n in (100, 50, 5))
    assert len(crossfade_concat([a, b], sr, crossfade_ms=20)) == 150 - 20
    # c is shorter than the fade: the fade shrinks to len(c)
    assert len(crossfade_concat([a, b, c], sr, crossfade_ms=20)) == 155 - 20 - 5
    assert len(crossfade_concat([a, b, c], sr, crossfade_ms=20, gap_ms=30)) == 155 + 2 * 30
    assert len(crossfade_concat([a, b], sr, crossfade_ms=0)) == 150
    assert len(crossfade_concat([], sr)) == 0
    assert len(crossfade_concat([np.zeros(0, np.float32), a], sr)) == 100


def test_crossfade_values():
    sr = 1000
    a, b = np.ones(100, dtype=np.float32), np.ones(100, dtype=np.float32)
    linear = crossfade_concat([a, b], sr, crossfade_ms=20, curve="linear")
    np.testing.assert_allclose(linear, 1.0, atol=1e-6)  # linear fades of equal signals sum to 1
    power = crossfade_concat([a, -b], sr, crossfade_ms=20)
    assert power[0] == 1.0 and power[-1] == -1.0
    assert np.all(np.diff(power[80:100]) < 0)  # a smooth monotonic transition, no jump
    gapped = crossfade_concat([a, b], sr, crossfade_ms=10, gap_ms=5)
    np.testing.assert_array_equal(gapped[100:105], 0.0)
    assert gapped[99] < 0.1 and gapped[105] < 0.1 and gapped[120] == 1.0
