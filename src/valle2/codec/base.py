"""The codec interface every speech codec in valle2 implements.

A codec turns a mono waveform into discrete codes ``[K, T]`` (K codebooks, T frames at
``frame_rate`` Hz, each code in ``[0, codebook_size)``; codebook 0 is the coarsest) and
back. Models record ``identity()`` in their files so the same codec is rebuilt at load.
"""

from __future__ import annotations

from pathlib import Path
from typing import Protocol, runtime_checkable

import numpy as np
import torch


def same_codes(a: dict, b: dict) -> bool:
    """Whether two codec ``identity()`` dicts give the same codes.

    A codec whose identity carries ``codebooks_sha256`` (a hash of everything its codes depend on)
    can be re-released under another name with only its decoder changed (valle2-mel-v4 is v3's
    codes with a new vocoder): tokens and models of one then go with the other. Otherwise the
    identities must match exactly.
    """
    if a.get("codebooks_sha256") is not None and b.get("codebooks_sha256") is not None:
        a, b = ({k: v for k, v in d.items() if k != "name"} for d in (a, b))
    return a == b


@runtime_checkable
class Codec(Protocol):
    sample_rate: int  # Hz of decode() output and of the audio encode() expects after resampling
    frame_rate: float  # code frames per second
    n_codebooks: int  # K
    codebook_size: int  # V

    def encode(self, wav: np.ndarray | torch.Tensor, sr: int) -> torch.Tensor:
        """Mono float waveform ``[N]`` at ``sr`` Hz -> codes ``[K, T]`` (int64, CPU)."""
        ...

    def decode(self, codes: torch.Tensor) -> np.ndarray:
        """Codes ``[K, T]`` -> mono float32 waveform ``[N]`` at ``sample_rate``."""
        ...

    def identity(self) -> dict:
        """JSON-able description: ``{"type": ..., ...}``; enough for ``load_codec`` to rebuild it."""
        ...

    def save(self, folder: Path) -> None:
        """Write whatever weights ``load_codec(identity, folder)`` needs (may write nothing)."""
        ...
