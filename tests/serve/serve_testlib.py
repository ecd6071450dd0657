"""Helpers shared by the server tests (imported by name: this folder is on sys.path under pytest)."""

from __future__ import annotations

import io
import threading
import time
from contextlib import contextmanager

from types import SimpleNamespace

import numpy as np
import soundfile as sf

from valle2.errors import TextError
from valle2.text import split_sentences

API_KEY = "test-key-123"


def tone_wav(seconds: float = 1.6, sr: int = 16000, fmt: str = "WAV", f0: float = 150.0, seed: int = 0) -> bytes:
    """A speech-like buzz (harmonics, syllable-rate envelope) as file bytes."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * sr)) / sr
    phase = 2 * np.pi * np.cumsum(f0 * (1 + 0.1 * np.sin(2 * np.pi * 0.7 * t))) / sr
    wav = sum(np.sin(k * phase) / k for k in range(1, 10)) * (0.5 + 0.5 * np.sin(2 * np.pi * 4 * t) ** 2)
    wav = (0.2 * wav + 0.005 * rng.standard_normal(len(t))).astype(np.float32)
    buf = io.BytesIO()
    sf.write(buf, wav, sr, format=fmt, subtype="PCM_16")
    return buf.getvalue()


@contextmanager
def stalled(client):
    """Hold the engine thread inside a call until the block ends, so that work piles up behind it."""
    engine = client.app.state.valle2.engine
    started, release = threading.Event(), threading.Event()

    def block():
        started.set()
        release.wait(30)

    fut = client.portal.start_task_soon(engine.call, block)
    assert started.wait(10)
    try:
        yield engine
    finally:
        release.set()
        fut.result(timeout=10)


def wait_for(predicate, timeout: float = 10.0):
    end = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > end:
            raise AssertionError("condition not reached in time")
        time.sleep(0.01)


def speak(client, text="Hi there.", **fields):
    body = {"model": "tts-1", "input": text, "voice": "demo", **fields}
    return client.post("/v1/audio/speech", json=body)


def assert_error(response, status, *words):
    """An OpenAI-shaped error with this status whose message contains every word; returns it."""
    assert response.status_code == status, response.text
    err = response.json()["error"]
    assert set(err) == {"message", "type", "param", "code"}
    for w in words:
        assert w in err["message"], err["message"]
    return err


@contextmanager
def live_server(app):
    """Run ``app`` with uvicorn on a free 127.0.0.1 port in a thread; yields its base URL."""
    import uvicorn

    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=0, log_level="warning", lifespan="on"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        assert thread.is_alive() and time.monotonic() < deadline, "server did not start"
        time.sleep(0.02)
    port = server.servers[0].sockets[0].getsockname()[1]
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(15)
        assert not thread.is_alive(), "server did not stop"


class FakeModel:
    """Speaks each sentence as ``len(text)`` samples of a value unique to the text; records batches.

    Sentences in ``fail_on`` make their batch raise ``error``.
    """

    sample_rate = 1000
    name = "fake"
    requires_consent = False

    def __init__(self, fail_on=(), error=TextError):
        self.batches: list[list[str]] = []
        self.fail_on = set(fail_on)
        self.error = error

    def prepare_prompt(self, audio, text, *, language=None):
        return SimpleNamespace(wav=np.zeros(8, np.float32), sr=self.sample_rate, text=text)

    def make_rows(self, text, prompt, *, language=None):
        if not text.strip():
            raise TextError("text is empty")
        return [SimpleNamespace(text=s) for s in split_sentences(text)]

    def synthesize_batch(self, jobs, *, policy=None, max_batch=16, **kw):
        self.batches.append([j.text for j in jobs])
        for j in jobs:
            if j.text in self.fail_on:
                raise self.error(f"cannot say {j.text!r}")
        return [np.full(len(j.text), self.code(j.text), np.float32) for j in jobs]

    @staticmethod
    def code(text: str) -> float:
        return (sum(map(ord, text)) % 997) / 1000


class PassPolicy:
    """A stand-in policy for tests of the engine's plumbing (it neither checks consent nor marks)."""

    def authorize(self, *a, **k):
        return None

    def finalize(self, wav, sr, auth, text):
        return wav
