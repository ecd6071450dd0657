"""EncodecCodec (tiny random and from folders), the codec registry, offline errors."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

import valle2
from valle2.codec import Codec, EncodecCodec, load_codec, register_codec
from valle2.codec import encodec, registry
from valle2.errors import AudioError, ModelFileError

SR = 24_000
HOP = 320


def speechlike(seconds: float, sr: int = SR, seed: int = 0) -> np.ndarray:
    """A wobbling tone plus noise with a syllable-rate envelope: varied enough to use many codes."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(round(seconds * sr))) / sr
    f0 = 150 + 40 * np.sin(2 * np.pi * 3 * t)
    tone = np.sin(2 * np.pi * np.cumsum(f0) / sr)
    envelope = 0.5 + 0.5 * np.sin(2 * np.pi * 4 * t) ** 2
    return (0.3 * envelope * tone + 0.03 * rng.standard_normal(len(t))).astype(np.float32)


@pytest.fixture(scope="module")
def tiny() -> EncodecCodec:
    return EncodecCodec.tiny_random(seed=0)


def test_tiny_properties(tiny):
    assert isinstance(tiny, Codec)
    assert (tiny.sample_rate, tiny.frame_rate, tiny.n_codebooks, tiny.codebook_size) == (24000, 75.0, 4, 64)
    assert tiny.hop_length == HOP
    assert tiny.bandwidth == pytest.approx(4 * 6 * 75 / 1000)


