"""The prompt-matched post-filter: log-mel statistics, the codec and model paths, and its errors."""

from __future__ import annotations


import numpy as np
import pytest
import torch

from valle2 import VallE2
from valle2.codec.mel import MelCodec, match_prompt_statistics, speech_frame_mask
from valle2.config import Config, ConfigError, config_from_dict
from valle2.errors import ModelFileError
from valle2.generation.sampling import SamplingConfig
from valle2_testlib import edit_saved_sampling

PROMPT_TEXT = "This is my voice."


def _mel(n_mels=80, frames=200, seed=0, mean=-5.0, spread=1.0):
    gen = torch.Generator().manual_seed(seed)
    bins = torch.linspace(-1, 1, n_mels)[:, None]
    return mean + bins + spread * (1 + bins.abs()) * torch.randn(n_mels, frames, generator=gen)


def test_output_takes_the_references_mean_and_spread_per_bin():
    mel, ref = _mel(seed=0), _mel(frames=150, seed=1, mean=-3.0, spread=1.5)
    out = match_prompt_statistics(mel, ref)
    assert out.shape == mel.shape and out.dtype == mel.dtype
    m, r = speech_frame_mask(mel), speech_frame_mask(ref)
    # measured over the same speech frames the filter used
    assert torch.allclose(out[:, m].mean(1), ref[:, r].mean(1), atol=1e-4)
    assert torch.allclose(out[:, m].std(1), ref[:, r].std(1), rtol=1e-4)
    assert not torch.allclose(out, mel, atol=0.1)


def test_matching_itself_changes_nothing_and_the_gain_is_bounded():
    mel = _mel(seed=2)
    assert torch.allclose(match_prompt_statistics(mel, mel), mel, atol=1e-5)
    wide = _mel(seed=3, spread=20.0)
    out = match_prompt_statistics(mel, wide, max_gain=2.0)
    m = speech_frame_mask(mel)
    ratio = out[:, m].std(1) / mel[:, m].std(1)
    assert float(ratio.max()) <= 2.0 + 1e-4  # the reference is ~10-20x wider: clamped at 2


def test_degenerate_inputs_are_safe():
    mel = _mel(frames=5)
    assert torch.equal(match_prompt_statistics(mel, _mel()), mel)  # too few frames: unchanged
    assert match_prompt_statistics(torch.zeros(80, 0), _mel()).shape == (80, 0)
    flat = torch.full((80, 100), -11.5)  # digital silence: zero spread, no NaN
    out = match_prompt_statistics(flat, _mel())
    assert torch.isfinite(out).all()
    with pytest.raises(ValueError, match="same n_mels"):
        match_prompt_statistics(_mel(n_mels=80), _mel(n_mels=40))


def test_codec_decode_with_a_reference():
    codec = MelCodec.debug(n_codebooks=4, codebook_size=16)
    gen = torch.Generator().manual_seed(0)
    codes = torch.randint(0, 16, (4, 60), generator=gen)
    ref = torch.randint(0, 16, (4, 90), generator=gen)
    plain, matched = codec.decode(codes), codec.decode(codes, reference=ref)
    assert plain.shape == matched.shape == (60 * 320,)
    assert not np.allclose(plain, matched)
    assert np.array_equal(matched, codec.decode(codes, reference=ref))  # deterministic
    assert codec.decode(codes[:, :0], reference=ref).size == 0


def test_setting_is_validated():
    with pytest.raises(ValueError, match="post_filter"):
        SamplingConfig(post_filter="eq")
    assert SamplingConfig().post_filter == "none"
    assert SamplingConfig().post_filter_strength == 1.0
    for bad in (-0.1, 1.5):
        with pytest.raises(ValueError, match="post_filter_strength is .*; must be in \\[0, 1\\]"):
            SamplingConfig(post_filter="prompt_match", post_filter_strength=bad)


