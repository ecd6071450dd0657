"""The synthesis engine: one model, one thread, dynamic batching across requests.

Every use of the model (prompt encoding, text checks, decoding) runs on the engine's
single thread, because the model is not built for concurrent use (and espeak-ng keeps
global state). Requests are split into sentences; the thread gathers waiting sentences
of *all* requests into one ``model.synthesize_batch`` call::

    request A: [a1 a2 a3] ─┐                       batch 1: a1 b1 c1 a2 b2 a3
    request B: [b1 b2]    ─┼─ round-robin, up to ──▶ batch 2: ...
    request C: [c1]       ─┘  max_batch sentences

A batch starts as soon as ``max_batch`` sentences wait, or ``max_wait_ms`` after the
oldest waiting one arrived. Taking sentences round-robin means every request's first
sentence goes into the earliest batch. A streaming request gives at most 1, then 2, 4,
... of its sentences to successive batches: its first sentence is decoded without
waiting for the rest of its text (time-to-first-audio), and each later batch is decoded
while the audio before it plays. ``synthesize_batch`` authorises each job with the safety policy and
watermarks and audits each output; the engine never goes around it. If a batch fails
(one job's voice lacks consent, say), its jobs are retried one by one so that the error
reaches only the request that caused it.

The number of admitted requests is bounded (``queue_size``): :meth:`Engine.submit`
raises :class:`QueueFull` beyond it, which the app answers with 429 + Retry-After.
"""

from __future__ import annotations

import asyncio
import collections
import concurrent.futures
import functools
import itertools
import logging
import math
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass, field

import numpy as np

from valle2.errors import Valle2Error
from valle2.models.valle2 import SynthesisJob

logger = logging.getLogger(__name__)


class QueueFull(Exception):
    def __init__(self, limit: int, retry_after_s: float):
        super().__init__(f"the server is busy: {limit} requests are already queued; retry in {retry_after_s:.0f} s")
        self.retry_after_s = retry_after_s


class RequestTimeout(Exception):
    pass


class EngineStopped(RuntimeError):
    pass


@dataclass
class _Sentence:
    job: SynthesisJob
    future: concurrent.futures.Future
    request: "SpeechRequest"
    enqueued: float = field(default_factory=time.monotonic)


class SpeechRequest:
    """One admitted request: its sentences' futures, in order. Close it when done with it."""

    def __init__(self, engine: "Engine", request_id: int, texts: list[str], speed: float, deadline: float,
                 stream: bool = False):
        self.engine = engine
        # Most sentences of this request one batch may take. A stream starts with 1, then 2, 4, ...:
        # its first sentence is decoded alone (or beside other requests') and so arrives early,
        # and each later, larger batch is decoded while the audio before it plays.
        self.quota = 1 if stream else math.inf
        self.id = request_id
        self.texts = texts
        self.speed = speed
        self.deadline = deadline
        self.futures: list[concurrent.futures.Future] = []
        self.closed = False

    def __len__(self) -> int:
        return len(self.texts)

    async def piece(self, i: int) -> np.ndarray:
        """The audio of sentence ``i`` (watermarked, at the model's rate); waits until the deadline."""
        return await self.before_deadline(asyncio.shield(asyncio.wrap_future(self.futures[i])))

    async def before_deadline(self, awaitable):
        remaining = self.deadline - time.monotonic()
        try:
            if remaining <= 0:
                raise asyncio.TimeoutError
            return await asyncio.wait_for(awaitable, remaining)
        except asyncio.TimeoutError:
            self.close()
            raise RequestTimeout(f"request took longer than {self.engine.request_timeout_s:g} s") from None

    async def pieces(self):
        for i in range(len(self)):
            yield await self.piece(i)

    def close(self) -> None:
        """Release the request's queue slot and drop its sentences that have not started."""
        if not self.closed:
            self.closed = True
            self.engine._release(self)


