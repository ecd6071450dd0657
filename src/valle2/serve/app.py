"""The HTTP API: ``create_app(config)`` builds a FastAPI app around one model and one engine.

Endpoints (all ``/v1`` ones need ``Authorization: Bearer <key>`` unless auth is disabled)::

    GET    /                      the web page (static/index.html)
    GET    /healthz               liveness + model facts (no auth)
    GET    /metrics               Prometheus text (no auth)
    GET    /v1/models             OpenAI-style list with the one loaded model
    POST   /v1/audio/speech       OpenAI-compatible TTS (JSON body, see schema.SpeechBody)
    POST   /v1/voices/challenge   a consent sentence to read aloud (consent protocol, step 1)
    POST   /v1/voices             enroll a voice (multipart: name, transcript, audio[, consent_audio, challenge_id])
    GET    /v1/voices             list voices (built-in first)
    GET    /v1/voices/{id}        one voice
    GET    /v1/voices/{id}/audio  its prompt recording
    DELETE /v1/voices/{id}        remove an enrolled voice

Every 4xx is OpenAI's error JSON ``{"error": {"message", "type", "param", "code"}}``.
Nothing here touches the model directly: audio is produced only by the engine, which
goes through ``VallE2.synthesize_batch`` and so through the safety policy.
"""

from __future__ import annotations

import asyncio
import base64
import functools
import hmac
import json
import logging
import time
from contextlib import asynccontextmanager
from dataclasses import dataclass
from importlib import resources

import numpy as np
from fastapi import Depends, FastAPI, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, JSONResponse, PlainTextResponse, Response, StreamingResponse
from starlette.datastructures import UploadFile
from starlette.exceptions import HTTPException as StarletteHTTPException

from valle2.audio import crossfade_concat
from valle2.errors import AudioError, MissingDependencyError, ModelFileError, TextError, Valle2Error
from valle2.serve import schema
from valle2.serve.config import ServeConfig
from valle2.serve.engine import Engine, EngineStopped, QueueFull, RequestTimeout
from valle2.serve.metrics import Metrics
from valle2.serve.voices import Voice, VoiceConflict, VoiceLibrary

logger = logging.getLogger(__name__)

CROSSFADE_MS = 30.0  # between sentences, as VallE2.synthesize joins them

# Magic bytes of the containers the server accepts -> type name (see ServeConfig.allowed_audio_types).
_MAGIC = [(b"RIFF", "wav"), (b"RF64", "wav"), (b"fLaC", "flac"), (b"OggS", "ogg"), (b"ID3", "mp3")]


class ApiError(Exception):
    def __init__(self, status: int, message: str, *, code: str | None = None, param: str | None = None,
                 type: str | None = None, headers: dict | None = None):
        super().__init__(message)
        self.status, self.message, self.code, self.param, self.headers = status, message, code, param, headers
        self.type = type or ("invalid_request_error" if status < 500 else "server_error")


class _ClientGone(Exception):
    pass


@dataclass
class ServerState:
    config: ServeConfig
    model: object
    engine: Engine
    voices: VoiceLibrary
    metrics: Metrics
    formats: list[str]
    default_format: str
    consent_store: object | None


def create_app(config: ServeConfig, *, model=None, policy=None, consent_store=None) -> FastAPI:
    """The app, its model (loaded here unless given), engine, voice library and metrics.

    ``policy`` is the safety policy the engine hands to ``synthesize_batch`` (default:
    ``valle2.safety.policy.resolve_policy(None)``); ``consent_store`` the store voices
    are enrolled into (default: the policy's).
    """
    if model is None:
        from valle2 import VallE2

        model = VallE2.from_pretrained(config.model, device=config.device)
    if hasattr(model, "decoding_ar"):
        model.decoding_ar()  # an int8 AR copy (ar_precision) is made now, not in the first request
    metrics = Metrics()
    engine = Engine(model, policy=policy, max_batch=config.max_batch, max_wait_ms=config.max_wait_ms,
                    queue_size=config.queue_size, request_timeout_s=config.request_timeout_s, metrics=metrics)
    formats = schema.available_formats(config.ffmpeg)
    state = ServerState(
        config=config, model=model, engine=engine, voices=VoiceLibrary(config.data_dir), metrics=metrics,
        formats=formats, default_format="mp3" if "mp3" in formats else "wav",
        consent_store=consent_store if consent_store is not None else getattr(engine.policy, "consent_store", None),
    )

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        engine.start()
        await _register_engine_voices(state)
        logger.info("serving model %r (%d Hz); formats %s; auth %s", getattr(model, "name", "?"), model.sample_rate,
                    ", ".join(formats), "off" if config.auth_disabled else f"on ({len(config.api_keys)} keys)")
        try:
            yield
        finally:
            await run_in_threadpool(engine.stop)

    app = FastAPI(title="valle2", version=_version(), lifespan=lifespan, docs_url="/docs", redoc_url=None)
    app.state.valle2 = state
    app.add_middleware(_Observe, metrics=metrics)
    app.add_middleware(_BodyLimit, limit=config.max_upload_bytes)
    _add_error_handlers(app)
    _add_routes(app, state)
    return app


