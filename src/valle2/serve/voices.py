"""The voice library: named prompt recordings with their transcripts, kept on disk.

Layout under the server's data folder::

    voices.sqlite3      one row per enrolled voice (id, name, transcript, audio file, consent record, ...)
    voices/<id>.wav     the prompt audio as decoded from the upload: mono, its own sample rate,
                        32-bit float, so that it reloads bit for bit (a consent record is bound
                        to the exact samples of the prompt, by fingerprint)

Built-in voices come from the package's ``assets/voices/<name>/`` folders (``prompt.wav``,
``prompt.txt``, optional ``voice.json``); their id is their name, they are listed first
and cannot be deleted. Enrolled voices get ids ``voice_<16 hex>``; names are unique
across both, so a request may name a voice by id or by name.
"""

from __future__ import annotations

import json
import logging
import secrets
import sqlite3
import threading
import time
from contextlib import closing
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from valle2.errors import Valle2Error

logger = logging.getLogger(__name__)

SCHEMA_VERSION = 1
BUILTIN_VOICES = Path(__file__).resolve().parent.parent / "assets" / "voices"
MAX_NAME_CHARS = 64
MAX_TRANSCRIPT_CHARS = 1000


class VoiceConflict(Valle2Error):
    """A voice of that name already exists."""


@dataclass(frozen=True)
class Voice:
    id: str
    name: str
    transcript: str
    audio_path: Path
    created_at: int
    duration_s: float
    sample_rate: int
    builtin: bool = False
    language: str | None = None
    consent_id: str | None = None  # the consent store's record for this voice, if any
    engine: str | None = None  # built-in voices made by a speech engine (no person behind them)

    def to_json(self) -> dict:
        return {
            "id": self.id, "object": "voice", "name": self.name, "transcript": self.transcript,
            "created_at": self.created_at, "duration_s": round(self.duration_s, 3), "sample_rate": self.sample_rate,
            "builtin": self.builtin, "language": self.language, "consent_id": self.consent_id,
        }


def builtin_voices(folder: Path = BUILTIN_VOICES) -> list[Voice]:
    """The bundled prompt voices (the demo voice among them)."""
    import soundfile as sf

    voices = []
    for d in sorted(p for p in folder.glob("*") if p.is_dir()) if folder.is_dir() else []:
        wav, txt = d / "prompt.wav", d / "prompt.txt"
        if not (wav.is_file() and txt.is_file()):
            continue
        meta = json.loads((d / "voice.json").read_text()) if (d / "voice.json").is_file() else {}
        info = sf.info(str(wav))
        name = meta.get("name", d.name)
        engine = None
        if meta.get("kind") == "synthetic-engine" and meta.get("engine"):
            engine = " ".join(str(meta[k]) for k in ("engine", "engine_voice") if meta.get(k))
        voices.append(Voice(id=name, name=name, transcript=txt.read_text(encoding="utf-8").strip(), audio_path=wav,
                            created_at=0, duration_s=info.frames / info.samplerate, sample_rate=info.samplerate,
                            builtin=True, language=meta.get("language"), engine=engine))
    return voices


