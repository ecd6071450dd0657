"""Speaker consent: challenge, enrollment, signed records, revocation, verification.

A voice may be cloned only with a valid consent record for its prompt. The protocol::

    store.issue_challenge("Alice")          -> Challenge: a fresh random sentence, valid 10 min,
                                               "I, Alice, agree that this system may clone my
                                                voice. <ten random common words>."
    (Alice records herself reading it)
    store.enroll(challenge.id, prompt_wav, sr, consent_wav, sr)
        1. the challenge exists, is untampered, unexpired and unused; it is marked used
           *before* the checks below, so each challenge allows exactly one attempt (a failed
           attempt needs a new challenge: nobody can try recording after recording against
           the same sentence);
        2. an ASR transcript of the consent recording matches the challenge: both the consent
           statement and the random words have a word error rate <= WER_THRESHOLD, so the
           recording was made for this challenge, not replayed from elsewhere;
        3. the speaker embeddings of the prompt and the consent recording agree
           (cosine >= SPEAKER_THRESHOLD): the person consenting is the voice being cloned;
        -> ConsentRecord, signed with the store's Ed25519 key and written to disk.

    store.verify(prompt_wav, sr)            -> the valid record for this prompt, or ConsentError
                                               whose ``reason`` is one of: none, expired, revoked,
                                               tampered, scope
    store.revoke(voice_id, reason)          -> a signed revocation; the voice is refused from then on

Records are found by the prompt's fingerprint (:func:`prompt_fingerprint`: SHA-256 of the
audio resampled to 16 kHz, peak-normalised, trimmed of silent edges and quantised to
int16), so the same prompt read from WAV or FLAC matches its record, or by its signed
coarse descriptor (:func:`prompt_descriptor`, correlation >= 0.97), so the prompt a model
resampled to its own rate (or an MP3 copy) still matches; a different recording, even of
the same words by the same voice, does not (correlation < 0.7). Bundled demo voices are
synthetic engine voices with no person behind them; :meth:`ConsentStore.add_synthetic_voice`
records them with ``kind="synthetic-engine"`` and no consent audio (the voices shipped in
``valle2/assets/voices`` are recorded automatically on first use).

Store layout (``$VALLE2_HOME/consent`` by default; ``VALLE2_HOME`` defaults to
``~/.local/share/valle2``)::

    signing_key.pem            Ed25519 private key, mode 0600, created on first use
    challenges/<id>.json       issued challenges (signed); <id>.used marks a spent one
    records/<voice_id>.json    consent records (signed)
    revocations/<voice_id>.json
    consent_audio/<voice_id>.flac   the consent recording, kept as evidence

What this does not prove: that the consenting person *is* who they say, or that a recording
of someone was not spliced or synthesised to read the challenge. It makes casual misuse
and accidents hard, not determined fraud impossible (see RESPONSIBLE_USE.md).
"""

from __future__ import annotations

import base64
import hashlib
import json
import logging
import os
import re
import secrets
import time
import unicodedata
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import soxr
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from valle2.errors import AudioError, Valle2Error
from valle2.safety.keys import load_or_create_signing_key, public_key_hex

__all__ = [
    "CHALLENGE_WORDS",
    "Challenge",
    "ConsentError",
    "ConsentRecord",
    "ConsentStore",
    "SPEAKER_THRESHOLD",
    "WER_THRESHOLD",
    "bundled_synthetic_voices",
    "challenge_wer",
    "descriptor_similarity",
    "prompt_descriptor",
    "prompt_fingerprint",
    "valle2_home",
]

logger = logging.getLogger(__name__)

# Calibrated in benchmarks/RESULTS.md ("Consent thresholds"), 16 offline engine voices x 2
# challenges: Resemblyzer cosine prompt vs consent recording, same voice >= 0.90 (mean 0.93),
# different voices mean 0.62 (espeak variants of one base voice up to 0.92). Whisper tiny.en
# word error rate of the random words: intelligible voices 0-0.4, a replayed recording of
# another challenge 0.9-1.0. Both parts of the sentence must be within WER_THRESHOLD.
SPEAKER_THRESHOLD = 0.80
WER_THRESHOLD = 0.5
CHALLENGE_WORDS_PER_SENTENCE = 10
CHALLENGE_TTL_S = 600
FORMAT = "valle2-consent"
VERSION = 1
KINDS = ("person", "self", "synthetic-engine")
SCOPES = ("synthesis",)