def _version() -> str:
    from valle2 import __version__

    return __version__


# ----------------------------------------------------------------------------- routes


def _add_routes(app: FastAPI, st: ServerState) -> None:
    cfg, engine, voices, metrics = st.config, st.engine, st.voices, st.metrics
    auth = [Depends(_authorize)]

    @app.get("/", include_in_schema=False)
    async def index():
        page = resources.files("valle2.serve").joinpath("static/index.html").read_text(encoding="utf-8")
        return HTMLResponse(page)

    @app.get("/healthz")
    async def healthz():
        if not engine.alive:
            return JSONResponse({"status": "engine stopped"}, status_code=503)
        return {"status": "ok", "model": getattr(st.model, "name", None), "sample_rate": st.model.sample_rate,
                "requires_consent": bool(getattr(st.model, "requires_consent", True)), "formats": st.formats,
                "default_format": st.default_format, "auth": not cfg.auth_disabled,
                "consent_enrollment": st.consent_store is not None, "speed": engine.supports_speed,
                "queue_depth": engine.queue_depth, "requests_in_flight": engine.admitted,
                "limits": {"max_input_chars": cfg.max_input_chars, "max_upload_bytes": cfg.max_upload_bytes,
                           "allowed_audio_types": list(cfg.allowed_audio_types)}}

    @app.get("/metrics", include_in_schema=False)
    async def metrics_text():
        return PlainTextResponse(metrics.render(), media_type="text/plain; version=0.0.4; charset=utf-8")

    @app.get("/v1/models", dependencies=auth)
    async def list_models():
        return {"object": "list", "data": [{"id": getattr(st.model, "name", "valle2"), "object": "model",
                                            "created": 0, "owned_by": "valle2"}]}

    @app.post("/v1/audio/speech", dependencies=auth)
    async def speech(body: schema.SpeechBody, request: Request):
        t0 = time.perf_counter()
        fmt = body.response_format or st.default_format
        if fmt not in st.formats:
            metrics.inc("valle2_rejected_total", reason="format")
            raise ApiError(400, f"response_format {fmt!r} is not available on this server (it needs ffmpeg with an "
                                f"encoder for it); available: {', '.join(st.formats)}",
                           code="unsupported_response_format", param="response_format")
        sse = body.stream_format == "sse"
        if (body.stream or sse) and fmt not in schema.STREAMABLE:
            raise ApiError(400, f"response_format {fmt!r} cannot be streamed; stream one of: "
                                f"{', '.join(f for f in schema.STREAMABLE if f in st.formats)}",
                           code="unsupported_response_format", param="response_format")
        if len(body.input) > cfg.max_input_chars:
            metrics.inc("valle2_rejected_total", reason="input_too_long")
            raise ApiError(400, f"input is {len(body.input)} characters; the limit is {cfg.max_input_chars}",
                           code="input_too_long", param="input")
        if not body.input.strip():
            raise ApiError(400, "input is empty", code="invalid_input", param="input")
        if body.speed != 1.0 and not engine.supports_speed:
            raise ApiError(400, f"speed {body.speed:g} is not supported by this server yet (the tempo must change "
                                "before the watermark is added, inside the model); use speed 1.0",
                           code="unsupported_speed", param="speed")
        voice = _find_voice(voices, body.voice_id, param="voice")
        try:
            handle = await engine.submit(body.input, voice, speed=body.speed, language=body.language,
                                         stream=body.stream or sse)
        except QueueFull as e:
            metrics.inc("valle2_rejected_total", reason="queue_full")
            raise ApiError(429, str(e), code="rate_limit_exceeded", type="rate_limit_error",
                           headers={"Retry-After": str(int(e.retry_after_s))}) from None
        sr = st.model.sample_rate
        try:
            # The first sentence is awaited before answering, so that refusals (consent) and
            # errors still get a proper status code when streaming.
            first = await _unless_disconnected(request, handle, handle.piece(0))
            if not (body.stream or sse):
                pieces = [first]
                for i in range(1, len(handle)):
                    pieces.append(await _unless_disconnected(request, handle, handle.piece(i)))
                handle.close()
                wav = crossfade_concat(pieces, sr, crossfade_ms=CROSSFADE_MS)
                data = await run_in_threadpool(schema.encode, wav, sr, fmt, cfg.ffmpeg)
                metrics.observe("valle2_time_to_first_audio_seconds", time.perf_counter() - t0, stream="false")
                return Response(data, media_type=schema.CONTENT_TYPES[fmt],
                                headers={"X-Audio-Duration": f"{len(wav) / sr:.3f}", "X-Sentences": str(len(handle))})
        except _ClientGone:
            return Response(status_code=499)
        except BaseException:
            handle.close()
            raise
        stream = _stream(st, handle, first, fmt, sse, t0, len(body.input))
        media = "text/event-stream" if sse else schema.CONTENT_TYPES[fmt]
        return StreamingResponse(stream, media_type=media, headers={"X-Sentences": str(len(handle)),
                                                                    "Cache-Control": "no-cache"})

    @app.post("/v1/voices/challenge", dependencies=auth)
    async def voice_challenge(body: schema.ChallengeBody | None = None):
        store = _need_consent_store(st)
        challenge = await run_in_threadpool(store.issue_challenge, (body.name if body else "") or "")
        return challenge.to_json()

    @app.post("/v1/voices", dependencies=auth, status_code=201)
    async def create_voice(request: Request):
        ctype = request.headers.get("content-type", "")
        if not ctype.startswith("multipart/form-data"):
            raise ApiError(415, f"send the voice as multipart/form-data, not {ctype or 'no content type'!r}",
                           code="unsupported_media_type")
        async with request.form(max_files=2, max_fields=8, max_part_size=64 * 1024) as form:
            name = _text_field(form, "name")
            transcript = _text_field(form, "transcript", alias="text")
            language = _text_field(form, "language", required=False) or None
            challenge_id = _text_field(form, "challenge_id", required=False) or None
            audio = await _audio_field(form, "audio", cfg, alias="file")
            consent = await _audio_field(form, "consent_audio", cfg, required=False)
        if voices.get(name) is not None:
            raise VoiceConflict(f"a voice named {name!r} already exists; delete it first or choose another name")
        if (consent is None) != (challenge_id is None):
            raise ApiError(400, "consent_audio and challenge_id go together: give both (or neither)",
                           code="invalid_consent", param="consent_audio" if consent is None else "challenge_id")
        wav, sr = await run_in_threadpool(_decode_upload, audio, "prompt audio", 1.0, 30.0)
        # Checks the transcript against the model's text front end and the audio against its codec.
        prompt = await engine.call(functools.partial(st.model.prepare_prompt, (wav, sr), transcript, language=language))
        consent_id = None
        if consent is not None:
            store = _need_consent_store(st)
            cwav, csr = await run_in_threadpool(_decode_upload, consent, "consent audio", 1.0, 60.0)
            # The record is bound to the prompt exactly as the policy will see it at synthesis
            # time (prepared at the codec's rate), not to the upload's own samples.
            record = await run_in_threadpool(functools.partial(
                store.enroll, challenge_id, prompt.wav, prompt.sr, cwav, csr, name=name))
            consent_id = record.voice_id
        voice = await run_in_threadpool(voices.add, name, transcript, wav, sr, language=language, consent_id=consent_id)
        engine.remember(voice.id, prompt)
        return voice.to_json()

    @app.get("/v1/voices", dependencies=auth)
    async def list_voices():
        return {"object": "list", "data": [v.to_json() for v in await run_in_threadpool(voices.list)]}

    @app.get("/v1/voices/{voice_id}", dependencies=auth)
    async def get_voice(voice_id: str):
        return _find_voice(voices, voice_id, status=404).to_json()

    @app.get("/v1/voices/{voice_id}/audio", dependencies=auth)
    async def get_voice_audio(voice_id: str):
        voice = _find_voice(voices, voice_id, status=404)
        data = await run_in_threadpool(voice.audio_path.read_bytes)
        media = "audio/flac" if voice.audio_path.suffix == ".flac" else "audio/wav"
        return Response(data, media_type=media)

    @app.delete("/v1/voices/{voice_id}", dependencies=auth)
    async def delete_voice(voice_id: str):
        voice = _find_voice(voices, voice_id, status=404)
        if voice.builtin:
            raise ApiError(403, f"voice {voice.id!r} is built in and cannot be deleted", code="builtin_voice")
        await run_in_threadpool(voices.delete, voice.id)
        engine.forget(voice.id)
        return {"id": voice.id, "object": "voice.deleted", "deleted": True}


