"""Watermark: embed -> detect on clean audio and after each robustness transform (a small set;
the full table is benchmarks/watermark_robustness.py), transparency, no false alarms on
unmarked audio, key separation, input checks, and a pinned pattern (changing it would orphan
every mark already made)."""

import hashlib
import shutil

import numpy as np
import pytest
import scipy.signal
import soundfile as sf
import soxr

from valle2.audio import LOSSY_TOOLS, lossy_roundtrip
from valle2.errors import AudioError
from valle2.safety import watermark as wm
from valle2.safety.keys import DEFAULT_WATERMARK_KEY, KeyFileError, parse_hex_key, watermark_key

SR = 24_000
KEY = DEFAULT_WATERMARK_KEY


def speechlike(seconds: float = 4.0, sr: int = SR, seed: int = 0) -> np.ndarray:
    """Vowel-like syllables (glottal buzz through three moving formants) and fricatives, with pauses."""
    rng = np.random.default_rng(seed)
    n = int(seconds * sr)
    out = np.zeros(n)
    i = 0
    while i < n:
        m = int(rng.uniform(0.12, 0.3) * sr)
        t = np.arange(min(m, n - i)) / sr
        if rng.random() < 0.75:
            f0 = rng.uniform(90, 220) * (1 + 0.08 * np.sin(2 * np.pi * rng.uniform(2, 5) * t))
            phase = 2 * np.pi * np.cumsum(f0) / sr
            src = sum(np.sin(k * phase) / k for k in range(1, int(4000 / f0.max())))
            for fc, bw in ((rng.uniform(300, 800), 80), (rng.uniform(900, 2200), 120), (rng.uniform(2300, 3300), 200)):
                r = np.exp(-np.pi * bw / sr)
                a = [1, -2 * r * np.cos(2 * np.pi * fc / sr), r * r]
                src = src + 0.5 * scipy.signal.lfilter([1 - r], a, src)
        else:
            b, a = scipy.signal.butter(2, [2500, min(7000, 0.45 * sr)], btype="band", fs=sr)
            src = 0.5 * scipy.signal.lfilter(b, a, rng.standard_normal(len(t)))
        env = np.sin(np.pi * np.arange(len(t)) / len(t)) ** 0.5
        out[i : i + len(t)] = src * env
        i += m + int(rng.uniform(0.0, 0.15) * sr)  # pauses between syllables
    return (0.5 * out / np.abs(out).max()).astype(np.float32)


def snr_db(ref, marked) -> float:
    return 10 * np.log10(np.sum(ref.astype(np.float64) ** 2) / np.sum((marked - ref.astype(np.float64)) ** 2))


@pytest.fixture(scope="module")
def clip():
    return speechlike(4.0, seed=1)


@pytest.fixture(scope="module")
def marked(clip):
    return wm.embed(clip, SR, key=KEY, payload=0xBEEF)


def test_embed_keeps_shape_dtype_and_snr(clip, marked):
    assert marked.shape == clip.shape and marked.dtype == np.float32
    assert snr_db(clip, marked) >= 30.0
    assert not np.array_equal(marked, clip)


def test_clean_detection_reads_the_payload(marked):
    res = wm.detect(marked, SR, key=KEY, payloads=())  # the payload is read from its bits (CRC checked)
    assert res.watermarked and res.payload == 0xBEEF
    assert res.score > res.threshold + 3 and res.p_value < 1e-6
    known = wm.detect(marked, SR, key=KEY, payloads=(0xBEEF,))  # the whole pattern of a known payload
    assert known.payload == 0xBEEF and known.score > res.score


def test_embed_is_deterministic(clip, marked):
    assert np.array_equal(wm.embed(clip, SR, key=KEY, payload=0xBEEF), marked)


def _codec(wav, sr, kind, kbps):
    missing = [t for t in LOSSY_TOOLS[kind] if shutil.which(t) is None]
    if missing:
        pytest.skip(f"{', '.join(missing)} is not installed")
    return lossy_roundtrip(wav, sr, kind, kbps)


@pytest.mark.parametrize("name", ["resample_16k", "resample_8k", "gain_+6db", "gain_-6db", "noise_20db", "crop_2s",
                                  "concat", "mp3_32k", "opus_32k", "wav_int16"])
def test_survives_transform(name, marked, tmp_path):
    rng = np.random.default_rng(7)
    audio, sr = marked, SR
    if name.startswith("resample"):
        sr = 16000 if "16k" in name else 8000
        audio = soxr.resample(marked, SR, sr)
    elif name.startswith("gain"):
        audio = marked * np.float32(10 ** (float(name[5:-2]) / 20))
    elif name == "noise_20db":
        audio = marked + np.sqrt(np.mean(marked**2) / 100) * rng.standard_normal(len(marked)).astype(np.float32)
    elif name == "crop_2s":
        start = int(rng.integers(0, len(marked) - 2 * SR))
        audio = marked[start : start + 2 * SR]
    elif name == "concat":
        audio = np.concatenate([speechlike(3.0, seed=11), marked, speechlike(3.0, seed=12)])
    elif name == "wav_int16":
        sf.write(tmp_path / "m.wav", marked, SR, subtype="PCM_16")
        audio, sr = sf.read(tmp_path / "m.wav", dtype="float32")
    else:
        kind, rate = name.split("_")
        audio, sr = _codec(marked, SR, kind, int(rate[:-1]))
    res = wm.detect(audio, sr, key=KEY, payloads=(0xBEEF,))
    assert res.watermarked, f"{name}: score {res.score:.2f} < threshold {res.threshold:.2f}"


