"""Append-only, hash-chained audit log of every synthesis.

One JSON object per line::

    {"seq": 7, "time": "2026-11-25T10:00:00.123Z", "voice_id": "alice-3f2a9c01", "unsafe": false,
     "text_sha256": "...", "output_sha256": "...", "sample_rate": 24000, "samples": 52800,
     "model": "valle2-0.1.0", "payload": 39533, "prev": "<sha256 of the previous line>"}

Neither the text nor the audio is stored, only their SHA-256 (``output_sha256`` hashes the
float32 little-endian samples the library returned). The log links entries by hash: line n
carries the SHA-256 of line n-1 (the first line carries 64 zeros), so editing, inserting or
deleting a line in the middle breaks the chain. A *head* file beside the log
(``<log>.head``) records the sequence number and hash of the last line; truncating the end
of the log therefore disagrees with the head, and :meth:`AuditLog.verify` says so.

The library only ever opens the log with ``O_APPEND`` (checked on the open descriptor),
holds an exclusive ``flock`` while appending (so concurrent writers cannot fork the chain),
and ``fsync``s the line before updating the head. Before appending it checks that the
log's last line matches the head: a log that was truncated or edited is refused
(:class:`AuditError`) rather than silently continued. This guards against accidents and
casual tampering; someone with write access to both files can still rewrite history (use a
filesystem append-only attribute, ``chattr +a``, or ship the log elsewhere for that).
"""

from __future__ import annotations

import hashlib
import json
import os
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from valle2.errors import Valle2Error

try:  # POSIX advisory locks; elsewhere the in-process lock is all there is
    import fcntl
except ImportError:  # pragma: no cover - Windows
    fcntl = None

__all__ = ["AuditError", "AuditLog", "AuditReport", "GENESIS", "output_sha256", "text_sha256"]

GENESIS = "0" * 64
_TAIL_BYTES = 1 << 16  # one line is < 1 KiB; read this much from the end to find the last line


class AuditError(Valle2Error):
    """The audit log is damaged (edited, truncated, reordered) or cannot be written."""


@dataclass(frozen=True)
class AuditReport:
    """What :meth:`AuditLog.verify` found: ``ok``, the number of entries and, if not ok, why."""

    ok: bool
    entries: int
    problem: str | None = None
    line: int | None = None  # 1-based line of the first problem


def text_sha256(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def output_sha256(wav: np.ndarray) -> str:
    return hashlib.sha256(np.ascontiguousarray(wav, dtype="<f4").tobytes()).hexdigest()


def _line_hash(line: bytes) -> str:
    return hashlib.sha256(line.rstrip(b"\n")).hexdigest()


def _utc_now(clock) -> str:
    t = clock()
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(t)) + f".{int(t * 1000) % 1000:03d}Z"