def _find_voice(voices: VoiceLibrary, voice_id: str, *, status: int = 400, param: str | None = None) -> Voice:
    voice = voices.get(voice_id)
    if voice is None:
        names = ", ".join(v.name for v in voices.list()[:20])
        raise ApiError(status, f"voice {voice_id!r} not found; available: {names}", code="voice_not_found", param=param)
    return voice


async def _stream(st: ServerState, handle, first: np.ndarray, fmt: str, sse: bool, t0: float, n_chars: int):
    """Yield each sentence's audio as soon as it (and the crossfade into it) is final."""
    from valle2.serve.engine import CrossfadeStream

    sr = st.model.sample_rate
    encoder = schema.StreamEncoder(fmt, sr, st.config.ffmpeg)
    joiner = CrossfadeStream(sr, CROSSFADE_MS)
    sent_first, samples = False, 0
    try:
        piece = first
        for i in range(len(handle)):
            if i > 0:
                piece = await handle.piece(i)
            out = joiner.push(piece)
            if i == len(handle) - 1:
                out = np.concatenate([out, joiner.finish()])
            samples += len(out)
            data = encoder.encode(out) if fmt in ("wav", "pcm") else await run_in_threadpool(encoder.encode, out)
            if not data:
                continue
            if not sent_first:
                sent_first = True
                st.metrics.observe("valle2_time_to_first_audio_seconds", time.perf_counter() - t0, stream="true")
            if sse:
                yield _sse({"type": "speech.audio.delta", "audio": base64.b64encode(data).decode()})
            else:
                yield data
        if sse:
            yield _sse({"type": "speech.audio.done",
                        "usage": {"input_tokens": n_chars, "output_tokens": samples, "total_tokens": n_chars + samples}})
    except (RequestTimeout, Valle2Error, RuntimeError) as e:
        # The status line is gone already; end the stream (with an error event for SSE).
        logger.warning("stream of request %d ended early: %s", handle.id, e)
        if sse:
            yield _sse({"type": "error", "error": schema.error_body(str(e), "server_error")["error"]})
    finally:
        handle.close()


