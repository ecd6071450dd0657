"""Audit log: one hash-chained line per synthesis, append-only, and damage is detected."""

import json
import os
import threading

import numpy as np
import pytest

from valle2.safety import audit as audit_mod
from valle2.safety.audit import GENESIS, AuditError, AuditLog, output_sha256, text_sha256


@pytest.fixture
def log(tmp_path):
    return AuditLog(tmp_path / "audit" / "audit.jsonl", clock=lambda: 1_800_000_000.25)


def append_three(log):
    for i in range(3):
        log.append(f"voice-{i}", f"text {i}", np.full(100, i / 10, np.float32), 24000, extra={"model": "m"})


def test_entries_are_chained_and_hash_text_and_audio(log):
    wav = np.linspace(-1, 1, 480, dtype=np.float32)
    entry = log.append("alice-1", "Hello there.", wav, 24000, extra={"model": "valle2-0.1.0", "unsafe": False})
    assert entry["seq"] == 1 and entry["prev"] == GENESIS and entry["voice_id"] == "alice-1"
    assert entry["text_sha256"] == text_sha256("Hello there.") and entry["output_sha256"] == output_sha256(wav)
    assert entry["time"] == "2027-01-15T08:00:00.250Z" and entry["samples"] == 480 and entry["model"] == "valle2-0.1.0"
    assert "Hello" not in log.path.read_text()  # the text itself is never stored
    append_three(log)
    report = log.verify()
    assert report.ok and report.entries == 4
    assert [e["seq"] for e in log.entries()] == [1, 2, 3, 4]
    assert oct(log.path.stat().st_mode & 0o777) == "0o600"


def test_editing_a_line_breaks_the_chain(log):
    append_three(log)
    lines = log.path.read_text().splitlines()
    lines[1] = lines[1].replace("voice-1", "voice-X")
    log.path.write_text("\n".join(lines) + "\n")
    report = log.verify()
    assert not report.ok and report.line == 3 and "chain" in report.problem


def test_removing_a_middle_line_is_detected(log):
    append_three(log)
    lines = log.path.read_text().splitlines()
    log.path.write_text("\n".join([lines[0], lines[2]]) + "\n")
    assert not log.verify().ok


def test_truncation_is_detected_and_refused(log):
    append_three(log)
    data = log.path.read_bytes()
    log.path.write_bytes(data[: data.rindex(b"\n", 0, len(data) - 1) + 1])  # drop the last entry
    report = log.verify()
    assert not report.ok and "head records entry 3" in report.problem
    with pytest.raises(AuditError, match="truncated or edited"):
        log.append("v", "t", np.zeros(10, np.float32), 24000)


def test_emptied_log_and_missing_head_are_refused(log):
    append_three(log)
    log.path.write_bytes(b"")
    assert not log.verify().ok
    with pytest.raises(AuditError, match="truncated"):
        log.append("v", "t", np.zeros(10, np.float32), 24000)
    log.path.unlink()
    log.head_path.unlink()
    log.append("v", "t", np.zeros(10, np.float32), 24000)  # a fresh log after moving both aside
    append_three(log)
    log.head_path.unlink()
    assert not log.verify().ok
    with pytest.raises(AuditError, match="no head file"):
        log.append("v", "t", np.zeros(10, np.float32), 24000)


def test_a_cut_last_line_is_refused(log):
    append_three(log)
    log.path.write_bytes(log.path.read_bytes()[:-5])
    assert not log.verify().ok
    with pytest.raises(AuditError, match="newline"):
        log.append("v", "t", np.zeros(10, np.float32), 24000)


def test_the_log_is_only_opened_append_only(log, monkeypatch):
    flags_seen = []
    real_open = os.open

    def spy(path, flags, *args, **kw):
        if str(path) == str(log.path):
            flags_seen.append(flags)
        return real_open(path, flags, *args, **kw)

    monkeypatch.setattr(audit_mod.os, "open", spy)
    append_three(log)
    assert flags_seen and all(f & os.O_APPEND and not f & os.O_TRUNC for f in flags_seen)


def test_concurrent_appends_keep_one_chain(log):
    def worker(k):
        for i in range(10):
            log.append(f"v{k}", f"t{i}", np.zeros(8, np.float32), 16000)

    threads = [threading.Thread(target=worker, args=(k,)) for k in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    report = log.verify()
    assert report.ok and report.entries == 40


def test_extra_cannot_overwrite_recorded_fields(log):
    with pytest.raises(ValueError, match="reserved"):
        log.append("v", "t", np.zeros(8, np.float32), 16000, extra={"output_sha256": "0" * 64})
    with pytest.raises(ValueError, match="reserved"):
        log.append("v", "t", np.zeros(8, np.float32), 16000, extra={"prev": GENESIS})


def test_head_file_records_the_last_entry(log):
    append_three(log)
    head = json.loads(log.head_path.read_text())
    assert head["seq"] == 3 and len(head["hash"]) == 64
