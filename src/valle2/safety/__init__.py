"""valle2's safety layer: speaker consent, a watermark on every output, an audit log.

- :mod:`valle2.safety.consent` — challenge/enroll/verify/revoke, Ed25519-signed records.
- :mod:`valle2.safety.watermark` — keyed inaudible watermark: ``embed`` / ``detect``.
- :mod:`valle2.safety.audit` — append-only, hash-chained log of syntheses.
- :mod:`valle2.safety.policy` — :class:`SafetyPolicy`, the one gate every synthesis passes:
  ``authorize`` (consent) before decoding, ``finalize`` (watermark + audit) on every output.
- :mod:`valle2.safety.keys` — the watermark key and the store's signing key.

See RESPONSIBLE_USE.md for what these guarantee and what they do not.
"""

from __future__ import annotations

__all__ = ["ConsentError", "ConsentStore", "SafetyPolicy", "AuditLog", "read_audio"]


def __getattr__(name: str):
    # Lazy: `valle2 --help` and the server's error mapping import this package cheaply.
    if name in ("ConsentError", "ConsentStore"):
        from valle2.safety import consent

        return getattr(consent, name)
    if name == "SafetyPolicy":
        from valle2.safety.policy import SafetyPolicy

        return SafetyPolicy
    if name == "AuditLog":
        from valle2.safety.audit import AuditLog

        return AuditLog
    raise AttributeError(name)


def read_audio(path) -> tuple:
    """(mono float32 samples, sample rate) of an audio file, for the safety commands.

    Uses :func:`valle2.audio.load_audio` (libsndfile) and falls back to ffmpeg for formats
    libsndfile cannot read (e.g. Opus in some builds, AAC).
    """
    import shutil
    import subprocess

    import numpy as np

    from valle2.audio import load_audio
    from valle2.errors import AudioError

    try:
        return load_audio(str(path), what="audio", allow_silent=True)
    except AudioError as first:
        ffmpeg = shutil.which("ffmpeg")
        if ffmpeg is None or not __import__("os").path.isfile(str(path)):
            raise
        proc = subprocess.run([ffmpeg, "-v", "error", "-nostdin", "-i", str(path), "-f", "f32le", "-ac", "1",
                               "-ar", "24000", "-"], capture_output=True)
        if proc.returncode != 0 or not proc.stdout:
            raise first from None
        return np.frombuffer(proc.stdout, "<f4").copy(), 24000
