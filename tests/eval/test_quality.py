"""Quality: signal checks on constructed signals; DNSMOS features and scores.

DNSMOS needs Microsoft's ONNX models, which are not part of valle2: the tests read
them from ``$VALLE2_DNSMOS_DIR`` or ``../shared/models/dnsmos`` beside the repository,
and skip when neither exists.
"""

import os
import sys
from pathlib import Path

import numpy as np
import pytest

from valle2.errors import MissingDependencyError, ModelFileError
from valle2.eval import quality
from valle2.eval.quality import DnsMos, get_quality, signal_checks

DNSMOS_DIR = Path(os.environ.get("VALLE2_DNSMOS_DIR", Path(__file__).resolve().parents[3] / "shared/models/dnsmos"))


def tone(seconds: float, sr: int = 16000, amp: float = 0.5, freq: float = 220.0) -> np.ndarray:
    t = np.arange(int(seconds * sr)) / sr
    return (amp * np.sin(2 * np.pi * freq * t)).astype(np.float32)


def test_signal_checks_on_constructed_signals():
    sr = 16000
    wav = np.concatenate([tone(1.0), np.zeros(sr, np.float32)])  # 1 s tone + 1 s digital silence
    c = signal_checks(wav, sr, expected_seconds=4.0)
    assert set(c) == {"duration_s", "duration_ratio", "silence_ratio", "clipping_ratio", "peak", "rms_db"}
    assert c["duration_s"] == pytest.approx(2.0)
    assert c["duration_ratio"] == pytest.approx(0.5)
    assert c["silence_ratio"] == pytest.approx(0.5)
    assert c["clipping_ratio"] == 0.0
    assert c["peak"] == pytest.approx(0.5, abs=1e-3)
    # RMS of a 0.5 sine over half the clip: 0.5 / sqrt(2) / sqrt(2) = 0.25 -> -12.0 dBFS
    assert c["rms_db"] == pytest.approx(-12.04, abs=0.05)
    assert signal_checks(wav, sr)["duration_ratio"] is None


def test_signal_checks_clipping_relative_silence_and_empty():
    sr = 8000
    clipped = np.clip(tone(1.0, sr, amp=2.0), -1.0, 1.0)
    assert signal_checks(clipped, sr)["clipping_ratio"] > 0.5
    # A tail 50 dB below the tone (-56 dBFS, above the -60 dBFS floor) is silent by the
    # relative rule: more than 40 dB below the loudest frame.
    tail = tone(1.0, sr, amp=0.5 * 10 ** (-50 / 20))
    assert signal_checks(np.concatenate([tone(1.0, sr), tail]), sr)["silence_ratio"] == pytest.approx(0.5)
    empty = signal_checks(np.zeros(0, np.float32), sr, 2.0)
    assert empty["duration_s"] == 0.0 and empty["silence_ratio"] == 1.0 and empty["rms_db"] == -120.0
    with pytest.raises(ValueError, match="expected_seconds"):
        signal_checks(clipped, sr, 0.0)


def test_get_quality_names():
    assert get_quality("signal").score(tone(1.0), 16000)["duration_s"] == pytest.approx(1.0)
    with pytest.raises(ValueError, match="dnsmos:<folder>"):
        get_quality("dnsmos")


def test_dnsmos_missing_files_and_onnxruntime(tmp_path, monkeypatch):
    with pytest.raises(ModelFileError, match="does not exist"):
        DnsMos(tmp_path / "nope")
    (tmp_path / "model_v8.onnx").write_bytes(b"")
    with pytest.raises(ModelFileError, match="lacks sig_bak_ovr.onnx"):
        DnsMos(tmp_path)
    monkeypatch.setitem(sys.modules, "onnxruntime", None)
    with pytest.raises(MissingDependencyError, match=r'pip install "valle2\[eval\]".*onnxruntime'):
        DnsMos(tmp_path)


def test_dnsmos_windows_follow_the_reference_script():
    sr = quality.DNSMOS_SR
    # 5 s is repeated to 10 s: one window; 20 s: int(20 - 9.01) + 1 = 11 windows (1 s hop).
    assert len(quality._dnsmos_windows(np.ones(5 * sr, np.float32))) == 1
    assert len(quality._dnsmos_windows(np.ones(20 * sr, np.float32))) == 11
    assert quality.dnsmos_melspec(np.random.default_rng(0).standard_normal(144000)).shape == (900, 120)


@pytest.mark.slow
@pytest.mark.parametrize("pad_mode", ["reflect", "constant"])
def test_mel_matches_librosa(pad_mode):
    librosa = pytest.importorskip("librosa")
    audio = np.random.default_rng(1).standard_normal(16000).astype(np.float32) * 0.1
    for n_fft, hop, n_mels in [(321, 160, 120), (400, 160, 40)]:
        ref = librosa.feature.melspectrogram(
            y=audio, sr=16000, n_fft=n_fft, hop_length=hop, n_mels=n_mels, pad_mode=pad_mode
        ).T
        ours = quality.mel_power_spectrogram(audio, 16000, n_fft, hop, n_mels, pad_mode=pad_mode)
        np.testing.assert_allclose(ours, ref, rtol=1e-4, atol=1e-7)


@pytest.fixture(scope="module")
def dnsmos():
    pytest.importorskip("onnxruntime", reason="onnxruntime is not installed (pip install onnxruntime)")
    if not (DNSMOS_DIR / DnsMos.P808_FILE).is_file():
        pytest.skip(f"no DNSMOS models in {DNSMOS_DIR} (set VALLE2_DNSMOS_DIR to a folder holding them)")
    return get_quality(f"dnsmos:{DNSMOS_DIR}")


def test_dnsmos_scores_speech_above_noise(dnsmos):
    from test_asr import espeak_say  # the espeak-ng speech helper (tests/eval is on sys.path)

    speech = dnsmos.score(*espeak_say("The weather today is warm and sunny, so we will walk to the park."))
    assert set(speech) == {"ovrl", "sig", "bak", "p808"}
    assert all(1.0 <= v <= 5.0 for v in speech.values()), speech
    noise = dnsmos.score(np.random.default_rng(0).standard_normal(16000 * 3).astype(np.float32) * 0.3, 16000)
    assert speech["p808"] > noise["p808"] + 0.5 and speech["ovrl"] > noise["ovrl"] + 0.5, (speech, noise)
    assert get_quality(str(DNSMOS_DIR)) is dnsmos  # cached per folder
