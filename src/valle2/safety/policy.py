"""The safety policy: the only way synthesised audio leaves valle2.

Every synthesis path (CLI, Python API, server, evaluation) does::

    auth = policy.authorize(prompt_wav, prompt_sr)          # before any decoding
    ...generate...
    wav = policy.finalize(wav, sr, auth, text)              # on every output

``authorize`` checks the consent store for a valid record of the prompt and raises
:class:`~valle2.safety.consent.ConsentError` (naming the reason) when there is none.
``finalize`` embeds the watermark (keyed, with the model-id payload) and appends an entry to
the audit log; it accepts only an :class:`Authorization` that this policy issued, so the
steps cannot be skipped or swapped by accident.

``unsafe_no_consent=True`` skips the consent check for research on public datasets: it logs
a WARNING, marks the authorization (and the audit entry) ``unsafe``, and still watermarks
and audits. A policy built with ``allow_unsafe=False`` (what a server must use) refuses it.
A model that cannot clone voices (``model_requires_consent=False``, e.g. the random debug
model) needs no consent; its outputs are still watermarked and audited.
"""

from __future__ import annotations

import logging
import secrets
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from valle2.safety import watermark
from valle2.safety.audit import AuditLog
from valle2.safety.consent import ConsentError, ConsentRecord, ConsentStore, prompt_fingerprint, valle2_home
from valle2.safety.keys import watermark_key

__all__ = ["Authorization", "SafetyPolicy", "resolve_policy"]

logger = logging.getLogger(__name__)

AUTHORIZATION_MAX_AGE_S = 6 * 3600  # long enough for a long batch, short enough to re-check revocations


@dataclass(frozen=True)
class Authorization:
    """Permission to finalize one synthesis with one prompt (issued by :meth:`SafetyPolicy.authorize`).

    ``kind``: ``consent`` (a person's record), ``synthetic-engine`` (a bundled engine voice),
    ``unsafe`` (``--unsafe-no-consent``), ``not-required`` (a policy or model that does not
    ask for consent).
    """

    voice_id: str
    prompt_hash: str
    kind: str
    unsafe: bool
    issued_at: float
    record: ConsentRecord | None = None
    _token: str = field(default="", repr=False, compare=False)


