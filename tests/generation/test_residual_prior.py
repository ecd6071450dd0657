"""The "code0" residual prior: what nar_weight < 1 blends in is the mean residual of each codebook-0 code
(valle2.generation.residual_prior), fitted from codes, saved beside the weights and checked at load."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from valle2 import VallE2
from valle2.errors import ModelFileError
from valle2.generation.residual_prior import FILE, fit_code0_prior, load_prior, save_prior
from valle2.generation.sampling import SamplingConfig
from valle2_testlib import edit_saved_sampling

PROMPT_TEXT = "This is my voice."


def test_the_prior_is_each_code0s_mean_residual():
    entries = torch.arange(3 * 4 * 2, dtype=torch.float32).reshape(3, 4, 2)  # K 3, V 4, D 2
    a = torch.tensor([[0, 0, 1, 1], [1, 2, 3, 0], [0, 3, 3, 2]])
    b = torch.tensor([[0, 2], [3, 3], [1, 1]])
    prior, counts = fit_code0_prior([a, b], entries, min_count=2)
    res = lambda c, t: entries[1][c[1, t]] + entries[2][c[2, t]]  # noqa: E731
    assert counts.tolist() == [3, 2, 1, 0]
    torch.testing.assert_close(prior[0], (res(a, 0) + res(a, 1) + res(b, 0)) / 3)
    torch.testing.assert_close(prior[1], (res(a, 2) + res(a, 3)) / 2)
    mean = entries[1:].mean(1).sum(0)
    torch.testing.assert_close(prior[2], mean)  # seen once, under min_count: the mean prior
    torch.testing.assert_close(prior[3], mean)  # never seen
    with pytest.raises(ValueError, match="codes must be"):
        fit_code0_prior([a[:2]], entries)
    with pytest.raises(ValueError, match=r"codes must lie in \[0, 4\)"):
        fit_code0_prior([a + 4], entries)
    with pytest.raises(ValueError, match="at least 2 codebooks"):
        fit_code0_prior([a[:1]], entries[:1])


def test_it_is_a_known_setting():
    assert SamplingConfig(residual_prior="code0").residual_prior == "code0"
    assert SamplingConfig().residual_prior == "mean"
    with pytest.raises(ValueError, match="residual_prior is 'phone'"):
        SamplingConfig(residual_prior="phone")


@pytest.fixture()
def prior_model(mel_model, tmp_path):
    """A fresh copy of the mel model (the fixture is shared) with a random prior attached."""
    model = VallE2.from_pretrained(mel_model.save_pretrained(tmp_path / "base"))
    V, D = model.codec.code_entries().shape[1:]
    model.set_residual_prior(torch.randn(V, D, generator=torch.Generator().manual_seed(0)), torch.arange(V).float())
    return model


def test_code0_blends_the_nar_residual_with_each_frames_prior(prior_model, prompt_wav):
    model = prior_model
    text = "The prior of each code."
    prompt = model.prepare_prompt(str(prompt_wav), PROMPT_TEXT)
    [e] = model.generate(model.make_rows(text, prompt), seed=0, sampling=model.sampling_config(nar_decoding="expected"))
    [res] = model.residuals([e], model.sampling_config(nar_decoding="expected", nar_weight=0.4, residual_prior="code0"))
    torch.testing.assert_close(res, 0.4 * e.residual + 0.6 * model.residual_prior[e.codes[0]].T)
    [plain] = model.residuals([e], model.sampling_config(nar_decoding="expected", nar_weight=0.4))
    assert not torch.allclose(res, plain)  # "mean" is still the default
    [same] = model.residuals([e], model.sampling_config(nar_decoding="expected", residual_prior="code0"))
    assert same is e.residual  # at weight 1 the prior is not used
    a, _ = model.synthesize(text, str(prompt_wav), PROMPT_TEXT, seed=0, nar_decoding="expected", nar_weight=0.4,
                            residual_prior="code0", unsafe_no_consent=True)
    b, _ = model.synthesize(text, str(prompt_wav), PROMPT_TEXT, seed=0, nar_decoding="expected", nar_weight=0.4,
                            unsafe_no_consent=True)
    assert len(a) == len(b) and not torch.allclose(torch.from_numpy(a), torch.from_numpy(b), atol=1e-4)


def test_a_model_without_the_table_refuses_code0(mel_model):
    with pytest.raises(ValueError, match="residual_prior='code0' needs the table"):
        mel_model.sampling_config(residual_prior="code0", nar_weight=0.5)
    with pytest.raises(ValueError, match=r"\(V, D\)"):
        mel_model.set_residual_prior(torch.zeros(3, 3))


def test_it_is_saved_checked_and_loaded(prior_model, tmp_path):
    folder = edit_saved_sampling(prior_model.save_pretrained(tmp_path / "m"), residual_prior="code0", nar_weight=0.5)
    assert (folder / FILE).is_file()
    loaded = VallE2.from_pretrained(folder)
    assert loaded.sampling.residual_prior == "code0" and loaded.sampling.nar_weight == 0.5
    torch.testing.assert_close(loaded.residual_prior, prior_model.residual_prior)
    # fitted for another codec: refused, naming both
    prior, counts = load_prior(folder / FILE, loaded.codec)
    torch.testing.assert_close(counts, torch.arange(len(prior)).float())
    from safetensors.torch import save_file

    save_file({"code0": prior, "counts": torch.zeros(len(prior))}, str(folder / FILE),
              metadata={"codec_codebooks_sha256": "0123456789abcdef"})
    with pytest.raises(ModelFileError, match="fitted for the codec with codebooks_sha256 '0123456789abcdef'"):
        VallE2.from_pretrained(folder)
    save_prior(folder, prior[:, :3], torch.zeros(len(prior)), loaded.codec)  # the wrong width
    with pytest.raises(ModelFileError, match="this codec needs"):
        VallE2.from_pretrained(folder)
    (folder / FILE).write_bytes(b"not a safetensors file")
    with pytest.raises(ModelFileError, match="not a readable residual prior"):
        VallE2.from_pretrained(folder)
    (folder / FILE).unlink()  # the config still asks for it
    with pytest.raises(ModelFileError, match="asks for residual_prior 'code0'"):
        VallE2.from_pretrained(folder)
    edit_saved_sampling(folder, residual_prior="mean")
    assert VallE2.from_pretrained(folder).residual_prior is None
    assert json.loads((folder / "config.json").read_text())["sampling"]["residual_prior"] == "mean"


def test_the_bundled_model_decodes_with_its_table():
    model = VallE2.from_pretrained("default")
    assert model.sampling.residual_prior == "code0" and model.sampling.nar_weight < 1
    V, D = model.codec.code_entries().shape[1:]
    assert model.residual_prior.shape == (V, D) and torch.isfinite(model.residual_prior).all()
    assert int(model.residual_prior_counts.sum()) > 1_000_000  # fitted on the training corpus's frames
    # a phonetic codebook 0: its codes' mean residuals differ from the one global mean
    mean = model.codec.code_entries()[1:].float().mean(1).sum(0)
    assert (model.residual_prior - mean).abs().mean() > 0.05


def test_prompt_knn_residual_takes_the_nearest_prompt_frames():
    from valle2.generation.residual_prior import prompt_knn_residual

    entries = torch.randn(3, 5, 4, generator=torch.Generator().manual_seed(0))  # K 3, V 5, D 4
    keys = torch.tensor([[0.0], [1.0], [2.0], [10.0], [11.0]])  # codes 0-2 are alike, 3-4 are alike
    prompt = torch.tensor([[0, 3, 4], [1, 2, 0], [4, 4, 1]])
    own = lambda t: entries[1][prompt[1, t]] + entries[2][prompt[2, t]]  # noqa: E731  (D,)
    # k 1: each frame takes its nearest prompt frame's residual; a code the prompt has takes its own frame's
    got = prompt_knn_residual(torch.tensor([0, 4, 2]), prompt, keys, entries, k=1)
    torch.testing.assert_close(got, torch.stack([own(0), own(2), own(0)], 1))
    # k 2 averages the two nearest; k beyond the prompt's length takes all of it
    got = prompt_knn_residual(torch.tensor([3]), prompt, keys, entries, k=2)
    torch.testing.assert_close(got[:, 0], (own(1) + own(2)) / 2)
    got = prompt_knn_residual(torch.tensor([1]), prompt, keys, entries, k=10)
    torch.testing.assert_close(got[:, 0], (own(0) + own(1) + own(2)) / 3)
    with pytest.raises(ValueError, match="no frames"):
        prompt_knn_residual(torch.tensor([1]), prompt[:, :0], keys, entries)


def test_prompt_residual_takes_its_share_of_the_blend(prior_model, prompt_wav):
    from valle2.generation.residual_prior import knn_keys, prompt_knn_residual

    model = prior_model
    text = "Some of the prompt."
    prompt = model.prepare_prompt(str(prompt_wav), PROMPT_TEXT)
    rows = model.make_rows(text, prompt)
    [e] = model.generate(rows, seed=0, sampling=model.sampling_config(nar_decoding="expected"))
    sampling = model.sampling_config(nar_decoding="expected", nar_weight=0.5, residual_prior="code0",
                                     prompt_residual=0.2, prompt_residual_k=3, post_filter="none")
    [res] = model.residuals([e], sampling, prompts=[prompt.codes])
    entries = model.codec.code_entries()
    knn = prompt_knn_residual(e.codes[0], prompt.codes, knn_keys(model.codec), entries, 3)
    torch.testing.assert_close(res, 0.5 * e.residual + 0.3 * model.residual_prior[e.codes[0]].T + 0.2 * knn)
    [wav] = model.decode_rows(rows, [e], sampling)  # decode_rows passes each row's prompt
    np.testing.assert_allclose(wav, model.codec.decode(e.codes, residual=res), atol=1e-5)
    with pytest.raises(ValueError, match="needs each row's prompt codes"):
        model.residuals([e], sampling)
    with pytest.raises(ValueError, match=r"nar_weight \(0.9\) \+ prompt_residual \(0.2\) is more than 1"):
        SamplingConfig(nar_weight=0.9, prompt_residual=0.2)
    with pytest.raises(ValueError, match="prompt_residual_k is 0"):
        SamplingConfig(prompt_residual_k=0)
    from valle2.config import ConfigError, config_from_dict

    with pytest.raises(ConfigError, match="export.prompt_residual"):
        config_from_dict({"export": {"nar_weight": 0.9, "prompt_residual": 0.2}})
