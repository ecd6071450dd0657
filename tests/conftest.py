"""Shared fixtures: the tiny random debug models (EnCodec-like and valle2-mel) and generated prompt audio (no network, CPU)."""

from __future__ import annotations

import pytest

from valle2_testlib import voiced_audio


def pytest_configure(config):
    # One intra-op thread: the test models are tiny, and on a shared 2-core machine OpenMP
    # threads waiting on each other made small ops (a softmax over 65 codes) take milliseconds.
    import os
    import tempfile

    import torch

    torch.set_num_threads(1)
    # Session- and module-scoped fixtures run before the per-test home below: give them one too.
    os.environ["VALLE2_HOME"] = tempfile.mkdtemp(prefix="valle2-tests-home-")


@pytest.fixture(autouse=True)
def _isolated_home(tmp_path_factory, monkeypatch):
    """Keep consent stores, keys and audit logs of every test out of the user's home."""
    home = tmp_path_factory.mktemp("valle2-home")
    monkeypatch.setenv("VALLE2_HOME", str(home))
    return home


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


@pytest.fixture(scope="module")
def mel_model():
    """A random debug-size model on a debug valle2-mel codec (4 x 16): a codec with a log-mel to post-filter."""
    import torch

    from valle2 import VallE2
    from valle2.codec.mel import MelCodec
    from valle2.models.config import PRESETS, ModelConfig
    from valle2.text import SymbolTable

    symbols = SymbolTable.default("en-us")
    codec = MelCodec.debug(n_codebooks=4, codebook_size=16)
    config = ModelConfig(n_text_tokens=len(symbols), n_codebooks=4, codebook_size=16, group_size=2,
                         ar=PRESETS["debug"], nar=PRESETS["debug"])
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        return VallE2(config, symbols, codec, requires_consent=False, name="mel-debug")