class SafetyPolicy:
    """Consent check + watermark + audit log, in that order, for every synthesis."""

    def __init__(self, consent_store: ConsentStore, audit_log: AuditLog, watermark_key: bytes,
                 payload: int = watermark.DEFAULT_PAYLOAD, require_consent: bool = True, *,
                 allow_unsafe: bool = True, model_id: str | None = None, clock=time.time) -> None:
        if not isinstance(watermark_key, (bytes, bytearray)) or len(watermark_key) < 16:
            raise ValueError("watermark_key must be at least 16 bytes")
        if not 0 <= int(payload) < 2**watermark.PAYLOAD_BITS:
            raise ValueError(f"payload is {payload}; need 0-{2**watermark.PAYLOAD_BITS - 1}")
        self.consent_store = consent_store
        self.audit_log = audit_log
        self.watermark_key = bytes(watermark_key)
        self.payload = int(payload)
        self.require_consent = bool(require_consent)
        self.allow_unsafe = bool(allow_unsafe)
        self.model_id = model_id or _default_model_id()
        self._clock = clock
        self._token = secrets.token_hex(16)
        self._warned = set()
        self._lock = threading.Lock()

    @classmethod
    def default(cls, *, allow_unsafe: bool = True, home: str | Path | None = None) -> "SafetyPolicy":
        """The policy from the environment: ``$VALLE2_HOME/consent``, ``$VALLE2_HOME/audit/audit.jsonl``,
        the watermark key from ``$VALLE2_WATERMARK_KEY`` (or the public default)."""
        root = Path(home) if home is not None else valle2_home()
        return cls(ConsentStore(root / "consent"), AuditLog(root / "audit" / "audit.jsonl"), watermark_key(),
                   allow_unsafe=allow_unsafe)

    # ----------------------------------------------------------------------------- authorize

    def authorize(self, prompt_wav: np.ndarray, prompt_sr: int, *, unsafe_no_consent: bool = False,
                  model_requires_consent: bool = True, scope: str = "synthesis") -> Authorization:
        """Check that the prompt's voice may be cloned; raise :class:`ConsentError` if not."""
        fp = prompt_fingerprint(prompt_wav, prompt_sr)
        now = self._clock()
        if unsafe_no_consent:
            if not self.allow_unsafe:
                raise ConsentError("synthesis without consent (--unsafe-no-consent) is disabled here "
                                   "(servers never allow it)", "unsafe-disabled")
            self._warn_once("unsafe", "UNSAFE: synthesising WITHOUT a consent check (--unsafe-no-consent). "
                            "Only for research on public datasets whose speakers agreed to such use; the output "
                            "is still watermarked and the synthesis is logged as unsafe.")
            return self._issue(f"unsafe-{fp[:16]}", fp, "unsafe", True, now)
        if not model_requires_consent or not self.require_consent:
            why = "this model cannot clone voices" if not model_requires_consent else "consent not required by policy"
            self._warn_once(why, f"no consent check: {why}; the output is still watermarked and audited")
            return self._issue(f"nocheck-{fp[:16]}", fp, "not-required", False, now)
        record = self.consent_store.verify(prompt_wav, prompt_sr, scope=scope)
        kind = "synthetic-engine" if record.kind == "synthetic-engine" else "consent"
        return self._issue(record.voice_id, fp, kind, False, now, record)

    def _issue(self, voice_id, fp, kind, unsafe, now, record=None) -> Authorization:
        return Authorization(voice_id=voice_id, prompt_hash=fp, kind=kind, unsafe=unsafe, issued_at=now,
                             record=record, _token=self._token)

    def _warn_once(self, key: str, message: str) -> None:
        with self._lock:
            first = key not in self._warned
            self._warned.add(key)
        logger.log(logging.WARNING if first or key == "unsafe" else logging.DEBUG, message)

    # ----------------------------------------------------------------------------- finalize

    def finalize(self, wav: np.ndarray, sr: int, auth: Authorization, text: str) -> np.ndarray:
        """Watermark ``wav`` and log the synthesis; returns the marked float32 audio."""
        if not isinstance(auth, Authorization) or auth._token != self._token:
            raise ConsentError("finalize needs the Authorization that this policy's authorize() returned",
                               "unauthorized")
        if self._clock() - auth.issued_at > AUTHORIZATION_MAX_AGE_S:
            raise ConsentError(f"the authorization for voice {auth.voice_id} is older than "
                               f"{AUTHORIZATION_MAX_AGE_S // 3600} h; authorize again", "expired")
        if not isinstance(text, str):
            raise TypeError(f"text must be a str, got {type(text).__name__}")
        wav = np.asarray(wav, dtype=np.float32)
        marked = watermark.embed(wav, sr, key=self.watermark_key, payload=self.payload) if wav.size else wav
        self.audit_log.append(auth.voice_id, text, marked, sr, extra={
            "unsafe": auth.unsafe, "consent": auth.kind, "prompt_sha256": auth.prompt_hash,
            "model": self.model_id, "payload": self.payload})
        return marked


def _default_model_id() -> str:
    from valle2 import __version__

    return f"valle2-{__version__}"


_DEFAULT: dict[tuple, SafetyPolicy] = {}
_DEFAULT_LOCK = threading.Lock()


def resolve_policy(policy=None, *, allow_unsafe: bool = True):
    """``policy`` itself, or the process's default policy (:meth:`SafetyPolicy.default`).

    The default is built once per (``allow_unsafe``, ``VALLE2_HOME``, watermark key); servers
    pass ``allow_unsafe=False``. Any object with ``authorize`` and ``finalize`` is accepted
    as a policy (tests use stand-ins).
    """
    if policy is not None:
        if not (callable(getattr(policy, "authorize", None)) and callable(getattr(policy, "finalize", None))):
            raise TypeError(f"policy must have authorize() and finalize(), got {type(policy).__name__}")
        return policy
    key = (bool(allow_unsafe), str(valle2_home()), watermark_key())
    with _DEFAULT_LOCK:
        if key not in _DEFAULT:
            _DEFAULT[key] = SafetyPolicy.default(allow_unsafe=allow_unsafe)
        return _DEFAULT[key]
