"""The public Python API: VallE2.debug / synthesize / save_pretrained / from_pretrained."""

import json

import numpy as np
import pytest
import torch

from valle2 import VallE2
from valle2.errors import ModelFileError, TextError

PROMPT_TEXT = "This is my voice."


def test_synthesize_returns_mono_float32(debug_model, prompt_wav):
    wav, sr = debug_model.synthesize("Hello there.", str(prompt_wav), PROMPT_TEXT, seed=0)
    assert sr == debug_model.sample_rate == 24000
    assert wav.dtype == np.float32 and wav.ndim == 1 and len(wav) > 0
    assert np.isfinite(wav).all() and np.abs(wav).max() <= 1.0


def test_same_seed_same_output_and_other_seed_differs(debug_model, prompt_wav):
    a, _ = debug_model.synthesize("One two three.", str(prompt_wav), PROMPT_TEXT, seed=3)
    b, _ = debug_model.synthesize("One two three.", str(prompt_wav), PROMPT_TEXT, seed=3)
    c, _ = debug_model.synthesize("One two three.", str(prompt_wav), PROMPT_TEXT, seed=4)
    assert np.array_equal(a, b)
    assert len(a) != len(c) or not np.array_equal(a, c)


def test_prompt_as_array_tuple(debug_model):
    from valle2_testlib import voiced_audio

    wav, sr = debug_model.synthesize("Hi.", (voiced_audio(sr=44100, seconds=2.0), 44100), PROMPT_TEXT, seed=0)
    assert len(wav) > 0


def test_save_load_gives_identical_output(debug_model, prompt_wav, tmp_path):
    folder = debug_model.save_pretrained(tmp_path / "m")
    assert {"config.json", "model.safetensors", "symbols.json", "codec"} <= {p.name for p in folder.iterdir()}
    loaded = VallE2.from_pretrained(folder)
    for (k, v), (k2, v2) in zip(debug_model.state_dict().items(), loaded.state_dict().items()):
        assert k == k2 and torch.equal(v, v2)
    a, _ = debug_model.synthesize("Saved and loaded.", str(prompt_wav), PROMPT_TEXT, seed=11)
    b, _ = loaded.synthesize("Saved and loaded.", str(prompt_wav), PROMPT_TEXT, seed=11)
    assert np.array_equal(a, b)
    meta = json.loads((folder / "config.json").read_text())
    assert meta["model"]["group_size"] == 2 and meta["codec"]["type"] == "encodec"


def test_half_precision_files_load_back(debug_model, tmp_path):
    full = debug_model.save_pretrained(tmp_path / "full")
    half = debug_model.save_pretrained(tmp_path / "half", dtype=torch.float16)
    assert (half / "model.safetensors").stat().st_size < 0.6 * (full / "model.safetensors").stat().st_size
    loaded = VallE2.from_pretrained(half)
    for (k, v), v2 in zip(debug_model.state_dict().items(), loaded.state_dict().values()):
        assert v2.dtype == v.dtype
        torch.testing.assert_close(v2, v, rtol=1e-3, atol=1e-3, msg=k)


def test_unknown_format_version_is_refused(debug_model, tmp_path):
    folder = debug_model.save_pretrained(tmp_path / "m")
    meta = json.loads((folder / "config.json").read_text())
    meta["format_version"] = 99
    (folder / "config.json").write_text(json.dumps(meta))
    with pytest.raises(ModelFileError, match="format version 99.*upgrade"):
        VallE2.from_pretrained(folder)


def test_corrupt_or_missing_model_files(debug_model, tmp_path):
    with pytest.raises(ModelFileError, match="not found"):
        VallE2.from_pretrained(tmp_path / "nope")
    folder = debug_model.save_pretrained(tmp_path / "m")
    (folder / "model.safetensors").write_bytes(b"garbage")
    with pytest.raises(ModelFileError, match="corrupt"):
        VallE2.from_pretrained(folder)
    (folder / "config.json").write_text("{not json")
    with pytest.raises(ModelFileError, match="not valid JSON"):
        VallE2.from_pretrained(folder)


def test_save_over_existing_folder_replaces_it(debug_model, tmp_path):
    folder = debug_model.save_pretrained(tmp_path / "m")
    (folder / "stale.txt").write_text("old")
    debug_model.save_pretrained(folder)
    assert not (folder / "stale.txt").exists()
    VallE2.from_pretrained(folder)


@pytest.mark.parametrize("G", [1, 2, 4, 8])
def test_every_group_size_synthesizes(G, prompt_wav):
    model = VallE2.debug(group_size=G, seed=1)
    assert model.config.group_size == G and model.ar.G == G
    wav, _ = model.synthesize("Group size test.", str(prompt_wav), PROMPT_TEXT, seed=0)
    assert len(wav) > 0


