"""A model's synthesis vocoder (valle2.generation.synthesis_vocoder): synthesis vocodes with it when
``SamplingConfig.vocoder == "synthesis"``, the codec keeps its own; saved beside the weights, checked at load."""

from __future__ import annotations

import copy
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from valle2 import VallE2
from valle2.errors import ModelFileError
from valle2.generation.sampling import SamplingConfig
from valle2.generation.synthesis_vocoder import FILE, load_vocoder, save_vocoder
from valle2_testlib import edit_saved_sampling

PROMPT_TEXT = "This is my voice."
REPO = Path(__file__).resolve().parents[2]


def perturbed(vocoder, seed: int = 0):
    """A copy of ``vocoder`` with noise on every weight (what a fine-tune changes), in float16 steps."""
    out = copy.deepcopy(vocoder)
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p, q in zip(out.parameters(), vocoder.parameters()):
            p.copy_((q + 0.05 * torch.randn(q.shape, generator=gen)).half().float())
    return out.eval()



@pytest.fixture()
def voc_model(mel_model, tmp_path):
    """A fresh copy of the mel model (the fixture is shared) with a perturbed copy of its codec's vocoder."""
    model = VallE2.from_pretrained(mel_model.save_pretrained(tmp_path / "base"))
    model.set_synthesis_vocoder(perturbed(model.codec.vocoder), source="test")
    return model


def test_it_is_a_known_setting():
    assert SamplingConfig().vocoder == "codec"
    assert SamplingConfig(vocoder="synthesis").vocoder == "synthesis"
    with pytest.raises(ValueError, match="vocoder is 'hifigan'"):
        SamplingConfig(vocoder="hifigan")


def test_synthesis_vocodes_with_it_and_the_codec_keeps_its_own(voc_model, prompt_wav):
    model = voc_model
    text = "The vocoder of each model."
    own = model.codec.vocoder
    a, _ = model.synthesize(text, str(prompt_wav), PROMPT_TEXT, seed=0, vocoder="synthesis", unsafe_no_consent=True)
    b, _ = model.synthesize(text, str(prompt_wav), PROMPT_TEXT, seed=0, unsafe_no_consent=True)
    assert len(a) == len(b) > 0 and not np.allclose(a, b, atol=1e-4)  # the same codes, another vocoder
    assert model.codec.vocoder is own  # the codec is untouched: resynthesis keeps its vocoder
    # decode_rows vocodes exactly what the codec's decode gives with that vocoder
    rows = model.make_rows(text, model.prepare_prompt(str(prompt_wav), PROMPT_TEXT))
    sampling = model.sampling_config(vocoder="synthesis")
    [res] = model.generate(rows, seed=0, sampling=sampling)
    [wav] = model.decode_rows(rows, [res], sampling)
    np.testing.assert_array_equal(wav, model.codec.decode(res.codes, vocoder=model.synthesis_vocoder))
    [plain] = model.decode_rows(rows, [res], model.sampling_config())
    np.testing.assert_array_equal(plain, model.codec.decode(res.codes))
    # with the post-filter and a residual too, it is the only thing that changes
    sampling = model.sampling_config(vocoder="synthesis", post_filter="prompt_match", nar_decoding="expected",
                                     nar_weight=0.5)
    [res] = model.generate(rows, seed=0, sampling=sampling)
    [wav] = model.decode_rows(rows, [res], sampling)
    [residual] = model.residuals([res], sampling, prompts=[rows[0].prompt.codes])
    mel = model.codec.synthesis_mel(res.codes, rows[0].prompt.codes, sampling.post_filter_strength, residual)
    with torch.inference_mode():
        want = model.synthesis_vocoder(mel[None])[0].clamp(-1, 1).numpy()
    np.testing.assert_allclose(wav, want, atol=1e-6)


def test_a_model_without_it_refuses_it(mel_model, prompt_wav):
    with pytest.raises(ValueError, match="vocoder='synthesis' needs the vocoder"):
        mel_model.sampling_config(vocoder="synthesis")
    with pytest.raises(ValueError, match="vocoder='synthesis' needs the vocoder"):
        mel_model.synthesize("Hello there you.", str(prompt_wav), PROMPT_TEXT, vocoder="synthesis",
                             unsafe_no_consent=True)
    with pytest.raises(ValueError, match="architecture"):
        mel_model.set_synthesis_vocoder(torch.nn.Linear(2, 2))


def test_a_codec_without_a_log_mel_refuses_it():
    model = VallE2.debug()  # EnCodec
    with pytest.raises(ValueError, match="needs a codec that vocodes a log-mel"):
        model.sampling_config(vocoder="synthesis")


