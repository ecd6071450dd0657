"""Speaker encoders: missing-package messages, a tiny WavLM x-vector model, and a real
Resemblyzer check that same-voice pairs score above different-voice pairs."""

import itertools
import sys

import numpy as np
import pytest

from test_asr import espeak_say  # the espeak-ng speech helper (tests/eval is on sys.path)
from valle2.errors import MissingDependencyError
from valle2.eval import speaker as speaker_mod
from valle2.eval.speaker import cosine

# Three espeak-ng voices Resemblyzer tells apart (different-voice cosine <= 0.82, same >= 0.88).
VOICES = ["en-us", "en-us+f3", "en-us+klatt4"]
SENTENCES = [
    "The weather today is warm and sunny, so we will walk to the park.",
    "Please bring the red book from the kitchen table to my office.",
]


def test_cosine():
    a, b = np.array([1.0, 0.0]), np.array([1.0, 1.0])
    assert cosine(a, a) == pytest.approx(1.0)
    assert cosine(a, b) == pytest.approx(1 / np.sqrt(2))
    assert cosine(a, np.zeros(2)) == 0.0


def test_missing_resemblyzer_names_the_install(monkeypatch):
    monkeypatch.setitem(sys.modules, "resemblyzer", None)
    with pytest.raises(MissingDependencyError, match=r'pip install "valle2\[eval\]".*resemblyzer'):
        speaker_mod.ResemblyzerEncoder()


def test_unknown_encoder():
    with pytest.raises(ValueError, match="unknown speaker encoder 'ecapa'"):
        speaker_mod.get_speaker_encoder("ecapa")


def test_wavlm_backend_with_a_tiny_local_model(tmp_path):
    transformers = pytest.importorskip("transformers")
    transformers.Wav2Vec2FeatureExtractor(sampling_rate=16000).save_pretrained(tmp_path)
    config = transformers.WavLMConfig(
        hidden_size=16, num_hidden_layers=1, num_attention_heads=2, intermediate_size=16,
        conv_dim=(8, 8), conv_stride=(5, 4), conv_kernel=(10, 4), num_conv_pos_embeddings=4,
        num_conv_pos_embedding_groups=2, tdnn_dim=(8, 8), tdnn_kernel=(3, 1), tdnn_dilation=(1, 1),
        xvector_output_dim=12, num_buckets=8, max_bucket_distance=16,
    )
    transformers.WavLMForXVector(config).save_pretrained(tmp_path)
    enc = speaker_mod.get_speaker_encoder(f"wavlm:{tmp_path}")
    wav = np.random.default_rng(0).standard_normal(24000).astype(np.float32) * 0.1
    emb = enc.embed(wav, 24000)
    assert emb.shape == (12,) and np.linalg.norm(emb) == pytest.approx(1.0, abs=1e-5)
    assert enc.similarity(wav, 24000, wav, 24000) == pytest.approx(1.0, abs=1e-5)
    assert not enc.embed(np.zeros(16000, np.float32), 16000).any()


@pytest.fixture(scope="module")
def resemblyzer():
    pytest.importorskip("resemblyzer", reason='resemblyzer is not installed (pip install resemblyzer "setuptools<81")')
    return speaker_mod.get_speaker_encoder("resemblyzer")


def test_resemblyzer_ranks_same_voice_above_different_voices(resemblyzer):
    emb = {(v, i): resemblyzer.embed(*espeak_say(s, v)) for v in VOICES for i, s in enumerate(SENTENCES)}
    for e in emb.values():
        assert np.linalg.norm(e) == pytest.approx(1.0, abs=1e-4)
    same = [cosine(emb[v, 0], emb[v, 1]) for v in VOICES]
    different = [cosine(emb[a, 0], emb[b, 1]) for a, b in itertools.permutations(VOICES, 2)]
    assert min(same) > max(different), (same, different)


def test_resemblyzer_similarity_ignores_sample_rate_and_silence(resemblyzer):
    wav, sr = espeak_say(SENTENCES[0], VOICES[1])
    from valle2.audio import resample

    wav16 = resample(wav, sr, 16000)
    assert resemblyzer.similarity(wav, sr, wav16, 16000) > 0.99
    assert not resemblyzer.embed(np.zeros(sr, np.float32), sr).any()
    assert resemblyzer.similarity(wav, sr, np.zeros(sr, np.float32), sr) == 0.0
