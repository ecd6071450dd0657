"""The voice library over HTTP: enroll, list, get, delete, every upload error, persistence across restarts."""

from __future__ import annotations

import io

import numpy as np
import soundfile as sf
from serve_testlib import assert_error, speak, tone_wav


def enroll(client, name="alice", transcript="Hello, this is my voice.", audio=None, filename="me.wav", **extra):
    files = {"audio": (filename, tone_wav() if audio is None else audio, "audio/wav")}
    files.update(extra.pop("files", {}))
    return client.post("/v1/voices", data={"name": name, "transcript": transcript, **extra}, files=files)


def test_enroll_list_use_and_delete(make_client):
    c = make_client()
    r = enroll(c, audio=tone_wav(fmt="FLAC"), filename="me.flac")
    assert r.status_code == 201, r.text
    voice = r.json()
    assert voice["id"].startswith("voice_") and voice["name"] == "alice" and not voice["builtin"]
    assert abs(voice["duration_s"] - 1.6) < 0.01 and voice["sample_rate"] == 16000
    listed = c.get("/v1/voices").json()["data"]
    assert [v["name"] for v in listed] == ["demo", "alice"] and listed[0]["builtin"]
    assert c.get(f"/v1/voices/{voice['id']}").json() == voice
    audio = c.get(f"/v1/voices/{voice['id']}/audio")
    assert sf.read(io.BytesIO(audio.content))[1] == 16000
    for ref in (voice["id"], "alice"):  # by id or by name
        assert speak(c, voice=ref, response_format="wav").status_code == 200
    deleted = c.delete(f"/v1/voices/{voice['id']}").json()
    assert deleted == {"id": voice["id"], "object": "voice.deleted", "deleted": True}
    assert_error(c.get(f"/v1/voices/{voice['id']}"), 404, "not found")
    assert_error(speak(c, voice=voice["id"]), 400, "not found")
    assert_error(c.delete(f"/v1/voices/{voice['id']}"), 404)


def test_voices_survive_a_restart(make_client, tmp_path):
    from fastapi.testclient import TestClient

    from valle2.serve import ServeConfig, create_app

    cfg = ServeConfig(data_dir=tmp_path / "lib", auth_disabled=True, max_wait_ms=5.0)
    model = make_client().app.state.valle2.model
    with TestClient(create_app(cfg, model=model)) as first:
        vid = enroll(first, name="bob").json()["id"]
    with TestClient(create_app(cfg, model=model)) as second:  # a new app: nothing cached in memory
        assert [v["id"] for v in second.get("/v1/voices").json()["data"]] == ["demo", vid]
        r = speak(second, voice="bob", response_format="wav")
        assert r.status_code == 200, r.text


def _silent_wav():
    buf = io.BytesIO()
    sf.write(buf, np.zeros(32000, np.float32), 16000, format="WAV")
    return buf.getvalue()


def test_upload_errors_are_4xx_and_never_break_the_server(make_client):
    c = make_client(max_upload_bytes=200_000)
    assert enroll(c, name="taken").status_code == 201
    cases = [
        (enroll(c, name="taken"), 409, ["already exists"]),
        (enroll(c, name="demo"), 409, ["already exists"]),
        (enroll(c, name="voice_x"), 409, ["reserved"]),
        (enroll(c, name=""), 400, ["'name'"]),
        (enroll(c, transcript=""), 400, ["'transcript'"]),
        (c.post("/v1/voices", data={"name": "x", "transcript": "y"}, files={"note": ("n.txt", b"x", "text/plain")}),
         400, ["'audio'"]),
        (c.post("/v1/voices", data={"name": "x", "transcript": "y"}), 415, ["multipart/form-data"]),
        (c.post("/v1/voices", json={"name": "x"}), 415, ["multipart/form-data"]),
        (enroll(c, audio=b"\x00\x01garbage" * 100), 415, ["not an allowed audio type", "wav, flac, ogg, mp3"]),
        (enroll(c, audio=b"RIFF\x10\x00\x00\x00WAVEjunkjunk" * 10), 400, ["could not read prompt audio"]),
        (enroll(c, audio=tone_wav(seconds=0.5)), 400, ["0.5 s; need 1-30 s"]),
        (enroll(c, audio=_silent_wav()), 400, ["silent"]),
        (enroll(c, audio=tone_wav(seconds=8.0)), 413, ["upload limit"]),
        (enroll(c, transcript="!!!"), 400, ["nothing to speak"]),
        (enroll(c, name="z", challenge_id="abc"), 400, ["consent_audio and challenge_id"]),
        (c.get("/v1/voices/voice_0000"), 404, ["not found"]),
        (c.delete("/v1/voices/demo"), 403, ["built in"]),
    ]
    for response, status, words in cases:
        assert_error(response, status, *words)
    # A body without Content-Length is counted as it arrives.
    chunked = c.post("/v1/voices", content=iter([b"x" * 100_000] * 3),
                     headers={"Content-Type": "multipart/form-data; boundary=abc"})
    assert_error(chunked, 413, "upload limit")
    assert speak(c, response_format="wav").status_code == 200
    assert [v["name"] for v in c.get("/v1/voices").json()["data"]] == ["demo", "taken"]


def test_allowed_audio_types_are_configurable(make_client):
    c = make_client(allowed_audio_types=("wav",))
    err = assert_error(enroll(c, audio=tone_wav(fmt="FLAC"), filename="a.flac"), 415, "flac", "allowed: wav")
    assert err["param"] == "audio"
