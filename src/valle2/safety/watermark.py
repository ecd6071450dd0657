"""Keyed, inaudible, robust audio watermark: ``embed`` marks a waveform, ``detect`` finds the mark.

Every waveform valle2 produces carries it (``valle2.safety.policy.SafetyPolicy.finalize``),
with a 16-bit payload naming the model/version (:data:`DEFAULT_PAYLOAD`).

The scheme: informed patchwork on short-time band energies
-----------------------------------------------------------
All work happens on a copy of the audio resampled to 8 kHz, in the 1.0-3.5 kHz band, so the
mark survives resampling to 16 or 8 kHz, speech codecs (MP3, Opus) and telephone-like
chains; the mark is computed there and added back at the caller's sample rate.

STFT (256-point sqrt-Hann, hop 128 = 16 ms) -> tiles of 2 frames x 2 bins (32 ms x 62.5 Hz).
Adjacent tiles in frequency form *pairs*; a time *slot* (2 frames) holds 20 pairs::

    freq ^   | a | b | a | b | ...         one slot = 2 STFT frames (32 ms)
         |   pair j: d_j = log E_a - log E_b   (energy ratio of two neighbouring tiles)
         +-----------------------------> time, slots repeat the key's pattern every 64 slots (~2 s)

The key gives every (slot mod 64, pair) position a sign s = +-1; half of the positions are
*sync* positions, the rest carry the 24 coded payload bits (16 bits + CRC-8) as s * (+-1).
Marking pushes each pair's log-energy ratio to agree with its sign by a margin
(``s * d >= 0.7``), choosing *which* pairs to push by cost: pairs that already agree cost
nothing, the cheapest disagreeing pairs are flipped while each slot's energy budget lasts
(informed embedding: the host's own fluctuations are used, not fought). Energy is moved
*between* the two tiles of a pair (their sum is kept), so the loudness of each critical band
hardly changes; the mark is a gain pattern on the signal's own spectrum (perceptually
shaped), capped per 32 ms at 30.5 dB below the signal (measured SNR >= 30 dB).

Detection needs no reference and no alignment with the clip start: for each of 2 sub-hop
offsets x 2 slot phases x 64 cyclic shifts (256 hypotheses) it correlates the key's signs with
``tanh(d / 0.3)`` of the received pairs (tiles near the noise floor vote ~0) and normalises::

    z = sum_p s_p A_p / sqrt(sum_p A_p^2)      (A_p: pair values, summed over repeats of p)

It does so with the sync signs (any payload), and with the whole pattern of each payload it is
told to expect (valle2's own model id by default), which scores ~1.4x higher.

For audio that does not carry the mark the key's signs are independent of the audio, so z is
a normalised Rademacher sum: P(z > t) <= exp(-t^2/2) whatever the audio is (speech, tones,
noise, silence). The reported ``p_value`` is a Bonferroni bound over all hypotheses (with the
normal tail); ``watermarked`` means ``p_value <= ALPHA``. The false-positive rate measured on
unmarked clips is in ``benchmarks/RESULTS.md``. Long files are also scanned in 2 s windows
(with their own, stricter bound), so a marked excerpt inside unmarked audio is found.

What it does not do: it does not resist an informed attacker. The default key is public
(``valle2.safety.keys``); anyone holding the key (or this code and a marked/unmarked pair)
can estimate and remove the mark. It protects against accidental or naive removal only.
"""

from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass, field

import numpy as np
import soxr

from valle2.errors import AudioError

__all__ = [
    "ALPHA",
    "DEFAULT_PAYLOAD",
    "PAYLOAD_BITS",
    "WatermarkResult",
    "detect",
    "embed",
    "encode_model_id",
]

