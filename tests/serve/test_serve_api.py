"""The HTTP API through TestClient: speech in every format, streaming, auth, limits, errors, batching."""

from __future__ import annotations

import base64
import io
import json
import struct
import threading

import numpy as np
import pytest
import soundfile as sf
from serve_testlib import FakeModel, PassPolicy, assert_error, speak, stalled, wait_for

from valle2.serve.schema import available_formats

HAS_FFMPEG = "mp3" in available_formats("ffmpeg")


# ----------------------------------------------------------------------------- basics


def test_healthz_metrics_and_page_need_no_key(client):
    bare = {"Authorization": ""}
    health = client.get("/healthz", headers=bare).json()
    assert health["status"] == "ok" and health["model"] == "debug" and health["auth"] is True
    assert {"wav", "flac", "pcm"} <= set(health["formats"])
    page = client.get("/", headers=bare)
    assert page.status_code == 200 and "text/html" in page.headers["content-type"]
    assert 'id="speak"' in page.text and 'id="record"' in page.text
    metrics = client.get("/metrics", headers=bare)
    assert metrics.headers["content-type"].startswith("text/plain")
    for name in ("valle2_requests_total", "valle2_request_duration_seconds_bucket", "valle2_queue_depth",
                 "valle2_audio_seconds_total", "valle2_decode_batches_total"):
        assert name in metrics.text


def test_speech_wav_demo_voice_out_of_the_box(client):
    r = speak(client, "Hello there, my friend. How are you today?", response_format="wav")
    assert r.status_code == 200, r.text
    assert r.headers["content-type"] == "audio/wav"
    wav, sr = sf.read(io.BytesIO(r.content))
    assert sr == 24000 and wav.ndim == 1 and len(wav) > 0
    assert r.headers["x-sentences"] == "2"
    assert abs(float(r.headers["x-audio-duration"]) - len(wav) / sr) < 1e-3
    # the voice may also be given as OpenAI's custom voice object
    r2 = speak(client, response_format="flac", voice={"id": "demo"})
    assert r2.status_code == 200 and r2.headers["content-type"] == "audio/flac"
    assert sf.read(io.BytesIO(r2.content))[1] == 24000


def test_speech_pcm_is_raw_s16le_at_24k(client):
    r = speak(client, response_format="pcm")
    assert r.status_code == 200 and r.headers["content-type"] == "audio/pcm"
    assert len(r.content) % 2 == 0 and len(r.content) > 0
    assert not r.content.startswith(b"RIFF")


@pytest.mark.skipif(not HAS_FFMPEG, reason="ffmpeg with libmp3lame/libopus not installed")
def test_speech_mp3_and_opus_via_ffmpeg(client):
    mp3 = speak(client, response_format="mp3")
    assert mp3.status_code == 200 and mp3.headers["content-type"] == "audio/mpeg"
    assert mp3.content[:3] == b"ID3" or mp3.content[0] == 0xFF
    opus = speak(client, response_format="opus")
    assert opus.status_code == 200 and opus.content[:4] == b"OggS"
    assert speak(client).headers["content-type"] == "audio/mpeg"  # OpenAI's default format


def test_mp3_without_encoder_is_a_clear_400(make_client):
    c = make_client(ffmpeg=None)
    assert c.get("/healthz").json()["default_format"] == "wav"
    err = assert_error(speak(c, response_format="mp3"), 400, "mp3", "ffmpeg", "available: wav, flac, pcm")
    assert err["param"] == "response_format"
    assert speak(c).headers["content-type"] == "audio/wav"


def test_speed(client):
    if not client.app.state.valle2.engine.supports_speed:
        # Stretching after the watermark would erase it, so until the model can change tempo
        # itself (SynthesisJob.speed) the server refuses rather than returning unmarked audio.
        err = assert_error(speak(client, response_format="wav", speed=1.5), 400, "speed 1.5", "watermark")
        assert err["param"] == "speed"
        return
    # The test model's sentences run to their length cap (+-1 frame), so durations are comparable.
    normal = sf.read(io.BytesIO(speak(client, "Hello.", response_format="wav").content))[0]
    fast = sf.read(io.BytesIO(speak(client, "Hello.", response_format="wav", speed=2.0).content))[0]
    assert len(fast) == pytest.approx(len(normal) / 2, abs=400)


# ----------------------------------------------------------------------------- streaming


