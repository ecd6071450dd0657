"""Static key/value cache for incremental decoding.

One pre-allocated buffer per layer, ``(B, H, L_max, Dh)``, written in place; it lives
outside the module state dict so it is never saved. Decoding fills it with a prefill of
the whole prompt, then one position per step (see ``generation/ar_decode.py``).
"""

from __future__ import annotations

import torch


class KVCache:
    def __init__(self, batch: int, n_heads: int, max_len: int, head_dim: int, *, dtype: torch.dtype, device: torch.device):
        self.max_len = max_len
        self.k = torch.zeros(batch, n_heads, max_len, head_dim, dtype=dtype, device=device)
        self.v = torch.zeros(batch, n_heads, max_len, head_dim, dtype=dtype, device=device)

    def update(self, start: int, k: torch.Tensor, v: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Write ``k, v (B, H, L, Dh)`` at positions ``[start, start+L)``; return keys/values ``[0, start+L)``."""
        end = start + k.shape[2]
        if end > self.max_len:
            raise RuntimeError(f"KV cache overflow: position {end} > capacity {self.max_len}")
        self.k[:, :, start:end] = k
        self.v[:, :, start:end] = v
        # Slicing (a view) keeps attention cost proportional to the filled length, not the capacity.
        return self.k[:, :, :end], self.v[:, :, :end]
