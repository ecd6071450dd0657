"""Rebuild a codec from the ``identity()`` dict a model file recorded.

A model file stores its codec's ``identity()`` (``{"type": ..., ...}``) and
``codec.save(folder)`` writes whatever weights that codec needs; ``load_codec``
dispatches on ``identity["type"]`` to a factory ``factory(identity, folder) -> Codec``.

Codecs plug in with :func:`register_codec`. Built-in types are listed in ``_BUILTIN``
as ``"module:function"`` and imported on first use, so that loading an EnCodec-based
model does not import the other codecs and vice versa.
"""

from __future__ import annotations

import importlib
from pathlib import Path
from typing import Callable

from valle2.codec.base import Codec
from valle2.errors import ModelFileError

CodecFactory = Callable[..., Codec]  # factory(identity: dict, folder: Path | None[, device=...]) -> Codec

_BUILTIN: dict[str, str] = {
    "encodec": "valle2.codec.encodec:load_from_identity",
    "valle2-mel": "valle2.codec.mel:load_from_identity",
}
_REGISTRY: dict[str, CodecFactory] = {}


def register_codec(type_name: str, factory: CodecFactory, *, overwrite: bool = False) -> None:
    """Make ``load_codec`` build codecs whose identity has ``"type": type_name`` with ``factory``.

    ``factory(identity, folder)`` must return a :class:`Codec`; if it also accepts a
    ``device`` keyword, ``load_codec(..., device=...)`` passes it on. Registering a
    different factory under a taken name needs ``overwrite=True`` (the same function
    registered again, e.g. by a reloaded module, is fine).
    """
    if not isinstance(type_name, str) or not type_name:
        raise ValueError(f"codec type name must be a non-empty string, got {type_name!r}")
    if not callable(factory):
        raise TypeError(f"codec factory for {type_name!r} must be callable, got {type(factory).__name__}")
    current = _REGISTRY.get(type_name)
    if current is not None and current is not factory and not overwrite and _name(current) != _name(factory):
        raise ValueError(f"codec type {type_name!r} is already registered (to {current!r}); pass overwrite=True")
    _REGISTRY[type_name] = factory


def known_codec_types() -> list[str]:
    """Every type name ``load_codec`` accepts, sorted."""
    return sorted(set(_REGISTRY) | set(_BUILTIN))


def load_codec(identity: dict, folder: Path | None = None, *, device=None) -> Codec:
    """Build the codec ``identity`` describes, with any weights ``codec.save(folder)`` wrote.

    Raises :class:`ModelFileError` when the identity has no known ``"type"``.
    """
    if not isinstance(identity, dict) or not isinstance(identity.get("type"), str):
        raise ModelFileError(f"codec description must be a dict with a 'type' string, got {identity!r}")
    type_name = identity["type"]
    factory = _REGISTRY.get(type_name)
    if factory is None and type_name in _BUILTIN:
        module_name, func_name = _BUILTIN[type_name].split(":")
        factory = getattr(importlib.import_module(module_name), func_name)
        _REGISTRY[type_name] = factory
    if factory is None:
        raise ModelFileError(
            f"unknown codec type {type_name!r} in the model file; known types: {', '.join(known_codec_types())}"
        )
    folder = Path(folder) if folder is not None else None
    if device is None:
        return factory(identity, folder)
    return factory(identity, folder, device=device)


def _name(factory) -> str:
    return f"{getattr(factory, '__module__', '')}.{getattr(factory, '__qualname__', repr(factory))}"
