"""``valle2 serve``: an OpenAI-compatible speech API with a voice library, dynamic batching,
streaming, limits and a web page. Build the app with :func:`create_app`."""

from __future__ import annotations

from valle2.serve.config import ServeConfig

__all__ = ["ServeConfig", "create_app"]


def create_app(config: ServeConfig | None = None, **kwargs):
    from valle2.serve.app import create_app as _create_app

    return _create_app(config or ServeConfig(), **kwargs)
