"""Shared fixtures: the tiny random debug model and generated prompt audio (no network, CPU)."""

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
