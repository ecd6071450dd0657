"""Synthetic-speech detector: does this audio come out of valle2's waveform generator?

The watermark (:mod:`valle2.safety.watermark`) can be removed by someone who knows the key or
who attacks it hard enough. This detector looks instead for the traces the valle2-mel vocoder
itself leaves, which every output of the default model carries::

    wav ──resample 24 kHz──▶ STFT(1024, hop 256) ──▶ hand-made features φ ∈ R^F
    φ ──standardise (μ, σ)──▶ logistic regression (w, b) ──▶ p(synthetic)

Features (all level-invariant; computed on voiced frames, those within 40 dB of the loudest):

- log-spectrum shape: mean and std over time of the log power in 24 log-spaced bands,
  relative to the clip's mean log power (the vocoder's spectral envelope and its smoothing);
- spectral flatness per band (the vocoder's noise floor between harmonics);
- temporal roughness per band: mean |Δ log power| between frames (vocoders smooth in time);
- phase coherence per band: magnitude-weighted |mean e^{iΔ²φ}| of the second time difference
  of the STFT phase (predicted phase is more regular than a source-filter engine's);
- frame-rate periodicity: energy of the high-band envelope at the codec's 75 Hz frame rate
  and its harmonic, relative to neighbouring modulation frequencies (iSTFT frame seams).

Negative class: speech from offline engines (espeak, flite, festival). Positive class: the same
audio encoded and decoded by the bundled valle2-mel codec. So the detector answers "has this
been through valle2-mel's vocoder", not "is this synthetic speech" in general: engine voices
are synthetic too, and are the *negative* class. ``benchmarks/train_detector.py`` trains it
and reports EER on held-out and reserved voices (``benchmarks/RESULTS.md, "Synthetic-speech detector"``).

File format (``detector.json``, no pickle): ``{"format": "valle2-detector", "version": 1,
"features": {...}, "mean": [...], "std": [...], "weights": [...], "bias": b, "threshold": t}``.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from valle2.errors import AudioError, ModelFileError

FORMAT = "valle2-detector"
FORMAT_VERSION = 1
DEFAULT_PATH = Path(__file__).resolve().parent.parent / "assets" / "detector" / "detector.json"


@dataclass(frozen=True)
class FeatureConfig:
    sample_rate: int = 24000
    n_fft: int = 1024
    hop: int = 256
    n_bands: int = 24
    f_min: float = 60.0
    f_max: float = 11500.0
    voiced_db: float = 40.0  # frames within this many dB of the loudest count as active
    codec_frame_rate: float = 75.0  # valle2-mel: 24000 / 320


# ---------------------------------------------------------------------------------------
# Features


def _band_edges(cfg: FeatureConfig) -> np.ndarray:
    """FFT-bin edges of ``n_bands`` log-spaced bands: [n_bands + 1]."""
    hz = np.geomspace(cfg.f_min, cfg.f_max, cfg.n_bands + 1)
    bins = np.round(hz * cfg.n_fft / cfg.sample_rate).astype(int)
    # Keep every band at least one bin wide (low bands are narrower than a bin at n_fft 1024).
    for i in range(1, len(bins)):
        bins[i] = max(bins[i], bins[i - 1] + 1)
    return bins


def _prepare(wav: np.ndarray, sr: int, cfg: FeatureConfig) -> np.ndarray:
    wav = np.asarray(wav, dtype=np.float32)
    if wav.ndim == 2 and 1 in wav.shape:
        wav = wav.reshape(-1)
    if wav.ndim != 1:
        raise AudioError(f"expected a mono waveform [N], got shape {wav.shape}")
    if sr != cfg.sample_rate:
        import soxr

        wav = soxr.resample(wav, sr, cfg.sample_rate).astype(np.float32)
    if len(wav) < cfg.sample_rate // 2:
        raise AudioError(f"audio is {len(wav) / cfg.sample_rate:.2f}s; the detector needs at least 0.5s")
    if not np.all(np.isfinite(wav)):
        raise AudioError("audio contains NaN or infinite samples")
    x = wav.astype(np.float64)
    rms = float(np.sqrt(np.mean(x**2)))
    if rms < 1e-5:
        raise AudioError(f"audio is silent (RMS {rms:.1e}); nothing for the detector to score")
    # Unit RMS, so the spectral floor below is relative and every feature is level-invariant
    # (band-limited input, e.g. resampled from 16 kHz, has empty bands that sit on the floor).
    return x / rms


def _stft(x: np.ndarray, n_fft: int, hop: int) -> np.ndarray:
    """Complex STFT [T, n_fft//2 + 1] with a Hann window, no padding."""
    n_frames = 1 + (len(x) - n_fft) // hop
    idx = np.arange(n_fft)[None, :] + hop * np.arange(n_frames)[:, None]
    return np.fft.rfft(x[idx] * np.hanning(n_fft)[None, :], axis=1)


def _frame_rate_peak(x: np.ndarray, cfg: FeatureConfig) -> np.ndarray:
    """Log energy of the high-band envelope at the codec frame rate (and 2x) vs its neighbours."""
    import scipy.signal

    sos = scipy.signal.butter(4, [2000, 10000], btype="band", fs=cfg.sample_rate, output="sos")
    env = np.abs(scipy.signal.sosfiltfilt(sos, x))
    # Envelope at 1 kHz, normalised, then its spectrum (Welch) around the frame rate.
    env = scipy.signal.resample_poly(env, 1, 24)
    env = env / (env.mean() + 1e-12) - 1.0
    f, p = scipy.signal.welch(env, fs=1000.0, nperseg=min(len(env), 512))
    out = []
    for k in (1, 2):
        f0 = k * cfg.codec_frame_rate
        peak = p[np.abs(f - f0) <= 2.0].mean()
        side = p[(np.abs(f - f0) > 4.0) & (np.abs(f - f0) <= 15.0)].mean()
        out.append(np.log(peak + 1e-12) - np.log(side + 1e-12))
    return np.array(out)


def features(wav: np.ndarray, sr: int, cfg: FeatureConfig = FeatureConfig()) -> np.ndarray:
    """Feature vector φ [5 * n_bands + 2] of one clip (see the module docstring)."""
    x = _prepare(wav, sr, cfg)
    X = _stft(x, cfg.n_fft, cfg.hop)  # (T, F)
    power = np.abs(X) ** 2 + 1e-10  # -100 dB below the (unit) mean power
    frame_db = 10 * np.log10(power.sum(axis=1))
    active = frame_db >= frame_db.max() - cfg.voiced_db
    if active.sum() < 4:
        raise AudioError("audio is (nearly) silent; nothing for the detector to score")
    edges = _band_edges(cfg)
    logp = np.log(power)

    # Phase: second time-difference of the phase removes each bin's expected advance.
    phase = np.angle(X)
    d2 = np.diff(phase, n=2, axis=0)  # (T-2, F)
    unit = np.exp(1j * d2)
    mag = np.abs(X[2:])
    act2 = active[2:]

    mean_b, std_b, flat_b, rough_b, coh_b = [], [], [], [], []
    for lo, hi in zip(edges[:-1], edges[1:]):
        band = power[active, lo:hi]  # (Ta, Fb)
        lb = np.log(band.mean(axis=1))
        mean_b.append(lb.mean())
        std_b.append(lb.std())
        flat_b.append(np.mean(np.log(band).mean(axis=1) - np.log(band.mean(axis=1))))
        lband = logp[:, lo:hi].mean(axis=1)
        rough_b.append(np.abs(np.diff(lband))[active[1:]].mean())
        w = mag[act2, lo:hi]
        coh_b.append(np.abs((unit[act2, lo:hi] * w).sum()) / (w.sum() + 1e-12))
    mean_b = np.array(mean_b)
    mean_b -= mean_b.mean()  # level invariance
    return np.concatenate([mean_b, std_b, flat_b, rough_b, coh_b, _frame_rate_peak(x, cfg)]).astype(np.float64)


# ---------------------------------------------------------------------------------------
# Logistic regression (numpy; full-batch Newton steps with an L2 penalty)


def fit_logistic(X: np.ndarray, y: np.ndarray, l2: float = 1.0, n_iter: int = 50) -> tuple[np.ndarray, float]:
    """Weights [F] and bias minimising mean log-loss + l2/2N ·|w|² on standardised X [N, F]."""
    n, f = X.shape
    A = np.hstack([X, np.ones((n, 1))])
    theta = np.zeros(f + 1)
    reg = np.full(f + 1, l2 / n)
    reg[-1] = 0.0  # no penalty on the bias
    for _ in range(n_iter):
        p = 1 / (1 + np.exp(-np.clip(A @ theta, -30, 30)))
        grad = A.T @ (p - y) / n + reg * theta
        hess = (A * (p * (1 - p))[:, None]).T @ A / n + np.diag(reg + 1e-9)
        step = np.linalg.solve(hess, grad)
        theta -= step
        if np.abs(step).max() < 1e-8:
            break
    return theta[:-1], float(theta[-1])


def eer(scores_neg: np.ndarray, scores_pos: np.ndarray) -> tuple[float, float]:
    """Equal error rate and a threshold where false alarms ≈ misses (score ≥ t ⇒ positive).

    The threshold is halfway between the lowest score that reaches the EER and the next lower
    score, so separable data get a threshold in the middle of the gap, not on its edge.
    """
    cands = np.unique(np.concatenate([scores_neg, scores_pos]))
    best_i, best = 0, (1.0, math.inf)
    for i, t in enumerate(cands):
        far = float(np.mean(scores_neg >= t))
        frr = float(np.mean(scores_pos < t))
        if abs(far - frr) < best[1]:
            best_i, best = i, ((far + frr) / 2, abs(far - frr))
    t = cands[best_i] if best_i == 0 else (cands[best_i] + cands[best_i - 1]) / 2
    return best[0], float(t)


# ---------------------------------------------------------------------------------------
# The detector


class SyntheticSpeechDetector:
    """Standardised features → logistic regression → p(synthetic by valle2's vocoder)."""

    def __init__(self, cfg: FeatureConfig, mean: np.ndarray, std: np.ndarray, weights: np.ndarray,
                 bias: float, threshold: float = 0.5, extra: dict | None = None):
        n = len(weights)
        if not (len(mean) == len(std) == n):
            raise ModelFileError(f"detector shapes disagree: mean {len(mean)}, std {len(std)}, weights {n}")
        self.cfg, self.threshold, self.extra = cfg, float(threshold), dict(extra or {})
        self.mean, self.std = np.asarray(mean, float), np.asarray(std, float)
        self.weights, self.bias = np.asarray(weights, float), float(bias)

    @classmethod
    def fit(cls, feats: np.ndarray, labels: np.ndarray, cfg: FeatureConfig = FeatureConfig(),
            l2: float = 1.0, extra: dict | None = None) -> "SyntheticSpeechDetector":
        """Train on features [N, F] (from :func:`features`) and labels [N] (1 = synthetic)."""
        mean, std = feats.mean(axis=0), feats.std(axis=0) + 1e-9
        w, b = fit_logistic((feats - mean) / std, labels.astype(float), l2=l2)
        det = cls(cfg, mean, std, w, b, 0.5, extra)
        # Threshold at the training EER point (balanced errors rather than p = 0.5), found on
        # logits so that a separating gap is split in the middle of the log-odds.
        z = ((feats - mean) / std) @ w + b
        t = eer(z[labels == 0], z[labels == 1])[1]
        det.threshold = float(1 / (1 + np.exp(-np.clip(t, -30, 30))))
        return det

    def score_features(self, feats: np.ndarray) -> np.ndarray:
        z = ((np.atleast_2d(feats) - self.mean) / self.std) @ self.weights + self.bias
        return 1 / (1 + np.exp(-np.clip(z, -30, 30)))

    def score(self, wav: np.ndarray, sr: int) -> float:
        """Probability (0-1) that ``wav`` went through valle2's vocoder."""
        return float(self.score_features(features(wav, sr, self.cfg))[0])

    def predict(self, wav: np.ndarray, sr: int) -> dict:
        s = self.score(wav, sr)
        return {"synthetic": bool(s >= self.threshold), "score": round(s, 4), "threshold": round(self.threshold, 4)}

    # -- files ----------------------------------------------------------------------------
    def save(self, path: Path) -> None:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        doc = {"format": FORMAT, "version": FORMAT_VERSION, "features": asdict(self.cfg),
               "mean": self.mean.tolist(), "std": self.std.tolist(), "weights": self.weights.tolist(),
               "bias": self.bias, "threshold": self.threshold, "extra": self.extra}
        path.write_text(json.dumps(doc, indent=1) + "\n")

    @classmethod
    def load(cls, path: Path | str | None = None) -> "SyntheticSpeechDetector":
        """Load a detector file; ``None`` gives the one bundled with valle2."""
        path = Path(path) if path is not None else DEFAULT_PATH
        try:
            doc = json.loads(path.read_text())
        except (OSError, json.JSONDecodeError) as exc:
            raise ModelFileError(f"cannot read detector file {path}: {exc}") from None
        if doc.get("format") != FORMAT:
            raise ModelFileError(f"{path} is not a valle2 detector file (format {doc.get('format')!r})")
        if doc.get("version") != FORMAT_VERSION:
            raise ModelFileError(f"{path} has detector format version {doc.get('version')!r}; "
                                 f"this valle2 reads version {FORMAT_VERSION}")
        return cls(FeatureConfig(**doc["features"]), doc["mean"], doc["std"], doc["weights"], doc["bias"],
                   doc["threshold"], doc.get("extra"))
