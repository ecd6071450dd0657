"""Autoregressive model for codebook 0 with grouped code modeling (VALL-E 2, SPEC.md §2).

Sequence layout (one row; padding may sit anywhere, it is masked out)::

    text block:  p1 p2 ... pS <eos>          positions 0..S      (bidirectional: prefix LM)
    code block:  <bos> g1 g2 ... gN          positions 0..N      (causal)

A group g = G consecutive codebook-0 codes; its embedding is the G code embeddings
concatenated and projected to D. From every code-block position the model predicts the
*next* group's G codes at once (hidden -> G vectors -> logits over V codes + EOS, tied to
the code embedding). Code token ids: 0..V-1 codes, V = EOS, V+1 = BOS.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from valle2.models.grouping import group_codes
from valle2.modules.transformer import Transformer, attention_mask, sinusoids

IGNORE = -100


class ARModel(nn.Module):
    def __init__(
        self,
        *,
        n_text_tokens: int,
        codebook_size: int,
        group_size: int,
        dim: int,
        n_layers: int,
        n_heads: int,
        ffn_dim: int,
        dropout: float = 0.1,
        prefix_lm: bool = True,
        embed_scale: bool = True,
    ):
        super().__init__()
        self.V, self.G, self.dim, self.prefix_lm = codebook_size, group_size, dim, prefix_lm
        self.eos, self.bos = codebook_size, codebook_size + 1
        self.text_emb = nn.Embedding(n_text_tokens, dim)
        self.code_emb = nn.Embedding(codebook_size + 2, dim)  # codes, EOS, BOS
        self.group_in = nn.Linear(group_size * dim, dim) if group_size > 1 else nn.Identity()
        self.group_out = nn.Linear(dim, group_size * dim) if group_size > 1 else nn.Identity()
        self.text_alpha = nn.Parameter(torch.ones(1))  # scales of the two sinusoidal position sets
        self.code_alpha = nn.Parameter(torch.ones(1))
        self.transformer = Transformer(dim, n_layers, n_heads, ffn_dim, dropout)
        self.drop = nn.Dropout(dropout)
        # embed_scale: N(0, 1/D) tables, inputs x sqrt(D) (unit scale, like the positions); the output
        # head is tied to code_emb, whose 1/sqrt(D) scale gives unit-variance logits at init.
        self.in_scale = dim**0.5 if embed_scale else 1.0
        for e in (self.text_emb, self.code_emb):
            nn.init.normal_(e.weight, std=dim**-0.5 if embed_scale else 0.02)

    # -- inputs ------------------------------------------------------------------------
    @staticmethod
    def positions(valid: torch.Tensor) -> torch.Tensor:
        """Position of every valid token counted from the first valid one in its row (B, L)."""
        return (valid.long().cumsum(-1) - 1).clamp(min=0)

    def embed_text(self, text: torch.Tensor, text_valid: torch.Tensor) -> torch.Tensor:
        pos = self.positions(text_valid)
        return self.text_emb(text) * self.in_scale + self.text_alpha * sinusoids(pos, self.dim)  # (B, S, D)

    def embed_groups(self, tokens: torch.Tensor, positions: torch.Tensor) -> torch.Tensor:
        """tokens (B, C, G) code ids (BOS rows included) at code positions (B, C) -> (B, C, D)."""
        B, C, G = tokens.shape
        e = self.code_emb(tokens.clamp(0, self.V + 1)).reshape(B, C, G * self.dim) * self.in_scale
        return self.group_in(e) + self.code_alpha * sinusoids(positions, self.dim)

    def embed(self, text, text_valid, tokens, code_valid):
        """Whole-sequence input (B, S+C, D), key validity (B, S+C) and the prefix-LM region."""
        x = torch.cat([self.embed_text(text, text_valid), self.embed_groups(tokens, self.positions(code_valid))], dim=1)
        key_valid = torch.cat([text_valid, code_valid], dim=1)
        prefix = torch.zeros_like(key_valid)
        if self.prefix_lm:
            prefix[:, : text.shape[1]] = text_valid
        return self.drop(x), key_valid, prefix

    # -- outputs -----------------------------------------------------------------------
    def logits(self, h: torch.Tensor) -> torch.Tensor:
        """Hidden (B, L, D) -> next-group logits (B, L, G, V+1), tied to the code embedding."""
        B, L, _ = h.shape
        h = self.group_out(h).reshape(B, L, self.G, self.dim)
        return h @ self.code_emb.weight[: self.V + 1].T

    def forward(self, text, text_valid, tokens, code_valid) -> torch.Tensor:
        """Full (uncached) pass; returns logits for every code-block position (B, C, G, V+1)."""
        x, key_valid, prefix = self.embed(text, text_valid, tokens, code_valid)
        mask = attention_mask(key_valid, causal=True, bidirectional_prefix=prefix)
        h = self.transformer(x, mask)
        return self.logits(h[:, text.shape[1] :])

    # -- training ----------------------------------------------------------------------
    def training_inputs(self, codes: torch.Tensor, code_lens: torch.Tensor):
        """Right-padded codebook-0 ``codes (B, T)`` -> input tokens (B, N+1, G), validity, targets.

        Inputs are ``<bos> g1..gN``; targets are ``g1..gN <eos-group>``; a last partial group is
        filled with EOS, so the model learns where speech ends inside a group.
        """
        B, T = codes.shape
        G = self.G
        frame = torch.arange(T, device=codes.device)
        codes = codes.masked_fill(frame[None] >= code_lens[:, None], self.eos)
        groups = group_codes(codes, G, pad=self.eos)  # (B, N, G)
        N = groups.shape[1]
        n = -(-code_lens // G)  # groups per row
        bos = groups.new_full((B, 1, G), self.bos)
        eos = groups.new_full((B, 1, G), self.eos)
        tokens = torch.cat([bos, groups], dim=1)  # (B, N+1, G)
        targets = torch.cat([groups, eos], dim=1)  # (B, N+1, G)
        idx = torch.arange(N + 1, device=codes.device)
        code_valid = idx[None] <= n[:, None]
        targets = targets.masked_fill(~code_valid[..., None], IGNORE)
        return tokens, code_valid, targets

    def loss(self, text, text_valid, codes, code_lens) -> tuple[torch.Tensor, dict]:
        tokens, code_valid, targets = self.training_inputs(codes, code_lens)
        logits = self(text, text_valid, tokens, code_valid)  # (B, N+1, G, V+1)
        loss = F.cross_entropy(logits.flatten(0, 2).float(), targets.flatten(), ignore_index=IGNORE)
        with torch.no_grad():
            keep = targets != IGNORE
            acc = (logits.argmax(-1) == targets)[keep].float().mean()
            top10 = (logits.topk(min(10, logits.shape[-1]), dim=-1).indices == targets[..., None]).any(-1)[keep].float().mean()
        return loss, {"ar_loss": loss.detach(), "ar_acc": acc, "ar_top10": top10, "ar_tokens": keep.sum()}