class AuditLog:
    """The audit log at ``path`` (created with its folder on first append, mode 0600)."""

    _locks: dict[str, threading.Lock] = {}
    _locks_guard = threading.Lock()

    def __init__(self, path: str | os.PathLike, *, clock=time.time) -> None:
        self.path = Path(path)
        self.head_path = self.path.with_name(self.path.name + ".head")
        self._clock = clock
        with AuditLog._locks_guard:
            self._lock = AuditLog._locks.setdefault(str(self.path.resolve()), threading.Lock())

    # ----------------------------------------------------------------------------- write

    def append(self, voice_id: str, text: str, output_wav: np.ndarray, sr: int, extra: dict | None = None) -> dict:
        """Append one entry for a synthesis and return it. Raises :class:`AuditError`."""
        entry = {
            "time": _utc_now(self._clock),
            "voice_id": str(voice_id),
            "text_sha256": text_sha256(text),
            "output_sha256": output_sha256(output_wav),
            "sample_rate": int(sr),
            "samples": int(np.asarray(output_wav).shape[-1]),
        }
        for k, v in (extra or {}).items():
            if k in entry or k in ("seq", "prev"):
                raise ValueError(f"audit extra field {k!r} would overwrite a reserved field")
            entry[k] = v
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with self._lock:
            try:
                fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
            except OSError as exc:
                raise AuditError(f"cannot open audit log {str(self.path)!r} for appending: {exc}") from exc
            try:
                if fcntl is not None and not (fcntl.fcntl(fd, fcntl.F_GETFL) & os.O_APPEND):
                    raise AuditError(f"audit log {str(self.path)!r} was not opened append-only")
                if fcntl is not None:
                    fcntl.flock(fd, fcntl.LOCK_EX)
                seq, prev = self._check_tail()
                record = {"seq": seq + 1, **entry, "prev": prev}
                line = (json.dumps(record, sort_keys=False, separators=(",", ":"), ensure_ascii=True) + "\n").encode()
                if os.write(fd, line) != len(line):
                    raise AuditError(f"short write to audit log {str(self.path)!r}")
                os.fsync(fd)
                self._write_head(record["seq"], _line_hash(line))
            except OSError as exc:
                raise AuditError(f"cannot write audit log {str(self.path)!r}: {exc}") from exc
            finally:
                os.close(fd)  # also releases the flock
        return record

    def _check_tail(self) -> tuple[int, str]:
        """(seq, hash) of the last line, checked against the head file; (0, GENESIS) for a new log."""
        last = self._last_line()
        head = self._read_head()
        if last is None:
            if head is not None and head["seq"] != 0:
                raise AuditError(f"audit log {str(self.path)!r} is empty but its head says {head['seq']} entries: "
                                 "it was truncated. Keep it for inspection, move it and its .head file aside "
                                 "to start a new log.")
            return 0, GENESIS
        try:
            seq = int(json.loads(last)["seq"])
        except (ValueError, KeyError, TypeError):
            raise AuditError(f"the last line of audit log {str(self.path)!r} is not a valid entry "
                             "(edited or cut mid-line)") from None
        h = _line_hash(last)
        if head is None:
            raise AuditError(f"audit log {str(self.path)!r} has entries but no head file "
                             f"{str(self.head_path)!r}: it cannot be checked for truncation")
        if head["seq"] != seq or head["hash"] != h:
            raise AuditError(f"audit log {str(self.path)!r} ends at entry {seq} but its head records entry "
                             f"{head['seq']}: it was truncated or edited. Run `verify()`; move both files "
                             "aside to start a new log.")
        return seq, h

    def _last_line(self) -> bytes | None:
        try:
            with open(self.path, "rb") as f:
                f.seek(0, os.SEEK_END)
                size = f.tell()
                if size == 0:
                    return None
                f.seek(max(0, size - _TAIL_BYTES))
                tail = f.read()
        except FileNotFoundError:
            return None
        lines = tail.rstrip(b"\n").split(b"\n")
        if not tail.endswith(b"\n"):
            raise AuditError(f"audit log {str(self.path)!r} does not end with a newline (a write was cut "
                             "or the file was edited)")
        return lines[-1]

    def _read_head(self) -> dict | None:
        try:
            data = json.loads(self.head_path.read_text())
            return {"seq": int(data["seq"]), "hash": str(data["hash"])}
        except FileNotFoundError:
            return None
        except (ValueError, KeyError, TypeError, OSError) as exc:
            raise AuditError(f"audit head file {str(self.head_path)!r} is unreadable: {exc}") from exc

    def _write_head(self, seq: int, h: str) -> None:
        tmp = self.head_path.with_name(self.head_path.name + f".tmp{os.getpid()}")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(json.dumps({"seq": seq, "hash": h}) + "\n")
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, self.head_path)

    # ----------------------------------------------------------------------------- read

    def entries(self) -> list[dict]:
        """All entries, oldest first (no checks: see :meth:`verify`)."""
        try:
            with open(self.path, "rb") as f:
                return [json.loads(line) for line in f if line.strip()]
        except FileNotFoundError:
            return []

    def verify(self) -> AuditReport:
        """Check the whole chain and the head. Never raises for a damaged log: reports it."""
        try:
            data = self.path.read_bytes()
        except FileNotFoundError:
            head = self._read_head_quiet()
            if head is not None and head.get("seq", 0) != 0:
                return AuditReport(False, 0, "the log is missing but its head records entries", None)
            return AuditReport(True, 0)
        if data and not data.endswith(b"\n"):
            return AuditReport(False, data.count(b"\n"), "the log does not end with a newline (cut or edited)",
                               data.count(b"\n") + 1)
        prev, seq = GENESIS, 0
        lines = data.split(b"\n")[:-1] if data else []
        for n, line in enumerate(lines, start=1):
            try:
                entry = json.loads(line)
            except ValueError:
                return AuditReport(False, n - 1, "a line is not valid JSON", n)
            if entry.get("prev") != prev:
                return AuditReport(False, n - 1, "the hash chain is broken (a line was edited, inserted or removed)", n)
            if entry.get("seq") != seq + 1:
                return AuditReport(False, n - 1, f"sequence number {entry.get('seq')} follows {seq}", n)
            prev, seq = _line_hash(line), entry["seq"]
        head = self._read_head_quiet()
        if head is None:
            if seq:
                return AuditReport(False, seq, "the head file is missing: truncation cannot be ruled out", None)
            return AuditReport(True, 0)
        if head.get("seq") != seq or head.get("hash") != (prev if seq else head.get("hash")):
            return AuditReport(False, seq, f"the log ends at entry {seq} but its head records entry "
                                           f"{head.get('seq')} (truncated or edited)", None)
        return AuditReport(True, seq)

    def _read_head_quiet(self) -> dict | None:
        try:
            return json.loads(self.head_path.read_text())
        except (FileNotFoundError, ValueError, OSError):
            return None