def _sse(event: dict) -> bytes:
    return f"data: {json.dumps(event)}\n\n".encode()


async def _unless_disconnected(request: Request, handle, awaitable):
    """Await ``awaitable``; if the client goes away first, cancel the request and raise _ClientGone."""
    work = asyncio.ensure_future(awaitable)
    gone = asyncio.ensure_future(_disconnect(request))
    try:
        await asyncio.wait({work, gone}, return_when=asyncio.FIRST_COMPLETED)
        if work.done():
            return work.result()
        logger.info("client went away; cancelling request %d", handle.id)
        handle.close()
        raise _ClientGone()
    finally:
        gone.cancel()
        if not work.done():
            work.cancel()


async def _disconnect(request: Request) -> None:
    # The body has been read, so the next ASGI message is the disconnect (or never comes).
    while (await request.receive())["type"] != "http.disconnect":
        pass


# ----------------------------------------------------------------------------- uploads


def _text_field(form, name: str, *, alias: str | None = None, required: bool = True) -> str:
    value = form.get(name)
    if value is None and alias:
        value = form.get(alias)
    if isinstance(value, UploadFile):
        raise ApiError(400, f"{name} must be a text field, not a file", code="invalid_field", param=name)
    if value is None or not value.strip():
        if required:
            raise ApiError(400, f"missing form field {name!r}", code="missing_field", param=name)
        return ""
    return value.strip()