# Common, concrete, easily recognised words with no common homophone (no "two/too",
# "right/write", ...), so that a correct reading gives a low ASR word error rate.
CHALLENGE_WORDS = tuple("""
apple river window garden yellow silver orange purple button candle pencil basket bottle
bridge castle cheese circle cloud coffee copper corner cotton desert dinner doctor dragon
engine farmer feather finger forest friend future guitar hammer harbor helmet honey island
jacket jungle kitchen ladder lemon letter lizard market meadow mirror monkey morning mountain
napkin needle number ocean office orchard paper parrot pepper pillow planet pocket potato
rabbit ribbon rocket saddle salad sandwich shadow silver sister spider spring summer sunset
table tiger tomato tunnel turtle valley velvet violin wagon walnut winter wizard zebra
anchor blanket camera carpet cherry chicken dolphin elephant factory giant glass green
happy heavy hollow humble jolly lively lucky magic narrow noble polite quiet rapid ready
simple steady sunny tender tiny useful clever gentle golden hungry
little modern silent smooth brave eager fancy fresh
""".split())

_HOME_ENV = "VALLE2_HOME"


def valle2_home() -> Path:
    """``$VALLE2_HOME``, default ``~/.local/share/valle2``."""
    value = os.environ.get(_HOME_ENV, "").strip()
    return Path(value).expanduser() if value else Path.home() / ".local" / "share" / "valle2"


class ConsentError(Valle2Error):
    """Synthesis or enrollment refused for lack of valid consent; ``reason`` says why.

    Reasons: ``none``, ``expired``, ``revoked``, ``tampered``, ``scope`` (from verification);
    ``challenge-unknown``, ``challenge-used``, ``challenge-expired``, ``challenge-tampered``,
    ``name-mismatch``, ``asr-mismatch``, ``speaker-mismatch`` (from enrollment);
    ``unknown-voice`` (revocation); ``unsafe-disabled`` (policy).
    """

    def __init__(self, message: str, reason: str, **details) -> None:
        super().__init__(message)
        self.reason = reason
        self.details = details


# ----------------------------------------------------------------------------- helpers


