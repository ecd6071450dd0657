"""Synthetic-speech detector: features are deterministic and level-invariant, logistic regression
and EER on hand-made data, a file round-trips and an unknown version is refused, the bundled
detector separates an engine sentence from its valle2-mel resynthesis, and `valle2 detect
--classifier` adds its fields without changing the watermark ones."""

import json
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import soxr

from valle2.cli import main
from valle2.errors import AudioError, ModelFileError
from valle2.safety.detector import (
    DEFAULT_PATH, FeatureConfig, SyntheticSpeechDetector, eer, features, fit_logistic,
)
from test_watermark import speechlike

SR = 24_000
CODECS = Path(__file__).resolve().parents[2] / "src/valle2/assets/codec"


def test_features_are_deterministic_level_invariant_and_resample_in():
    x = speechlike(2.0, seed=1).astype(np.float32)
    f = features(x, SR)
    assert f.shape == (5 * FeatureConfig().n_bands + 2,) and np.all(np.isfinite(f))
    np.testing.assert_array_equal(f, features(x, SR))
    np.testing.assert_allclose(f, features(0.25 * x, SR), atol=1e-6)
    assert features(soxr.resample(x, SR, 16000), 16000).shape == f.shape


def test_features_refuse_short_silent_and_multichannel_audio():
    with pytest.raises(AudioError, match="0.5s"):
        features(np.ones(1000, np.float32), SR)
    with pytest.raises(AudioError, match="silent"):
        features(np.zeros(SR, np.float32), SR)
    with pytest.raises(AudioError, match="mono"):
        features(np.zeros((2, SR), np.float32), SR)


def test_logistic_regression_separates_and_eer_is_exact_on_hand_made_scores():
    rng = np.random.default_rng(0)
    X = np.vstack([rng.normal(-2, 1, (100, 3)), rng.normal(2, 1, (100, 3))])
    y = np.r_[np.zeros(100), np.ones(100)]
    w, b = fit_logistic(X, y, l2=1.0)
    assert np.mean(((X @ w + b) > 0) == y) > 0.97 and np.all(w > 0)
    assert eer(np.array([0.1, 0.2, 0.3]), np.array([0.7, 0.8, 0.9]))[0] == 0.0
    e, t = eer(np.array([0.1, 0.2, 0.6, 0.3]), np.array([0.5, 0.8, 0.9, 0.7]))
    assert e == 0.25 and 0.5 <= t <= 0.6


def test_save_load_round_trip_and_refusals(tmp_path):
    rng = np.random.default_rng(1)
    n = 5 * FeatureConfig().n_bands + 2
    feats, labels = rng.normal(size=(40, n)), np.r_[np.zeros(20), np.ones(20)]
    feats[labels == 1] += 0.5
    det = SyntheticSpeechDetector.fit(feats, labels)
    det.save(tmp_path / "d.json")
    back = SyntheticSpeechDetector.load(tmp_path / "d.json")
    np.testing.assert_allclose(back.score_features(feats), det.score_features(feats))
    assert back.threshold == det.threshold
    doc = json.loads((tmp_path / "d.json").read_text())
    (tmp_path / "v.json").write_text(json.dumps({**doc, "version": 99}))
    with pytest.raises(ModelFileError, match="version 99"):
        SyntheticSpeechDetector.load(tmp_path / "v.json")
    (tmp_path / "f.json").write_text(json.dumps({**doc, "format": "other"}))
    with pytest.raises(ModelFileError, match="not a valle2 detector"):
        SyntheticSpeechDetector.load(tmp_path / "f.json")


def test_bundled_detector_is_small_and_pickle_free():
    assert DEFAULT_PATH.stat().st_size < 2_000_000
    det = SyntheticSpeechDetector.load()
    assert 0 < det.threshold < 1 and len(det.weights) == 5 * det.cfg.n_bands + 2


@pytest.mark.skipif(shutil.which("flite") is None, reason="needs flite")
@pytest.mark.parametrize("codec_name", ["valle2-mel-v1", "valle2-mel-v4"])  # v4: the default model's vocoder
def test_bundled_detector_flags_the_resynthesis_not_the_engine_sentence(tmp_path, codec_name):
    from valle2.codec import load_codec

    # flite awb is a HELD_OUT voice: never trained on.
    subprocess.run(["flite", "-voice", "awb", "-t", "The quick brown fox jumps over the lazy dog near the bank.",
                    "-o", str(tmp_path / "a.wav")], check=True)
    wav, sr = sf.read(tmp_path / "a.wav", dtype="float32")
    wav = soxr.resample(wav, sr, SR).astype(np.float32)
    codec = load_codec({"type": "valle2-mel"}, CODECS / codec_name)
    resynth = codec.decode(codec.encode(wav, SR))[: len(wav)]
    det = SyntheticSpeechDetector.load()
    real, fake = det.predict(wav, SR), det.predict(resynth, SR)
    assert real["synthetic"] is False and fake["synthetic"] is True
    assert fake["score"] > real["score"]


def test_detect_command_classifier_fields(tmp_path, capsys):
    sf.write(tmp_path / "a.wav", speechlike(2.0, seed=3), SR)
    sf.write(tmp_path / "short.wav", speechlike(2.0, seed=4)[:4000], SR)
    files = [str(tmp_path / "a.wav"), str(tmp_path / "short.wav")]
    assert main(["detect", "--classifier", *files]) == 0
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert {"watermarked", "score", "p_value", "threshold", "synthetic", "synthetic_score"} <= set(lines[0])
    assert isinstance(lines[0]["synthetic"], bool) and 0 <= lines[0]["synthetic_score"] <= 1
    # Too short for the detector: the watermark verdict is still there, the detector's is null.
    assert lines[1]["synthetic"] is None and "synthetic_error" in lines[1] and "watermarked" in lines[1]
    assert main(["detect", files[0]]) == 0
    assert "synthetic" not in json.loads(capsys.readouterr().out)
