"""Sampling rules, as pure seedable functions over logits ``(B, V)``.

Repetition-aware sampling (VALL-E 2, SPEC.md §3): draw a code with nucleus sampling;
if that code already fills more than ``threshold`` of the last ``window`` codebook-0
codes (a loop is starting), draw again from the *full* distribution instead (temperature
1, no truncation). Greedy-like stability without nucleus sampling's loops.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch


NAR_DECODINGS = ("greedy", "min_distortion", "expected")
POST_FILTERS = ("none", "prompt_match")
RESIDUAL_PRIORS = ("mean", "code0")  # valle2.generation.residual_prior
VOCODERS = ("codec", "synthesis")  # valle2.generation.synthesis_vocoder


@dataclass(frozen=True)
class SamplingConfig:
    top_p: float = 0.8
    top_k: int | None = None
    temperature: float = 1.0
    ras_window: int = 10  # K in the paper
    ras_threshold: float = 0.1  # t_r in the paper
    repetition_aware: bool = True
    # or "min_distortion", or "expected": the codec decodes the NAR's expected entries instead of the
    # codes nearest them (both need a codec with code entries; nar_decode.py)
    nar_decoding: str = "greedy"
    # min_distortion and expected: the NAR's distribution is sharpened to softmax(logits / T) before the
    # expected entry is taken. 1: the Bayes choice; towards 0: greedy. Lower keeps more of the
    # speaker's detail; higher, more of the words (benchmarks/RESULTS.md).
    nar_temperature: float = 1.0
    # Before the vocoder: "prompt_match" gives the decoded log-mel the prompt's per-bin mean and
    # spread (valle2.codec.mel.match_prompt_statistics; needs a codec that supports it: valle2-mel).
    post_filter: str = "none"
    # How far prompt_match moves the log-mel: 1 all the way, 0.5 half way (valle2.codec.mel.match_prompt_statistics).
    # Less keeps more of the words and less of the voice (benchmarks/RESULTS.md, session 12).
    post_filter_strength: float = 1.0
    # How much of the NAR's codebooks 1..K-1 the codec decodes: 1 all of them (the paper), 0 only the mean entry
    # of each (codebook 0 alone says the words); between, codebook 0 + w * the NAR's residual + (1 - w) * the mean
    # residual. The NAR's codes carry the voice and, with a small model, cost words (benchmarks/RESULTS.md, session 13).
    nar_weight: float = 1.0
    # What the (1 - w) part of that blend is: "mean", the mean entry of each codebook 1..K-1; "code0", what
    # codebooks 1..K-1 add on average to frames with each codebook-0 code in the training corpus (a table that
    # the model folder must carry: valle2.generation.residual_prior). Only matters when nar_weight < 1.
    residual_prior: str = "mean"
    # A share of that blend taken from the prompt's own frames instead (kNN-VC, Baas et al. 2023): each frame's
    # residual is the mean true residual of the ``prompt_residual_k`` prompt frames whose codebook-0 keys (the
    # phone recogniser's centroids on valle2-mel, else codebook 0's entries) are nearest its own. It carries the
    # voice; nar_weight + prompt_residual <= 1, and the rest is residual_prior's.
    prompt_residual: float = 0.0
    prompt_residual_k: int = 8
    # Which vocoder turns the decoded log-mel into audio: "codec", the codec's own (the one resynthesis uses);
    # "synthesis", the model folder's copy fine-tuned on this model's synthesis log-mels (valle2-mel only;
    # valle2.generation.synthesis_vocoder).
    vocoder: str = "codec"

    def __post_init__(self):
        if not 0.0 < self.top_p <= 1.0:
            raise ValueError(f"top_p is {self.top_p}; must be in (0, 1]")
        if self.temperature <= 0:
            raise ValueError(f"temperature is {self.temperature}; must be > 0")
        if self.top_k is not None and self.top_k < 1:
            raise ValueError(f"top_k is {self.top_k}; must be >= 1")
        if self.ras_window < 1:
            raise ValueError(f"ras_window is {self.ras_window}; must be >= 1")
        if not self.nar_temperature > 0:
            raise ValueError(f"nar_temperature is {self.nar_temperature}; must be > 0")
        if self.nar_decoding not in NAR_DECODINGS:
            raise ValueError(f"nar_decoding is {self.nar_decoding!r}; must be one of {', '.join(NAR_DECODINGS)}")
        if not 0.0 <= self.nar_weight <= 1.0:
            raise ValueError(f"nar_weight is {self.nar_weight}; must be in [0, 1]")
        if not 0.0 <= self.prompt_residual <= 1.0:
            raise ValueError(f"prompt_residual is {self.prompt_residual}; must be in [0, 1]")
        if self.nar_weight + self.prompt_residual > 1.0 + 1e-9:
            raise ValueError(f"nar_weight ({self.nar_weight}) + prompt_residual ({self.prompt_residual}) is more "
                             "than 1: they are shares of one residual")
        if self.prompt_residual_k < 1:
            raise ValueError(f"prompt_residual_k is {self.prompt_residual_k}; must be >= 1")
        if self.residual_prior not in RESIDUAL_PRIORS:
            raise ValueError(f"residual_prior is {self.residual_prior!r}; must be one of {', '.join(RESIDUAL_PRIORS)}")
        if self.vocoder not in VOCODERS:
            raise ValueError(f"vocoder is {self.vocoder!r}; must be one of {', '.join(VOCODERS)}")
        if not 0.0 <= self.post_filter_strength <= 1.0:
            raise ValueError(f"post_filter_strength is {self.post_filter_strength}; must be in [0, 1]")
        if self.post_filter not in POST_FILTERS:
            raise ValueError(f"post_filter is {self.post_filter!r}; must be one of {', '.join(POST_FILTERS)}")

    def to_dict(self) -> dict:
        return asdict(self)


def filter_logits(logits: torch.Tensor, *, top_p: float = 1.0, top_k: int | None = None, temperature: float = 1.0) -> torch.Tensor:
    """Temperature, then top-k, then nucleus: returns logits with the excluded codes at -inf."""
    logits = logits.float() / temperature
    if top_k is not None and top_k < logits.shape[-1]:
        kth = logits.topk(top_k, dim=-1).values[..., -1:]
        logits = logits.masked_fill(logits < kth, float("-inf"))
    if top_p < 1.0:
        sorted_logits, order = logits.sort(dim=-1, descending=True)
        probs = sorted_logits.softmax(-1)
        # Keep the smallest prefix whose mass reaches top_p: drop a code if the mass *before* it already does.
        drop_sorted = probs.cumsum(-1) - probs >= top_p
        drop = torch.zeros_like(drop_sorted).scatter(-1, order, drop_sorted)
        logits = logits.masked_fill(drop, float("-inf"))
    return logits


def sample(logits: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
    """One draw per row from softmax(logits) ``(B, V)`` -> ``(B,)``."""
    return torch.multinomial(logits.float().softmax(-1), 1, generator=generator).squeeze(-1)


def nucleus_sample(logits, *, top_p: float, top_k: int | None = None, temperature: float = 1.0, generator=None):
    return sample(filter_logits(logits, top_p=top_p, top_k=top_k, temperature=temperature), generator)


def repetition_ratio(codes: torch.Tensor, history: torch.Tensor, window: int) -> torch.Tensor:
    """Share of the last ``window`` history entries equal to ``codes`` -> ``(B,)`` float.

    ``history (B, H)`` holds previous codebook-0 codes, oldest first; entries < 0 are padding.
    The denominator is ``window`` (as in the paper), so a short history lowers the ratio.
    """
    recent = history[:, -window:]
    return (recent == codes[:, None]).sum(-1).float() / window


def repetition_aware_sample(
    logits: torch.Tensor,
    history: torch.Tensor,
    *,
    top_p: float,
    window: int = 10,
    threshold: float = 0.1,
    generator: torch.Generator | None = None,
    top_k: int | None = None,
    temperature: float = 1.0,
) -> torch.Tensor:
    """Repetition-aware sampling. ``logits (B, V)``, ``history (B, H)`` long -> ``(B,)`` codes."""
    first = nucleus_sample(logits, top_p=top_p, top_k=top_k, temperature=temperature, generator=generator)
    repeated = repetition_ratio(first, history, window) > threshold
    # Draw the fallback for every row so the generator advances the same way whatever happens.
    fallback = sample(logits, generator)
    return torch.where(repeated, fallback, first)


def sample_codes(logits: torch.Tensor, history: torch.Tensor, config: SamplingConfig, generator=None) -> torch.Tensor:
    """One code per row by ``config``: RAS, or plain top-k/top-p sampling when RAS is off."""
    if config.repetition_aware:
        return repetition_aware_sample(
            logits, history, top_p=config.top_p, window=config.ras_window, threshold=config.ras_threshold,
            generator=generator, top_k=config.top_k, temperature=config.temperature,
        )
    return nucleus_sample(logits, top_p=config.top_p, top_k=config.top_k, temperature=config.temperature, generator=generator)
