"""Non-autoregressive model for codebooks 1..K-1 (SPEC.md §2).

Input (one row)::

    text block:  p1 ... pS <eos>                                   positions 0..S
    code block:  [prompt frames: sum of all K code embeddings]
                 [target frames: sum of codebooks 0..j-1]          positions 0..P+T-1

Stage j (the code-ID) conditions every layer through AdaLN on a learned embedding e_j.
Attention is bidirectional. The head for stage j is tied to codebook j's embedding.
Training splits each utterance at a random point into an acoustic prompt (all codes
given) and a target (SPEC.md: without the split, SIM falls from 0.639 to 0.530).

Progress encodings (``progress=True``, not in the paper): a row holds one or two segments,
each a stretch of text and the frames that speak it (at inference: the prompt's transcript
and frames, then the target's; in training: one utterance, or a prompt pair). Every text
token and every frame also gets a sinusoidal encoding of *how far through its segment* it
is (0..1, at ``PROGRESS_RESOLUTION`` steps), so that a frame finds the phones it speaks by
matching progress instead of having to learn alignment from scratch: the NAR otherwise
ignores the text (benchmarks/RESULTS.md, "NAR progress encodings").
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from valle2.modules.transformer import Transformer, attention_mask, sinusoids

IGNORE = -100
PROGRESS_RESOLUTION = 256.0


def segment_progress(valid: torch.Tensor, split: torch.Tensor | None) -> torch.Tensor:
    """Fraction (0..1) of the way through its segment of every valid position ``(B, L)``.

    ``valid`` (B, L) marks the positions (valid ones first); ``split`` (B,) is the length of
    the first segment (0: a single segment over all valid positions).
    """
    n = valid.sum(-1, keepdim=True)  # (B, 1)
    pos = torch.arange(valid.shape[1], device=valid.device)[None]  # (1, L)
    first = torch.zeros_like(n) if split is None else split[:, None].to(n.dtype)
    in_first = pos < first
    start = torch.where(in_first, torch.zeros_like(first), first)
    length = torch.where(in_first, first, n - first).clamp(min=2)
    return ((pos - start).float() / (length - 1).float()).clamp(0, 1) * valid


class NARModel(nn.Module):
    def __init__(
        self,
        *,
        n_text_tokens: int,
        n_codebooks: int,
        codebook_size: int,
        dim: int,
        n_layers: int,
        n_heads: int,
        ffn_dim: int,
        dropout: float = 0.1,
        embed_scale: bool = True,
        prompt_cond: bool = False,
        progress: bool = False,
    ):
        super().__init__()
        self.K, self.V, self.dim = n_codebooks, codebook_size, dim
        self.text_emb = nn.Embedding(n_text_tokens, dim)
        self.code_emb = nn.ModuleList(nn.Embedding(codebook_size, dim) for _ in range(n_codebooks))
        self.stage_emb = nn.Embedding(n_codebooks, dim)  # code-ID embedding e_j
        self.text_alpha = nn.Parameter(torch.ones(1))
        self.code_alpha = nn.Parameter(torch.ones(1))
        self.transformer = Transformer(dim, n_layers, n_heads, ffn_dim, dropout, cond_dim=dim)
        self.drop = nn.Dropout(dropout)
        # embed_scale: as in the AR (N(0, 1/D) tables, inputs x sqrt(D); heads tied to code_emb).
        self.in_scale = dim**0.5 if embed_scale else 1.0
        for e in [self.text_emb, *self.code_emb]:
            nn.init.normal_(e.weight, std=dim**-0.5 if embed_scale else 0.02)
        nn.init.normal_(self.stage_emb.weight, std=0.02)
        # Optional speaker condition pooled from the prompt. The AdaLN projections start at zero,
        # so the model starts as without it; this map keeps its default (non-zero) init so that
        # it learns as soon as they move.
        self.prompt_proj = nn.Linear(dim, dim) if prompt_cond else None
        self.progress = progress
        if progress:
            self.text_progress_alpha = nn.Parameter(torch.ones(1))
            self.code_progress_alpha = nn.Parameter(torch.ones(1))

    def fresh_parameters(self) -> list[str]:
        """Parameters a checkpoint from before their option existed may lack (they start at their init)."""
        return ["text_progress_alpha", "code_progress_alpha"] if self.progress else []

    def forward(self, text, text_valid, codes, prompt_lens, code_lens, stage, text_split=None,
                frame_split=None) -> torch.Tensor:
        """Logits (B, C, V) for codebook ``stage`` at every code position.

        text (B, S) with text_valid; codes (B, K, C) right-padded, frames [0, prompt_lens) are
        the prompt, [prompt_lens, code_lens) the target; stage (B,) in 1..K-1.
        text_split / frame_split (B,): the first segment's text tokens and frames when a row
        holds two (prompt transcript + separator, prompt frames); None or 0: one segment.
        Used only with progress encodings.
        """
        B, K, C = codes.shape
        frame = torch.arange(C, device=codes.device)
        code_valid = frame[None] < code_lens[:, None]  # (B, C)
        in_prompt = frame[None] < prompt_lens[:, None]  # (B, C)
        k = torch.arange(K, device=codes.device)
        # Which codebooks enter the sum at each frame: all in the prompt, 0..j-1 in the target.
        use = in_prompt[:, None, :] | (k[None, :, None] < stage[:, None, None])  # (B, K, C)
        safe = codes.clamp(0, self.V - 1)
        summed = sum(self.code_emb[i](safe[:, i]) * use[:, i, :, None] for i in range(K))  # (B, C, D)

        text_pos = (text_valid.long().cumsum(-1) - 1).clamp(min=0)
        x_text = self.text_emb(text) * self.in_scale + self.text_alpha * sinusoids(text_pos, self.dim)
        x_code = summed * self.in_scale + self.code_alpha * sinusoids(frame[None].expand(B, C), self.dim)
        if self.progress:
            x_text = x_text + self.text_progress_alpha * sinusoids(
                segment_progress(text_valid, text_split) * PROGRESS_RESOLUTION, self.dim)
            x_code = x_code + self.code_progress_alpha * sinusoids(
                segment_progress(code_valid, frame_split) * PROGRESS_RESOLUTION, self.dim)
        x = self.drop(torch.cat([x_text, x_code], dim=1))
        key_valid = torch.cat([text_valid, code_valid], dim=1)
        mask = attention_mask(key_valid, causal=False)
        cond = self.stage_emb(stage)
        if self.prompt_proj is not None:  # mean of the prompt frames' summed embeddings
            in_p = (in_prompt & code_valid).to(summed.dtype)
            pooled = (summed * in_p[..., None]).sum(1) / in_p.sum(1, keepdim=True).clamp(min=1)
            cond = cond + self.prompt_proj(pooled * self.in_scale)
        h = self.transformer(x, mask, cond=cond)[:, text.shape[1] :]  # (B, C, D)

        weights = torch.stack([e.weight for e in self.code_emb])[stage]  # (B, V, D)
        return torch.einsum("bcd,bvd->bcv", h, weights)

    def random_split(self, code_lens: torch.Tensor, generator: torch.Generator | None = None):
        """Random prompt length per row: 10-50 % of the utterance, at least one frame each side."""
        u = torch.rand(code_lens.shape, generator=generator, device=code_lens.device)
        frac = 0.1 + 0.4 * u
        return (code_lens.float() * frac).long().clamp(min=1).minimum((code_lens - 1).clamp(min=1))

    def loss(self, text, text_valid, codes, code_lens, *, stage=None, prompt_lens=None, generator=None,
             text_split=None, frame_split=None):
        B, K, C = codes.shape
        if stage is None:  # one random stage per example per step
            stage = torch.randint(1, K, (B,), generator=generator, device=codes.device)
        if prompt_lens is None:
            prompt_lens = self.random_split(code_lens, generator)
        logits = self(text, text_valid, codes, prompt_lens, code_lens, stage, text_split, frame_split)  # (B, C, V)
        frame = torch.arange(C, device=codes.device)
        is_target = (frame[None] >= prompt_lens[:, None]) & (frame[None] < code_lens[:, None])
        targets = codes[torch.arange(B), stage].masked_fill(~is_target, IGNORE)  # (B, C)
        loss = F.cross_entropy(logits.flatten(0, 1).float(), targets.flatten(), ignore_index=IGNORE)
        with torch.no_grad():
            acc = (logits.argmax(-1) == targets)[is_target].float().mean()
        return loss, {"nar_loss": loss.detach(), "nar_acc": acc, "nar_tokens": is_target.sum()}
