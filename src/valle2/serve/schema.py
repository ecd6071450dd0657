"""What goes over the wire: request bodies (bounded pydantic models), errors, audio formats.

Request bodies follow OpenAI's ``POST /v1/audio/speech``; unknown fields are ignored,
as OpenAI adds fields over time. Hard bounds live here; the configurable limits
(``max_input_chars``, ...) are checked by the app so that their errors can name them.

Response formats::

    wav   16-bit PCM WAV (streamed: a header with unknown length, then PCM)  audio/wav
    flac  16-bit FLAC (not streamable)                                        audio/flac
    pcm   raw s16le mono at 24 kHz, as OpenAI's                               audio/pcm
    mp3   via ffmpeg (libmp3lame)                                             audio/mpeg
    aac   via ffmpeg, ADTS                                                    audio/aac
    opus  via ffmpeg (libopus) in Ogg (not streamable)                        audio/ogg

Streams are the concatenation of the encodings of each sentence's audio, which is
valid for wav (after its header), pcm, MP3 frames and ADTS frames.
"""

from __future__ import annotations

import shutil
import struct
import subprocess
from functools import lru_cache
from typing import Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from valle2.errors import MissingDependencyError

HARD_MAX_INPUT_CHARS = 100_000  # above any sensible max_input_chars; the app's limit is checked first
PCM_SAMPLE_RATE = 24_000  # OpenAI's "pcm" is 24 kHz

Format = Literal["mp3", "opus", "aac", "flac", "wav", "pcm"]


# ----------------------------------------------------------------------------- bodies


class VoiceRef(BaseModel):
    id: str = Field(min_length=1, max_length=128)


class SpeechBody(BaseModel):
    """``POST /v1/audio/speech``. ``model`` and ``instructions`` are accepted and ignored
    (the server serves one model); ``stream`` and ``language`` are valle2 extensions.
    ``speed`` other than 1.0 is refused until the model can change tempo before it adds the
    watermark (see ``Engine.supports_speed``)."""

    model_config = ConfigDict(extra="ignore")

    model: str = Field(default="valle2", max_length=256)
    input: str = Field(max_length=HARD_MAX_INPUT_CHARS)
    voice: str | VoiceRef
    response_format: Format | None = None  # None: mp3 if ffmpeg can make it, else wav
    speed: float = Field(default=1.0, ge=0.25, le=4.0)
    instructions: str | None = Field(default=None, max_length=HARD_MAX_INPUT_CHARS)
    stream_format: Literal["audio", "sse"] | None = None
    stream: bool = False
    language: str | None = Field(default=None, max_length=32, pattern=r"^[A-Za-z]{2,3}([-_][A-Za-z0-9]{1,8})*$")

    @property
    def voice_id(self) -> str:
        return self.voice.id if isinstance(self.voice, VoiceRef) else self.voice


class ChallengeBody(BaseModel):
    model_config = ConfigDict(extra="ignore")

    name: str = Field(default="", max_length=64)


def error_body(message: str, type: str = "invalid_request_error", *, param: str | None = None,
               code: str | None = None) -> dict:
    """OpenAI's error shape."""
    return {"error": {"message": message, "type": type, "param": param, "code": code}}


# ----------------------------------------------------------------------------- formats

CONTENT_TYPES = {"wav": "audio/wav", "flac": "audio/flac", "pcm": "audio/pcm", "mp3": "audio/mpeg",
                 "aac": "audio/aac", "opus": "audio/ogg"}
FFMPEG_FORMATS = {  # format -> (encoder, ffmpeg output arguments)
    "mp3": ("libmp3lame", ["-c:a", "libmp3lame", "-b:a", "128k", "-f", "mp3"]),
    "aac": ("aac", ["-c:a", "aac", "-b:a", "96k", "-f", "adts"]),
    "opus": ("libopus", ["-c:a", "libopus", "-b:a", "48k", "-f", "ogg"]),
}
STREAMABLE = ("wav", "pcm", "mp3", "aac")


@lru_cache(maxsize=8)
def _ffmpeg_encoders(ffmpeg: str) -> frozenset[str]:
    exe = shutil.which(ffmpeg)
    if exe is None:
        return frozenset()
    try:
        out = subprocess.run([exe, "-hide_banner", "-encoders"], capture_output=True, text=True, timeout=20).stdout
    except (OSError, subprocess.SubprocessError):
        return frozenset()
    return frozenset(line.split()[1] for line in out.splitlines() if len(line.split()) > 1 and line.startswith(" A"))


def available_formats(ffmpeg: str | None) -> list[str]:
    encoders = _ffmpeg_encoders(ffmpeg) if ffmpeg else frozenset()
    return ["wav", "flac", "pcm"] + [f for f, (enc, _) in FFMPEG_FORMATS.items() if enc in encoders]


def encode(wav: np.ndarray, sr: int, fmt: str, ffmpeg: str | None) -> bytes:
    """Mono float audio -> bytes of ``fmt`` (see the module docstring)."""
    from valle2.audio import encode_audio_bytes, resample

    if fmt in ("wav", "flac"):
        return encode_audio_bytes(wav, sr, fmt)
    if fmt == "pcm":
        return encode_audio_bytes(resample(wav, sr, PCM_SAMPLE_RATE) if sr != PCM_SAMPLE_RATE else wav,
                                  PCM_SAMPLE_RATE, "pcm")
    if fmt not in FFMPEG_FORMATS or fmt not in available_formats(ffmpeg):
        raise MissingDependencyError(
            f"response_format {fmt!r} needs ffmpeg with the {FFMPEG_FORMATS.get(fmt, ('?',))[0]} encoder, "
            f"which this server does not have; available: {', '.join(available_formats(ffmpeg))}"
        )
    pcm = encode_audio_bytes(wav, sr, "pcm")
    cmd = [shutil.which(ffmpeg), "-hide_banner", "-loglevel", "error", "-f", "s16le", "-ar", str(sr), "-ac", "1",
           "-i", "pipe:0", *FFMPEG_FORMATS[fmt][1], "pipe:1"]
    proc = subprocess.run(cmd, input=pcm, capture_output=True, timeout=120)
    if proc.returncode != 0:
        raise RuntimeError(f"ffmpeg failed to encode {fmt}: {proc.stderr.decode(errors='replace')[-500:]}")
    return proc.stdout


def wav_stream_header(sr: int) -> bytes:
    """A 16-bit mono WAV header whose sizes say "unknown" (0xFFFFFFFF), for streaming."""
    unknown = 0xFFFFFFFF
    return (b"RIFF" + struct.pack("<I", unknown) + b"WAVE"
            + b"fmt " + struct.pack("<IHHIIHH", 16, 1, 1, sr, sr * 2, 2, 16)
            + b"data" + struct.pack("<I", unknown))


class StreamEncoder:
    """Encodes a request's audio piece by piece for a chunked response."""

    def __init__(self, fmt: str, sr: int, ffmpeg: str | None):
        if fmt not in STREAMABLE:
            raise ValueError(f"{fmt} cannot be streamed")
        self.fmt, self.sr, self.ffmpeg = fmt, sr, ffmpeg
        self._started = False

    def encode(self, wav: np.ndarray) -> bytes:
        """The bytes to send for the next piece (the first call also sends a WAV header)."""
        from valle2.audio import encode_audio_bytes

        if self.fmt == "wav":
            head = b"" if self._started else wav_stream_header(self.sr)
            self._started = True
            return head + (encode_audio_bytes(wav, self.sr, "pcm") if len(wav) else b"")
        if len(wav) == 0:
            return b""
        return encode(wav, self.sr, self.fmt, self.ffmpeg)
