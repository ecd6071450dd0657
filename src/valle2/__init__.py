"""valle2: VALL-E 2 zero-shot text-to-speech."""

from __future__ import annotations

__version__ = "0.1.0"
__all__ = ["VallE2", "__version__"]


def __getattr__(name: str):
    # Lazy so that `import valle2` (and the CLI's --help) does not pay for torch/transformers.
    if name == "VallE2":
        from valle2.models.valle2 import VallE2

        return VallE2
    raise AttributeError(name)
