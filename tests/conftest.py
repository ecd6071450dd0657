"""Shared fixtures: the tiny random debug model and generated prompt audio (no network, CPU)."""

from __future__ import annotations

import numpy as np
import pytest


def pytest_configure(config):
    # One intra-op thread: the test models are tiny, and on a shared 2-core machine OpenMP
    # threads waiting on each other made small ops (a softmax over 65 codes) take milliseconds.
    import torch

    torch.set_num_threads(1)


@pytest.fixture(autouse=True)
def _isolated_home(tmp_path_factory, monkeypatch):
    """Keep consent stores, keys and audit logs of every test out of the user's home."""
    home = tmp_path_factory.mktemp("valle2-home")
    monkeypatch.setenv("VALLE2_HOME", str(home))
    return home


def voiced_audio(seconds: float = 2.5, sr: int = 16000, f0: float = 140.0, seed: int = 0) -> np.ndarray:
    """A speech-like buzz: harmonics of a wobbling f0 with a syllable-rate envelope, plus a little noise."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * sr)) / sr
    f = f0 * (1 + 0.1 * np.sin(2 * np.pi * 0.7 * t))
    phase = 2 * np.pi * np.cumsum(f) / sr
    wav = sum(np.sin(k * phase) / k for k in range(1, 12))
    env = 0.5 + 0.5 * np.sin(2 * np.pi * 4 * t) ** 2
    return (0.2 * wav * env + 0.005 * rng.standard_normal(len(t))).astype(np.float32)


@pytest.fixture(scope="session")
def debug_model():
    from valle2 import VallE2

    return VallE2.debug(group_size=2, seed=0)


@pytest.fixture(scope="session")
def prompt_wav(tmp_path_factory):
    import soundfile as sf

    path = tmp_path_factory.mktemp("prompt") / "prompt.wav"
    sf.write(path, voiced_audio(), 16000)
    return path
