"""The safety policy: no synthesis without consent, every output watermarked and audited, the
unsafe switch warns and is refused where disabled; and the `valle2 detect` command."""

import json
import logging

import numpy as np
import pytest
import soundfile as sf

from valle2.cli import main
from valle2.safety import watermark as wm
from valle2.safety.audit import AuditLog, output_sha256, text_sha256
from valle2.safety.consent import ConsentError, ConsentStore
from valle2.safety.keys import DEFAULT_WATERMARK_KEY
from test_watermark import speechlike
from valle2.safety.policy import Authorization, SafetyPolicy, resolve_policy

SR = 24_000


def buzz(seconds=3.0, f0=None, seed=0) -> np.ndarray:
    return speechlike(seconds, seed=seed)


@pytest.fixture
def policy(tmp_path):
    return SafetyPolicy(ConsentStore(tmp_path / "consent"), AuditLog(tmp_path / "audit.jsonl"),
                        DEFAULT_WATERMARK_KEY, payload=1234)


def test_synthesis_without_consent_is_refused(policy):
    with pytest.raises(ConsentError, match="no consent record") as e:
        policy.authorize(buzz(seed=1), SR)
    assert e.value.reason == "none"
    assert policy.audit_log.entries() == []


def test_consented_synthesis_is_watermarked_and_audited(policy):
    prompt = buzz(seed=2)
    rec = policy.consent_store.add_synthetic_voice(prompt, SR, "demo", "espeak-ng en-us")
    auth = policy.authorize(prompt, SR)
    assert auth.voice_id == rec.voice_id and auth.kind == "synthetic-engine" and not auth.unsafe
    out = buzz(4.0, f0=170, seed=3)
    marked = policy.finalize(out, SR, auth, "Hello world.")
    res = wm.detect(marked, SR, key=DEFAULT_WATERMARK_KEY, payloads=(1234,))
    assert res.watermarked and res.payload == 1234
    [entry] = policy.audit_log.entries()
    assert entry["voice_id"] == rec.voice_id and entry["text_sha256"] == text_sha256("Hello world.")
    assert entry["output_sha256"] == output_sha256(marked) and entry["unsafe"] is False and entry["payload"] == 1234
    assert policy.audit_log.verify().ok


def test_unsafe_mode_warns_marks_and_logs(policy, caplog):
    caplog.set_level(logging.WARNING, logger="valle2.safety.policy")
    auth = policy.authorize(buzz(seed=4), SR, unsafe_no_consent=True)
    assert auth.unsafe and auth.kind == "unsafe"
    assert any("UNSAFE" in r.getMessage() and r.levelno == logging.WARNING for r in caplog.records)
    marked = policy.finalize(buzz(seed=5), SR, auth, "research")
    assert wm.detect(marked, SR, key=DEFAULT_WATERMARK_KEY, payloads=(1234,)).watermarked
    assert policy.audit_log.entries()[0]["unsafe"] is True


def test_unsafe_mode_is_refused_where_disabled(tmp_path):
    server = SafetyPolicy(ConsentStore(tmp_path / "c"), AuditLog(tmp_path / "a.jsonl"), DEFAULT_WATERMARK_KEY,
                          allow_unsafe=False)
    with pytest.raises(ConsentError) as e:
        server.authorize(buzz(), SR, unsafe_no_consent=True)
    assert e.value.reason == "unsafe-disabled"


def test_finalize_needs_this_policys_authorization(policy, tmp_path):
    forged = Authorization(voice_id="x", prompt_hash="0" * 64, kind="consent", unsafe=False, issued_at=0.0)
    with pytest.raises(ConsentError) as e:
        policy.finalize(buzz(), SR, forged, "t")
    assert e.value.reason == "unauthorized"
    other = SafetyPolicy(ConsentStore(tmp_path / "c2"), AuditLog(tmp_path / "a2.jsonl"), DEFAULT_WATERMARK_KEY)
    auth = other.authorize(buzz(), SR, unsafe_no_consent=True)
    with pytest.raises(ConsentError):
        policy.finalize(buzz(), SR, auth, "t")
    with pytest.raises(ConsentError):
        policy.finalize(buzz(), SR, None, "t")


def test_revoked_voice_is_refused(policy):
    prompt = buzz(seed=6)
    rec = policy.consent_store.add_synthetic_voice(prompt, SR, "demo", "flite awb")
    policy.consent_store.revoke(rec.voice_id, "retired")
    with pytest.raises(ConsentError) as e:
        policy.authorize(prompt, SR)
    assert e.value.reason == "revoked"


def test_model_that_cannot_clone_needs_no_consent_but_is_marked(policy):
    auth = policy.authorize(buzz(seed=7), SR, model_requires_consent=False)
    assert auth.kind == "not-required" and not auth.unsafe
    assert wm.detect(policy.finalize(buzz(seed=8), SR, auth, "x"), SR, key=DEFAULT_WATERMARK_KEY,
                     payloads=(1234,)).watermarked


def test_default_policy_lives_in_valle2_home(monkeypatch, tmp_path):
    monkeypatch.setenv("VALLE2_HOME", str(tmp_path / "home"))
    p = resolve_policy()
    assert p is resolve_policy() and p.consent_store.root == tmp_path / "home" / "consent"
    assert p.audit_log.path == tmp_path / "home" / "audit" / "audit.jsonl"
    assert p.payload == wm.DEFAULT_PAYLOAD and p.allow_unsafe
    assert not resolve_policy(allow_unsafe=False).allow_unsafe

    class StandIn:
        def authorize(self, *a, **k):
            return None

        def finalize(self, wav, *a):
            return wav

    s = StandIn()
    assert resolve_policy(s) is s
    with pytest.raises(TypeError):
        resolve_policy(object())


def test_detect_command_prints_one_json_line_per_file(tmp_path, capsys):
    clean = buzz(4.0, seed=9)
    sf.write(tmp_path / "marked.wav", wm.embed(clean, SR, key=DEFAULT_WATERMARK_KEY), SR)
    sf.write(tmp_path / "plain.flac", clean, SR)
    (tmp_path / "broken.wav").write_bytes(b"not audio at all")
    files = [str(tmp_path / n) for n in ("marked.wav", "plain.flac", "broken.wav")]
    assert main(["detect", *files]) == 1
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [d["file"] for d in lines] == files
    assert lines[0]["watermarked"] is True and lines[0]["payload"] == wm.DEFAULT_PAYLOAD
    assert lines[1]["watermarked"] is False and lines[1]["payload"] is None
    assert "error" in lines[2] and "watermarked" not in lines[2]
    assert {"score", "p_value", "threshold"} <= set(lines[0])


def test_detect_command_with_another_key(tmp_path, capsys):
    sf.write(tmp_path / "m.wav", wm.embed(buzz(4.0, seed=10), SR, key=DEFAULT_WATERMARK_KEY), SR)
    assert main(["detect", "--key", "11" * 32, str(tmp_path / "m.wav")]) == 0
    assert json.loads(capsys.readouterr().out)["watermarked"] is False
    assert main(["detect", "--key", "xyz", str(tmp_path / "m.wav")]) == 2
