"""The bundled default model (issue 4): files, loading by name, and that it speaks the text.

The bars themselves (WER, SIM, rank, RTF on the held-out voices) are measured by
benchmarks/demo_bars.py and written in benchmarks/RESULTS.md; here: the package's promise
that `VallE2.from_pretrained()` is a trained model which says the words it is given.
"""

import json
from pathlib import Path

import numpy as np
import pytest

import valle2
from valle2 import VallE2
from valle2.errors import ModelFileError

ASSETS = Path(valle2.__file__).parent / "assets"
DEFAULT = ASSETS / "models" / "default"
DEMO_VOICE = ASSETS / "voices" / "demo"

needs_default = pytest.mark.skipif(not (DEFAULT / "model.safetensors").is_file(),
                                   reason="no default model in this checkout (src/valle2/assets/models/default)")


def test_a_missing_default_is_an_error_not_noise(monkeypatch, tmp_path):
    from valle2.errors import ModelFileError
    from valle2.models import valle2 as container

    monkeypatch.setattr(container, "BUNDLED_MODELS", tmp_path)
    with pytest.raises(ModelFileError, match="bundled default model is missing"):
        VallE2.from_pretrained()


@pytest.fixture(scope="module")
def model() -> VallE2:
    return VallE2.from_pretrained()


def _codec_name() -> str:
    return json.loads((DEFAULT / "config.json").read_text())["codec"]["name"]


@needs_default
def test_files_within_budget_and_codec_by_name():
    name = _codec_name()
    assert name.startswith("valle2-mel-") and (ASSETS / "codec" / name / "config.json").is_file()
    assert not (DEFAULT / "codec").exists()  # the bundled codec is named, not copied
    weights = (DEFAULT / "model.safetensors").stat().st_size
    codec = sum(p.stat().st_size for p in (ASSETS / "codec" / name).iterdir())
    assert weights <= 30 * 2**20 and weights + codec <= 45 * 2**20
    everything = sum(p.stat().st_size for p in ASSETS.rglob("*") if p.is_file())
    assert everything <= 60 * 2**20  # the budget for committed weights


@needs_default
def test_codec_v4_keeps_v3s_codes():
    """v4 is v3 with a vocoder fine-tuned on synthesis-side log-mels (benchmarks/RESULTS.md, session 11):
    the same codebooks and recogniser, so v3 tokens, packed data and models serve both."""
    from valle2.codec.mel import MelCodec
    from valle2_testlib import vowel_tone

    v3, v4 = MelCodec.load(ASSETS / "codec" / "valle2-mel-v3"), MelCodec.load(ASSETS / "codec" / "valle2-mel-v4")
    assert v4.identity() == dict(v3.identity(), name="valle2-mel-v4")
    assert v4.config.extra["vocoder_finetuned_from"] == "valle2-mel-v3"
    wav = vowel_tone(1.0, 140, 3)
    codes = v4.encode(wav, 24000)
    assert np.array_equal(codes, v3.encode(wav, 24000))
    a, b = v3.decode(codes), v4.decode(codes)
    assert a.shape == b.shape and not np.allclose(a, b, atol=1e-3)  # another vocoder


def test_same_codes_ignores_only_the_name():
    """Data packed with v3 exports with a config naming v4 (session 12's GPU slot); other codebooks never."""
    from valle2.codec.base import same_codes
    from valle2.codec.mel import MelCodec

    v1, v3, v4 = (MelCodec.load(ASSETS / "codec" / f"valle2-mel-v{n}").identity() for n in (1, 3, 4))
    assert same_codes(v3, v4) and same_codes(v4, v3) and v3 != v4
    assert not same_codes(v1, v4)  # other codebooks
    assert not same_codes(v3, dict(v4, n_codebooks=4))  # any field but the name counts
    # without a content hash the name is all that identifies a codec's codes
    enc = {"type": "encodec", "name_or_path": "facebook/encodec_24khz", "bandwidth": 6.0}
    assert same_codes(enc, dict(enc)) and not same_codes(enc, dict(enc, name_or_path="other/encodec"))


def test_a_retired_bundled_codec_loads_as_its_successor(caplog):
    """A model that names a bundled codec no longer shipped gets the newest bundled one with its codes, and says so."""
    from valle2.codec.mel import MelCodec, load_from_identity

    v3 = MelCodec.load(ASSETS / "codec" / "valle2-mel-v3").identity()
    with caplog.at_level("WARNING"):
        codec = load_from_identity(dict(v3, name="valle2-mel-retired"), None)
    assert codec.identity()["codebooks_sha256"] == v3["codebooks_sha256"]
    assert codec.config.name == _codec_name()  # the default model's codec: the newest release of these codes
    assert "valle2-mel-retired" in caplog.text and "same codes" in caplog.text
    with pytest.raises(ModelFileError, match="no bundled codec has that name or its codes"):
        load_from_identity(dict(v3, name="valle2-mel-retired", codebooks_sha256="0" * 16), None)