# --------------------------------------------------------------------------- parameters
# Chosen by measurement (benchmarks/watermark_robustness.py, benchmarks/RESULTS.md).
WORK_SR = 8_000  # the mark lives below 4 kHz so that 8 kHz resampling keeps it
N_FFT = 256  # 32 ms
HOP = N_FFT // 2  # 16 ms; sqrt-Hann analysis/synthesis at 50 % overlap is a tight frame
BIN_LO, BIN_HI = 32, 113  # 1000 Hz .. 3531 Hz at 31.25 Hz per bin
TILE_FRAMES, TILE_BINS = 2, 2  # 32 ms x 62.5 Hz
N_TILES = ((BIN_HI - BIN_LO) // TILE_BINS) // 2 * 2  # 40
N_PAIRS = N_TILES // 2  # 20 pairs per slot
PERIOD = 64  # slots per pattern period (~2.05 s)
SYNC_FRACTION = 0.5
PAYLOAD_BITS = 16
CRC_BITS = 8
CODED_BITS = PAYLOAD_BITS + CRC_BITS

MARGIN = 0.7  # target |log-energy ratio| of a marked pair (nats)
EMBED_FLOOR = 1e-3  # tiles this far below the mean tile energy are treated as silence
DETECT_FLOOR = 3e-3  # the detector's floor: quieter tiles weigh less (noise-robust)
NOISE_FLOOR_FACTOR = 3.0  # ... and so do tiles within ~5 dB of the 25th-percentile tile
SQUASH = 0.3  # tanh(d / SQUASH): every pair votes about equally
TARGET_SNR_DB = 30.5  # hard cap, per 32 ms and so for the whole clip
_MODEL_SNR_DB = 26.0  # budget the embedder plans with; the STFT projection loses ~4 dB of it
_MAX_GAIN = 4.0  # largest log-energy change of one tile (nats)
_VALUE_FLOOR = 1e-2  # prefer pairs that stay above a -20 dB noise floor
_ITERATIONS = 4
_OFFSETS = (0, HOP // 2)  # sub-hop offsets tried by the detector (samples at WORK_SR)
_WINDOW_HOP = PERIOD // 4  # windowed scan: 2 s windows every 0.5 s
_EPS = 1e-12

ALPHA = 2e-3  # Bonferroni-bounded false-positive probability per file
DEFAULT_KEY_DOMAIN = b"valle2-watermark-v1"


def encode_model_id(name: str) -> int:
    """A stable 16-bit payload for a model/version name (first two bytes of its SHA-256)."""
    return int.from_bytes(hashlib.sha256(name.encode("utf-8")).digest()[:2], "big")


def _default_payload() -> int:
    from valle2 import __version__

    return encode_model_id(f"valle2-{__version__}")


DEFAULT_PAYLOAD: int = _default_payload()


@dataclass(frozen=True)
class WatermarkResult:
    """What :func:`detect` found.

    ``score`` is the best z-score (about N(0,1) per hypothesis on unmarked audio; marked
    clips typically score 8-30). ``p_value`` bounds the chance that unmarked audio scores
    this high (Bonferroni over all hypotheses tried); ``watermarked`` is ``p_value <= ALPHA``.
    ``payload`` is the 16-bit payload when its CRC checks, else ``None`` (short or heavily
    degraded clips may be detected without a readable payload). ``offset_s`` is where the
    best-scoring analysis window starts.
    """

    watermarked: bool
    score: float
    payload: int | None
    p_value: float
    threshold: float
    offset_s: float = 0.0
    hypotheses: int = 0
    payload_confidence: float = 0.0
    extra: dict = field(default_factory=dict, compare=False)

    def as_dict(self) -> dict:
        return {"watermarked": self.watermarked, "score": round(self.score, 3), "payload": self.payload,
                "p_value": float(f"{self.p_value:.3g}"), "threshold": round(self.threshold, 3),
                "offset_s": round(self.offset_s, 3), "payload_confidence": round(self.payload_confidence, 3)}


# --------------------------------------------------------------------------- key -> pattern


@dataclass(frozen=True)
class _Pattern:
    sign: np.ndarray  # (PERIOD, N_PAIRS) +-1
    role: np.ndarray  # (PERIOD, N_PAIRS) -1 = sync, else coded bit index 0..CODED_BITS-1


_PATTERN_CACHE: dict[bytes, _Pattern] = {}


def _stream(key: bytes, label: bytes, n: int) -> bytes:
    # SHAKE-256 rather than numpy's generators: the pattern must never change across versions.
    return hashlib.shake_256(DEFAULT_KEY_DOMAIN + b"\x00" + label + b"\x00" + key).digest(n)


def _pattern(key: bytes) -> _Pattern:
    if not isinstance(key, (bytes, bytearray)) or len(key) < 16:
        raise ValueError(f"watermark key must be at least 16 bytes, got {type(key).__name__} of length "
                         f"{len(key) if hasattr(key, '__len__') else '?'}")
    key = bytes(key)
    cached = _PATTERN_CACHE.get(key)
    if cached is not None:
        return cached
    n = PERIOD * N_PAIRS
    bits = np.unpackbits(np.frombuffer(_stream(key, b"sign", (n + 7) // 8), np.uint8))[:n]
    sign = (bits.astype(np.float64) * 2 - 1).reshape(PERIOD, N_PAIRS)
    order = np.argsort(np.frombuffer(_stream(key, b"role", 8 * n), "<u8"), kind="stable")
    n_sync = int(round(n * SYNC_FRACTION))
    role = np.full(n, -1, np.int64)
    role[order[n_sync:]] = np.arange(n - n_sync) % CODED_BITS
    pat = _Pattern(sign=sign, role=role.reshape(PERIOD, N_PAIRS))
    if len(_PATTERN_CACHE) > 64:
        _PATTERN_CACHE.clear()
    _PATTERN_CACHE[key] = pat
    return pat


def _crc8(data: bytes) -> int:
    crc = 0
    for byte in data:
        crc ^= byte
        for _ in range(8):
            crc = ((crc << 1) ^ 0x07) & 0xFF if crc & 0x80 else (crc << 1) & 0xFF
    return crc


def _coded_bits(payload: int) -> np.ndarray:
    """16 payload bits then CRC-8 of the two payload bytes, as +-1."""
    word = (payload << CRC_BITS) | _crc8(payload.to_bytes(2, "big"))
    bits = [(word >> (CODED_BITS - 1 - i)) & 1 for i in range(CODED_BITS)]
    return np.array(bits, np.float64) * 2 - 1


def _decode_bits(bits: np.ndarray) -> int | None:
    word = 0
    for b in bits:
        word = (word << 1) | int(b > 0)
    payload, crc = word >> CRC_BITS, word & 0xFF
    return payload if _crc8(payload.to_bytes(2, "big")) == crc else None


# --------------------------------------------------------------------------- signal helpers

_WINDOW = np.sqrt(np.hanning(N_FFT + 1)[:-1])


def _stft(x: np.ndarray) -> np.ndarray:
    """(frames, N_FFT//2+1) complex; frame k covers x[k*HOP : k*HOP+N_FFT]."""
    if len(x) < N_FFT:
        return np.zeros((0, N_FFT // 2 + 1), np.complex128)
    frames = np.lib.stride_tricks.sliding_window_view(x, N_FFT)[::HOP]
    return np.fft.rfft(frames * _WINDOW, axis=1)


def _istft(spec: np.ndarray, length: int) -> np.ndarray:
    """Overlap-add inverse of :func:`_stft` (exact where two frames overlap)."""
    frames = np.fft.irfft(spec, n=N_FFT, axis=1) * _WINDOW  # (K, N_FFT)
    k = len(frames)
    out = np.zeros((k + 1) * HOP)
    out[: k * HOP] += frames[:, :HOP].reshape(-1)
    out[HOP : (k + 1) * HOP] += frames[:, HOP:].reshape(-1)
    if len(out) < length:
        out = np.pad(out, (0, length - len(out)))
    return out[:length]


def _tile_energy(spec: np.ndarray) -> np.ndarray:
    """(slots, N_TILES) energies of the band tiles."""
    slots = spec.shape[0] // TILE_FRAMES
    band = np.abs(spec[: slots * TILE_FRAMES, BIN_LO : BIN_LO + N_TILES * TILE_BINS]) ** 2
    return band.reshape(slots, TILE_FRAMES, N_TILES, TILE_BINS).sum(axis=(1, 3))


def _as_mono(wav, what: str) -> np.ndarray:
    x = np.asarray(wav)
    if x.ndim != 1:
        raise AudioError(f"{what} must be mono audio [N], got shape {tuple(x.shape)}")
    if not np.issubdtype(x.dtype, np.floating):
        raise AudioError(f"{what} must be float audio in [-1, 1], got dtype {x.dtype}")
    x = x.astype(np.float64)
    if not np.all(np.isfinite(x)):
        raise AudioError(f"{what} contains NaN or infinite samples")
    return x


def _check_sr(sr) -> int:
    if not isinstance(sr, (int, np.integer)) or isinstance(sr, bool) or sr <= 0:
        raise AudioError(f"sample rate must be a positive integer, got {sr!r}")
    return int(sr)


def _resample(x: np.ndarray, sr_in: int, sr_out: int) -> np.ndarray:
    if sr_in == sr_out or len(x) == 0:
        return x.copy()
    return soxr.resample(x, sr_in, sr_out, quality="HQ")


# --------------------------------------------------------------------------- embed


def embed(wav: np.ndarray, sr: int, *, key: bytes, payload: int = DEFAULT_PAYLOAD) -> np.ndarray:
    """Return ``wav`` (mono float, any rate >= 8 kHz) with the watermark added, as float32.

    The output has the same length; its SNR against ``wav`` is at least 30 dB (30.5 dB per
    32 ms window). Digital silence stays silent; clips shorter than ~50 ms come back unmarked.
    """
    x = _as_mono(wav, "audio to watermark")
    sr = _check_sr(sr)
    if sr < WORK_SR:
        raise AudioError(f"cannot watermark audio at {sr} Hz; need a sample rate of at least {WORK_SR} Hz")
    if not isinstance(payload, (int, np.integer)) or not 0 <= int(payload) < 2**PAYLOAD_BITS:
        raise ValueError(f"payload is {payload!r}; need an integer in [0, {2**PAYLOAD_BITS - 1}]")
    pat = _pattern(key)
    x8 = _resample(x, sr, WORK_SR)
    mark8 = _plan_mark(x8, pat, int(payload))
    if mark8 is None:
        return x.astype(np.float32)
    mark = _resample(mark8, WORK_SR, sr)
    mark = np.pad(mark, (0, max(0, len(x) - len(mark))))[: len(x)]
    return (x + mark).astype(np.float32)


def _plan_mark(x8: np.ndarray, pat: _Pattern, payload: int) -> np.ndarray | None:
    """The mark at WORK_SR: per-tile gains chosen greedily per slot, then re-measured and refined."""
    spec = _stft(x8)
    n_slots = spec.shape[0] // TILE_FRAMES
    if n_slots == 0:
        return None
    host = _tile_energy(spec)  # (S, T)
    if host.max() <= 0:
        return None
    floor = EMBED_FLOOR * host.mean() + _EPS
    target = np.where(pat.role < 0, pat.sign, pat.sign * _coded_bits(payload)[np.maximum(pat.role, 0)])
    want = target[np.arange(n_slots) % PERIOD]  # (S, P) desired sign of each pair
    slot_energy = (np.abs(spec[: n_slots * TILE_FRAMES]) ** 2).reshape(n_slots, -1).sum(axis=1)
    budget = slot_energy * 10 ** (-_MODEL_SNR_DB / 10)
    ea, eb = host[:, 0::2], host[:, 1::2]
    small = np.minimum(ea, eb)
    value = small / (small + _VALUE_FLOOR * host.mean() + _EPS)  # how likely the pair survives noise

    gain = np.zeros_like(host)  # log-energy gain applied to each tile
    mark8 = np.zeros_like(x8)
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        for it in range(_ITERATIONS):
            cur = host if it == 0 else _tile_energy(_stft(x8 + mark8))[:n_slots]
            ca, cb = cur[:, 0::2], cur[:, 1::2]
            d = want * (np.log(ca + floor) - np.log(cb + floor))
            # Move energy from the tile that should be quieter to the other, keeping their sum.
            hi, lo = np.where(want > 0, ca, cb), np.where(want > 0, cb, ca)
            total = hi + lo
            em = math.exp(MARGIN)
            lo_new = (total - floor * (em - 1)) / (1 + em)
            hi_new = total - lo_new
            g_hi = np.log(np.maximum(hi_new, _EPS) / np.maximum(hi, _EPS))
            g_lo = np.log(np.maximum(lo_new, _EPS) / np.maximum(lo, _EPS))
            new_a = gain[:, 0::2] + np.where(want > 0, g_hi, g_lo)
            new_b = gain[:, 1::2] + np.where(want > 0, g_lo, g_hi)
            ok = (d < MARGIN) & (lo_new >= 0) & (hi > 0) & (lo > 0)
            ok &= (np.abs(new_a) <= _MAX_GAIN) & (np.abs(new_b) <= _MAX_GAIN)
            cost_now = _mark_energy(gain[:, 0::2], ea) + _mark_energy(gain[:, 1::2], eb)
            extra = np.where(ok, _mark_energy(new_a, ea) + _mark_energy(new_b, eb) - cost_now, np.inf)
            extra = np.nan_to_num(extra, nan=np.inf)
            # Greedy per slot: cheapest (robustness-weighted) pairs first, while the budget lasts.
            order = np.argsort(extra / np.maximum(value, 1e-9), axis=1)
            spent = np.cumsum(np.take_along_axis(extra, order, 1), axis=1) + cost_now.sum(axis=1, keepdims=True)
            accept = np.zeros_like(ok)
            np.put_along_axis(accept, order, spent <= budget[:, None], 1)
            gain[:, 0::2] = np.where(accept, new_a, gain[:, 0::2])
            gain[:, 1::2] = np.where(accept, new_b, gain[:, 1::2])
            mask = np.ones(spec.shape)
            tiles = np.repeat(np.repeat(np.exp(gain / 2), TILE_BINS, axis=1), TILE_FRAMES, axis=0)
            mask[: n_slots * TILE_FRAMES, BIN_LO : BIN_LO + N_TILES * TILE_BINS] = tiles
            mark8 = _istft(spec * (mask - 1), len(x8))
    return _cap_snr(mark8, x8)


def _mark_energy(gain: np.ndarray, energy: np.ndarray) -> np.ndarray:
    return (np.exp(gain / 2) - 1) ** 2 * energy


def _cap_snr(mark: np.ndarray, host: np.ndarray) -> np.ndarray:
    """Scale the mark down wherever it is less than TARGET_SNR_DB below the host (32 ms windows)."""
    win = np.ones(TILE_FRAMES * HOP)
    e_mark = np.convolve(mark**2, win, mode="same")
    e_host = np.convolve(host**2, win, mode="same")
    limit = e_host * 10 ** (-TARGET_SNR_DB / 10)
    scale = np.minimum(1.0, np.sqrt(limit / np.maximum(e_mark, 1e-30)))
    # The scale is applied per sample; smoothing it would let the cap be exceeded at its edges.
    return mark * scale


# --------------------------------------------------------------------------- detect


def detect(wav: np.ndarray, sr: int, *, key: bytes, payloads: tuple[int, ...] = (DEFAULT_PAYLOAD,)) -> WatermarkResult:
    """Look for the watermark of ``key`` in ``wav`` (mono float, any sample rate, any length).

    Any payload is found through the sync positions (half of the pattern). ``payloads`` lists
    payloads worth testing with the *whole* pattern (by default valle2's own model id): a
    clip carrying one of them scores ~1.4x higher. Each extra payload costs a little
    threshold (one more family of hypotheses in the Bonferroni bound).
    """
    x = _as_mono(wav, "audio to check")
    sr = _check_sr(sr)
    pat = _pattern(key)
    x8 = _resample(x, sr, WORK_SR)
    known = tuple(dict.fromkeys(int(q) for q in payloads if 0 <= int(q) < 2**PAYLOAD_BITS))
    sync = pat.role < 0
    # Templates: signs (0 = position not used) and the payload they imply (None = read the bits).
    templates = [(np.where(sync, pat.sign, 0.0), None)]
    for q in known:
        templates.append((np.where(sync, pat.sign, pat.sign * _coded_bits(q)[np.maximum(pat.role, 0)]), q))
    used = [t != 0 for t, _ in templates]

    # best[(template, windowed)] = (z, aggregated pair values, offset in samples)
    best: dict[tuple[int, bool], tuple] = {}
    n_alignments, n_windows = 0, 0
    for offset in _OFFSETS:
        spec = _stft(x8[offset:])
        for phase in range(TILE_FRAMES):
            votes = _pair_votes(spec[phase:])  # (S, P)
            n_slots = len(votes)
            if n_slots == 0:
                continue
            n_alignments += 1
            # Whole file: sum each pattern position over its repeats, then correlate.
            # Slot t sits at pattern row (t + h) % PERIOD under cyclic shift h.
            agg = np.zeros((PERIOD, N_PAIRS))
            np.add.at(agg, np.arange(n_slots) % PERIOD, votes)
            for h in range(PERIOD):
                a = np.roll(agg, h, axis=0)
                a2 = a**2
                for i, (tmpl, _) in enumerate(templates):
                    den = math.sqrt(float(a2[used[i]].sum()))
                    if den > 0:
                        z = float((tmpl * a).sum()) / den
                        if z > best.get((i, False), (-np.inf,))[0]:
                            best[(i, False)] = (z, a, offset + phase * HOP)
            # Windows of one period: no repeats inside, so the Rademacher bound holds as is.
            if n_slots >= PERIOD + _WINDOW_HOP:
                starts = np.arange(0, n_slots - PERIOD + 1, _WINDOW_HOP)
                n_windows = max(n_windows, len(starts))
                for i, (tmpl, _) in enumerate(templates):
                    z, h, j = _window_scan(votes, tmpl, used[i], starts)
                    if z > best.get((i, True), (-np.inf,))[0]:
                        t0 = int(starts[j])
                        a = np.zeros((PERIOD, N_PAIRS))
                        np.add.at(a, (np.arange(t0, t0 + PERIOD) + h) % PERIOD, votes[t0 : t0 + PERIOD])
                        best[(i, True)] = (z, a, offset + (phase + t0 * TILE_FRAMES) * HOP)

    # Bonferroni over every family (template x whole/windowed) and every hypothesis in it.
    families = len(templates) * (2 if n_windows else 1)
    hyp = {False: max(1, n_alignments) * PERIOD, True: max(1, n_alignments) * PERIOD * max(1, n_windows)}
    hypotheses = len(templates) * (hyp[False] + (hyp[True] if n_windows else 0))
    choice, p = None, 1.0
    for (i, windowed), (z, a, off) in best.items():
        pz = min(1.0, families * hyp[windowed] * _normal_sf(z))
        if choice is None or pz < p:
            choice, p = (i, windowed, z, a, off), pz
    if choice is None:
        return WatermarkResult(watermarked=False, score=0.0, payload=None, p_value=1.0,
                               threshold=_threshold(families * hyp[False]), hypotheses=hypotheses)
    i, windowed, z, agg, off = choice
    watermarked = bool(p <= ALPHA)
    payload, confidence = None, 0.0
    if watermarked:
        payload, confidence = _read_payload(agg, pat)
        if payload is None and templates[i][1] is not None:
            payload = templates[i][1]  # the whole pattern of this known payload matched
    return WatermarkResult(watermarked=watermarked, score=float(z), payload=payload, p_value=float(p),
                           threshold=_threshold(families * hyp[windowed]), offset_s=off / WORK_SR,
                           hypotheses=int(hypotheses), payload_confidence=confidence)


def _pair_votes(spec: np.ndarray) -> np.ndarray:
    """tanh-squashed log-energy ratio of every pair, (slots, N_PAIRS); 0 where there is no signal."""
    energy = _tile_energy(spec)
    if energy.size == 0:
        return np.zeros((0, N_PAIRS))
    # Tiles near the noise floor vote ~0: the floor follows the quietest quarter of the tiles
    # (noise, if any) but never drops below DETECT_FLOOR of the mean (clean audio).
    floor = max(DETECT_FLOOR * energy.mean(), NOISE_FLOOR_FACTOR * float(np.percentile(energy, 25))) + _EPS
    log_e = np.log(energy + floor)
    return np.tanh((log_e[:, 0::2] - log_e[:, 1::2]) / SQUASH)


def _window_scan(votes, tmpl, used, starts):
    """Best (z, shift, window index) over windows of PERIOD slots starting at ``starts``."""
    n_slots = len(votes)
    best = (-np.inf, 0, 0)
    sq = votes**2
    for h in range(PERIOD):
        idx = (np.arange(n_slots) + h) % PERIOD
        num = (tmpl[idx] * votes).sum(axis=1)
        den = (used[idx] * sq).sum(axis=1)
        cnum = np.concatenate([[0.0], np.cumsum(num)])
        cden = np.concatenate([[0.0], np.cumsum(den)])
        wn = cnum[starts + PERIOD] - cnum[starts]
        wd = cden[starts + PERIOD] - cden[starts]
        with np.errstate(divide="ignore", invalid="ignore"):
            z = np.where(wd > 0, wn / np.sqrt(np.maximum(wd, 1e-30)), -np.inf)
        i = int(np.argmax(z))
        if z[i] > best[0]:
            best = (float(z[i]), h, i)
    return best


def _read_payload(agg: np.ndarray, pat: _Pattern) -> tuple[int | None, float]:
    sums = np.zeros(CODED_BITS)
    norms = np.zeros(CODED_BITS)
    np.add.at(sums, pat.role[pat.role >= 0], (pat.sign * agg)[pat.role >= 0])
    np.add.at(norms, pat.role[pat.role >= 0], (agg**2)[pat.role >= 0])
    z_bits = sums / np.sqrt(np.maximum(norms, 1e-30))
    return _decode_bits(sums), float(np.min(np.abs(z_bits)))


def _normal_sf(z: float) -> float:
    return 0.5 * math.erfc(z / math.sqrt(2))


def _threshold(hypotheses: int) -> float:
    """The z-score at which ``hypotheses * Q(z) == ALPHA``."""
    target = ALPHA / hypotheses
    lo, hi = 0.0, 40.0
    for _ in range(80):
        mid = (lo + hi) / 2
        if _normal_sf(mid) > target:
            lo = mid
        else:
            hi = mid
    return hi
