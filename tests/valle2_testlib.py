"""Helpers shared by tests in several folders (a uniquely named module: `conftest` is ambiguous)."""

import json
from pathlib import Path

import numpy as np


def voiced_audio(seconds: float = 2.5, sr: int = 16000, f0: float = 140.0, seed: int = 0) -> np.ndarray:
    """A speech-like buzz: harmonics of a wobbling f0 with a syllable-rate envelope, plus a little noise."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * sr)) / sr
    f = f0 * (1 + 0.1 * np.sin(2 * np.pi * 0.7 * t))
    phase = 2 * np.pi * np.cumsum(f) / sr
    wav = sum(np.sin(k * phase) / k for k in range(1, 12))
    env = 0.5 + 0.5 * np.sin(2 * np.pi * 4 * t) ** 2
    return (0.2 * wav * env + 0.005 * rng.standard_normal(len(t))).astype(np.float32)


def vowel_tone(seconds: float, f0: float, seed: int, sr: int = 24000) -> np.ndarray:
    """A vowel-ish harmonic tone with vibrato and noise: enough structure for a codec's k-means."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * sr)) / sr
    f = f0 * (1 + 0.05 * np.sin(2 * np.pi * 3 * t))
    phase = 2 * np.pi * np.cumsum(f) / sr
    wav = sum(np.sin(h * phase) / h for h in range(1, 8)) * (0.5 + 0.5 * np.sin(2 * np.pi * 1.5 * t) ** 2)
    return (0.2 * wav + 0.01 * rng.standard_normal(len(t))).astype(np.float32)


def edit_saved_sampling(folder, **sampling) -> Path:
    """Change a saved model folder's default sampling in its ``config.json``, as a user editing it would."""
    path = Path(folder) / "config.json"
    meta = json.loads(path.read_text())
    meta["sampling"].update(sampling)
    path.write_text(json.dumps(meta))
    return Path(folder)
