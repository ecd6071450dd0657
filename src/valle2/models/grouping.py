"""Grouped code modeling: G consecutive codebook-0 frames form one AR step.

    frames   c0 c1 c2 c3 c4            (T = 5, G = 2)
    groups  (c0 c1)(c2 c3)(c4 pad)     -> (N = 3, G = 2)

``group_codes`` pads the tail with ``pad`` (the AR uses EOS there, so a group that
holds the last frames also says where speech ends); ``ungroup_codes`` flattens and cuts
back to T. For a prompt prefix the *leading* frames are clipped instead, so that the
prompt's last frame stays adjacent to the generated speech (``clip_to_groups``).
"""

from __future__ import annotations

import torch


def n_groups(n_frames: int, group_size: int) -> int:
    return -(-n_frames // group_size)


def group_codes(codes: torch.Tensor, group_size: int, pad: int) -> torch.Tensor:
    """``(..., T)`` -> ``(..., ceil(T/G), G)``, tail padded with ``pad``."""
    T = codes.shape[-1]
    extra = n_groups(T, group_size) * group_size - T
    if extra:
        codes = torch.cat([codes, codes.new_full((*codes.shape[:-1], extra), pad)], dim=-1)
    return codes.reshape(*codes.shape[:-1], -1, group_size)


def ungroup_codes(groups: torch.Tensor, n_frames: int | None = None) -> torch.Tensor:
    """``(..., N, G)`` -> ``(..., T)``; T defaults to N*G."""
    flat = groups.reshape(*groups.shape[:-2], -1)
    return flat if n_frames is None else flat[..., :n_frames]


def clip_to_groups(codes: torch.Tensor, group_size: int) -> torch.Tensor:
    """Drop leading frames of ``(..., T)`` so that T % G == 0."""
    return codes[..., codes.shape[-1] % group_size :]
