"""NAR decoding: K-1 greedy passes fill codebooks 1..K-1 of the generated frames, batched."""

from __future__ import annotations

import torch

from valle2.generation.ar_decode import pad_text
from valle2.models.nar import NARModel


@torch.inference_mode()
def nar_generate(
    model: NARModel, texts: list[torch.Tensor], prompts: list[torch.Tensor], targets: list[torch.Tensor]
) -> list[torch.Tensor]:
    """texts: ids ending in EOS; prompts: all codes (K, P_i); targets: codebook 0 (T_i,) -> codes (K, T_i)."""
    device = next(model.parameters()).device
    K = model.K
    B = len(texts)
    text, text_valid = (t.to(device) for t in pad_text(texts))
    prompt_lens = torch.tensor([p.shape[1] for p in prompts], device=device)
    code_lens = prompt_lens + torch.tensor([len(t) for t in targets], device=device)
    codes = torch.zeros(B, K, int(code_lens.max()), dtype=torch.long, device=device)
    for i, (p, t) in enumerate(zip(prompts, targets)):
        codes[i, :, : p.shape[1]] = p
        codes[i, 0, p.shape[1] : p.shape[1] + len(t)] = t
    frame = torch.arange(codes.shape[2], device=device)
    is_target = (frame[None] >= prompt_lens[:, None]) & (frame[None] < code_lens[:, None])  # (B, C)
    for j in range(1, K):
        stage = torch.full((B,), j, dtype=torch.long, device=device)
        logits = model(text, text_valid, codes, prompt_lens, code_lens, stage)  # (B, C, V)
        codes[:, j] = torch.where(is_target, logits.argmax(-1), codes[:, j])
    return [codes[i, :, int(prompt_lens[i]) : int(code_lens[i])].cpu() for i in range(B)]
