"""NAR decoding: K-1 passes fill codebooks 1..K-1 of the generated frames, batched.

Each pass picks one code per frame, either the most probable one (``greedy``, the paper's
choice) or, given the codec's code entries, the entry nearest to the NAR's *expected* entry
``sum_v p(v) e_v`` (``min_distortion``): the code that minimises the expected squared error
of the decoded representation, ``E||e_v - X||^2 = ||e_v - E[X]||^2 + const``. With a residual
codec whose stages have many near-equivalent entries, greedy decoding commits to confident
wrong codes; benchmarks/RESULTS.md measures both.

A third choice, ``expected``, passes the codes of ``min_distortion`` from stage to stage (the
NAR is conditioned on codes) but hands the codec the expected entries themselves, summed over
stages 1..K-1: the Bayes estimate of the residual, without the error of snapping it to the
nearest entry (``nar_generate(..., return_expected=True)``; the codec decodes codebook 0's
entry plus that sum).
"""

from __future__ import annotations

from typing import NamedTuple

import torch

from valle2.generation.ar_decode import pad_text
from valle2.models.nar import NARModel


class NarOutput(NamedTuple):
    """``nar_generate``'s result, per row: all K codebooks ``(K, T_i)``, and with ``return_expected`` the
    expected entries of stages 1..K-1 summed ``(D, T_i)`` float32 (None otherwise)."""

    codes: list[torch.Tensor]
    expected: list[torch.Tensor] | None = None


@torch.inference_mode()
def nar_generate(
    model: NARModel, texts: list[torch.Tensor], prompts: list[torch.Tensor], targets: list[torch.Tensor],
    entries: torch.Tensor | None = None, text_splits: list[int] | None = None, temperature: float = 1.0,
    return_expected: bool = False,
) -> NarOutput:
    """texts: ids ending in EOS; prompts: all codes (K, P_i); targets: codebook 0 (T_i,) -> codes (K, T_i).

    ``entries`` (K, V, D), the codec's code vectors: decode by minimum expected distortion
    instead of greedily (module docstring), from the NAR's distribution sharpened by
    ``temperature`` (< 1: nearer greedy). ``text_splits``: per row, how many leading text ids
    are the prompt's transcript (+ separator), for a NAR with progress encodings; the frames
    split at the prompt. None: one segment.

    ``return_expected`` (needs ``entries``): also return, per row, the expected entries of stages
    1..K-1 summed, ``(D, T_i)`` float32, as ``NarOutput.expected``.
    """
    if return_expected and entries is None:
        raise ValueError("return_expected needs the codec's code entries")
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
    text_split = frame_split = None
    if text_splits is not None:
        text_split, frame_split = torch.tensor(text_splits, device=device), prompt_lens
    residual = None
    for j in range(1, K):
        stage = torch.full((B,), j, dtype=torch.long, device=device)
        logits = model(text, text_valid, codes, prompt_lens, code_lens, stage, text_split, frame_split)  # (B, C, V)
        if entries is None:
            picked = pick_codes(logits)
        else:
            expected = expected_entry(logits, entries[j], temperature)  # (B, C, D)
            picked = pick_codes(logits, entries[j], expected=expected)
            if return_expected:
                residual = expected if residual is None else residual + expected
        codes[:, j] = torch.where(is_target, picked, codes[:, j])
    spans = [(int(prompt_lens[i]), int(code_lens[i])) for i in range(B)]
    out = [codes[i, :, a:b].cpu() for i, (a, b) in enumerate(spans)]
    if not return_expected:
        return NarOutput(out)
    if residual is None:  # K == 1: nothing beyond codebook 0
        return NarOutput(out, [torch.zeros(entries.shape[-1], b - a) for a, b in spans])
    return NarOutput(out, [residual[i, a:b].T.float().cpu() for i, (a, b) in enumerate(spans)])


def expected_entry(logits: torch.Tensor, entries: torch.Tensor, temperature: float = 1.0) -> torch.Tensor:
    """The expected entry ``(..., D)`` under ``softmax(logits / temperature)`` over entries ``(V, D)``."""
    return (logits.float() / temperature).softmax(-1) @ entries.to(logits.device, torch.float32)


def pick_codes(logits: torch.Tensor, entries: torch.Tensor | None = None, temperature: float = 1.0,
               expected: torch.Tensor | None = None) -> torch.Tensor:
    """Codes ``(..., )`` from logits ``(..., V)``: argmax, or the entry nearest the expected entry
    under ``softmax(logits / temperature)`` (``expected``: that entry, when already computed)."""
    if entries is None:
        return logits.argmax(-1)
    e = entries.to(logits.device, torch.float32)  # (V, D)
    if expected is None:
        expected = expected_entry(logits, e, temperature)  # (..., D)
    # argmin_v ||e_v - x||^2 = argmin_v (||e_v||^2 - 2 e_v . x)
    return ((e * e).sum(-1) - 2 * expected @ e.T).argmin(-1)