class Engine:
    def __init__(self, model, *, policy=None, max_batch: int = 16, max_wait_ms: float = 25.0, queue_size: int = 64,
                 request_timeout_s: float = 300.0, metrics=None, prompt_cache_size: int = 32):
        from valle2.safety.policy import resolve_policy

        self.model = model
        # One policy for the server's lifetime; a server never allows --unsafe-no-consent.
        self.policy = resolve_policy(policy, allow_unsafe=False)
        self.max_batch = max_batch
        self.max_wait_s = max_wait_ms / 1000
        self.queue_size = queue_size
        self.request_timeout_s = request_timeout_s
        self.metrics = metrics
        self._cv = threading.Condition()
        self._calls: collections.deque = collections.deque()  # (fn, args, future): run before any batch
        self._pending: OrderedDict[int, collections.deque[_Sentence]] = OrderedDict()
        self._admitted = 0
        self._ids = itertools.count(1)
        self._stopping = False
        self._thread: threading.Thread | None = None
        self._prompts: OrderedDict[str, object] = OrderedDict()
        self._preparing: dict[str, asyncio.Future] = {}
        self._prompt_cache_size = prompt_cache_size
        self._batch_seconds = 1.0  # recent decode time, for Retry-After
        self.batches_run = 0

    # -- lifecycle -----------------------------------------------------------------------
    def start(self) -> None:
        if self._thread is None:
            self._stopping = False
            self._thread = threading.Thread(target=self._run, name="valle2-engine", daemon=True)
            self._thread.start()

    def stop(self, timeout: float = 30.0) -> None:
        with self._cv:
            self._stopping = True
            self._cv.notify_all()
        if self._thread is not None:
            self._thread.join(timeout)
            self._thread = None
        with self._cv:
            for fn, args, fut in self._calls:
                fut.cancel()
            self._calls.clear()
            for queue in self._pending.values():
                for s in queue:
                    s.future.cancel()
            self._pending.clear()
            self._update_depth()

    @property
    def alive(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    # -- public API (event loop side) -----------------------------------------------------
    async def call(self, fn, *args):
        """Run ``fn(*args)`` on the engine thread, ahead of waiting batches."""
        fut: concurrent.futures.Future = concurrent.futures.Future()
        with self._cv:
            if self._stopping or self._thread is None:
                raise EngineStopped("the synthesis engine is not running")
            self._calls.append((fn, args, fut))
            self._cv.notify_all()
        return await asyncio.wrap_future(fut)

    async def prompt(self, voice):
        """The encoded prompt of a library voice, prepared once and cached by voice id."""
        cached = self._prompts.get(voice.id)
        if cached is not None:
            self._prompts.move_to_end(voice.id)
            return cached
        # Concurrent first requests for a voice share one preparation.
        pending = self._preparing.get(voice.id)
        if pending is None:
            pending = asyncio.ensure_future(self.call(functools.partial(
                self.model.prepare_prompt, str(voice.audio_path), voice.transcript, language=voice.language)))
            self._preparing[voice.id] = pending
            pending.add_done_callback(lambda _: self._preparing.pop(voice.id, None))
        prompt = await asyncio.shield(pending)  # a waiter that gives up does not cancel it for the others
        self.remember(voice.id, prompt)
        return prompt

    def remember(self, voice_id: str, prompt) -> None:
        self._prompts[voice_id] = prompt
        self._prompts.move_to_end(voice_id)
        while len(self._prompts) > self._prompt_cache_size:
            self._prompts.popitem(last=False)

    def forget(self, voice_id: str) -> None:
        self._prompts.pop(voice_id, None)

    @property
    def supports_speed(self) -> bool:
        """Whether the model changes tempo itself. It must happen before the watermark is added
        (a mark does not survive time-stretching by more than ~10 %), so the engine cannot
        do it afterwards; it needs ``SynthesisJob.speed``."""
        return "speed" in SynthesisJob.__dataclass_fields__

    async def submit(self, text: str, voice, *, speed: float = 1.0, language: str | None = None,
                     stream: bool = False) -> SpeechRequest:
        """Admit a request, check its text and queue its sentences. Raises QueueFull or TextError.

        ``stream``: the caller sends sentences as they finish, so the first should finish early.
        """
        if speed != 1.0 and not self.supports_speed:
            raise Valle2Error(f"speed {speed:g} is not supported by this build: the tempo has to change before "
                              "the watermark is added, inside the model's synthesis; use speed 1.0")
        with self._cv:
            if self._admitted >= self.queue_size:
                waiting = sum(len(q) for q in self._pending.values())
                retry = max(1.0, math.ceil(self._batch_seconds * (1 + waiting / self.max_batch)))
                raise QueueFull(self.queue_size, retry)
            self._admitted += 1
            self._update_depth()
        request = SpeechRequest(self, next(self._ids), [], speed, time.monotonic() + self.request_timeout_s, stream)
        try:
            prompt = await request.before_deadline(self.prompt(voice))
            language = language or voice.language
            await request.before_deadline(self.call(functools.partial(self._queue, request, text, prompt, language)))
        except BaseException:
            request.close()
            raise
        return request

    def _queue(self, request: SpeechRequest, text: str, prompt, language: str | None) -> None:
        """On the engine thread: split and check the text, then queue its sentences.

        Queuing here rather than back on the event loop means that requests whose calls
        were waiting together are all queued before the next batch is formed.
        """
        rows = self.model.make_rows(text, prompt, language=language)  # TextError: refused before any decoding
        extra = {"speed": request.speed} if request.speed != 1.0 else {}
        sentences = [_Sentence(SynthesisJob(r.text, prompt, language=language, rows=[r], **extra),
                               concurrent.futures.Future(), request) for r in rows]
        request.texts = [r.text for r in rows]
        request.futures = [s.future for s in sentences]
        with self._cv:
            if not request.closed:  # else it was cancelled while its text was being checked
                self._pending[request.id] = collections.deque(sentences)
                self._update_depth()

    @property
    def admitted(self) -> int:
        return self._admitted

    @property
    def queue_depth(self) -> int:
        with self._cv:
            return sum(len(q) for q in self._pending.values())

    def _release(self, request: SpeechRequest) -> None:
        with self._cv:
            self._admitted -= 1
            for s in self._pending.pop(request.id, ()):
                s.future.cancel()
            self._update_depth()
        for f in request.futures:
            f.cancel()  # no effect on sentences already decoding or done

    def _update_depth(self) -> None:  # caller holds the lock
        if self.metrics is not None:
            self.metrics.set("valle2_queue_depth", sum(len(q) for q in self._pending.values()))
            self.metrics.set("valle2_requests_in_flight", self._admitted)

    # -- engine thread ---------------------------------------------------------------------
    def _run(self) -> None:
        while True:
            work = self._next_work()
            if work is None:
                return
            kind, item = work
            if kind == "call":
                fn, args, fut = item
                if fut.set_running_or_notify_cancel():
                    try:
                        fut.set_result(fn(*args))
                    except BaseException as e:  # delivered to the awaiting request
                        fut.set_exception(e)
            else:
                self._decode(item)

    def _next_work(self):
        """Block until there is a call to run or a batch worth starting (None when stopping)."""
        with self._cv:
            while True:
                if self._stopping:
                    return None
                if self._calls:
                    return "call", self._calls.popleft()
                waiting = sum(len(q) for q in self._pending.values())
                if waiting:
                    oldest = min(q[0].enqueued for q in self._pending.values())
                    wait = oldest + self.max_wait_s - time.monotonic()
                    if waiting >= self.max_batch or wait <= 0:
                        batch = self._take_batch()
                        if batch:
                            return "batch", batch
                        continue
                    self._cv.wait(wait)
                else:
                    self._cv.wait()

    def _take_batch(self) -> list[_Sentence]:  # caller holds the lock
        batch: list[_Sentence] = []
        taken: collections.Counter[int] = collections.Counter()
        while len(batch) < self.max_batch:
            # Round-robin: one sentence per request per pass, up to each request's quota.
            ready = [rid for rid, q in self._pending.items() if q and taken[rid] < q[0].request.quota]
            if not ready:
                break
            for rid in ready:
                queue = self._pending[rid]
                s = queue.popleft()
                if not queue:
                    del self._pending[rid]
                taken[rid] += 1
                if s.future.set_running_or_notify_cancel():
                    batch.append(s)
                if len(batch) == self.max_batch:
                    break
        for req in {s.request for s in batch}:
            req.quota *= 2  # a stream's next batch may take twice as many of its sentences
        self._update_depth()
        return batch

    def _decode(self, batch: list[_Sentence]) -> None:
        try:
            wavs = self._synthesize(batch)
        except Exception as e:
            if len(batch) == 1:
                batch[0].future.set_exception(e)
                return
            logger.info("batch of %d failed (%s: %s); retrying its sentences one by one", len(batch), type(e).__name__, e)
            for s in batch:
                try:
                    [wav] = self._synthesize([s])
                except Exception as e1:
                    s.future.set_exception(e1)
                else:
                    s.future.set_result(wav)
            return
        for s, wav in zip(batch, wavs):
            s.future.set_result(wav)

    def _synthesize(self, batch: list[_Sentence]) -> list[np.ndarray]:
        t0 = time.perf_counter()
        wavs = self.model.synthesize_batch([s.job for s in batch], policy=self.policy, max_batch=self.max_batch)
        dt = time.perf_counter() - t0
        self.batches_run += 1
        self._batch_seconds = 0.7 * self._batch_seconds + 0.3 * dt
        if self.metrics is not None:
            m = self.metrics
            m.inc("valle2_decode_batches_total")
            m.observe("valle2_decode_batch_size", len(batch))
            m.observe("valle2_decode_batch_seconds", dt)
            m.inc("valle2_sentences_total", len(batch))
            m.inc("valle2_audio_seconds_total", sum(len(w) for w in wavs) / self.model.sample_rate)
        logger.debug("decoded %d sentences in %.2f s", len(batch), dt)
        return wavs


class CrossfadeStream:
    """``crossfade_concat`` done piece by piece: push sentences, get the samples that are final.

    The last ``crossfade_ms`` of audio is held back until the next piece arrives (it is
    where that piece fades in), so the concatenation of everything returned by
    :meth:`push` and :meth:`finish` equals ``crossfade_concat(pieces, sr, crossfade_ms)``.
    """

    def __init__(self, sr: int, crossfade_ms: float):
        from valle2.audio import crossfade_concat

        self._join = lambda a, b: crossfade_concat([a, b], sr, crossfade_ms=crossfade_ms)
        self.hold = int(round(crossfade_ms * sr / 1000))
        self.tail = np.zeros(0, np.float32)

    def push(self, piece: np.ndarray) -> np.ndarray:
        joined = self._join(self.tail, piece)
        cut = max(len(joined) - self.hold, 0)
        out, self.tail = joined[:cut], joined[cut:]
        return out

    def finish(self) -> np.ndarray:
        out, self.tail = self.tail, np.zeros(0, np.float32)
        return out
