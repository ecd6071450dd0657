"""The engine on a fake model (exact batch contents, routing, failures, cancellation), plus the
pure pieces: WSOLA time stretch, streaming crossfade, metrics exposition, disconnect handling."""

from __future__ import annotations

import asyncio
import threading
from types import SimpleNamespace

import numpy as np
import pytest
from serve_testlib import FakeModel, PassPolicy

from valle2.audio import crossfade_concat
from valle2.errors import TextError
from valle2.audio import time_stretch
from valle2.serve.engine import CrossfadeStream, Engine, QueueFull
from valle2.text import split_sentences

VOICE = SimpleNamespace(id="v", audio_path="unused.wav", transcript="hello", language=None)


def run_engine(model, body, **kw):
    async def main():
        engine = Engine(model, policy=PassPolicy(), **{"max_wait_ms": 1.0, **kw})
        engine.start()
        try:
            return await body(engine)
        finally:
            engine.stop()

    return asyncio.run(main())


async def submit_while_stalled(engine, texts):
    """Submit ``texts`` while the engine thread is held, so all are queued before it forms a batch."""
    engine.remember(VOICE.id, await engine.prompt(VOICE))
    release = threading.Event()
    blocker = asyncio.ensure_future(engine.call(release.wait))
    tasks = [asyncio.ensure_future(engine.submit(t, VOICE)) for t in texts]
    while len(engine._calls) < len(texts):
        await asyncio.sleep(0.001)
    release.set()
    await blocker
    return [await t for t in tasks]


def test_batches_mix_requests_round_robin_and_route_results():
    model = FakeModel()
    texts = ["A one. A two. A three.", "B one.", "C one. C two."]

    async def body(engine):
        handles = await submit_while_stalled(engine, texts)
        return [[p async for p in h.pieces()] for h in handles]

    out = run_engine(model, body, max_batch=4)
    assert model.batches == [["A one.", "B one.", "C one.", "A two."], ["A three.", "C two."]]
    for text, pieces in zip(texts, out):
        assert [float(p[0]) for p in pieces] == [pytest.approx(FakeModel.code(s)) for s in split_sentences(text)]


def test_a_failing_sentence_fails_only_its_request():
    model = FakeModel(fail_on={"Bad one."})

    async def body(engine):
        good, bad = await submit_while_stalled(engine, ["Good one.", "Bad one."])
        with pytest.raises(TextError, match="cannot say"):
            await bad.piece(0)
        return await good.piece(0)

    good = run_engine(model, body)
    assert len(good) == len("Good one.")
    assert model.batches == [["Good one.", "Bad one."], ["Good one."], ["Bad one."]]  # retried one by one


def test_closed_request_is_never_decoded_and_frees_its_slot():
    model = FakeModel()

    async def body(engine):
        gone = await engine.submit("Never. Spoken.", VOICE)  # waits up to max_wait for company
        assert engine.queue_depth == 2 and engine.admitted == 1
        gone.close()  # what a client disconnect does
        assert engine.queue_depth == 0 and engine.admitted == 0
        first = await engine.submit("First.", VOICE)
        await first.piece(0)
        first.close()
        return engine.admitted

    assert run_engine(model, body, max_wait_ms=300) == 0
    assert model.batches == [["First."]]


def test_queue_full_and_text_errors_release_the_slot():
    model = FakeModel()

    async def body(engine):
        with pytest.raises(TextError):
            await engine.submit("  ", VOICE)
        assert engine.admitted == 0
        held = [await engine.submit(f"Number {i}.", VOICE) for i in range(2)]
        with pytest.raises(QueueFull) as info:
            await engine.submit("One more.", VOICE)
        assert info.value.retry_after_s >= 1
        for h in held:
            await h.piece(0)
            h.close()
        return engine.admitted

    assert run_engine(model, body, queue_size=2) == 0


# ----------------------------------------------------------------------------- audio helpers


def _dominant_hz(wav, sr):
    spectrum = np.abs(np.fft.rfft(wav * np.hanning(len(wav))))
    return np.fft.rfftfreq(len(wav), 1 / sr)[np.argmax(spectrum)]


@pytest.mark.parametrize("speed", [0.5, 1.5, 2.0, 4.0])
def test_time_stretch_changes_tempo_not_pitch(speed):
    sr = 16000
    t = np.arange(sr) / sr
    wav = (0.5 * np.sin(2 * np.pi * 220 * t)).astype(np.float32)
    out = time_stretch(wav, sr, speed)
    assert len(out) == round(len(wav) / speed)
    assert _dominant_hz(out, sr) == pytest.approx(220, abs=3)
    assert np.max(np.abs(out)) < 0.6  # overlap-add is normalised
    assert time_stretch(wav, sr, 1.0) is wav


def test_crossfade_stream_equals_crossfade_concat():
    rng = np.random.default_rng(0)
    sr = 8000
    pieces = [rng.standard_normal(n).astype(np.float32) for n in (1000, 50, 0, 3000, 10, 700)]
    stream = CrossfadeStream(sr, 30.0)
    joined = np.concatenate([*(stream.push(p) for p in pieces), stream.finish()])
    np.testing.assert_allclose(joined, crossfade_concat(pieces, sr, crossfade_ms=30.0), atol=1e-6)


def test_metrics_exposition():
    from valle2.serve.metrics import Metrics

    m = Metrics()
    m.inc("valle2_requests_total", route='/a"b', method="GET", status=200)
    for v in (0.07, 0.3, 400.0):
        m.observe("valle2_request_duration_seconds", v, route="/x")
    text = m.render()
    assert 'valle2_requests_total{route="/a\\"b",method="GET",status="200"} 1' in text
    assert 'valle2_request_duration_seconds_bucket{route="/x",le="0.1"} 1' in text
    assert 'valle2_request_duration_seconds_bucket{route="/x",le="0.5"} 2' in text
    assert 'valle2_request_duration_seconds_bucket{route="/x",le="+Inf"} 3' in text
    assert 'valle2_request_duration_seconds_count{route="/x"} 3' in text
    assert "valle2_queue_depth 0" in text and "# TYPE valle2_decode_batch_size histogram" in text


def test_disconnect_cancels_the_request():
    from valle2.serve.app import _ClientGone, _unless_disconnected

    class GoneRequest:
        async def receive(self):
            await asyncio.sleep(0.01)
            return {"type": "http.disconnect"}

    handle = SimpleNamespace(id=1, closed=False)
    handle.close = lambda: setattr(handle, "closed", True)

    async def main():
        with pytest.raises(_ClientGone):
            await _unless_disconnected(GoneRequest(), handle, asyncio.sleep(10))

    asyncio.run(main())
    assert handle.closed


def test_a_stream_gets_its_first_sentence_early():
    model = FakeModel()
    text = "One. Two. Three. Four. Five. Six. Seven."

    async def body(engine):
        [whole] = await submit_while_stalled(engine, [text])  # not streamed: all sentences in one batch
        [p async for p in whole.pieces()]
        streamed = await engine.submit(text, VOICE, stream=True)
        return [p async for p in streamed.pieces()]

    run_engine(model, body)
    assert model.batches[0] == split_sentences(text)
    assert [len(b) for b in model.batches[1:]] == [1, 2, 4]