async def _audio_field(form, name: str, cfg: ServeConfig, *, alias: str | None = None, required: bool = True):
    upload = form.get(name)
    if upload is None and alias:
        upload = form.get(alias)
    if upload is None or (isinstance(upload, str) and not upload):
        if required:
            raise ApiError(400, f"missing audio file field {name!r}", code="missing_field", param=name)
        return None
    if not isinstance(upload, UploadFile):
        raise ApiError(400, f"{name} must be an uploaded file, not a text field", code="invalid_field", param=name)
    data = await upload.read(cfg.max_upload_bytes + 1)
    if len(data) > cfg.max_upload_bytes:
        raise ApiError(413, f"{name} is over the upload limit of {cfg.max_upload_bytes} bytes",
                       code="upload_too_large", param=name)
    if not data:
        raise ApiError(400, f"{name} is empty (0 bytes)", code="invalid_audio", param=name)
    kind = sniff_audio_type(data)
    if kind is None or kind not in cfg.allowed_audio_types:
        shown = kind or f"{upload.content_type or 'unknown type'} ({upload.filename or 'no file name'})"
        raise ApiError(415, f"{name} is {shown}, which is not an allowed audio type; "
                            f"allowed: {', '.join(cfg.allowed_audio_types)}",
                       code="unsupported_audio_type", param=name)
    return data


def sniff_audio_type(data: bytes) -> str | None:
    """The container of an upload from its first bytes ("wav", "flac", "ogg", "mp3") or None."""
    for magic, kind in _MAGIC:
        if data.startswith(magic):
            if kind == "wav" and data[8:12] != b"WAVE":
                return None
            return kind
    if len(data) > 1 and data[0] == 0xFF and (data[1] & 0xE0) == 0xE0:  # an MPEG audio frame without ID3 tag
        return "mp3"
    return None


def _decode_upload(data: bytes, what: str, min_s: float, max_s: float):
    from valle2.audio import load_audio

    try:
        return load_audio(data, min_seconds=min_s, max_seconds=max_s, what=what)
    except Valle2Error:
        raise
    except Exception as e:  # any decoder failure on hostile bytes is the upload's fault, not the server's
        raise AudioError(f"could not read {what}: {type(e).__name__}: {e}") from None


# ----------------------------------------------------------------------------- consent


def _need_consent_store(st: ServerState):
    if st.consent_store is None:
        raise ApiError(501, "consent enrollment is not available: the safety policy has no consent store",
                       code="consent_unavailable")
    return st.consent_store


async def _register_engine_voices(st: ServerState) -> None:
    """Give the built-in engine-made voices their ``synthetic-engine`` consent records.

    A model that requires consent refuses every prompt without a record. The bundled
    voices were made by speech engines (``voice.json``), with no person behind them, so
    the consent store records them as such; the record is bound to the prompt as the
    model prepares it. Idempotent.
    """
    if st.consent_store is None or not getattr(st.model, "requires_consent", True):
        return
    for voice in st.voices.list():
        if voice.builtin and voice.engine:
            prompt = await st.engine.prompt(voice)
            await run_in_threadpool(st.consent_store.add_synthetic_voice, prompt.wav, prompt.sr, voice.name,
                                    voice.engine)


# ----------------------------------------------------------------------------- auth


async def _authorize(request: Request) -> None:
    cfg: ServeConfig = request.app.state.valle2.config
    if cfg.auth_disabled:
        return
    scheme, _, key = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not key.strip():
        raise ApiError(401, "missing API key: send the header 'Authorization: Bearer <key>'", code="missing_api_key",
                       headers={"WWW-Authenticate": "Bearer"})
    key = key.strip().encode()
    # compare_digest against every key: the time taken does not reveal which prefix matched.
    if not any([hmac.compare_digest(key, k.encode()) for k in cfg.api_keys]):
        raise ApiError(401, "invalid API key", code="invalid_api_key", headers={"WWW-Authenticate": "Bearer"})


# ----------------------------------------------------------------------------- errors


def error_status(exc: BaseException) -> tuple[int, str | None]:
    """HTTP status and error code for an exception raised while serving a request."""
    from valle2.safety.audit import AuditError
    from valle2.safety.consent import ConsentError

    if isinstance(exc, ConsentError):  # the policy's reason: none, revoked, expired, asr-mismatch, ...
        return 403, "consent_" + str(getattr(exc, "reason", "required")).replace("-", "_")
    table = [(AuditError, 500, "audit_log"), (RequestTimeout, 504, "timeout"), (EngineStopped, 503, "shutting_down"), (VoiceConflict, 409, "voice_exists"), (AudioError, 400, "invalid_audio"),
             (TextError, 400, "invalid_input"), (MissingDependencyError, 400, "missing_dependency"),
             (ModelFileError, 500, "model_error"), (Valle2Error, 400, "invalid_request")]
    for cls, status, code in table:
        if isinstance(exc, cls):
            return status, code
    return 500, None


