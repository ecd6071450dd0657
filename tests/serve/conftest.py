"""Fixtures of the server tests: a short-spoken debug model, apps on it, test audio, a way to stall the engine."""

from __future__ import annotations

from contextlib import ExitStack

import pytest
from serve_testlib import API_KEY


@pytest.fixture(scope="session")
def serve_model():
    from valle2 import VallE2
    from valle2.generation.pipeline import LengthPolicy

    model = VallE2.debug(seed=0)
    # Short sentences keep every decode fast; min_ratio makes a random sentence run (almost) to
    # its cap instead of stopping at a random end token, so durations are predictable.
    model.length = LengthPolicy(max_seconds=0.4, min_ratio=10.0)
    return model


@pytest.fixture
def make_client(tmp_path, serve_model):
    """``make_client(**ServeConfig fields)`` -> a started TestClient on the debug model (auth off by default)."""
    from fastapi.testclient import TestClient

    from valle2.serve import ServeConfig, create_app

    with ExitStack() as stack:
        def make(**overrides):
            settings = {"data_dir": tmp_path / "server", "auth_disabled": True, "max_wait_ms": 5.0, **overrides}
            app = create_app(ServeConfig(**settings), model=serve_model)
            return stack.enter_context(TestClient(app, raise_server_exceptions=False))

        yield make


@pytest.fixture(scope="module")
def client(serve_model, tmp_path_factory):
    """One app with API keys for the read-mostly tests of a module."""
    from fastapi.testclient import TestClient

    from valle2.serve import ServeConfig, create_app

    cfg = ServeConfig(data_dir=tmp_path_factory.mktemp("server"), api_keys=(API_KEY, "other-key"), max_wait_ms=5.0)
    with TestClient(create_app(cfg, model=serve_model), raise_server_exceptions=False,
                    headers={"Authorization": f"Bearer {API_KEY}"}) as c:
        yield c