class VoiceLibrary:
    """Built-in voices plus a SQLite-backed store of enrolled ones. Safe to use from any thread."""

    def __init__(self, data_dir: str | Path, builtins: list[Voice] | None = None):
        self.root = Path(data_dir)
        self.audio_dir = self.root / "voices"
        self.audio_dir.mkdir(parents=True, exist_ok=True)
        self.db_path = self.root / "voices.sqlite3"
        self._builtins = {v.id: v for v in (builtin_voices() if builtins is None else builtins)}
        self._lock = threading.Lock()
        self._init_db()

    # -- storage -------------------------------------------------------------------------
    def _connect(self) -> sqlite3.Connection:
        return sqlite3.connect(self.db_path, timeout=10)

    def _init_db(self) -> None:
        with self._lock, closing(self._connect()) as db, db:
            version = db.execute("PRAGMA user_version").fetchone()[0]
            if version not in (0, SCHEMA_VERSION):
                raise Valle2Error(f"voice database {self.db_path} has schema version {version}; "
                                  f"this valle2 reads version {SCHEMA_VERSION} only")
            db.execute(
                "CREATE TABLE IF NOT EXISTS voices (id TEXT PRIMARY KEY, name TEXT NOT NULL UNIQUE, "
                "transcript TEXT NOT NULL, audio_file TEXT NOT NULL, created_at INTEGER NOT NULL, "
                "duration_s REAL NOT NULL, sample_rate INTEGER NOT NULL, language TEXT, consent_id TEXT)"
            )
            db.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")

    def _row_to_voice(self, row) -> Voice:
        vid, name, transcript, audio_file, created, dur, sr, language, consent_id = row
        return Voice(id=vid, name=name, transcript=transcript, audio_path=self.audio_dir / audio_file,
                     created_at=created, duration_s=dur, sample_rate=sr, language=language, consent_id=consent_id)

    _COLUMNS = "id, name, transcript, audio_file, created_at, duration_s, sample_rate, language, consent_id"

    # -- queries -------------------------------------------------------------------------
    def list(self) -> list[Voice]:
        with self._lock, closing(self._connect()) as db:
            rows = db.execute(f"SELECT {self._COLUMNS} FROM voices ORDER BY created_at, id").fetchall()
        return [*self._builtins.values(), *(self._row_to_voice(r) for r in rows)]

    def get(self, id_or_name: str) -> Voice | None:
        """A voice by id, else by name; None if there is none."""
        if id_or_name in self._builtins:
            return self._builtins[id_or_name]
        with self._lock, closing(self._connect()) as db:
            row = db.execute(f"SELECT {self._COLUMNS} FROM voices WHERE id = ?", (id_or_name,)).fetchone()
            if row is None:
                row = db.execute(f"SELECT {self._COLUMNS} FROM voices WHERE name = ?", (id_or_name,)).fetchone()
        return self._row_to_voice(row) if row else None

    # -- changes -------------------------------------------------------------------------
    def add(self, name: str, transcript: str, wav: np.ndarray, sr: int, *, language: str | None = None,
            consent_id: str | None = None) -> Voice:
        """Store a checked prompt (mono float audio) under a new id; the name must be unused."""
        name, transcript = name.strip(), transcript.strip()
        if not name or len(name) > MAX_NAME_CHARS:
            raise Valle2Error(f"voice name must be 1-{MAX_NAME_CHARS} characters, got {len(name)}")
        if not transcript or len(transcript) > MAX_TRANSCRIPT_CHARS:
            raise Valle2Error(f"transcript must be 1-{MAX_TRANSCRIPT_CHARS} characters, got {len(transcript)}")
        if name in self._builtins or name.startswith("voice_"):
            raise VoiceConflict(f"voice name {name!r} is reserved; choose another name")
        vid = "voice_" + secrets.token_hex(8)
        audio_file = f"{vid}.wav"
        _write_float_wav(self.audio_dir / audio_file, wav, sr)
        try:
            with self._lock, closing(self._connect()) as db, db:
                db.execute(f"INSERT INTO voices ({self._COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                           (vid, name, transcript, audio_file, int(time.time()), len(wav) / sr, int(sr),
                            language, consent_id))
        except sqlite3.IntegrityError:
            (self.audio_dir / audio_file).unlink(missing_ok=True)
            raise VoiceConflict(f"a voice named {name!r} already exists; delete it first or choose another name") from None
        except BaseException:
            (self.audio_dir / audio_file).unlink(missing_ok=True)
            raise
        logger.info("enrolled voice %s (%r, %.1f s)", vid, name, len(wav) / sr)
        return self.get(vid)

    def delete(self, voice_id: str) -> bool:
        """Remove an enrolled voice and its audio; False if there is no such id."""
        if voice_id in self._builtins:
            raise PermissionError(f"voice {voice_id!r} is built in and cannot be deleted")
        with self._lock, closing(self._connect()) as db, db:
            row = db.execute("SELECT audio_file FROM voices WHERE id = ?", (voice_id,)).fetchone()
            if row is None:
                return False
            db.execute("DELETE FROM voices WHERE id = ?", (voice_id,))
        (self.audio_dir / row[0]).unlink(missing_ok=True)
        logger.info("deleted voice %s", voice_id)
        return True


def _write_float_wav(path: Path, wav: np.ndarray, sr: int) -> None:
    """Write atomically (temporary file, then rename): a crash leaves no half-written prompt."""
    import os

    import soundfile as sf

    tmp = path.with_name(f".{path.name}.{secrets.token_hex(4)}.tmp")
    try:
        sf.write(tmp, np.asarray(wav, dtype=np.float32), int(sr), format="WAV", subtype="FLOAT")
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
