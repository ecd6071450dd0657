"""NAR decoding "expected": the codec decodes the NAR's expected entries (codebooks 1..K-1) on top of
codebook 0's entry, while the codes passed from pass to pass (and returned) are min_distortion's."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from valle2 import VallE2
from valle2.codec.encodec import EncodecCodec
from valle2.codec.mel import MelCodec
from valle2.errors import ModelFileError
from valle2.generation.nar_decode import nar_generate
from valle2.generation.sampling import SamplingConfig
from valle2_testlib import edit_saved_sampling

PROMPT_TEXT = "This is my voice."


def test_the_residual_is_the_sum_of_the_expected_entries(nar_inputs):
    nar, texts, prompts, targets = nar_inputs
    eye = torch.eye(16).expand(4, 16, 16)  # entry v is the one-hot of v: an expected entry is the distribution itself
    codes, residuals = nar_generate(nar, texts, prompts, targets, entries=eye, return_expected=True)
    plain = nar_generate(nar, texts, prompts, targets, entries=eye)
    assert plain.expected is None  # only asked for
    plain = plain.codes
    for c, p, r, t in zip(codes, plain, residuals, targets):
        assert torch.equal(c, p)  # the same codes as min_distortion
        assert r.shape == (16, len(t)) and r.dtype == torch.float32
        # three stages' distributions summed: non-negative, each frame's column sums to K - 1 = 3
        assert (r >= 0).all() and torch.allclose(r.sum(0), torch.full((len(t),), 3.0), atol=1e-4)
    # sharpened to a point mass, the expected entry is the chosen code's own entry
    codes, residuals = nar_generate(nar, texts, prompts, targets, entries=eye, temperature=1e-4, return_expected=True)
    for c, r in zip(codes, residuals):
        picked = sum(eye[k][c[k]] for k in range(1, 4)).T
        assert torch.allclose(r, picked, atol=1e-4)


def test_it_needs_entries_and_is_a_known_setting(nar_inputs):
    nar, texts, prompts, targets = nar_inputs
    with pytest.raises(ValueError, match="code entries"):
        nar_generate(nar, texts, prompts, targets, return_expected=True)
    assert SamplingConfig(nar_decoding="expected").nar_decoding == "expected"
    with pytest.raises(ValueError, match="nar_decoding"):
        SamplingConfig(nar_decoding="soft")


def test_both_codecs_decode_codebook_0_plus_a_residual():
    mel = MelCodec.debug(n_codebooks=4, codebook_size=16)
    codes = torch.randint(0, 16, (4, 12), generator=torch.Generator().manual_seed(1))
    entries = mel.code_entries()
    exact = sum(entries[k][codes[k]] for k in range(1, 4)).T  # the codes' own residual: the same log-mel
    assert torch.allclose(mel.synthesis_mel(codes, residual=exact), mel.synthesis_mel(codes), atol=1e-5)
    assert not torch.allclose(mel.synthesis_mel(codes, residual=0.5 * exact), mel.synthesis_mel(codes), atol=1e-3)
    with pytest.raises(ValueError, match="residual must be"):
        mel.decode(codes, residual=exact[:, :5])

    enc = EncodecCodec.tiny_random()
    wav = (0.1 * np.random.default_rng(0).standard_normal(enc.sample_rate // 2)).astype(np.float32)
    codes = enc.encode(wav, enc.sample_rate)
    entries = enc.code_entries()
    exact = sum(entries[k][codes[k]] for k in range(1, codes.shape[0])).T
    np.testing.assert_allclose(enc.decode(codes, residual=exact), enc.decode(codes), atol=1e-5)
    with pytest.raises(ValueError, match="residual must be"):
        enc.decode(codes, residual=exact.T)
    assert enc.decode(codes[:, :0], residual=torch.zeros(exact.shape[0], 0)).size == 0


@pytest.mark.parametrize("which", ["mel", "encodec"])
def test_model_synthesizes_with_it_and_saves_the_choice(which, mel_model, debug_model, prompt_wav, tmp_path):
    model = mel_model if which == "mel" else debug_model
    text = "The expected entries."
    prompt = model.prepare_prompt(str(prompt_wav), PROMPT_TEXT)
    [exp] = model.generate(model.make_rows(text, prompt), seed=0, sampling=model.sampling_config(nar_decoding="expected"))
    [med] = model.generate(model.make_rows(text, prompt), seed=0,
                           sampling=model.sampling_config(nar_decoding="min_distortion"))
    assert torch.equal(exp.codes, med.codes) and med.residual is None  # same seed: the same codes
    assert exp.residual.shape == (model.codec.code_entries().shape[-1], exp.codes.shape[1])
    a, _ = model.synthesize(text, str(prompt_wav), PROMPT_TEXT, seed=0, nar_decoding="expected",
                            unsafe_no_consent=True)
    b, _ = model.synthesize(text, str(prompt_wav), PROMPT_TEXT, seed=0, nar_decoding="min_distortion",
                            unsafe_no_consent=True)
    # same codes, another decoded signal (the tiny random EnCodec's decoder barely moves: only exact equality is out)
    assert len(a) == len(b) and not np.array_equal(a, b)
    if which == "mel":
        assert not np.allclose(a, b, atol=1e-4)
    expected = model.sampling_config(nar_decoding="expected", post_filter="none")
    [direct] = model.decode_rows(model.make_rows(text, prompt), [exp], expected)  # as synthesis decodes, unmarked
    np.testing.assert_allclose(direct, model.codec.decode(exp.codes, residual=exp.residual), atol=1e-6)
    folder = edit_saved_sampling(model.save_pretrained(tmp_path / "m"), nar_decoding="expected")
    loaded = VallE2.from_pretrained(folder)
    assert loaded.sampling.nar_decoding == "expected"
    again, _ = loaded.synthesize(text, str(prompt_wav), PROMPT_TEXT, seed=0, unsafe_no_consent=True)
    np.testing.assert_allclose(again, a, atol=1e-4)  # the saved default is used


def test_a_codec_without_residual_decoding_refuses_it(debug_model, tmp_path, monkeypatch):
    monkeypatch.setattr(EncodecCodec, "supports_residual", False)
    with pytest.raises(ValueError, match="nar_decoding='expected' needs a codec"):
        debug_model.sampling_config(nar_decoding="expected")
    folder = edit_saved_sampling(debug_model.save_pretrained(tmp_path / "m"), nar_decoding="expected")
    with pytest.raises(ModelFileError, match="nar_decoding"):
        VallE2.from_pretrained(folder)


@pytest.mark.parametrize("which", ["mel", "encodec"])
def test_nar_weight_blends_the_nar_residual_with_the_mean_entries(which, mel_model, debug_model, prompt_wav):
    model = mel_model if which == "mel" else debug_model
    text = "Half of the residual."
    prompt = model.prepare_prompt(str(prompt_wav), PROMPT_TEXT)
    sampling = model.sampling_config(nar_decoding="min_distortion")
    [r] = model.generate(model.make_rows(text, prompt), seed=0, sampling=sampling)
    entries = model.codec.code_entries().float()
    own = sum(entries[k][r.codes[k]] for k in range(1, entries.shape[0])).T  # (D, T): the NAR's codes' entries
    mean = entries[1:].mean(1).sum(0)[:, None]
    assert model.residuals([r], sampling) is None  # weight 1, codes: decoded as they are
    for w in (0.0, 0.3):
        [res] = model.residuals([r], model.sampling_config(nar_decoding="min_distortion", nar_weight=w))
        torch.testing.assert_close(res, w * own + (1 - w) * mean)
    [e] = model.generate(model.make_rows(text, prompt), seed=0, sampling=model.sampling_config(nar_decoding="expected"))
    [res] = model.residuals([e], model.sampling_config(nar_decoding="expected", nar_weight=0.5))
    torch.testing.assert_close(res, 0.5 * e.residual + 0.5 * mean)  # with expected decoding: its residual, blended
    full, _ = model.synthesize(text, str(prompt_wav), PROMPT_TEXT, seed=0, nar_decoding="min_distortion",
                               unsafe_no_consent=True)
    half, _ = model.synthesize(text, str(prompt_wav), PROMPT_TEXT, seed=0, nar_decoding="min_distortion",
                               nar_weight=0.5, unsafe_no_consent=True)
    assert len(full) == len(half) and not np.array_equal(full, half)
    weighted = model.sampling_config(nar_decoding="min_distortion", nar_weight=0.3, post_filter="none")
    [direct] = model.decode_rows(model.make_rows(text, prompt), [r], weighted)
    np.testing.assert_allclose(direct, model.codec.decode(r.codes, residual=0.3 * own + 0.7 * mean), atol=1e-5)
    with pytest.raises(ValueError, match="nar_weight is -0.1"):
        model.sampling_config(nar_weight=-0.1)


def test_nar_weight_is_saved_and_checked(mel_model, tmp_path):
    from valle2.config import ConfigError, config_from_dict

    folder = mel_model.save_pretrained(tmp_path / "m")
    assert json.loads((folder / "config.json").read_text())["sampling"]["nar_weight"] == 1.0
    edit_saved_sampling(folder, nar_weight=0.6)
    assert VallE2.from_pretrained(folder).sampling.nar_weight == 0.6
    with pytest.raises(ConfigError, match="export.nar_weight"):
        config_from_dict({"export": {"nar_weight": 2}})
    assert config_from_dict({"export": {"nar_weight": 0.6}}).export.nar_weight == 0.6
