"""Dataset, collation and sampling of tokenized utterances (Lhotse style).

The sampler yields *batches of cuts* (a ``CutSet`` whose durations sum to at most the
budget); the dataset turns one such batch into padded tensors in one call::

    text        (B, S)     phone ids + <eos>, right-padded with <pad>; text_valid (B, S)
    codes       (B, K, T)  all codebooks, right-padded; code_lens (B,)        -> AR: codes[:, 0]
    nar_codes   (B, K, Tn) a random window of at most nar_crop frames (== codes when no crop)
    nar_code_lens (B,), nar_prompt_lens (B,), nar_stage (B,)                 -> NAR (SPEC.md §2)

NAR prompt/target split: each utterance is split at a random point (``nar_prompt`` fraction
of its frames, 10-50 % by default) into an acoustic prompt, all of whose codebooks the NAR
sees, and a target; one random stage j in 1..K-1 per utterance. Random crops apply to the
NAR only: the AR must see the audio of its whole transcript, so long utterances are left
out by the sampler's duration limits rather than cut.

All randomness of a batch comes from a generator seeded by (seed, epoch, the batch's cut
ids), not from process-global state, so batches are the same in a resumed run and with
any number of DataLoader workers.
"""

from __future__ import annotations

import zlib
from pathlib import Path

import torch

from valle2.data.shards import ShardReader


def pad_stack(seqs: list[torch.Tensor], pad: int) -> torch.Tensor:
    """Right-pad 1-D ``(L_i,)`` or 2-D ``(K, L_i)`` tensors along the last axis and stack."""
    L = max(s.shape[-1] for s in seqs)
    out = seqs[0].new_full((len(seqs), *seqs[0].shape[:-1], L), pad)
    for i, s in enumerate(seqs):
        out[i, ..., : s.shape[-1]] = s
    return out


def nar_prompt_split(code_lens: torch.Tensor, lo: float, hi: float, generator: torch.Generator) -> torch.Tensor:
    """Prompt length per row: a fraction in [lo, hi) of the utterance, at least one frame each side."""
    u = torch.rand(code_lens.shape, generator=generator)
    frac = lo + (hi - lo) * u
    return (code_lens.float() * frac).long().clamp(min=1).minimum((code_lens - 1).clamp(min=1))


def random_crop(codes: torch.Tensor, max_frames: int, generator: torch.Generator) -> torch.Tensor:
    """A random window of at most ``max_frames`` of ``codes (K, T)``."""
    T = codes.shape[-1]
    if T <= max_frames:
        return codes
    start = int(torch.randint(0, T - max_frames + 1, (1,), generator=generator))
    return codes[:, start : start + max_frames]