def test_strength_moves_the_log_mel_part_of_the_way():
    mel, ref = _mel(seed=1), _mel(seed=2) * 1.5 + 2.0
    full = match_prompt_statistics(mel, ref)
    assert torch.equal(match_prompt_statistics(mel, ref, strength=1.0), full)
    assert torch.allclose(match_prompt_statistics(mel, ref, strength=0.0), mel)
    half = match_prompt_statistics(mel, ref, strength=0.5)
    assert torch.allclose(half, (mel + full) / 2, atol=1e-5) and not torch.allclose(half, full)
    codec = MelCodec.debug(n_codebooks=4, codebook_size=16)
    gen = torch.Generator().manual_seed(0)
    codes, ref_codes = torch.randint(0, 16, (4, 60), generator=gen), torch.randint(0, 16, (4, 90), generator=gen)
    assert np.allclose(codec.decode(codes, reference=ref_codes, strength=0.0), codec.decode(codes), atol=1e-5)
    # decode() vocodes exactly synthesis_mel() (recipes/vocoder_gta.py trains the vocoder on it)
    half = codec.synthesis_mel(codes, ref_codes, 0.5)
    want = match_prompt_statistics(codec.dequantize(codes), codec.dequantize(ref_codes), strength=0.5)
    assert torch.allclose(half, want)
    assert torch.equal(codec.synthesis_mel(codes), codec.dequantize(codes))
    assert not np.allclose(codec.decode(codes, reference=ref_codes, strength=0.5),
                           codec.decode(codes, reference=ref_codes), atol=1e-4)


def test_model_applies_it_and_saves_the_choice(mel_model, prompt_wav, tmp_path):
    text = "Matched to the prompt."
    plain, _ = mel_model.synthesize(text, str(prompt_wav), PROMPT_TEXT, seed=0)
    matched, _ = mel_model.synthesize(text, str(prompt_wav), PROMPT_TEXT, seed=0, post_filter="prompt_match")
    assert len(plain) == len(matched) and not np.allclose(plain, matched)  # same codes, other log-mel
    folder = edit_saved_sampling(mel_model.save_pretrained(tmp_path / "m"), post_filter="prompt_match")
    loaded = VallE2.from_pretrained(folder)
    assert loaded.sampling.post_filter == "prompt_match"
    again, _ = loaded.synthesize(text, str(prompt_wav), PROMPT_TEXT, seed=0)
    assert np.allclose(again, matched, atol=1e-4)  # the saved default is used
    half, _ = mel_model.synthesize(text, str(prompt_wav), PROMPT_TEXT, seed=0, post_filter="prompt_match",
                                   post_filter_strength=0.5)
    assert len(half) == len(matched) and not np.allclose(half, matched, atol=1e-4)
    edit_saved_sampling(folder, post_filter_strength=0.5)
    loaded = VallE2.from_pretrained(folder)
    assert loaded.sampling.post_filter_strength == 0.5
    assert np.allclose(loaded.synthesize(text, str(prompt_wav), PROMPT_TEXT, seed=0)[0], half, atol=1e-4)


def test_codecs_without_a_log_mel_refuse_it(debug_model, prompt_wav, tmp_path):
    with pytest.raises(ValueError, match="post_filter='prompt_match' needs a codec"):
        debug_model.sampling_config(post_filter="prompt_match")
    with pytest.raises(ValueError, match="encodec"):
        debug_model.synthesize("No.", str(prompt_wav), PROMPT_TEXT, seed=0, post_filter="prompt_match")
    folder = edit_saved_sampling(debug_model.save_pretrained(tmp_path / "m"), post_filter="prompt_match")
    with pytest.raises(ModelFileError, match="post_filter"):
        VallE2.from_pretrained(folder)


def test_training_config_checks_the_codec():
    with pytest.raises(ConfigError, match="export.post_filter"):
        config_from_dict({"export": {"post_filter": "prompt_match"}})
    cfg = config_from_dict({"codec": {"type": "valle2-mel"}, "export": {"post_filter": "prompt_match"}})
    assert isinstance(cfg, Config) and cfg.export.post_filter == "prompt_match"