def test_it_is_saved_checked_and_loaded(voc_model, tmp_path):
    folder = edit_saved_sampling(voc_model.save_pretrained(tmp_path / "m"), vocoder="synthesis")
    assert (folder / FILE).is_file()
    loaded = VallE2.from_pretrained(folder)
    assert loaded.sampling.vocoder == "synthesis" and loaded.synthesis_vocoder_source == "test"
    for p, q in zip(loaded.synthesis_vocoder.parameters(), voc_model.synthesis_vocoder.parameters()):
        torch.testing.assert_close(p, q)  # float16 on disk; the weights were float16 steps already
    # the codec's own vocoder is saved as it was, not replaced
    for p, q in zip(loaded.codec.vocoder.parameters(), voc_model.codec.vocoder.parameters()):
        torch.testing.assert_close(p, q, atol=1e-3, rtol=1e-3)
    vocoder, source = load_vocoder(folder / FILE, loaded.codec)
    assert source == "test"
    from safetensors import safe_open
    from safetensors.torch import save_file

    with safe_open(str(folder / FILE), "pt") as f:
        meta, state = f.metadata(), {k: f.get_tensor(k) for k in f.keys()}
    # trained for another codec's codes: refused, naming both
    save_file(state, str(folder / FILE), metadata=dict(meta, codec_codebooks_sha256="0123456789abcdef"))
    with pytest.raises(ModelFileError, match="trained for the codec with codebooks_sha256 '0123456789abcdef'"):
        VallE2.from_pretrained(folder)
    arch = dict(json.loads(meta["architecture"]), hop_length=256)
    save_file(state, str(folder / FILE), metadata=dict(meta, architecture=json.dumps(arch)))
    with pytest.raises(ModelFileError, match="another log-mel or vocoder shape.*hop_length"):
        VallE2.from_pretrained(folder)
    save_file(state, str(folder / FILE), metadata=dict(meta, format="something-else"))
    with pytest.raises(ModelFileError, match="is format 'something-else'"):
        VallE2.from_pretrained(folder)
    bad = dict(state)
    bad[next(iter(bad))] = torch.full_like(bad[next(iter(bad))], float("nan"))
    save_file(bad, str(folder / FILE), metadata=meta)
    with pytest.raises(ModelFileError, match="non-finite"):
        VallE2.from_pretrained(folder)
    (folder / FILE).write_bytes(b"not a safetensors file")
    with pytest.raises(ModelFileError, match="not a readable synthesis vocoder"):
        VallE2.from_pretrained(folder)
    (folder / FILE).unlink()  # the config still asks for it
    with pytest.raises(ModelFileError, match="asks for vocoder 'synthesis'"):
        VallE2.from_pretrained(folder)
    edit_saved_sampling(folder, vocoder="codec")
    assert VallE2.from_pretrained(folder).synthesis_vocoder is None
    save_vocoder(folder, vocoder, loaded.codec, source="again")
    assert VallE2.from_pretrained(folder).synthesis_vocoder_source == "again"
    with pytest.raises(ValueError, match="architecture is not the codec's"):
        save_vocoder(folder, torch.nn.Linear(2, 2), loaded.codec)


def test_the_recipe_takes_a_codec_folders_vocoder(voc_model, mel_model, tmp_path):
    """recipes/synthesis_vocoder.py: from a codec folder with the model's codes, refused for other codes."""
    from valle2.codec.mel import MelCodec

    folder = mel_model.save_pretrained(tmp_path / "m")
    tuned = MelCodec.load(folder / "codec")
    tuned.vocoder = perturbed(tuned.vocoder, seed=1)
    tuned.save(tmp_path / "tuned", dtype=torch.float16)
    def run(*args):
        return subprocess.run([sys.executable, str(REPO / "recipes" / "synthesis_vocoder.py"), *map(str, args)],
                              capture_output=True, text=True, timeout=300)

    out = run(folder, "--codec", tmp_path / "tuned", "--make-default")
    assert out.returncode == 0, out.stderr
    loaded = VallE2.from_pretrained(folder)
    assert loaded.sampling.vocoder == "synthesis"
    for p, q in zip(loaded.synthesis_vocoder.parameters(), tuned.vocoder.parameters()):
        torch.testing.assert_close(p, q)
    other = MelCodec.debug(n_codebooks=4, codebook_size=16, seed=5)  # other codebooks
    other.save(tmp_path / "other")
    out = run(folder, "--codec", tmp_path / "other")
    assert out.returncode != 0 and "has other codes" in out.stderr