@pytest.mark.parametrize("kind", ["speechlike", "silence", "white", "tone", "chord"])
def test_unmarked_audio_is_not_flagged(kind):
    rng = np.random.default_rng(3)
    t = np.arange(5 * SR) / SR
    audio = {
        "speechlike": lambda: speechlike(5.0, seed=5),
        "silence": lambda: np.zeros(5 * SR, np.float32),
        "white": lambda: (0.1 * rng.standard_normal(5 * SR)).astype(np.float32),
        "tone": lambda: (0.3 * np.sin(2 * np.pi * 440 * t)).astype(np.float32),
        "chord": lambda: (0.1 * sum(np.sin(2 * np.pi * f * t) for f in (262, 330, 392, 523))).astype(np.float32),
    }[kind]()
    res = wm.detect(audio, SR, key=KEY)
    assert not res.watermarked and res.payload is None
    assert res.score < res.threshold


def test_another_key_does_not_see_the_mark(marked):
    assert not wm.detect(marked, SR, key=b"another key of 32 bytes........!").watermarked


def test_silence_stays_silent_and_quiet_audio_gets_no_audible_noise():
    silent = np.zeros(3 * SR, np.float32)
    assert np.array_equal(wm.embed(silent, SR, key=KEY), silent)
    # Speech followed by 2 s of digital silence: the mark does not leak into the silence.
    audio = np.concatenate([speechlike(2.0, seed=2), np.zeros(2 * SR, np.float32)])
    out = wm.embed(audio, SR, key=KEY)
    tail = out[int(2.2 * SR) :]
    assert np.max(np.abs(tail)) < 1e-4  # below -80 dBFS


def test_local_snr_is_capped_everywhere():
    # A loud part and a 30 dB quieter part: the mark follows the local level, so the quiet part
    # keeps ~30 dB SNR on its own (a few ms of the loud part's mark run past the boundary, under
    # the loud part's temporal masking).
    loud, quiet = speechlike(2.0, seed=3), speechlike(2.0, seed=4) * np.float32(0.03)
    audio = np.concatenate([loud, quiet])
    out = wm.embed(audio, SR, key=KEY)
    assert snr_db(loud, out[: len(loud)]) >= 30 and snr_db(quiet, out[len(loud) :]) >= 29.5
    assert snr_db(audio, out) >= 30


def test_long_audio_any_2s_excerpt_is_detected():
    audio = speechlike(40.0, seed=8)
    out = wm.embed(audio, SR, key=KEY)
    for start_s in (0.0, 13.37, 37.9):
        s = int(start_s * SR)
        assert wm.detect(out[s : s + 2 * SR], SR, key=KEY).watermarked, start_s


def test_other_sample_rates():
    for sr in (8000, 16000, 44100):
        audio = speechlike(3.0, sr=sr, seed=9)
        out = wm.embed(audio, sr, key=KEY)
        assert out.shape == audio.shape and snr_db(audio, out) >= 30
        assert wm.detect(out, sr, key=KEY).watermarked


def test_tiny_and_empty_inputs():
    assert wm.embed(np.zeros(0, np.float32), SR, key=KEY).shape == (0,)
    assert wm.embed(speechlike(0.02, seed=1), SR, key=KEY).shape == (480,)
    assert not wm.detect(np.zeros(10, np.float32), SR, key=KEY).watermarked


def test_bad_inputs_are_refused():
    ok = speechlike(1.0)
    with pytest.raises(AudioError, match="mono"):
        wm.embed(np.stack([ok, ok]), SR, key=KEY)
    with pytest.raises(AudioError, match="NaN"):
        wm.embed(np.full(SR, np.nan, np.float32), SR, key=KEY)
    with pytest.raises(AudioError, match="at least 8000 Hz"):
        wm.embed(ok, 4000, key=KEY)
    with pytest.raises(ValueError, match="payload"):
        wm.embed(ok, SR, key=KEY, payload=70000)
    with pytest.raises(ValueError, match="16 bytes"):
        wm.embed(ok, SR, key=b"short")


def test_threshold_matches_the_bonferroni_bound():
    for hyp in (256, 4096):
        z = wm._threshold(hyp)
        assert hyp * wm._normal_sf(z) == pytest.approx(wm.ALPHA, rel=1e-6)


def test_pattern_and_default_payload_are_pinned():
    # These define every mark valle2 has made: a change here must be a new format version.
    pat = wm._pattern(DEFAULT_WATERMARK_KEY)
    digest = hashlib.sha256(pat.sign.astype(np.int8).tobytes() + pat.role.astype(np.int16).tobytes()).hexdigest()
    assert digest[:16] == PINNED_PATTERN
    assert wm.encode_model_id("valle2-0.1.0") == 39533
    assert (pat.role < 0).mean() == pytest.approx(wm.SYNC_FRACTION, abs=1e-3)


PINNED_PATTERN = "6a8ec277886480ce"


def test_watermark_key_from_environment(monkeypatch):
    monkeypatch.delenv("VALLE2_WATERMARK_KEY", raising=False)
    assert watermark_key() == DEFAULT_WATERMARK_KEY
    monkeypatch.setenv("VALLE2_WATERMARK_KEY", "00" * 16)
    assert watermark_key() == bytes(16)
    monkeypatch.setenv("VALLE2_WATERMARK_KEY", "abcd")
    with pytest.raises(KeyFileError, match="at least 16"):
        watermark_key()
    with pytest.raises(KeyFileError, match="not valid hex"):
        parse_hex_key("zz" * 16)