def test_stream_wav_sends_header_then_pcm_per_sentence(client):
    text = "This is one. This is two. This is three."
    with client.stream("POST", "/v1/audio/speech",
                       json={"model": "x", "input": text, "voice": "demo", "response_format": "wav", "stream": True}) as r:
        assert r.status_code == 200 and r.headers["content-type"] == "audio/wav"
        assert "content-length" not in r.headers
        chunks = [c for c in r.iter_raw() if c]
    data = b"".join(chunks)
    assert data[:4] == b"RIFF" and struct.unpack("<I", data[40:44])[0] == 0xFFFFFFFF
    samples = np.frombuffer(data[44:], "<i2")
    assert len(samples) > 0 and r.headers["x-sentences"] == "3"


def test_stream_sse_events(client):
    r = speak(client, "One. Two.", response_format="pcm", stream_format="sse")
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/event-stream")
    events = [json.loads(line[6:]) for line in r.text.splitlines() if line.startswith("data: ")]
    deltas = [e for e in events if e["type"] == "speech.audio.delta"]
    assert deltas and events[-1]["type"] == "speech.audio.done"
    pcm = b"".join(base64.b64decode(e["audio"]) for e in deltas)
    assert len(pcm) // 2 == events[-1]["usage"]["output_tokens"]


def test_flac_cannot_be_streamed(client):
    assert_error(speak(client, response_format="flac", stream=True), 400, "cannot be streamed")


# ----------------------------------------------------------------------------- auth


def test_auth_errors(client):
    no_key = client.post("/v1/audio/speech", json={"input": "x", "voice": "demo"}, headers={"Authorization": ""})
    assert_error(no_key, 401, "Authorization: Bearer")
    bad = client.get("/v1/voices", headers={"Authorization": "Bearer nope"})
    assert assert_error(bad, 401, "invalid API key")["code"] == "invalid_api_key"
    assert client.get("/v1/voices", headers={"Authorization": "Bearer other-key"}).status_code == 200
    assert client.get("/v1/models").json()["data"][0]["id"] == "debug"


def test_config_keys_from_env_and_file(tmp_path):
    from valle2.errors import Valle2Error
    from valle2.serve.config import ServeConfig

    (tmp_path / "serve.yaml").write_text("api_keys: [filekey]\nmax_batch: 4\n")
    cfg = ServeConfig.load(tmp_path / "serve.yaml", env={"VALLE2_API_KEYS": "a, b,,"}, port=9000)
    assert cfg.api_keys == ("filekey", "a", "b") and cfg.max_batch == 4 and cfg.port == 9000
    with pytest.raises(Valle2Error, match="no API keys"):
        ServeConfig.load(env={}).check_auth()
    ServeConfig.load(env={}, auth_disabled=True).check_auth()
    with pytest.raises(Valle2Error, match="unknown server setting"):
        ServeConfig.load(env={}, max_bach=3)
    with pytest.raises(Valle2Error, match="max_batch"):
        ServeConfig(max_batch=0)


def test_cli_parses_serve_and_refuses_to_run_without_keys(monkeypatch, tmp_path):
    from valle2.cli import build_parser, main
    from valle2.commands.serve import config_from_args

    args = build_parser().parse_args(["serve", "--model", "debug", "--port", "8123", "--max-batch", "8",
                                      "--data-dir", str(tmp_path), "--no-auth"])
    cfg = config_from_args(args)
    assert (cfg.model, cfg.port, cfg.max_batch, cfg.auth_disabled, cfg.data_dir) == ("debug", 8123, 8, True, tmp_path)
    monkeypatch.delenv("VALLE2_API_KEYS", raising=False)
    assert main(["serve", "--model", "debug", "--data-dir", str(tmp_path)]) == 2  # no keys, no --no-auth


# ----------------------------------------------------------------------------- request errors


@pytest.mark.parametrize("fields, status, words, param", [
    ({"voice": "nobody"}, 400, ["'nobody' not found", "demo"], "voice"),
    ({"speed": 5.0}, 400, ["speed"], "speed"),
    ({"response_format": "ogg"}, 400, ["response_format"], "response_format"),
    ({"input": "   "}, 400, ["input is empty"], "input"),
    ({"input": "!!!"}, 400, ["nothing to speak"], None),
    ({"input": "你好世界，今天天气很好"}, 400, ["script"], None),
    ({"language": "../etc"}, 400, ["language"], "language"),
])
def test_speech_request_errors(client, fields, status, words, param):
    body = {"model": "tts-1", "input": "Hello.", "voice": "demo", **fields}
    err = assert_error(client.post("/v1/audio/speech", json=body), status, *words)
    if param:
        assert err["param"] == param


