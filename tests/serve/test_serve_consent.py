"""The server and the safety layer: consent enrollment over HTTP, 403s with the policy's reason,
the built-in engine voice, revocation, restarts, and the watermark on every response."""

from __future__ import annotations

import io
import threading
from contextlib import ExitStack

import numpy as np
import pytest
import soundfile as sf
from serve_testlib import assert_error, speak, stalled, tone_wav, wait_for

from valle2.safety.keys import watermark_key
from valle2.safety.watermark import detect


@pytest.fixture(scope="module")
def consent_model():
    """The debug model, but asking for consent like a model that can clone voices."""
    from valle2 import VallE2
    from valle2.generation.pipeline import LengthPolicy

    model = VallE2.debug(seed=0)
    model.length = LengthPolicy(max_seconds=0.4, min_ratio=10.0)
    model.requires_consent = True
    return model


class ReadsTheChallenge:
    """Stand-in ASR that hears whatever challenge was issued last (the real one is Whisper)."""

    def __init__(self):
        self.text = ""

    def __call__(self, wav, sr):
        return self.text


@pytest.fixture
def consent_app(tmp_path, consent_model):
    """``(make_client(), asr, store)``: apps sharing one data folder and one consent store."""
    from fastapi.testclient import TestClient

    from valle2.safety.audit import AuditLog
    from valle2.safety.consent import ConsentStore
    from valle2.safety.policy import SafetyPolicy
    from valle2.serve import ServeConfig, create_app

    asr = ReadsTheChallenge()
    store = ConsentStore(tmp_path / "consent", asr=asr, speaker_encoder=lambda wav, sr: np.ones(4))
    policy = SafetyPolicy(store, AuditLog(tmp_path / "audit.jsonl"), watermark_key(), allow_unsafe=False)
    cfg = ServeConfig(data_dir=tmp_path / "server", auth_disabled=True, max_wait_ms=5.0)
    with ExitStack() as stack:
        def make():
            app = create_app(cfg, model=consent_model, policy=policy)
            return stack.enter_context(TestClient(app, raise_server_exceptions=False))

        yield make, asr, store


def _enroll(client, name, audio=None, **fields):
    files = {"audio": ("p.wav", audio or tone_wav(), "audio/wav")}
    if "consent_audio" in fields:
        files["consent_audio"] = ("c.wav", fields.pop("consent_audio"), "audio/wav")
    return client.post("/v1/voices", data={"name": name, "transcript": "Hello, this is my voice.", **fields},
                       files=files)


def _challenge(client, asr, name):
    ch = client.post("/v1/voices/challenge", json={"name": name}).json()
    assert name in ch["text"] and len(ch["challenge_id"]) == 16 and ch["expires_at"]
    asr.text = ch["text"]
    return ch["challenge_id"]


def test_consent_flow(consent_app):
    make, asr, store = consent_app
    c = make()
    assert c.get("/healthz").json()["requires_consent"] is True
    # The built-in demo voice is an engine voice, recorded as such at startup: it speaks at once.
    assert speak(c, response_format="wav").status_code == 200
    # A voice stored without consent cannot be spoken; the 403 carries the policy's reason.
    assert _enroll(c, "alice").status_code == 201
    err = assert_error(speak(c, voice="alice"), 403, "no consent record")
    assert err["code"] == "consent_none" and err["type"] == "permission_error"
    # With the consent protocol it can.
    ch = _challenge(c, asr, "carol")
    r = _enroll(c, "carol", audio=tone_wav(seed=1), consent_audio=tone_wav(seed=2), challenge_id=ch)
    assert r.status_code == 201, r.text
    carol = r.json()
    assert carol["consent_id"].startswith("carol-")
    ok = speak(c, "Hello from Carol.", voice="carol", response_format="wav")
    assert ok.status_code == 200, ok.text
    # A challenge allows one attempt only.
    assert assert_error(_enroll(c, "dave", consent_audio=tone_wav(seed=3), challenge_id=ch), 403,
                        "already used")["code"] == "consent_challenge_used"
    # A reading of the wrong sentence is refused, and the voice is not stored.
    ch2 = _challenge(c, asr, "erin")
    asr.text = "something else entirely"
    assert_error(_enroll(c, "erin", consent_audio=tone_wav(seed=4), challenge_id=ch2), 403, "does not read")
    assert "erin" not in [v["name"] for v in c.get("/v1/voices").json()["data"]]

    # Restart: the stored prompt reloads bit for bit, so its consent record still matches.
    again = make()
    assert speak(again, voice="carol", response_format="wav").status_code == 200
    # Revocation applies to the very next request.
    store.revoke(carol["consent_id"], reason="asked to stop")
    assert assert_error(speak(again, voice="carol"), 403, "revoked")["code"] == "consent_revoked"


def test_a_refused_voice_does_not_fail_the_batch_it_shares(consent_app):
    make, asr, store = consent_app
    c = make()
    assert _enroll(c, "nobody").status_code == 201
    assert speak(c, response_format="wav").status_code == 200  # caches the demo prompt
    results = {}
    engine = c.app.state.valle2.engine
    with stalled(c):
        threads = [threading.Thread(target=lambda v=v: results.__setitem__(v, speak(c, voice=v, response_format="wav")))
                   for v in ("demo", "nobody")]
        for t in threads:
            t.start()
        wait_for(lambda: engine.admitted == 2)
    for t in threads:
        t.join(30)
    assert results["demo"].status_code == 200
    assert results["nobody"].status_code == 403


def test_every_response_carries_the_watermark(make_client):
    c = make_client()
    for body in ({"response_format": "wav"}, {"response_format": "wav", "stream": True}):
        r = speak(c, "Hello there. This is the second sentence. And a third one, to be long enough.", **body)
        wav, sr = sf.read(io.BytesIO(r.content), dtype="float32")
        assert detect(wav, sr, key=watermark_key()).watermarked, body
