"""Pre-norm transformer: attention with an optional KV cache, optional AdaLN conditioning.

Shapes: B batch, L sequence length (queries), Lk keys, D width, H heads, Dh = D / H.
Masks are boolean ``(B, 1, L, Lk)``, True where attention is allowed.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from valle2.modules.kv_cache import KVCache


def sinusoids(positions: torch.Tensor, dim: int) -> torch.Tensor:
    """Sinusoidal position encodings for integer ``positions (B, L)`` -> ``(B, L, D)``."""
    half = dim // 2
    freqs = torch.exp(-math.log(10000.0) * torch.arange(half, device=positions.device, dtype=torch.float32) / half)
    angles = positions.to(torch.float32)[..., None] * freqs  # (B, L, D/2)
    enc = torch.cat([angles.sin(), angles.cos()], dim=-1)
    if dim % 2:
        enc = F.pad(enc, (0, 1))
    return enc


def attention_mask(
    key_valid: torch.Tensor, *, causal: bool, bidirectional_prefix: torch.Tensor | None = None, n_queries: int | None = None
) -> torch.Tensor:
    """Boolean mask ``(B, 1, L, Lk)`` for queries that are the *last* L of the Lk keys.

    key_valid (B, Lk): False for padding. causal: query i sees keys <= i.
    bidirectional_prefix (B, Lk): keys/queries inside it (the text of a prefix LM) see each
    other in both directions. Every query may always see itself, so that rows of padding
    never attend to nothing (which would make softmax NaN).
    """
    B, Lk = key_valid.shape
    L = Lk if n_queries is None else n_queries
    q_pos = torch.arange(Lk - L, Lk, device=key_valid.device)  # absolute positions of the queries
    k_pos = torch.arange(Lk, device=key_valid.device)
    allowed = key_valid[:, None, :].expand(B, L, Lk)
    if causal:
        order = k_pos[None, :] <= q_pos[:, None]  # (L, Lk)
        if bidirectional_prefix is not None:
            both = bidirectional_prefix[:, Lk - L :, None] & bidirectional_prefix[:, None, :]  # (B, L, Lk)
            order = order[None] | both
        allowed = allowed & order
    allowed = allowed | (k_pos[None, :] == q_pos[:, None])[None]
    return allowed[:, None]


class AdaLayerNorm(nn.Module):
    """LayerNorm whose scale and shift are predicted from a condition vector (e.g. the NAR stage)."""

    def __init__(self, dim: int, cond_dim: int):
        super().__init__()
        self.norm = nn.LayerNorm(dim)
        self.proj = nn.Linear(cond_dim, 2 * dim)
        nn.init.zeros_(self.proj.weight)  # start as a plain LayerNorm
        nn.init.zeros_(self.proj.bias)

    def forward(self, x: torch.Tensor, cond: torch.Tensor) -> torch.Tensor:
        scale, shift = self.proj(cond)[:, None].chunk(2, dim=-1)  # (B, 1, D) each
        return self.norm(x) * (1 + scale) + shift


class SelfAttention(nn.Module):
    def __init__(self, dim: int, n_heads: int, dropout: float):
        super().__init__()
        if dim % n_heads:
            raise ValueError(f"width {dim} is not divisible by {n_heads} heads")
        self.n_heads = n_heads
        self.dropout = dropout
        self.qkv = nn.Linear(dim, 3 * dim)
        self.out = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor, mask: torch.Tensor, cache: KVCache | None = None, start: int = 0) -> torch.Tensor:
        B, L, D = x.shape
        q, k, v = self.qkv(x).view(B, L, 3, self.n_heads, D // self.n_heads).permute(2, 0, 3, 1, 4)  # 3 x (B, H, L, Dh)
        if cache is not None:
            k, v = cache.update(start, k, v)
        y = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, dropout_p=self.dropout if self.training else 0.0)
        return self.out(y.transpose(1, 2).reshape(B, L, D))


class Block(nn.Module):
    def __init__(self, dim: int, n_heads: int, ffn_dim: int, dropout: float, cond_dim: int | None = None):
        super().__init__()
        self.cond = cond_dim is not None
        self.norm1 = AdaLayerNorm(dim, cond_dim) if self.cond else nn.LayerNorm(dim)
        self.attn = SelfAttention(dim, n_heads, dropout)
        self.norm2 = AdaLayerNorm(dim, cond_dim) if self.cond else nn.LayerNorm(dim)
        self.ffn = nn.Sequential(nn.Linear(dim, ffn_dim), nn.GELU(), nn.Linear(ffn_dim, dim))
        self.drop = nn.Dropout(dropout)

    def _norm(self, norm: nn.Module, x: torch.Tensor, cond: torch.Tensor | None) -> torch.Tensor:
        return norm(x, cond) if self.cond else norm(x)

    def forward(self, x, mask, cond=None, cache: KVCache | None = None, start: int = 0):
        x = x + self.drop(self.attn(self._norm(self.norm1, x, cond), mask, cache, start))
        return x + self.drop(self.ffn(self._norm(self.norm2, x, cond)))


class Transformer(nn.Module):
    """A stack of pre-norm blocks and a final norm."""

    def __init__(self, dim: int, n_layers: int, n_heads: int, ffn_dim: int, dropout: float, cond_dim: int | None = None):
        super().__init__()
        self.dim, self.n_heads = dim, n_heads
        self.blocks = nn.ModuleList(Block(dim, n_heads, ffn_dim, dropout, cond_dim) for _ in range(n_layers))
        self.cond = cond_dim is not None
        self.norm = AdaLayerNorm(dim, cond_dim) if self.cond else nn.LayerNorm(dim)

    def make_caches(self, batch: int, max_len: int, *, dtype: torch.dtype, device: torch.device) -> list[KVCache]:
        head_dim = self.dim // self.n_heads
        return [KVCache(batch, self.n_heads, max_len, head_dim, dtype=dtype, device=device) for _ in self.blocks]

    def forward(self, x, mask, cond=None, caches: list[KVCache] | None = None, start: int = 0):
        for i, block in enumerate(self.blocks):
            x = block(x, mask, cond, None if caches is None else caches[i], start)
        return self.norm(x, cond) if self.cond else self.norm(x)