@pytest.mark.parametrize("n_samples", [1, HOP, HOP + 1, SR, SR + 17])
def test_encode_decode_shapes_dtypes_ranges(tiny, n_samples):
    wav = speechlike(n_samples / SR)[:n_samples]
    codes = tiny.encode(wav, SR)
    n_frames = -(-n_samples // HOP)  # ceil
    assert codes.shape == (4, n_frames)
    assert codes.dtype == torch.int64 and codes.device.type == "cpu"
    assert int(codes.min()) >= 0 and int(codes.max()) < 64
    out = tiny.decode(codes)
    assert isinstance(out, np.ndarray) and out.dtype == np.float32
    assert out.shape == (n_frames * HOP,)
    assert np.isfinite(out).all()


def test_codes_use_the_codebooks(tiny):
    codes = tiny.encode(speechlike(1.0), SR)
    for k in range(4):
        assert len(torch.unique(codes[k])) >= 8, f"codebook {k} collapsed: {torch.unique(codes[k])}"


def test_encode_accepts_tensor_and_resamples(tiny):
    wav16 = speechlike(1.0, sr=16000)
    codes = tiny.encode(torch.from_numpy(wav16)[None], 16000)  # [1, N] tensor at 16 kHz
    assert codes.shape == (4, 75)


def test_encode_rejects_bad_input(tiny):
    with pytest.raises(AudioError, match="0 samples"):
        tiny.encode(np.zeros(0, dtype=np.float32), SR)
    with pytest.raises(ValueError, match="mono"):
        tiny.encode(np.zeros((2, 100), dtype=np.float32), SR)


def test_decode_rejects_bad_codes(tiny):
    with pytest.raises(ValueError, match=r"\[0, 64\)"):
        tiny.decode(torch.full((4, 10), 64))
    with pytest.raises(ValueError, match="codebooks"):
        tiny.decode(torch.zeros((5, 10), dtype=torch.int64))
    with pytest.raises(ValueError, match="integers"):
        tiny.decode(torch.zeros((4, 10)))
    assert tiny.decode(torch.zeros((4, 0), dtype=torch.int64)).shape == (0,)


def test_tiny_random_is_deterministic_and_leaves_global_rng(tiny, monkeypatch):
    monkeypatch.setattr(encodec, "_TINY_CACHE", {})  # really rebuild, don't copy the cached model
    wav = speechlike(0.5)
    state = torch.random.get_rng_state()
    again = EncodecCodec.tiny_random(seed=0)
    assert torch.equal(torch.random.get_rng_state(), state)
    assert torch.equal(again.encode(wav, SR), tiny.encode(wav, SR))
    np.testing.assert_array_equal(again.decode(tiny.encode(wav, SR)), tiny.decode(tiny.encode(wav, SR)))
    other = EncodecCodec.tiny_random(seed=1)
    assert not torch.equal(other.encode(wav, SR), tiny.encode(wav, SR))


def test_tiny_random_returns_independent_copies(tiny):
    copy = EncodecCodec.tiny_random(seed=0)
    assert copy.model is not tiny.model
    with torch.no_grad():
        copy.model.quantizer.layers[0].codebook.embed.zero_()
    wav = speechlike(0.3)
    assert int(copy.encode(wav, SR)[0].max()) == 0  # every entry equal: all frames pick code 0
    assert int(tiny.encode(wav, SR)[0].max()) > 0  # the cached original is untouched


@pytest.mark.parametrize("n_codebooks,codebook_size", [(1, 2), (8, 1024)])
def test_tiny_random_sizes(n_codebooks, codebook_size):
    codec = EncodecCodec.tiny_random(n_codebooks=n_codebooks, codebook_size=codebook_size)
    codes = codec.encode(speechlike(0.2), SR)
    assert codes.shape == (n_codebooks, 15)
    assert int(codes.max()) < codebook_size


def test_batch_equals_one_by_one(tiny):
    # 6 and 7 frames straddle the shortest clip that can share a padded batch (kernel_size = 7).
    n_samples = [4800, 9600, 240, 6 * HOP, 7 * HOP, 8000]
    wavs = [speechlike(n / SR, seed=i)[:n] for i, n in enumerate(n_samples)]
    batch_codes = tiny.encode_batch(wavs, SR, batch_size=4)
    for wav, codes in zip(wavs, batch_codes):
        single = tiny.encode(wav, SR)
        assert codes.shape == single.shape
        # Padding is exact; float rounding (~1e-7) may still flip a rare near-tie code.
        assert (codes == single).float().mean() > 0.97
    decoded = tiny.decode_batch(batch_codes, batch_size=4)
    for codes, audio in zip(batch_codes, decoded):
        assert audio.shape == (codes.shape[1] * HOP,)
        np.testing.assert_allclose(audio, tiny.decode(codes), atol=1e-5)


# ----------------------------------------------------------------------------- identity / save / load


def test_identity_save_load_roundtrip(tiny, tmp_path):
    identity = tiny.identity()
    assert identity["type"] == "encodec" and identity["tiny_random"] is True
    assert json.loads(json.dumps(identity)) == identity  # goes into a JSON header as is
    tiny.save(tmp_path)
    assert (tmp_path / "encodec" / "config.json").is_file()
    assert (tmp_path / "encodec" / "model.safetensors").is_file()
    assert not list(tmp_path.rglob("*.bin"))  # no pickles

    loaded = load_codec(identity, tmp_path)
    wav = speechlike(0.5)
    assert torch.equal(loaded.encode(wav, SR), tiny.encode(wav, SR))
    assert loaded.identity() == identity
    rebuilt = load_codec(identity)  # no folder: rebuilt from the seed
    assert torch.equal(rebuilt.encode(wav, SR), tiny.encode(wav, SR))


def test_saved_weights_take_precedence_over_seed(tiny, tmp_path):
    tiny.save(tmp_path)
    lying = dict(tiny.identity(), seed=123)
    wav = speechlike(0.5)
    assert torch.equal(load_codec(lying, tmp_path).encode(wav, SR), tiny.encode(wav, SR))
    assert not torch.equal(load_codec(lying).encode(wav, SR), tiny.encode(wav, SR))


def test_from_local_folder(tiny, tmp_path):
    folder = tmp_path / "my_encodec"
    tiny.model.save_pretrained(folder)
    codec = EncodecCodec.from_pretrained(str(folder), bandwidth=tiny.bandwidth)
    wav = speechlike(0.5)
    assert torch.equal(codec.encode(wav, SR), tiny.encode(wav, SR))
    identity = codec.identity()
    assert identity["name_or_path"] == str(folder.resolve()) and identity["bandwidth"] == tiny.bandwidth

    # save() copies a local model into the model folder, which then stands on its own.
    model_dir = tmp_path / "model"
    codec.save(model_dir)
    for f in folder.iterdir():
        f.unlink()
    folder.rmdir()
    assert torch.equal(load_codec(identity, model_dir).encode(wav, SR), tiny.encode(wav, SR))
    with pytest.raises(ModelFileError, match="lacks its EnCodec weights"):
        load_codec(identity, tmp_path / "elsewhere")


def test_local_folder_errors(tiny, tmp_path):
    with pytest.raises(ModelFileError, match="does not exist"):
        EncodecCodec.from_pretrained(str(tmp_path / "no" / "such" / "dir"))
    (tmp_path / "empty").mkdir()
    with pytest.raises(ModelFileError, match="has no config.json"):
        EncodecCodec.from_pretrained(str(tmp_path / "empty"))
    folder = tmp_path / "weights_missing"
    tiny.model.save_pretrained(folder)
    (folder / "model.safetensors").unlink()
    with pytest.raises(ModelFileError, match="could not load EnCodec from folder"):
        EncodecCodec.from_pretrained(str(folder), bandwidth=tiny.bandwidth)
    tiny.model.save_pretrained(folder)
    with pytest.raises(ValueError, match=r"no bandwidth 6.0 kbps; choose one of \[1.8\]"):
        EncodecCodec.from_pretrained(str(folder), bandwidth=6.0)  # config.json is enough to get there


def test_offline_hub_name_gives_one_clear_error(monkeypatch, tmp_path):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", str(tmp_path))
    monkeypatch.delenv("HF_HUB_CACHE", raising=False)
    from transformers import EncodecModel

    calls = []
    original = EncodecModel.from_pretrained.__func__

    def spy(cls, name, *args, **kwargs):
        calls.append(kwargs)
        return original(cls, name, *args, **kwargs)

    # The variables are set after huggingface_hub read its own at import: the codec must still
    # see them, or it would wait on network retries instead of failing at once.
    monkeypatch.setattr(EncodecModel, "from_pretrained", classmethod(spy))
    with pytest.raises(ModelFileError) as err:
        EncodecCodec.from_pretrained("facebook/encodec_24khz")
    assert calls and calls[0]["local_files_only"] is True
    message = str(err.value)
    assert message.startswith("EnCodec 'facebook/encodec_24khz' is not in the local Hugging Face cache")
    assert "HF_HUB_OFFLINE=1" in message and str(tmp_path) in message and "local folder" in message
    assert "\n" not in message
    assert err.value.__cause__ is None and err.value.__suppress_context__  # no chained traceback
    with pytest.raises(ModelFileError, match="'nobody/no-such-codec' is not in the local"):
        load_codec({"type": "encodec", "name_or_path": "nobody/no-such-codec", "bandwidth": 6.0})


# ----------------------------------------------------------------------------- registry


def test_unknown_codec_type():
    with pytest.raises(ModelFileError, match=r"unknown codec type 'wavtokenizer'.*known types: encodec, valle2-mel"):
        load_codec({"type": "wavtokenizer"})
    with pytest.raises(ModelFileError, match="'type'"):
        load_codec({"name_or_path": "x"})


def test_register_codec(monkeypatch, tiny, tmp_path):
    monkeypatch.setattr(registry, "_REGISTRY", dict(registry._REGISTRY))
    seen = {}

    def factory(identity, folder):
        seen["args"] = (identity, folder)
        return tiny

    register_codec("valle2-test", factory)
    assert load_codec({"type": "valle2-test", "x": 1}, tmp_path) is tiny
    assert seen["args"] == ({"type": "valle2-test", "x": 1}, tmp_path)
    assert "valle2-test" in registry.known_codec_types()
    with pytest.raises(ValueError, match="already registered"):
        register_codec("valle2-test", lambda identity, folder: tiny)
    register_codec("valle2-test", factory)  # the same factory again is fine (module re-import)


def test_import_is_cheap():
    code = "import sys, valle2.codec, valle2.audio; print('transformers' in sys.modules)"
    env = dict(os.environ, PYTHONPATH=str(Path(valle2.__file__).parents[1]))
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, env=env)
    assert out.stdout.strip() == "False"


def test_tiny_random_weights_do_not_depend_on_the_thread_count(monkeypatch):
    threads = torch.get_num_threads()
    states = []
    try:
        for n in (1, 2):
            monkeypatch.setattr(encodec, "_TINY_CACHE", {})
            torch.set_num_threads(n)
            states.append(EncodecCodec.tiny_random(seed=0).model.state_dict())
            assert torch.get_num_threads() == n  # left as the caller set it
    finally:
        torch.set_num_threads(threads)
    for key, value in states[0].items():
        assert torch.equal(value, states[1][key]), key