def _error_response(status: int, message: str, *, code=None, param=None, type=None, headers=None) -> JSONResponse:
    kind = type or ("invalid_request_error" if status < 500 else "server_error")
    return JSONResponse(schema.error_body(message, kind, param=param, code=code), status_code=status, headers=headers)


def _add_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(ApiError)
    async def api_error(request, exc: ApiError):
        return _error_response(exc.status, exc.message, code=exc.code, param=exc.param, type=exc.type,
                               headers=exc.headers)

    @app.exception_handler(RequestValidationError)
    async def validation_error(request, exc: RequestValidationError):
        errors = exc.errors()
        first = errors[0] if errors else {"loc": (), "msg": "invalid request"}
        loc = [str(p) for p in first.get("loc", ()) if p != "body"]
        param = ".".join(loc) or None
        if first.get("type") == "json_invalid":
            message = f"request body is not valid JSON: {first.get('msg')}"
        elif not loc:
            message = "request body must be a JSON object, sent with Content-Type: application/json"
        elif loc[0] == "voice" and first.get("type") != "missing":
            param = "voice"
            message = 'voice must be a voice id or name (a string) or an object {"id": "..."}'
        elif first.get("type") == "missing":
            message = f"missing required parameter {param!r}" if param else "request body is missing"
        else:
            message = f"{param}: {first.get('msg')}" if param else str(first.get("msg"))
        return _error_response(400, message, code="invalid_value", param=param)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request, exc: StarletteHTTPException):
        detail = exc.detail if isinstance(exc.detail, str) else json.dumps(exc.detail)
        if exc.status_code == 404:
            detail = f"no such endpoint: {request.method} {request.url.path}"
        elif exc.status_code == 405:
            detail = f"method {request.method} is not allowed on {request.url.path}"
        return _error_response(exc.status_code, detail, headers=getattr(exc, "headers", None))

    @app.exception_handler(_BodyTooLarge)
    async def too_large(request, exc: _BodyTooLarge):
        return _error_response(413, str(exc), code="upload_too_large")

    @app.exception_handler(Valle2Error)
    async def valle2_error(request, exc: Valle2Error):
        status, code = error_status(exc)
        if status >= 500:
            logger.error("server error on %s: %s", request.url.path, exc)
        return _error_response(status, str(exc), code=code, type="permission_error" if status == 403 else None)

    @app.exception_handler(RequestTimeout)
    async def timeout(request, exc: RequestTimeout):
        return _error_response(504, str(exc), code="timeout")

    @app.exception_handler(Exception)
    async def unexpected(request, exc: Exception):
        status, code = error_status(exc)
        if status == 503:
            return _error_response(503, str(exc), code=code, headers={"Retry-After": "5"})
        if status >= 500:
            logger.exception("unexpected error on %s", request.url.path)
            return _error_response(500, f"internal error ({type(exc).__name__}); see the server log", code="internal")
        return _error_response(status, str(exc), code=code)


# ----------------------------------------------------------------------------- middleware


class _BodyTooLarge(Exception):
    pass


class _BodyLimit:
    """Refuse request bodies over ``limit`` bytes: at once from Content-Length, else while reading."""

    def __init__(self, app, limit: int):
        self.app, self.limit = app, limit

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        length = dict(scope.get("headers") or []).get(b"content-length")
        if length is not None and length.isdigit() and int(length) > self.limit:
            response = _error_response(413, f"request body is {int(length)} bytes; the upload limit is {self.limit} bytes",
                                       code="upload_too_large")
            return await response(scope, receive, send)
        seen = 0

        async def limited():
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self.limit:
                    raise _BodyTooLarge(f"request body is over the upload limit of {self.limit} bytes")
            return message

        return await self.app(scope, limited, send)


class _Observe:
    """Count requests by route template and status, and time them to the last byte sent."""

    def __init__(self, app, metrics: Metrics):
        self.app, self.metrics = app, metrics

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        t0 = time.perf_counter()
        status = 500

        async def observed_send(message):
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, observed_send)
        finally:
            route = getattr(scope.get("route"), "path", None) or "unmatched"
            self.metrics.inc("valle2_requests_total", route=route, method=scope.get("method", ""), status=status)
            self.metrics.observe("valle2_request_duration_seconds", time.perf_counter() - t0, route=route)
