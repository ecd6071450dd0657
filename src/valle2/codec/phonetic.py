"""A phonetic first codebook for valle2-mel: a small CTC phone recogniser + k-means.

Why: in a plain residual k-means codec, codebook 0 is the coarsest spectral envelope —
loudness and timbre — and carries little of the words (decoding the true codebook 0 of
held-out speech alone gave 86 % WER; see benchmarks/RESULTS.md). VALL-E's split puts the
words in the AR's codebook 0 and leaves the NAR to add acoustic detail, as EnCodec's first
codebook does. SpeechTokenizer (Zhang et al., 2023) gets there by distilling a speech
model into the first RVQ layer. Here, on a CPU and without any pretrained model, the same
idea is: train a small phone recogniser on the corpus with CTC, cluster its per-frame
features into V centroids (codebook 0 indices), take each cluster's mean log-mel as its
codebook-0 entry, and fit the remaining K-1 residual k-means stages on what is left::

    log-mel m_t ──PhoneEncoder──▶ h_t ──nearest of V centroids──▶ c_0,t
    m_t − E_0[c_0,t] ──residual k-means (K-1 stages)──▶ c_1..K-1,t

Decoding is unchanged (sum of entries, vocoder).

Phone labels are espeak-ng's IPA symbols without stress, length, diacritics, punctuation
and word boundaries (:func:`phone_labels`).
"""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

# Marks that modify the preceding phone; dropped from CTC targets (merged into the phone).
MODIFIERS = frozenset("ˈˌːˑ̩̪ʲ̃̊̆")


def phone_labels(symbols: list[str]) -> list[str]:
    """CTC target of a phonemized sentence: its phones only (see the module docstring)."""
    from valle2.text.symbols import is_phone

    return [s for s in symbols if is_phone(s) and s not in MODIFIERS]


class PhoneEncoder(nn.Module):
    """Log-mel [B, n_mels, T] -> per-frame phonetic features [B, T, dim] (+ CTC head).

    A Conv1d stem and ConvNeXt blocks (kernel 7: ±20 frames = ±270 ms of context), on log-mels
    with the utterance mean removed (so loudness and channel do not move the features).
    ``head`` maps features to log-probabilities over ``n_phones`` + blank (index 0).
    """

    def __init__(self, n_mels: int, dim: int, intermediate: int, n_layers: int, n_phones: int):
        super().__init__()
        from valle2.codec.mel import ConvNeXtBlock

        self.n_phones = n_phones
        self.embed = nn.Conv1d(n_mels, dim, kernel_size=5, padding=2)
        self.norm = nn.LayerNorm(dim, eps=1e-6)
        self.blocks = nn.ModuleList(ConvNeXtBlock(dim, intermediate, 1.0 / n_layers) for _ in range(n_layers))
        self.final_norm = nn.LayerNorm(dim, eps=1e-6)
        self.head = nn.Linear(dim, n_phones + 1)

    @staticmethod
    def normalize(mel: torch.Tensor, lengths: torch.Tensor | None = None) -> torch.Tensor:
        """Remove each utterance's mean log-mel (over its valid frames when ``lengths`` is given)."""
        if lengths is None:
            return mel - mel.mean(-1, keepdim=True)
        mask = (torch.arange(mel.shape[-1], device=mel.device)[None] < lengths[:, None]).to(mel.dtype)
        mean = (mel * mask[:, None]).sum(-1, keepdim=True) / lengths.clamp(min=1)[:, None, None].to(mel.dtype)
        return (mel - mean) * mask[:, None]

    def features(self, mel: torch.Tensor, lengths: torch.Tensor | None = None) -> torch.Tensor:
        x = self.embed(self.normalize(mel, lengths))
        x = self.norm(x.transpose(1, 2)).transpose(1, 2)
        for block in self.blocks:
            x = block(x)
        return self.final_norm(x.transpose(1, 2))  # (B, T, dim)

    def forward(self, mel: torch.Tensor, lengths: torch.Tensor | None = None) -> torch.Tensor:
        """CTC log-probabilities [B, T, n_phones + 1]."""
        return F.log_softmax(self.head(self.features(mel, lengths)), dim=-1)


def nearest(features: torch.Tensor, centroids: torch.Tensor) -> torch.Tensor:
    """Features [T, D] -> index of the nearest centroid [T] (squared Euclidean)."""
    dist = (centroids * centroids).sum(-1)[None, :] - 2.0 * features @ centroids.T
    return dist.argmin(-1)


def greedy_ctc(log_probs: torch.Tensor) -> list[int]:
    """Best-path CTC decoding of [T, C] log-probs: collapse repeats, drop blanks (0)."""
    best = log_probs.argmax(-1).tolist()
    out, prev = [], 0
    for c in best:
        if c != prev and c != 0:
            out.append(c)
        prev = c
    return out


def knn_entries(encoder: PhoneEncoder, queries: torch.Tensor, mels: list[torch.Tensor], k: int = 4) -> torch.Tensor:
    """kNN-VC-style lookup (Baas et al., 2023): for each query in the recogniser's feature space
    [N, dim] (e.g. the codebook-0 centroids), the mean log-mel of the ``k`` frames of ``mels``
    (reference utterances, each [n_mels, T]) whose features are nearest -> [N, n_mels].

    Decodes codebook 0 with a speaker's own frames instead of the speaker-independent entries
    (benchmarks/nar_oracle.py, benchmarks/cb0_content.py)."""
    mel = torch.cat(mels, dim=1)
    with torch.inference_mode():
        feat = torch.cat([encoder.features(m[None])[0] for m in mels])
    near = torch.cdist(queries, feat).topk(min(k, feat.shape[0]), largest=False).indices  # (N, k)
    return mel.T[near].mean(1)