def test_input_over_the_limit(make_client):
    c = make_client(max_input_chars=20)
    err = assert_error(speak(c, "a" * 21), 400, "21 characters", "limit is 20")
    assert err["param"] == "input" and err["code"] == "input_too_long"


def test_malformed_requests(client):
    assert_error(client.post("/v1/audio/speech", content=b"{not json", headers={"Content-Type": "application/json"}),
                 400, "not valid JSON")
    assert_error(client.post("/v1/audio/speech", json={"voice": "demo"}), 400, "input")
    assert_error(client.post("/v1/audio/speech", content=b'{"input": "Hi.", "voice": "demo"}',
                             headers={"Content-Type": "text/plain"}), 400, "JSON object")
    assert_error(client.post("/v1/audio/speech", json=["Hi."]), 400, "JSON object")
    assert_error(speak(client, voice={"name": "demo"}), 400, 'object {"id"')
    assert_error(client.get("/v1/nothing"), 404, "no such endpoint")
    assert_error(client.put("/v1/audio/speech", json={}), 405, "not allowed")


# ----------------------------------------------------------------------------- engine behaviour


def _concurrently(fn, n):
    results = [None] * n

    def run(i):
        results[i] = fn(i)

    threads = [threading.Thread(target=run, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    return threads, results


def test_concurrent_requests_share_decode_batches(make_client):
    c = make_client(max_batch=16, max_wait_ms=50)
    assert speak(c, "Warm up.", response_format="wav").status_code == 200  # caches the demo prompt
    engine = c.app.state.valle2.engine
    before = engine.batches_run
    n = 6
    with stalled(c):  # all six requests queue up while the engine is busy
        threads, results = _concurrently(lambda i: speak(c, f"Request number {i}.", response_format="wav"), n)
        wait_for(lambda: engine.admitted == n)
    for t in threads:
        t.join(30)
    assert all(r.status_code == 200 for r in results), [r.text for r in results]
    batches = engine.batches_run - before
    assert batches < n, f"{n} concurrent requests took {batches} decode batches"
    metrics = c.get("/metrics").text
    assert f"valle2_decode_batches_total {engine.batches_run}" in metrics


def test_queue_full_is_429_with_retry_after(make_client):
    c = make_client(queue_size=1)
    engine = c.app.state.valle2.engine
    with stalled(c):
        threads, results = _concurrently(lambda i: speak(c, response_format="wav"), 1)
        wait_for(lambda: engine.admitted == 1)
        r = speak(c, response_format="wav")
        err = assert_error(r, 429, "busy")
        assert err["code"] == "rate_limit_exceeded" and int(r.headers["retry-after"]) >= 1
    threads[0].join(30)
    assert results[0].status_code == 200
    assert 'valle2_rejected_total{reason="queue_full"} 1' in c.get("/metrics").text


def test_request_timeout_is_504_and_frees_the_slot(make_client):
    c = make_client(request_timeout_s=0.3)
    engine = c.app.state.valle2.engine
    with stalled(c):
        r = speak(c, response_format="wav")
    assert_error(r, 504, "longer than 0.3 s")
    wait_for(lambda: engine.admitted == 0)


def test_unexpected_errors_are_500_and_the_server_goes_on(tmp_path):
    from fastapi.testclient import TestClient

    from valle2.serve import ServeConfig, create_app

    model = FakeModel(fail_on={"Boom."}, error=RuntimeError)
    cfg = ServeConfig(data_dir=tmp_path, auth_disabled=True, max_wait_ms=1.0, ffmpeg=None)
    with TestClient(create_app(cfg, model=model, policy=PassPolicy()), raise_server_exceptions=False) as c:
        err = assert_error(speak(c, "Boom.", response_format="wav"), 500, "internal error (RuntimeError)")
        assert err["type"] == "server_error" and "cannot say" not in err["message"]  # no internals leak
        assert speak(c, "Fine.", response_format="wav").status_code == 200
        # Without a consent store (this stand-in policy has none) enrollment cannot take consent.
        assert_error(c.post("/v1/voices/challenge", json={"name": "x"}), 501, "consent")
        c.app.state.valle2.engine.stop()
        assert c.get("/healthz").status_code == 503
        assert_error(speak(c, "Fine.", response_format="wav"), 503, "not running")
