"""A residual prior: what codebooks 1..K-1 add, on average, to each codebook-0 code.

With ``nar_weight`` w < 1 the codec decodes codebook 0's entry + w x the NAR's residual + (1 - w) x a
fallback (``SamplingConfig.residual_prior``):

- ``"mean"``: the mean entry of each codebook 1..K-1, the same for every frame (no data needed);
- ``"code0"``: E[residual | codebook-0 code], the mean of what codebooks 1..K-1 add to frames with that
  code in the training corpus. With a phonetic codebook 0 (valle2-mel) a frame's code says its phone,
  and its mean residual carries that phone's average spectral detail, which the global mean blurs
  away (benchmarks/RESULTS.md, session 15).

The table is fitted from codes alone (no audio) and stored beside the weights as
``residual_prior.safetensors``: tensor ``code0`` (V, D), fitted frame counts ``counts`` (V,), and the
codec it was fitted for in the metadata (its ``codebooks_sha256``), checked at load.

``prompt_knn_residual`` is the other source of a residual without the NAR (``SamplingConfig.prompt_residual``):
the prompt's own frames nearest each output frame, which carry the prompt's voice.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

import torch

from valle2.codec.mel import rvq_decode  # a frame is the sum of its codes' entries, for any codec
from valle2.errors import ModelFileError

FILE = "residual_prior.safetensors"
CHUNK_FRAMES = 500_000  # fitting holds (chunk, D) float64 sums: bounded memory for whole packed files


def mean_residual(entries: torch.Tensor) -> torch.Tensor:
    """The ``"mean"`` prior (D,): the mean entry of each codebook 1..K-1, summed (zeros when K = 1)."""
    return entries[1:].float().mean(1).sum(0)


def fit_code0_prior(codes: Iterable[torch.Tensor], entries: torch.Tensor, *, min_count: int = 20
                    ) -> tuple[torch.Tensor, torch.Tensor]:
    """E[sum of entries of codebooks 1..K-1 | codebook-0 code] over ``codes`` (each (K, T)).

    ``entries``: the codec's code vectors (K, V, D). A code seen in fewer than ``min_count`` frames takes
    the mean entry of each later codebook instead (the ``"mean"`` prior). Returns (prior (V, D), counts (V,)).
    """
    entries = entries.float()
    K, V, D = entries.shape
    if K < 2:
        raise ValueError("a residual prior needs a codec with at least 2 codebooks")
    total = torch.zeros(V, D, dtype=torch.float64)
    counts = torch.zeros(V, dtype=torch.float64)
    for codes_k_t in codes:
        if codes_k_t.dim() != 2 or codes_k_t.shape[0] != K:
            raise ValueError(f"codes must be (K={K}, T), got {tuple(codes_k_t.shape)}")
        for a in range(0, codes_k_t.shape[1], CHUNK_FRAMES):
            c = codes_k_t[:, a : a + CHUNK_FRAMES].long()
            if c.numel() and (int(c.min()) < 0 or int(c.max()) >= V):
                raise ValueError(f"codes must lie in [0, {V}), got [{int(c.min())}, {int(c.max())}]")
            total.index_add_(0, c[0], rvq_decode(c[1:], entries[1:]).double())
            counts.index_add_(0, c[0], torch.ones(c.shape[1], dtype=torch.float64))
    prior = (total / counts.clamp(min=1)[:, None]).float()
    prior[counts < min_count] = mean_residual(entries)
    return prior, counts.float()


def prompt_knn_residual(codes0: torch.Tensor, prompt_codes: torch.Tensor, keys: torch.Tensor, entries: torch.Tensor,
                        k: int = 8) -> torch.Tensor:
    """Each generated frame's residual (D, T) from the prompt: the mean of what codebooks 1..K-1 add to the ``k``
    prompt frames whose codebook-0 keys are nearest its own (kNN-VC over a 3-10 s prompt).

    ``codes0`` (T,): the output's codebook 0; ``prompt_codes`` (K, Tp); ``keys`` (V, F): one vector per codebook-0
    code; ``entries`` (K, V, D): the codec's code vectors."""
    entries = entries.float()
    if prompt_codes.shape[1] == 0:
        raise ValueError("the prompt has no frames to take a residual from")
    pc = prompt_codes.long().to(entries.device)
    codes0 = codes0.long().to(keys.device)
    own = rvq_decode(pc[1:], entries[1:]).T  # (D, Tp)
    dist = torch.cdist(keys[codes0].float(), keys[pc[0].to(keys.device)].float())  # (T, Tp)
    nearest = dist.topk(min(k, dist.shape[1]), largest=False).indices.to(own.device)  # (T, k)
    return own[:, nearest].mean(-1)


def knn_keys(codec) -> torch.Tensor:
    """The vectors that say how alike two codebook-0 codes are: a phonetic codec's centroids, else the entries."""
    centroids = getattr(codec, "phone_centroids", None)
    return centroids if centroids is not None else codec.code_entries()[0]


def save_prior(folder: Path, prior: torch.Tensor, counts: torch.Tensor, codec) -> Path:
    from safetensors.torch import save_file

    path = Path(folder) / FILE
    sha = str(codec.identity().get("codebooks_sha256", ""))
    save_file({"code0": prior.float().contiguous(), "counts": counts.float().contiguous()}, str(path),
              metadata={"codec_codebooks_sha256": sha})
    return path


def load_prior(path: Path, codec) -> tuple[torch.Tensor, torch.Tensor]:
    """The (V, D) table of ``path`` and its fitted frame counts (V,), checked against ``codec`` (its size and
    the codec it was fitted for)."""
    from safetensors import safe_open

    try:
        with safe_open(str(path), "pt") as f:
            meta = f.metadata() or {}
            prior = f.get_tensor("code0").float()
            counts = f.get_tensor("counts").float() if "counts" in f.keys() else torch.zeros(len(prior))
    except Exception as e:  # safetensors raises its own error types for truncated/corrupt files
        raise ModelFileError(f"{path} is not a readable residual prior: {e}") from None
    entries = codec.code_entries() if hasattr(codec, "code_entries") else None
    if entries is None:
        raise ModelFileError(f"{path}: this model's codec has no code entries, so a residual prior cannot apply")
    want = (entries.shape[1], entries.shape[2])
    if tuple(prior.shape) != want:
        raise ModelFileError(f"{path} holds a {tuple(prior.shape)} table; this codec needs {want}")
    fitted_for = meta.get("codec_codebooks_sha256")
    have = str(codec.identity().get("codebooks_sha256", ""))
    if fitted_for != have:
        raise ModelFileError(f"{path} was fitted for the codec with codebooks_sha256 {fitted_for!r}; this model's "
                             f"codec has {have!r}: fit it again (recipes/fit_residual_prior.py)")
    if not torch.isfinite(prior).all():
        raise ModelFileError(f"{path} holds non-finite values")
    if counts.shape != (prior.shape[0],):
        raise ModelFileError(f"{path}: its counts have shape {tuple(counts.shape)}, not ({prior.shape[0]},)")
    return prior, counts