def _iso(t: float) -> str:
    return datetime.fromtimestamp(t, tz=timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def _epoch(s: str) -> float:
    return datetime.strptime(s, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=timezone.utc).timestamp()


def _canonical(data: dict) -> bytes:
    return json.dumps(data, sort_keys=True, separators=(",", ":"), ensure_ascii=True).encode()


def _mono(wav, what: str) -> np.ndarray:
    x = np.asarray(wav, dtype=np.float64)
    if x.ndim == 2:
        x = x.mean(axis=int(np.argmin(x.shape)))
    if x.ndim != 1 or x.size == 0:
        raise AudioError(f"{what} must be non-empty mono audio, got shape {tuple(np.shape(wav))}")
    if not np.all(np.isfinite(x)):
        raise AudioError(f"{what} contains NaN or infinite samples")
    return x


def prompt_fingerprint(wav: np.ndarray, sr: int) -> str:
    """SHA-256 (hex) identifying a recording independently of its container and level.

    The audio is resampled to 16 kHz, peak-normalised, quantised to int16 and trimmed of
    silent edges, so WAV/FLAC copies (and a louder or quieter copy) of one recording give
    the same fingerprint; any edit of the content gives another.
    """
    x = _mono(wav, "prompt audio")
    if not isinstance(sr, (int, np.integer)) or sr <= 0:
        raise AudioError(f"sample rate must be a positive integer, got {sr!r}")
    if int(sr) != 16000:
        x = soxr.resample(x, int(sr), 16000, quality="HQ")
    peak = float(np.max(np.abs(x))) if x.size else 0.0
    if peak < 1e-4:
        raise AudioError(f"prompt audio is silent (peak {peak:.1e}); cannot identify it")
    q = np.round(np.clip(x / peak, -1, 1) * 32767).astype("<i2")
    nz = np.flatnonzero(np.abs(q) > 1)
    q = q[nz[0] : nz[-1] + 1]
    return hashlib.sha256(b"valle2-prompt-v1\x00" + q.tobytes()).hexdigest()


_DESC_BANDS = 16
_DESC_STEP_DB = 0.25  # quantisation of the stored descriptor
_DESC_FLOOR_DB = -60.0
MATCH_SIMILARITY = 0.97  # resampled/re-levelled copies score > 0.999; other recordings < 0.7


def prompt_descriptor(wav: np.ndarray, sr: int) -> np.ndarray:
    """Coarse spectro-temporal shape of a recording: (frames, 16) band levels in dB re the loudest.

    20 ms frames of 16 log-spaced bands (100 Hz - 7.5 kHz) at 16 kHz, floored at -60 dB.
    Unlike :func:`prompt_fingerprint` it survives resampling and re-encoding, so the prompt a
    model loads (resampled to its own rate, maybe re-levelled) still matches its record.
    """
    x = _mono(wav, "prompt audio")
    if int(sr) != 16000:
        x = soxr.resample(x, int(sr), 16000, quality="HQ")
    n_fft, hop = 512, 320
    if len(x) < n_fft:
        x = np.pad(x, (0, n_fft - len(x)))
    frames = np.lib.stride_tricks.sliding_window_view(x, n_fft)[::hop] * np.hanning(n_fft)
    power = np.abs(np.fft.rfft(frames, axis=1)) ** 2
    edges = np.round(np.geomspace(100, 7500, _DESC_BANDS + 1) / 16000 * n_fft).astype(int)
    bands = np.stack([power[:, a : max(b, a + 1)].sum(axis=1) for a, b in zip(edges[:-1], edges[1:])], axis=1)
    db = 10 * np.log10(bands + 1e-20)
    return np.clip(db - db.max(), _DESC_FLOOR_DB, 0.0).astype(np.float32)


def _pack_descriptor(d: np.ndarray) -> str:
    q = np.round(-d / _DESC_STEP_DB).astype(np.uint8)  # 0..240
    return base64.b64encode(q.tobytes()).decode("ascii")


def _unpack_descriptor(text: str) -> np.ndarray:
    q = np.frombuffer(base64.b64decode(text), np.uint8)
    return (-q.astype(np.float32) * _DESC_STEP_DB).reshape(-1, _DESC_BANDS)


def descriptor_similarity(a: np.ndarray, b: np.ndarray, max_lag: int = 5) -> float:
    """Best correlation of two descriptors over lags of up to ``max_lag`` frames (-1 if too different in length)."""
    if min(len(a), len(b)) < 5 or abs(len(a) - len(b)) > 0.05 * max(len(a), len(b)) + 2:
        return -1.0
    best = -1.0
    for lag in range(-max_lag, max_lag + 1):
        x, y = (a[lag:], b) if lag >= 0 else (a, b[-lag:])
        n = min(len(x), len(y))
        if n < 0.9 * min(len(a), len(b)):
            continue
        x, y = x[:n].ravel().astype(np.float64), y[:n].ravel().astype(np.float64)
        x, y = x - x.mean(), y - y.mean()
        den = float(np.linalg.norm(x) * np.linalg.norm(y))
        if den > 0:
            best = max(best, float(x @ y) / den)
    return best


def _words(text: str) -> list[str]:
    # Accents are dropped ("José" == "Jose"): ASR output spells names either way.
    plain = "".join(c for c in unicodedata.normalize("NFKD", text) if not unicodedata.combining(c))
    return re.sub(r"[^a-z0-9' ]+", " ", plain.casefold().replace("-", " ")).split()


def _alignment_errors(ref: list[str], hyp: list[str]) -> list[int]:
    """Errors charged to each reference word by a minimum-edit alignment (insertions go to the
    reference word before them)."""
    n, m = len(ref), len(hyp)
    cost = np.zeros((n + 1, m + 1), np.int64)
    cost[:, 0] = np.arange(n + 1)
    cost[0, :] = np.arange(m + 1)
    for i in range(1, n + 1):
        for j in range(1, m + 1):
            cost[i, j] = min(cost[i - 1, j] + 1, cost[i, j - 1] + 1, cost[i - 1, j - 1] + (ref[i - 1] != hyp[j - 1]))
    errors = [0] * max(n, 1)
    i, j = n, m
    while i > 0 or j > 0:
        if i > 0 and j > 0 and cost[i, j] == cost[i - 1, j - 1] + (ref[i - 1] != hyp[j - 1]):
            errors[i - 1] += int(ref[i - 1] != hyp[j - 1])
            i, j = i - 1, j - 1
        elif i > 0 and cost[i, j] == cost[i - 1, j] + 1:
            errors[i - 1] += 1  # deletion
            i -= 1
        else:
            errors[max(i - 1, 0)] += 1  # insertion
            j -= 1
    return errors


def challenge_wer(reference: str, hypothesis: str, *, split: int | None = None) -> float | tuple[float, float]:
    """Word error rate of ``hypothesis`` against ``reference`` (lower case, no punctuation).

    With ``split=k``: (WER of the first k reference words, WER of the rest), from one alignment
    of the whole sentence.
    """
    ref, hyp = _words(reference), _words(hypothesis)
    if not ref:
        rate = 0.0 if not hyp else 1.0
        return rate if split is None else (rate, rate)
    errors = _alignment_errors(ref, hyp)
    if split is None:
        return sum(errors) / len(ref)
    k = max(0, min(split, len(ref)))
    head = sum(errors[:k]) / k if k else 0.0
    tail = sum(errors[k:]) / (len(ref) - k) if len(ref) > k else 0.0
    return head, tail


def _transcribe(asr, wav: np.ndarray, sr: int) -> str:
    fn = getattr(asr, "transcribe", None) or asr
    text = fn(wav, sr)
    if not isinstance(text, str):
        raise TypeError(f"the ASR returned {type(text).__name__}, not str")
    return text


def _embed(encoder, wav: np.ndarray, sr: int) -> np.ndarray:
    fn = getattr(encoder, "embed", None) or encoder
    e = np.asarray(fn(wav, sr), dtype=np.float64).reshape(-1)
    n = float(np.linalg.norm(e))
    return e / n if n > 0 else e


def _check_audio(wav: np.ndarray, sr: int, what: str, lo: float, hi: float) -> np.ndarray:
    x = _mono(wav, what).astype(np.float32)
    if not isinstance(sr, (int, np.integer)) or sr <= 0:
        raise AudioError(f"{what} sample rate must be a positive integer, got {sr!r}")
    dur = len(x) / sr
    if not lo <= dur <= hi:
        raise AudioError(f"{what} is {dur:.1f} s; need {lo:g}-{hi:g} s")
    if float(np.max(np.abs(x))) < 1e-4:
        raise AudioError(f"{what} is silent")
    return x


# ----------------------------------------------------------------------------- records


@dataclass(frozen=True)
class Challenge:
    """A random sentence to be read aloud for one enrollment; single-use, expires."""

    id: str
    voice_name: str
    text: str
    issued_at: str  # ISO-8601 UTC
    expires_at: str

    @property
    def sentence(self) -> str:
        return self.text

    def to_json(self) -> dict:
        return {"challenge_id": self.id, "voice_name": self.voice_name, "text": self.text,
                "issued_at": self.issued_at, "expires_at": self.expires_at}


@dataclass(frozen=True)
class ConsentRecord:
    """A signed statement that ``name`` agreed to synthesis with the prompt ``prompt_hash``."""

    voice_id: str
    name: str
    kind: str  # person | self | synthetic-engine
    prompt_hash: str
    consent_audio_hash: str | None
    created_at: str
    expires_at: str | None  # None: no expiry (synthetic engine voices)
    scope: tuple[str, ...] = SCOPES
    challenge_id: str | None = None
    challenge_text: str | None = None
    asr_text: str | None = None
    wer: float | None = None
    speaker_cosine: float | None = None
    thresholds: dict = field(default_factory=dict)
    engine: str | None = None
    prompt_descriptor: str | None = None  # base64 of prompt_descriptor(), quantised to 0.25 dB
    key_id: str = ""
    format: str = FORMAT
    version: int = VERSION
    signature: str = ""

    @property
    def id(self) -> str:
        return self.voice_id

    def signed_part(self) -> dict:
        data = asdict(self)
        data.pop("signature")
        data["scope"] = list(self.scope)
        return data

    def to_json(self) -> dict:
        return {**self.signed_part(), "signature": self.signature}

    @classmethod
    def from_json(cls, data: dict) -> "ConsentRecord":
        if data.get("format") != FORMAT:
            raise ValueError(f"not a consent record (format {data.get('format')!r})")
        if data.get("version") != VERSION:
            raise ValueError(f"consent record version {data.get('version')!r} is not supported (need {VERSION})")
        known = set(cls.__dataclass_fields__)
        unknown = set(data) - known
        if unknown:
            raise ValueError(f"unknown consent record fields: {sorted(unknown)}")
        data = dict(data)
        data["scope"] = tuple(data.get("scope") or ())
        return cls(**data)

    def expired(self, now: float) -> bool:
        return self.expires_at is not None and now >= _epoch(self.expires_at)


# ----------------------------------------------------------------------------- the store


class ConsentStore:
    """Consent records on disk under ``root``, signed with the store's Ed25519 key.

    ``signing_key``: use this key instead of ``root/signing_key.pem`` (created on first use).
    ``asr`` / ``speaker_encoder``: defaults for :meth:`enroll` (else loaded lazily from
    ``valle2.eval``). ``clock``: seconds since the epoch (tests pass a fake one).
    """

    def __init__(self, root: str | os.PathLike, *, signing_key: Ed25519PrivateKey | None = None, asr=None,
                 speaker_encoder=None, wer_threshold: float = WER_THRESHOLD,
                 speaker_threshold: float = SPEAKER_THRESHOLD, clock=time.time) -> None:
        self.root = Path(root)
        self._signing_key = signing_key
        self.asr = asr
        self.speaker_encoder = speaker_encoder
        self.wer_threshold = float(wer_threshold)
        self.speaker_threshold = float(speaker_threshold)
        self.clock = clock

    @classmethod
    def default(cls, **kw) -> "ConsentStore":
        return cls(valle2_home() / "consent", **kw)

    # -- keys ---------------------------------------------------------------------------
    @property
    def signing_key(self) -> Ed25519PrivateKey:
        if self._signing_key is None:
            self._signing_key = load_or_create_signing_key(self.root / "signing_key.pem")
        return self._signing_key

    @property
    def key_id(self) -> str:
        return public_key_hex(self.signing_key)[:16]

    def _sign(self, data: dict) -> str:
        return self.signing_key.sign(_canonical(data)).hex()

    def _valid(self, data: dict, signature: str) -> bool:
        try:
            self.signing_key.public_key().verify(bytes.fromhex(signature), _canonical(data))
            return True
        except (InvalidSignature, ValueError):
            return False

    def _dir(self, name: str) -> Path:
        d = self.root / name
        d.mkdir(parents=True, exist_ok=True)
        return d

    @staticmethod
    def _write_new(path: Path, data: bytes) -> None:
        """Write a file that must not exist yet, atomically (temp file + link)."""
        tmp = path.with_name(f".{path.name}.{secrets.token_hex(4)}.tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        try:
            os.link(tmp, path)  # fails if path exists: no silent overwrite
        finally:
            os.unlink(tmp)

    # -- challenges ----------------------------------------------------------------------
    def issue_challenge(self, voice_name: str = "", ttl_s: float = CHALLENGE_TTL_S) -> Challenge:
        """A new random challenge sentence for ``voice_name``, valid for ``ttl_s`` seconds."""
        name = " ".join(str(voice_name or "").split())
        if len(name) > 64:
            raise ConsentError(f"voice name is {len(name)} characters; the limit is 64", "invalid-name")
        if not 10 <= ttl_s <= 86400:
            raise ValueError(f"ttl_s is {ttl_s}; need 10-86400 s")
        words = " ".join(secrets.choice(CHALLENGE_WORDS) for _ in range(CHALLENGE_WORDS_PER_SENTENCE))
        who = f"I, {name}, agree" if name else "I agree"
        # Plain words only: the ASR must be able to read the whole sentence back.
        text = f"{who} that this system may clone my voice. {words[0].upper()}{words[1:]}."
        now = self.clock()
        ch = Challenge(id=secrets.token_hex(8), voice_name=name, text=text, issued_at=_iso(now),
                       expires_at=_iso(now + ttl_s))
        data = asdict(ch)
        body = {**data, "signature": self._sign(data)}
        self._write_new(self._dir("challenges") / f"{ch.id}.json", _canonical(body))
        return ch

    def _load_challenge(self, challenge_id: str) -> Challenge:
        if not re.fullmatch(r"[0-9a-f]{16}", str(challenge_id or "")):
            raise ConsentError(f"unknown challenge {challenge_id!r}: request one with `valle2 consent challenge`",
                               "challenge-unknown")
        path = self.root / "challenges" / f"{challenge_id}.json"
        try:
            body = json.loads(path.read_bytes())
            signature = body.pop("signature")
            ch = Challenge(**body)
        except FileNotFoundError:
            raise ConsentError(f"unknown challenge {challenge_id!r}: request one with `valle2 consent challenge`",
                               "challenge-unknown") from None
        except (ValueError, TypeError, KeyError):
            raise ConsentError(f"challenge {challenge_id!r} is corrupt", "challenge-tampered") from None
        if not self._valid(body, signature) or ch.id != challenge_id:
            raise ConsentError(f"challenge {challenge_id!r} fails its signature check (edited on disk)",
                               "challenge-tampered")
        return ch

    def _spend_challenge(self, challenge_id: str) -> None:
        marker = self.root / "challenges" / f"{challenge_id}.used"
        try:
            fd = os.open(marker, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:
            raise ConsentError(f"challenge {challenge_id!r} was already used; each challenge allows one "
                               "enrollment attempt: request a new one", "challenge-used") from None
        with os.fdopen(fd, "w") as f:
            f.write(_iso(self.clock()) + "\n")

    # -- enrollment ----------------------------------------------------------------------
    def enroll(self, challenge_id: str, prompt_wav: np.ndarray, prompt_sr: int, consent_wav: np.ndarray,
               consent_sr: int, *, name: str | None = None, kind: str = "person", scope: str = "synthesis",
               valid_days: float = 365, asr=None, speaker_encoder=None) -> ConsentRecord:
        """Check a consent recording against its challenge and the prompt; sign and store the record.

        The challenge is spent by this call whatever the outcome. Raises :class:`ConsentError`
        (``reason``: challenge-*, name-mismatch, asr-mismatch, speaker-mismatch) or
        :class:`~valle2.errors.AudioError`.
        """
        if kind not in ("person", "self"):
            raise ValueError(f"kind is {kind!r}; enroll takes 'person' or 'self' (synthetic voices: "
                             "add_synthetic_voice)")
        if scope not in SCOPES:
            raise ValueError(f"scope is {scope!r}; known scopes: {', '.join(SCOPES)}")
        if not 0 < valid_days <= 3650:
            raise ValueError(f"valid_days is {valid_days}; need 0-3650")
        ch = self._load_challenge(challenge_id)
        self._spend_challenge(ch.id)  # before any check: one attempt per challenge
        now = self.clock()
        if now >= _epoch(ch.expires_at):
            raise ConsentError(f"challenge {ch.id} expired at {ch.expires_at}; request a new one",
                               "challenge-expired")
        voice_name = " ".join(str(name or "").split()) or ch.voice_name
        if name and ch.voice_name and voice_name.casefold() != ch.voice_name.casefold():
            raise ConsentError(f"the challenge was issued for {ch.voice_name!r}, not {voice_name!r}",
                               "name-mismatch")
        prompt = _check_audio(prompt_wav, prompt_sr, "prompt audio", 1.0, 60.0)
        consent = _check_audio(consent_wav, consent_sr, "consent recording", 1.0, 60.0)

        transcript = _transcribe(asr or self.asr or _default_asr(), consent, int(consent_sr))
        # Two parts, one alignment: the consent statement, and the random words that prove the
        # recording was made for this challenge (a replayed recording misses them: WER ~1).
        phrase_wer, words_wer = challenge_wer(ch.text, transcript, split=len(_words(ch.text.split(".")[0])))
        wer = max(phrase_wer, words_wer)
        if wer > self.wer_threshold:
            part = "challenge words" if words_wer >= phrase_wer else "consent statement"
            raise ConsentError(f"the consent recording does not read the challenge sentence ({part}: word error "
                               f"rate {wer:.2f} > {self.wer_threshold:.2f}; heard {transcript.strip()[:120]!r})",
                               "asr-mismatch", wer=wer, transcript=transcript)
        encoder = speaker_encoder or self.speaker_encoder or _default_speaker_encoder()
        cos = float(np.dot(_embed(encoder, prompt, int(prompt_sr)), _embed(encoder, consent, int(consent_sr))))
        if cos < self.speaker_threshold:
            raise ConsentError(f"the consent recording's voice does not match the prompt's (speaker similarity "
                               f"{cos:.2f} < {self.speaker_threshold:.2f})", "speaker-mismatch", cosine=cos)

        voice_id = self._new_voice_id(voice_name)
        record = self._signed(ConsentRecord(
            voice_id=voice_id, name=voice_name, kind=kind, prompt_hash=prompt_fingerprint(prompt, int(prompt_sr)),
            consent_audio_hash=prompt_fingerprint(consent, int(consent_sr)), created_at=_iso(now),
            expires_at=_iso(now + valid_days * 86400), scope=(scope,), challenge_id=ch.id, challenge_text=ch.text,
            asr_text=transcript.strip(), wer=round(wer, 4), speaker_cosine=round(cos, 4),
            thresholds={"wer": self.wer_threshold, "speaker_cosine": self.speaker_threshold},
            prompt_descriptor=_pack_descriptor(prompt_descriptor(prompt, int(prompt_sr))),
        ))
        self._save_consent_audio(voice_id, consent, int(consent_sr))
        self._write_new(self._dir("records") / f"{voice_id}.json", _canonical(record.to_json()))
        logger.info("consent recorded for voice %s (%s): WER %.2f, speaker cosine %.2f", voice_id, voice_name, wer,
                    cos)
        return record

    def add_synthetic_voice(self, prompt_wav: np.ndarray, sr: int, name: str, engine: str) -> ConsentRecord:
        """Record a prompt made by a speech engine (no person behind it): ``kind="synthetic-engine"``.

        Only for audio generated by a synthesiser such as espeak-ng, flite or festival (the
        bundled demo voices). Calling it on a recording of a person defeats the consent
        protocol. Idempotent: an existing valid record of the same prompt is returned.
        """
        if not str(engine or "").strip():
            raise ValueError("engine must name the synthesiser that made the prompt, e.g. 'espeak-ng en-us+f3'")
        fp = prompt_fingerprint(prompt_wav, sr)
        for rec, status in self._records_for(fp):
            if status == "valid" and rec.kind == "synthetic-engine":
                return rec
        voice_id = self._new_voice_id(name)
        record = self._signed(ConsentRecord(
            voice_id=voice_id, name=" ".join(str(name).split()), kind="synthetic-engine", prompt_hash=fp,
            consent_audio_hash=None, created_at=_iso(self.clock()), expires_at=None, scope=SCOPES,
            engine=str(engine).strip(), prompt_descriptor=_pack_descriptor(prompt_descriptor(prompt_wav, sr))))
        self._write_new(self._dir("records") / f"{voice_id}.json", _canonical(record.to_json()))
        return record

    def ensure_bundled_voice(self, fingerprint: str, descriptor: np.ndarray | None = None) -> ConsentRecord | None:
        """If this is a bundled synthetic voice's prompt, record it (once) and return the record."""
        for voice in bundled_synthetic_voices():
            similar = descriptor is not None and (
                descriptor_similarity(descriptor, voice["descriptor"]) >= MATCH_SIMILARITY)
            if voice["fingerprint"] == fingerprint or similar:
                return self.add_synthetic_voice(voice["wav"], voice["sr"], voice["name"], voice["engine"])
        return None

    def _new_voice_id(self, name: str) -> str:
        slug = re.sub(r"[^a-z0-9]+", "-", str(name).lower()).strip("-")[:24] or "voice"
        return f"{slug}-{secrets.token_hex(4)}"

    def _signed(self, record: ConsentRecord) -> ConsentRecord:
        record = ConsentRecord(**{**asdict(record), "key_id": self.key_id, "signature": ""})
        return ConsentRecord(**{**asdict(record), "signature": self._sign(record.signed_part())})

    def _save_consent_audio(self, voice_id: str, wav: np.ndarray, sr: int) -> None:
        import soundfile as sf

        path = self._dir("consent_audio") / f"{voice_id}.flac"
        sf.write(path, np.clip(wav, -1, 1), sr, format="FLAC", subtype="PCM_16")
        os.chmod(path, 0o600)

    # -- reading and checking ------------------------------------------------------------
    def _load_records(self) -> list[tuple[ConsentRecord | None, dict | None, Path]]:
        folder = self.root / "records"
        out = []
        for path in sorted(folder.glob("*.json")) if folder.is_dir() else []:
            try:
                raw = json.loads(path.read_bytes())
                out.append((ConsentRecord.from_json(raw), raw, path))
            except (ValueError, TypeError) as exc:
                logger.warning("consent record %s is unreadable (%s); it is ignored", path, exc)
                out.append((None, None, path))
        return out

    def _status(self, rec: ConsentRecord, path: Path, now: float) -> str:
        if path.stem != rec.voice_id or not self._valid(rec.signed_part(), rec.signature):
            return "tampered"
        if (self.root / "revocations" / f"{rec.voice_id}.json").exists():
            return "revoked"  # fail closed: any revocation file counts, even a damaged one
        if rec.expired(now):
            return "expired"
        return "valid"

    def _records_for(self, fingerprint: str, descriptor: np.ndarray | None = None) -> list[tuple[ConsentRecord, str]]:
        """Records of this prompt: same fingerprint, or (given ``descriptor``) a matching descriptor."""
        now = self.clock()
        out = []
        for rec, _, path in self._load_records():
            if rec is None:
                continue
            same = rec.prompt_hash == fingerprint
            if not same and descriptor is not None and rec.prompt_descriptor:
                try:
                    stored = _unpack_descriptor(rec.prompt_descriptor)
                    same = descriptor_similarity(descriptor, stored) >= MATCH_SIMILARITY
                except (ValueError, TypeError):
                    same = False
            if same:
                out.append((rec, self._status(rec, path, now)))
        return out

    def verify(self, prompt_wav: np.ndarray, prompt_sr: int, *, scope: str = "synthesis") -> ConsentRecord:
        """The valid consent record for this prompt, or :class:`ConsentError` saying why not."""
        fp = prompt_fingerprint(prompt_wav, prompt_sr)
        found = self._records_for(fp, prompt_descriptor(prompt_wav, prompt_sr))
        for rec, status in found:
            if status == "valid" and scope in rec.scope:
                return rec
        hint = "enroll it with `valle2 consent challenge` and `valle2 consent enroll`"
        if not found and self.ensure_bundled_voice(fp, prompt_descriptor(prompt_wav, prompt_sr)) is not None:
            return self.verify(prompt_wav, prompt_sr, scope=scope)
        if not found:
            raise ConsentError(f"no consent record for this prompt (fingerprint {fp[:12]}); {hint}", "none",
                               fingerprint=fp)
        valid = [r for r, s in found if s == "valid"]
        if valid:
            raise ConsentError(f"consent for voice {valid[0].voice_id} covers {', '.join(valid[0].scope)}, "
                               f"not {scope!r}; {hint}", "scope", voice_id=valid[0].voice_id)
        for status, text in (("revoked", "was revoked"), ("expired", "has expired"),
                             ("tampered", "fails its signature check (edited on disk or signed by another key)")):
            ids = [r.voice_id for r, s in found if s == status]
            if ids:
                raise ConsentError(f"the consent record for voice {ids[0]} {text}; {hint}", status, voice_id=ids[0])
        raise AssertionError(f"unexpected record statuses {found}")

    def get(self, voice_id: str) -> ConsentRecord:
        path = self.root / "records" / f"{voice_id}.json"
        if not re.fullmatch(r"[a-z0-9-]{1,64}", str(voice_id)) or not path.exists():
            raise ConsentError(f"no consent record for voice {voice_id!r}; see `valle2 consent list`",
                               "unknown-voice")
        return ConsentRecord.from_json(json.loads(path.read_bytes()))

    def status(self, voice_id: str) -> str:
        """valid, expired, revoked or tampered."""
        rec = self.get(voice_id)
        return self._status(rec, self.root / "records" / f"{voice_id}.json", self.clock())

    def list(self) -> list[dict]:
        """Every record with its status (valid, expired, revoked, tampered, unreadable), oldest first."""
        now = self.clock()
        rows = []
        for rec, raw, path in self._load_records():
            if rec is None:
                rows.append({"voice_id": path.stem, "status": "unreadable"})
                continue
            rows.append({"voice_id": rec.voice_id, "name": rec.name, "kind": rec.kind, "status":
                         self._status(rec, path, now), "created_at": rec.created_at, "expires_at": rec.expires_at,
                         "scope": list(rec.scope), "engine": rec.engine})
        return sorted(rows, key=lambda r: (r.get("created_at") or "", r["voice_id"]))

    def revoke(self, voice_id: str, reason: str = "") -> dict:
        """Revoke a voice's consent with a signed revocation record (idempotent)."""
        rec = self.get(voice_id)
        path = self._dir("revocations") / f"{rec.voice_id}.json"
        if path.exists():
            return json.loads(path.read_bytes())
        body = {"format": "valle2-revocation", "version": VERSION, "voice_id": rec.voice_id,
                "record_sha256": hashlib.sha256(_canonical(rec.to_json())).hexdigest(),
                "revoked_at": _iso(self.clock()), "reason": str(reason)[:500], "key_id": self.key_id}
        body["signature"] = self._sign(body)
        try:
            self._write_new(path, _canonical(body))
        except FileExistsError:
            return json.loads(path.read_bytes())
        logger.info("consent for voice %s revoked", rec.voice_id)
        return body


def bundled_synthetic_voices() -> list[dict]:
    """The voices shipped in ``valle2/assets/voices/*`` whose ``voice.json`` says ``synthetic-engine``.

    Each item: name, engine, folder, and the prompt's fingerprint. These are the demo voices:
    made by a speech engine, no person behind them.
    """
    global _BUNDLED
    if _BUNDLED is None:
        found = []
        try:
            from importlib import resources

            root = resources.files("valle2.assets").joinpath("voices")
            folders = [f for f in root.iterdir() if f.is_dir()] if root.is_dir() else []
        except (ModuleNotFoundError, FileNotFoundError, OSError):
            folders = []
        for folder in folders:
            try:
                meta = json.loads(folder.joinpath("voice.json").read_text(encoding="utf-8"))
                if meta.get("kind") != "synthetic-engine":
                    continue
                import soundfile as sf

                with folder.joinpath("prompt.wav").open("rb") as f:
                    wav, sr = sf.read(f, dtype="float32", always_2d=False)
                engine = " ".join(str(meta.get(k, "")) for k in ("engine", "engine_voice")).strip()
                found.append({"name": str(meta.get("name") or folder.name), "engine": engine or "unknown engine",
                              "folder": str(folder), "fingerprint": prompt_fingerprint(wav, int(sr)),
                              "descriptor": prompt_descriptor(wav, int(sr)),
                              "wav": wav, "sr": int(sr)})
            except (OSError, ValueError, KeyError, RuntimeError) as exc:
                logger.warning("bundled voice %s is unusable: %s", folder, exc)
        _BUNDLED = found
    return _BUNDLED


_BUNDLED: list[dict] | None = None


def _default_asr():
    from valle2.eval.asr import get_asr

    return get_asr("faster-whisper")


def _default_speaker_encoder():
    from valle2.eval.speaker import get_speaker_encoder

    return get_speaker_encoder("resemblyzer")
