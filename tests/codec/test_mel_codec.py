import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch

import valle2
from valle2.codec.base import Codec
from valle2.codec.mel import MelCodec, MelCodecConfig, build_vocoder, rvq_decode, rvq_encode
from valle2.codec.mel_train import fit_residual_kmeans
from valle2_testlib import vowel_tone
from valle2.errors import AudioError, ModelFileError

SR = 24000


@pytest.fixture(scope="module")
def codec() -> MelCodec:
    torch.manual_seed(0)
    cfg = MelCodecConfig(n_codebooks=4, codebook_size=16, vocoder_dim=16, vocoder_intermediate=32, vocoder_layers=1)
    probe = MelCodec(replace(cfg, vocoder_dim=None), torch.zeros(4, 16, 80))
    frames = torch.cat([probe.mel(vowel_tone(1.0, f0, i), SR).T for i, f0 in enumerate((110, 180, 240))])
    books = fit_residual_kmeans(frames, n_codebooks=4, codebook_size=16, n_iter=5, seed=0)
    return MelCodec(cfg, books, build_vocoder(cfg))


def test_protocol_and_shapes(codec: MelCodec):
    assert isinstance(codec, Codec)
    assert codec.sample_rate == 24000 and codec.frame_rate == 75.0
    wav = vowel_tone(0.5, 150, 7)  # 12000 samples -> 38 frames (37.5 rounded up)
    codes = codec.encode(wav, SR)
    assert codes.dtype == torch.int64 and codes.shape == (4, 38)
    assert 0 <= codes.min() and codes.max() < 16
    out = codec.decode(codes)
    assert out.dtype == np.float32 and out.shape == (38 * 320,)
    gl = codec.decode_griffin_lim(codes, n_iter=4)
    assert gl.shape == (38 * 320,) and np.isfinite(gl).all()


def test_encode_resamples_and_rejects_bad_audio(codec: MelCodec):
    wav16 = vowel_tone(0.5, 150, 8)[::3].copy()  # pretend 8 kHz
    assert codec.encode(wav16, 8000).shape[1] == 38
    with pytest.raises(AudioError):
        codec.encode(np.zeros((2, 100), dtype=np.float32), SR)
    with pytest.raises(AudioError):
        codec.encode(np.zeros(0, dtype=np.float32), SR)
    with pytest.raises(ValueError):
        codec.decode(torch.full((4, 3), 16))


def test_residual_stages_reduce_error(codec: MelCodec):
    mel = codec.mel(vowel_tone(1.0, 180, 1), SR).T
    codes = rvq_encode(mel, codec.codebooks)
    errors = [(rvq_decode(codes[:k], codec.codebooks) - mel).pow(2).mean().item() for k in range(1, 5)]
    assert errors == sorted(errors, reverse=True)


def test_save_load_roundtrip(codec: MelCodec, tmp_path: Path):
    codec.save(tmp_path)
    loaded = MelCodec.load(tmp_path)
    wav = vowel_tone(0.4, 200, 3)
    assert torch.equal(codec.encode(wav, SR), loaded.encode(wav, SR))
    codes = codec.encode(wav, SR)
    np.testing.assert_array_equal(codec.decode(codes), loaded.decode(codes))
    assert loaded.identity() == codec.identity()
    assert codec.identity()["type"] == "valle2-mel"
    json.dumps(codec.identity())


def test_unknown_version_refused(codec: MelCodec, tmp_path: Path):
    codec.save(tmp_path)
    header = json.loads((tmp_path / "config.json").read_text())
    header["version"] = 99
    (tmp_path / "config.json").write_text(json.dumps(header))
    with pytest.raises(ModelFileError, match="version"):
        MelCodec.load(tmp_path)
    with pytest.raises(ModelFileError):
        MelCodec.load(tmp_path / "missing")


def test_registry_rebuilds_codec(codec: MelCodec, tmp_path: Path):
    registry = pytest.importorskip("valle2.codec.registry")
    codec.save(tmp_path)
    rebuilt = registry.load_codec(codec.identity(), tmp_path)
    wav = vowel_tone(0.3, 120, 4)
    assert torch.equal(rebuilt.encode(wav, SR), codec.encode(wav, SR))


def test_debug_codec_is_tiny_and_works():
    codec = MelCodec.debug()
    codes = codec.encode(vowel_tone(0.2, 150, 5), SR)
    assert codes.shape == (4, 15)
    assert codec.decode(codes).shape == (15 * 320,)
    assert torch.equal(MelCodec.debug().codebooks, codec.codebooks)  # deterministic


SHIPPED = Path(valle2.__file__).parent / "assets" / "codec" / "valle2-mel-v1"


@pytest.mark.skipif(not (SHIPPED / "model.safetensors").exists(), reason="shipped codec not present")
def test_shipped_codec_loads_and_roundtrips():
    codec = MelCodec.load(SHIPPED)
    assert codec.n_codebooks >= 4 and codec.vocoder is not None
    assert sum(p.stat().st_size for p in SHIPPED.iterdir()) <= 15 * 2**20
    wav = vowel_tone(1.0, 140, 9)
    codes = codec.encode(wav, SR)
    assert codes.shape == (codec.n_codebooks, 75)
    out = codec.decode(codes)
    assert out.shape == (75 * 320,) and np.isfinite(out).all() and np.abs(out).max() > 1e-3


def test_model_folder_without_codec_copy_uses_the_bundled_codec(codec: MelCodec, tmp_path: Path, monkeypatch):
    """A model folder may leave out codec/ and name a bundled codec; its weights' hash is checked."""
    import valle2.config
    from valle2.codec.mel import load_from_identity

    named = MelCodec(replace(codec.config, name="bundled-test"), codec.codebooks, codec.vocoder)
    monkeypatch.setattr(valle2.config, "BUNDLED_CODECS", tmp_path)
    named.save(tmp_path / "bundled-test")
    loaded = load_from_identity(named.identity(), None)
    assert loaded.identity() == named.identity()
    # a name no longer shipped: the bundled codec with the same codes stands in (only its vocoder may differ)
    assert load_from_identity(dict(named.identity(), name="not-shipped"), None).config.name == "bundled-test"
    with pytest.raises(ModelFileError, match="no bundled codec has that name or its codes"):
        load_from_identity(dict(named.identity(), name="not-shipped", codebooks_sha256="0" * 16), None)
    with pytest.raises(ModelFileError, match="expects"):
        load_from_identity(dict(named.identity(), codebooks_sha256="0" * 16), None)