def test_long_text_is_split_and_no_sentence_runs_away(debug_model, prompt_wav):
    text = " ".join(f"This is sentence number {i}, and it is here to make the text long." for i in range(6))
    prompt = debug_model.prepare_prompt(str(prompt_wav), PROMPT_TEXT)
    rows = debug_model.make_rows(text, prompt)
    assert len(rows) == 6
    results = debug_model.generate(rows, seed=0)
    for row, res in zip(rows, results):
        assert res.codes.shape == (debug_model.config.n_codebooks, res.codes.shape[1])
        assert res.codes.shape[1] <= row.max_frames
        assert row.max_frames <= np.ceil(debug_model.length.max_ratio * row.expected_frames)
    wav, sr = debug_model.synthesize(text, str(prompt_wav), PROMPT_TEXT, seed=0)
    limit = sum(r.max_frames for r in rows) / debug_model.frame_rate
    assert len(wav) / sr <= limit + 0.01


def test_synthesize_batch_reports_each_sentence(debug_model, prompt_wav):
    from valle2.models.valle2 import SynthesisJob

    prompt = debug_model.prepare_prompt(str(prompt_wav), PROMPT_TEXT)
    jobs = [SynthesisJob("Here is one sentence. And a second one!", prompt), SynthesisJob("Just one.", prompt)]
    details: list = []
    waves = debug_model.synthesize_batch(jobs, seed=0, details=details)
    assert [len(d["frames"]) for d in details] == [2, 1]
    for wav, d in zip(waves, details):
        assert len(d["expected_frames"]) == len(d["hit_limit"]) == len(d["frames"])
        assert all(f > 0 for f in d["frames"]) and all(e > 0 for e in d["expected_frames"])
        # the audio is the sentences' frames joined (minus crossfades)
        assert len(wav) <= sum(d["frames"]) / debug_model.frame_rate * debug_model.sample_rate + 1


def test_candidates_pick_one_per_sentence(debug_model, prompt_wav):
    wav, sr = debug_model.synthesize("Pick the best. Then again.", str(prompt_wav), PROMPT_TEXT, seed=0, candidates=3)
    assert len(wav) > 0


def test_custom_scorer_is_used(debug_model, prompt_wav):
    calls = []

    class Longest:
        def score(self, candidates, sr, **kw):
            calls.append(len(candidates))
            return [len(c) for c in candidates]

    prompt = debug_model.prepare_prompt(str(prompt_wav), PROMPT_TEXT)
    rows = debug_model.make_rows("Only one sentence here.", prompt, candidates=4)
    lengths = [r.codes.shape[1] for r in debug_model.generate(rows, seed=5)]
    wav, sr = debug_model.synthesize("Only one sentence here.", prompt, PROMPT_TEXT, seed=5, candidates=4,
                                     select=Longest(), crossfade_ms=0)
    assert calls == [4]
    hop = sr / debug_model.frame_rate
    assert abs(len(wav) - max(lengths) * hop) <= hop


@pytest.mark.parametrize("text, match", [("", "empty"), ("   ", "empty"), ("x" * 6000, "limit"), ("!!! ???", "nothing")])
def test_bad_text_is_refused_clearly(debug_model, prompt_wav, text, match):
    with pytest.raises(TextError, match=match):
        debug_model.synthesize(text, str(prompt_wav), PROMPT_TEXT, seed=0)


def test_unknown_sampling_option(debug_model, prompt_wav):
    with pytest.raises(TypeError, match="top_q"):
        debug_model.synthesize("Hi.", str(prompt_wav), PROMPT_TEXT, top_q=0.5)


def test_bf16_nar_is_saved_and_gives_valid_codes(debug_model, prompt_wav, tmp_path):
    folder = debug_model.save_pretrained(tmp_path / "m")
    meta = json.loads((folder / "config.json").read_text())
    meta["nar_precision"] = "bf16"
    (folder / "config.json").write_text(json.dumps(meta))
    model = VallE2.from_pretrained(folder)
    assert model.nar_precision == "bf16"
    prompt = model.prepare_prompt(str(prompt_wav), PROMPT_TEXT)
    [res] = model.generate(model.make_rows("Half precision.", prompt), seed=0)
    assert res.codes.dtype == torch.long and (res.codes >= 0).all() and (res.codes < model.config.codebook_size).all()
    meta["nar_precision"] = "fp8"
    (folder / "config.json").write_text(json.dumps(meta))
    with pytest.raises(ModelFileError, match="nar_precision"):
        VallE2.from_pretrained(folder)
