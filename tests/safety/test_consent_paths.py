"""Consent is enforced on every path that produces audio: the Python API and the CLI.

(The server's path is tested in tests/serve/test_serve_consent.py.) A debug model saved with
``requires_consent`` set stands in for a trained model: same code path, tiny weights.
"""

import json

import numpy as np
import pytest
import soundfile as sf

from valle2 import VallE2
from valle2.audio import load_audio
from valle2.cli import main
from valle2.safety import watermark
from valle2.safety.consent import ConsentError
from valle2.safety.keys import watermark_key
from valle2.safety.policy import resolve_policy

PROMPT_TEXT = "This is my voice."


@pytest.fixture
def cloning_model(debug_model, tmp_path):
    folder = debug_model.save_pretrained(tmp_path / "cloner")
    meta = json.loads((folder / "config.json").read_text())
    meta["requires_consent"] = True
    (folder / "config.json").write_text(json.dumps(meta))
    return folder


def test_api_refuses_without_consent_then_accepts_a_record(cloning_model, prompt_wav):
    model = VallE2.from_pretrained(cloning_model)
    assert model.requires_consent
    with pytest.raises(ConsentError) as err:
        model.synthesize("Hello.", str(prompt_wav), PROMPT_TEXT, seed=0)
    assert err.value.reason == "none"
    wav, sr = load_audio(str(prompt_wav))
    record = resolve_policy().consent_store.add_synthetic_voice(wav, sr, "test-voice", "generated-buzz")
    out, out_sr = model.synthesize("Hello.", str(prompt_wav), PROMPT_TEXT, seed=0)
    assert len(out) > 0
    resolve_policy().consent_store.revoke(record.voice_id, "test")
    with pytest.raises(ConsentError) as err:
        model.synthesize("Hello.", str(prompt_wav), PROMPT_TEXT, seed=0)
    assert err.value.reason == "revoked"


def test_cli_refuses_without_consent_and_unsafe_flag_works_and_is_watermarked(cloning_model, prompt_wav, tmp_path, capsys):
    out = tmp_path / "o.wav"
    args = ["synthesize", "--model", str(cloning_model), "--text", "Hello there.", "--prompt", str(prompt_wav),
            "--prompt-text", PROMPT_TEXT, "--out", str(out), "--seed", "0"]
    assert main(args) == 2
    err = capsys.readouterr().err
    assert "consent" in err and "Traceback" not in err and not out.exists()
    assert main([*args, "--unsafe-no-consent"]) == 0
    wav, sr = sf.read(out, dtype="float32")
    assert watermark.detect(wav, sr, key=watermark_key()).watermarked


def test_bundled_demo_voice_has_a_synthetic_engine_record(cloning_model, tmp_path):
    from valle2.models.valle2 import BUNDLED_MODELS

    demo = BUNDLED_MODELS.parent / "voices" / "demo"
    model = VallE2.from_pretrained(cloning_model)
    wav, sr = model.synthesize("The demo voice may be used.", str(demo / "prompt.wav"),
                               (demo / "prompt.txt").read_text().strip(), seed=0)
    assert len(wav) > 0 and np.isfinite(wav).all()