@needs_default
def test_default_is_the_trained_model(model: VallE2):
    assert model.name == "demo" and model.config.group_size == 2
    assert model.requires_consent  # voices need consent; the bundled demo voice is an engine's
    assert model.codec.identity()["name"] == _codec_name()
    # it decodes with the prompt-matched post-filter (benchmarks/RESULTS.md, "The voice bars met")
    assert model.sampling.post_filter == "prompt_match"
    # the residual it decodes: half the NAR's expected entries, 0.2 from the prompt's nearest frames, the rest each
    # codebook-0 code's mean residual; the post-filter half way (more of the words, the same voice: RESULTS.md,
    # sessions 13 and 15)
    assert model.sampling.nar_decoding == "expected" and model.sampling.nar_weight == 0.5
    assert model.sampling.residual_prior == "code0" and model.residual_prior is not None
    assert model.sampling.prompt_residual == 0.2 and model.sampling.post_filter_strength == 0.5
    # its AR decodes with int8 weights on the CPU (same bars, faster steps: RESULTS.md, "An int8 AR")
    assert model.ar_precision == "int8" and model.nar_precision == "bf16"


@needs_default
def test_default_model_follows_the_text(model: VallE2):
    """Six short sentences in the demo voice (flite awb, held out of training), transcribed by
    faster-whisper tiny.en.

    The bundled model does not reach the issue's WER bar yet (benchmarks/RESULTS.md, sessions 12 and
    13: 35 % capped WER on everyday sentences, 47 % on the held-out corpus sentences). What it does
    do, and what a model that ignores its text (babble, or the random debug model) cannot: each
    transcript is much closer, in characters, to its own sentence than to the other five. CER to its
    own sentence against the others, as the models changed: session 9 (post-filter) 0.58 / 0.94;
    session 10 (int8 AR, 2-core EPYC) 0.57 / 0.95; session 11 (codec v4) 0.57 / 0.96; session 13,
    c2b2 decoding the NAR's expected entries at nar_weight 0.7: 0.09 / 0.87 (its min-distortion codes at
    weight 0.7: 0.18 / 0.89; at weight 1, session 12's decoding: 0.19 / 0.90); session 15, weight 0.5 with each
    codebook-0 code's mean residual for the rest (residual_prior "code0"): 0.08 / 0.87; then with 0.2 of the residual
    from the prompt's nearest frames and the post-filter half way (bundled): 0.11 / 0.86."""
    pytest.importorskip("faster_whisper", reason="faster-whisper (the ASR) is not installed")
    from valle2.eval.asr import get_asr
    from valle2.eval.wer import char_error_rate

    prompt = model.prepare_prompt(str(DEMO_VOICE / "prompt.wav"), (DEMO_VOICE / "prompt.txt").read_text().strip())
    texts = ["The weather is nice today.", "Please open the window.", "We will meet at the station.",
             "My brother bought a new red bicycle.", "Can you help me carry these boxes?",
             "The children are playing in the park."]
    asr = get_asr("faster-whisper")
    hyps = []
    for i, text in enumerate(texts):
        rows = model.make_rows(text, prompt)
        [res] = model.generate(rows, seed=i)
        # as synthesis decodes: the model's share of the NAR's residual, its post-filter (the prompt's log-mel statistics)
        [wav] = model.decode_rows(rows, [res])
        seconds = len(wav) / model.sample_rate
        assert 0.5 < seconds < 2.5 * rows[0].expected_frames / model.frame_rate, (text, seconds)
        assert np.sqrt(np.mean(wav**2)) > 1e-3
        hyps.append(asr.transcribe(wav, model.sample_rate))
    own = np.mean([char_error_rate(t, h) for t, h in zip(texts, hyps)])
    others = np.mean([char_error_rate(u, h) for t, h in zip(texts, hyps) for u in texts if u != t])
    assert own <= 0.5 and own <= others - 0.3, f"CER {own:.2f} to its own text, {others:.2f} to others: {hyps}"


def test_the_demo_recipe_exports_the_bundled_decoding():
    """configs/demo.yaml's export section is the bundled model's decoding, so that the next training run of the
    recipe exports a model that is judged (and shipped) as the bundled one decodes."""
    from valle2.config import load_config

    export = load_config("demo").export
    meta = json.loads((ASSETS / "models" / "default" / "config.json").read_text())
    sampling = meta["sampling"]
    for key in ("nar_decoding", "top_p", "temperature", "nar_temperature", "post_filter", "post_filter_strength",
                "nar_weight", "residual_prior", "prompt_residual"):
        assert getattr(export, key) == sampling[key], key
    assert (export.nar_precision, export.ar_precision) == (meta["nar_precision"], meta["ar_precision"])
