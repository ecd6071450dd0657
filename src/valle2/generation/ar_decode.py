"""KV-cached, batched AR decoding of codebook 0 (gpt-fast style: setup caches, prefill, one step per group).

Batch layout: the text block is right-padded, the code block *left*-padded, so every row's
newest group sits at the same sequence index and one step appends one position for all
rows. Padding is masked; positions are counted per row, so a row's result does not depend
on what it is batched with (up to float rounding).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from valle2.generation.sampling import SamplingConfig, sample_codes
from valle2.models.ar import ARModel
from valle2.models.grouping import ungroup_codes
from valle2.modules.transformer import attention_mask


@dataclass
class ARResult:
    codes: list[torch.Tensor]  # per row: generated codebook-0 frames (T_i,)
    hit_limit: list[bool]  # per row: stopped by the length limit, not by EOS
    steps: int  # AR steps taken (groups)
    step_logits: list[torch.Tensor] | None = None  # per step (B, G, V+1), when asked for


def pad_text(texts: list[torch.Tensor], pad: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Right-pad 1-D id tensors -> ids (B, S), valid (B, S)."""
    S = max(len(t) for t in texts)
    ids = torch.full((len(texts), S), pad, dtype=torch.long)
    valid = torch.zeros(len(texts), S, dtype=torch.bool)
    for i, t in enumerate(texts):
        ids[i, : len(t)] = t
        valid[i, : len(t)] = True
    return ids, valid


def left_padded_code_block(model: ARModel, prompts: list[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
    """Prompt codebook-0 frames (T_i,), T_i % G == 0 -> tokens (B, C, G) = [pad.. <bos> groups], valid (B, C)."""
    G = model.G
    groups = [p.reshape(-1, G) for p in prompts]
    C = 1 + max(len(g) for g in groups)
    tokens = torch.full((len(prompts), C, G), model.eos, dtype=torch.long)
    valid = torch.zeros(len(prompts), C, dtype=torch.bool)
    for i, g in enumerate(groups):
        start = C - 1 - len(g)
        tokens[i, start] = model.bos
        tokens[i, start + 1 :] = g
        valid[i, start:] = True
    return tokens, valid


@torch.inference_mode()
def ar_generate(
    model: ARModel,
    texts: list[torch.Tensor],
    prompts: list[torch.Tensor],
    max_frames: list[int],
    sampling: SamplingConfig,
    generator: torch.Generator | None = None,
    *,
    min_frames: list[int] | None = None,
    return_logits: bool = False,
) -> ARResult:
    """Continue each row's prompt until EOS or its frame limit.

    texts: per row, phoneme ids of prompt text + target text, ending with the text EOS.
    prompts: per row, the prompt's codebook-0 codes, length a multiple of G (clip leading frames).
    min_frames: per row, EOS is forbidden before this many frames (guards against empty output).
    """
    if not (len(texts) == len(prompts) == len(max_frames)):
        raise ValueError("texts, prompts and max_frames must have one entry per row")
    G = model.G
    device = next(model.parameters()).device
    dtype = next(model.parameters()).dtype
    B = len(texts)
    max_groups = torch.tensor([-(-m // G) for m in max_frames], device=device)
    min_frames_t = torch.tensor(min_frames or [0] * B, device=device)
    text, text_valid = (t.to(device) for t in pad_text(texts))
    tokens, code_valid = (t.to(device) for t in left_padded_code_block(model, prompts))
    code_pos = model.positions(code_valid)[:, -1]  # position of each row's newest group (B,)

    # setup caches: prompt + the longest continuation
    capacity = text.shape[1] + tokens.shape[1] + int(max_groups.max())
    caches = model.transformer.make_caches(B, capacity, dtype=dtype, device=device)

    # prefill
    x, key_valid, prefix = model.embed(text, text_valid, tokens, code_valid)
    h = model.transformer(x, attention_mask(key_valid, causal=True, bidirectional_prefix=prefix), caches=caches)
    logits = model.logits(h[:, -1:])[:, 0]  # (B, G, V+1)
    length = x.shape[1]

    window = sampling.ras_window
    history = torch.full((B, window), -1, dtype=torch.long, device=device)
    for i, p in enumerate(prompts):
        recent = p[-window:].to(device)
        if len(recent):
            history[i, window - len(recent) :] = recent

    out: list[torch.Tensor] = []
    done = torch.zeros(B, dtype=torch.bool, device=device)
    all_logits = [] if return_logits else None
    step = 0
    while True:
        if return_logits:
            all_logits.append(logits.float().cpu())
        group = torch.empty(B, G, dtype=torch.long, device=device)
        for g in range(G):  # code by code, so the repetition ratio sees the codes just drawn
            step_logits = logits[:, g]
            too_early = (step * G + g) < min_frames_t
            if bool(too_early.any()):
                step_logits = step_logits.clone()
                step_logits[too_early, model.eos] = float("-inf")
            code = sample_codes(step_logits, history, sampling, generator)
            group[:, g] = code
            history = torch.cat([history[:, 1:], code[:, None]], dim=1)
        out.append(group)
        step += 1
        has_eos = (group == model.eos).any(-1)
        done |= has_eos | (step >= max_groups)
        if bool(done.all()):
            break
        # decode one step: the new group at the next position of every row
        code_pos = code_pos + 1
        x_new = model.embed_groups(group[:, None], code_pos[:, None])
        key_valid = torch.cat([key_valid, torch.ones(B, 1, dtype=torch.bool, device=device)], dim=1)
        mask = attention_mask(key_valid, causal=True, n_queries=1)
        h = model.transformer(x_new, mask, caches=caches, start=length)
        length += 1
        logits = model.logits(h)[:, 0]

    frames = ungroup_codes(torch.stack(out, dim=1)).cpu()  # (B, steps*G)
    codes, hit_limit = [], []
    for i in range(B):
        row = frames[i]
        eos_at = (row == model.eos).nonzero()
        end = int(eos_at[0]) if len(eos_at) else len(row)
        end = min(end, max_frames[i])
        codes.append(row[:end].clone())
        hit_limit.append(not (len(eos_at) > 0 and int(eos_at[0]) <= max_frames[i]))
    return ARResult(codes=codes, hit_limit=hit_limit, steps=step, step_logits=all_logits)
