"""The one cache behind ``get_asr`` and ``get_speaker_encoder``: a model is loaded once per (name, options)."""

from __future__ import annotations

import logging
import threading
import time
from typing import Any, Callable

logger = logging.getLogger(__name__)


def get_cached(cache: dict, lock: threading.Lock, name: str, kw: dict, build: Callable[[str, dict], Any],
               what: str) -> Any:
    """``cache[(name, kw)]``, built with ``build(name, kw)`` under ``lock`` the first time."""
    key = (name, tuple(sorted(kw.items())))
    with lock:
        if key not in cache:
            t0 = time.perf_counter()
            cache[key] = build(name, kw)
            logger.info("loaded %s %s in %.1f s", what, name, time.perf_counter() - t0)
        return cache[key]