class TokenizedDataset(torch.utils.data.Dataset):
    """Map-style dataset indexed by a batch of cuts (``CutSet``) -> one collated batch dict."""

    def __init__(self, *, n_codebooks: int, eos_id: int, pad_id: int = 0, nar_crop_frames: int | None = None,
                 nar_prompt: tuple[float, float] = (0.1, 0.5), seed: int = 0):
        self.K, self.eos_id, self.pad_id = n_codebooks, eos_id, pad_id
        self.nar_crop_frames = nar_crop_frames
        self.nar_prompt = nar_prompt
        self.seed = seed
        self.epoch = 0
        self.reader = ShardReader()

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def generator(self, ids: list[str]) -> torch.Generator:
        key = zlib.crc32("\n".join(ids).encode())
        return torch.Generator().manual_seed((self.seed * 1_000_003 + self.epoch * 7_919 + key) % (2**63))

    def load(self, cut) -> tuple[torch.Tensor, torch.Tensor]:
        tok = cut.custom["tokens"]
        return self.reader.read(Path(tok["root"]) / tok["shard"], tok["key"])

    def __getitem__(self, cuts) -> dict:
        cuts = list(cuts)
        ids = [c.id for c in cuts]
        gen = self.generator(ids)
        codes, texts = [], []
        for cut in cuts:
            c, phones = self.load(cut)
            if c.shape[0] != self.K:
                raise ValueError(f"cut {cut.id} has {c.shape[0]} codebooks; the model expects {self.K}")
            codes.append(c)
            texts.append(torch.cat([phones, phones.new_tensor([self.eos_id])]))
        code_lens = torch.tensor([c.shape[-1] for c in codes])
        text = pad_stack(texts, self.pad_id)
        text_lens = torch.tensor([t.shape[0] for t in texts])
        batch = {
            "ids": ids,
            "text": text,  # (B, S)
            "text_valid": torch.arange(text.shape[1])[None] < text_lens[:, None],  # (B, S)
            "codes": pad_stack(codes, 0),  # (B, K, T)
            "code_lens": code_lens,
            "frames": int(code_lens.sum()),
        }
        if self.nar_crop_frames is not None and int(code_lens.max()) > self.nar_crop_frames:
            cropped = [random_crop(c, self.nar_crop_frames, gen) for c in codes]
            batch["nar_codes"] = pad_stack(cropped, 0)
            batch["nar_code_lens"] = torch.tensor([c.shape[-1] for c in cropped])
        else:
            batch["nar_codes"], batch["nar_code_lens"] = batch["codes"], code_lens
        batch["nar_prompt_lens"] = nar_prompt_split(batch["nar_code_lens"], *self.nar_prompt, gen)
        batch["nar_stage"] = torch.randint(1, self.K, (len(cuts),), generator=gen)
        return batch


# ----------------------------------------------------------------------------- sampling


class DurationFilter:
    """Keeps cuts with ``lo <= duration <= hi`` (a class, so lazy CutSets stay picklable)."""

    def __init__(self, lo: float, hi: float):
        self.lo, self.hi = lo, hi

    def __call__(self, cut) -> bool:
        return self.lo <= cut.duration <= self.hi


def make_sampler(cuts, *, max_batch_seconds: float, min_seconds: float, max_seconds: float, shuffle: bool,
                 world_size: int, rank: int, seed: int, num_buckets: int = 10, buffer_size: int = 20000):
    """Lhotse's ``DynamicBucketingSampler`` over the cuts within the duration limits.

    Each rank gets every ``world_size``-th batch of the same sequence (no duplicates within
    an epoch; Lhotse rebalances the last batches so every rank gets as many).
    """
    from lhotse.dataset import DynamicBucketingSampler

    if max_batch_seconds < max_seconds:
        raise ValueError(f"data.max_batch_seconds ({max_batch_seconds:g}) must be >= data.max_seconds "
                         f"({max_seconds:g}), or the longest utterances fit in no batch")
    return DynamicBucketingSampler(
        cuts.filter(DurationFilter(min_seconds, max_seconds)), max_duration=max_batch_seconds, shuffle=shuffle,
        num_buckets=num_buckets, buffer_size=buffer_size, world_size=world_size, rank=rank, seed=seed,
        drop_last=False, num_cuts_for_bins_estimate=min(buffer_size, 10000),
    )


class ResumableSampler(torch.utils.data.Sampler):
    """Wraps a Lhotse sampler so a run can restart inside an epoch.

    The training loop counts the batches it has *consumed* (DataLoader workers prefetch,
    so the sampler itself is ahead); ``resume(epoch, batches_done)`` replays the epoch's
    batch sequence from its seed and skips that many (only manifests are read).
    """

    def __init__(self, sampler):
        self.sampler = sampler
        self.epoch = 0
        self._skip = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch
        self.sampler.set_epoch(epoch)

    def resume(self, epoch: int, batches_done: int) -> None:
        self.set_epoch(epoch)
        self._skip = batches_done

    def __iter__(self):
        skip, self._skip = self._skip, 0
        for i, batch in enumerate(self.sampler):
            if i >= skip:
                yield batch
