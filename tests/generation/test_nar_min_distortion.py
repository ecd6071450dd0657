"""NAR decoding by minimum expected distortion (SamplingConfig.nar_decoding='min_distortion')."""


import pytest
import torch

from valle2 import VallE2
from valle2.codec.mel import MelCodec
from valle2.generation.nar_decode import nar_generate, pick_codes
from valle2.generation.pipeline import generate_rows
from valle2.generation.sampling import SamplingConfig
from valle2_testlib import edit_saved_sampling

PROMPT_TEXT = "This is my voice."


def test_picks_the_entry_nearest_the_expectation_not_the_most_probable():
    entries = torch.tensor([[0.0], [1.0], [10.0]])
    logits = torch.log(torch.tensor([[0.45, 0.10, 0.45]]))
    assert pick_codes(logits).tolist() == [0]  # greedy: the first of the two modes
    # E[x] = 0.1 + 4.5 = 4.6: entry 1.0 is the nearest (3.6 away), the modes are 4.6 and 5.4 away
    assert pick_codes(logits, entries).tolist() == [1]
    sharp = torch.log(torch.tensor([[0.01, 0.01, 0.98]]))
    assert pick_codes(sharp, entries).tolist() == [2]  # a confident NAR keeps its code


def test_temperature_moves_from_the_expectation_towards_the_mode():
    entries = torch.tensor([[0.0], [1.0], [10.0]])
    logits = torch.log(torch.tensor([[0.50, 0.05, 0.45]]))  # E[x] = 4.55: entry 1.0 (3.55 away) beats both modes
    assert pick_codes(logits, entries, 1.0).tolist() == [1]
    # sharpened at T 0.02 the mode holds nearly all the mass, so its own entry is the nearest: greedy's choice
    assert pick_codes(logits, entries, 0.02).tolist() == pick_codes(logits).tolist() == [0]
    # flattened at T 10 the expectation moves towards the middle of the three (3.8): still entry 1.0
    assert pick_codes(logits, entries, 10.0).tolist() == [1]


def test_equal_norm_orthogonal_entries_reduce_to_greedy(nar_inputs):
    nar, texts, prompts, targets = nar_inputs
    greedy = nar_generate(nar, texts, prompts, targets).codes
    eye = torch.eye(16).expand(4, 16, 16)  # ||e_v|| = 1 and e_v . E[x] = p(v): the nearest is the most probable
    med = nar_generate(nar, texts, prompts, targets, entries=eye).codes
    for g, m, t in zip(greedy, med, targets):
        assert torch.equal(g, m) and torch.equal(m[0], t)
    spread = torch.randn(4, 16, 3) * torch.linspace(0.1, 5, 16)[None, :, None]  # unequal entries: other codes
    other = nar_generate(nar, texts, prompts, targets, entries=spread).codes
    assert all(o.shape == g.shape and torch.equal(o[0], g[0]) for o, g in zip(other, greedy))
    assert any(not torch.equal(o[1:], g[1:]) for o, g in zip(other, greedy))


def test_setting_is_validated_and_needs_entries():
    with pytest.raises(ValueError, match="nar_decoding"):
        SamplingConfig(nar_decoding="beam")
    with pytest.raises(ValueError, match="nar_temperature is 0"):
        SamplingConfig(nar_decoding="min_distortion", nar_temperature=0)
    with pytest.raises(ValueError, match="code entries"):
        generate_rows(None, None, [object()], sep_ids=[], eos_id=1, sampling=SamplingConfig(nar_decoding="min_distortion"),
                      generator=None)


def test_codecs_expose_their_code_entries(debug_model):
    entries = debug_model.codec.code_entries()
    K, V = debug_model.codec.n_codebooks, debug_model.codec.codebook_size
    assert entries.shape[:2] == (K, V) and entries.dtype == torch.float32
    mel = MelCodec.debug(n_codebooks=4, codebook_size=16)
    assert mel.code_entries().shape == (4, 16, mel.config.n_mels)
    codes = torch.randint(0, 16, (4, 5))
    # the entries are what the codec decodes with: a frame's log-mel is the sum of its codes' entries
    from valle2.codec.mel import rvq_decode

    want = sum(mel.code_entries()[k][codes[k]] for k in range(4))
    assert torch.allclose(rvq_decode(codes, mel.codebooks), want)


def test_model_synthesizes_with_it_and_saves_the_choice(debug_model, prompt_wav, tmp_path):
    folder = edit_saved_sampling(debug_model.save_pretrained(tmp_path / "m"), nar_decoding="min_distortion",
                                 nar_temperature=0.5)
    model = VallE2.from_pretrained(folder)
    assert model.sampling.nar_decoding == "min_distortion" and model.sampling.nar_temperature == 0.5
    prompt = model.prepare_prompt(str(prompt_wav), PROMPT_TEXT)
    [med] = model.generate(model.make_rows("Nearest to the mean.", prompt), seed=0)
    [greedy] = model.generate(model.make_rows("Nearest to the mean.", prompt), seed=0,
                              sampling=model.sampling_config(nar_decoding="greedy"))
    assert torch.equal(med.codes[0], greedy.codes[0])  # same seed: the AR's codebook 0 is the same
    assert (med.codes >= 0).all() and (med.codes < model.config.codebook_size).all()
    wav, sr = model.synthesize("Nearest to the mean.", str(prompt_wav), PROMPT_TEXT, seed=0)
    assert wav.size > 0 and sr == model.sample_rate
