"""Dataset, collation and sampling of tokenized utterances (Lhotse style).

The sampler yields *batches of cuts* (a ``CutSet`` whose durations sum to at most the
budget); the dataset turns one such batch into padded tensors in one call::

    text        (B, S)     phone ids + <eos>, right-padded with <pad>; text_valid (B, S)
    codes       (B, K, T)  all codebooks, right-padded; code_lens (B,)        -> AR: codes[:, 0]
    nar_codes   (B, K, Tn) a random window of at most nar_crop frames (== codes when no crop)
    nar_code_lens (B,), nar_prompt_lens (B,), nar_stage (B,)                 -> NAR (SPEC.md §2)

NAR prompt/target split: each utterance is split at a random point (``nar_prompt`` fraction
of its frames, 10-50 % by default) into an acoustic prompt, all of whose codebooks the NAR
sees, and a target; one random stage j in 1..K-1 per utterance.

Prompt pairs (``pair_prob`` > 0, given the pool of training cuts): with that probability a
row is another utterance of the same speaker, then the utterance, as inference lays out
prompt and target: text ``a + separator + b + <eos>``, codes ``a ++ b``; the NAR's prompt is
then ``a`` (when not cropped). The sampler's duration budget counts the utterances it drew,
not their partners, so a batch holds up to ``1 + pair_prob`` times its budget on average.

Random crops apply to the NAR only: the AR must see the audio of its whole transcript, so
long utterances are left out by the sampler's duration limits rather than cut.

All randomness of a batch comes from a generator seeded by (seed, epoch, the batch's cut
ids), not from process-global state, so batches are the same in a resumed run and with
any number of DataLoader workers.
"""

from __future__ import annotations

import zlib
from pathlib import Path

import numpy as np
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


def cut_speaker(cut) -> str:
    """A cut's speaker: its first supervision's, else (no speaker known) the cut itself."""
    return cut.supervisions[0].speaker if cut.supervisions and cut.supervisions[0].speaker else cut.id


def index_speakers(names: list[str]) -> tuple[list[str], np.ndarray]:
    """Speaker names -> (the sorted distinct names, each name's index into them)."""
    distinct = sorted(set(names))
    index = {n: i for i, n in enumerate(distinct)}
    return distinct, np.array([index[n] for n in names], dtype=np.int64)


def pick_partners(rows: np.ndarray, speaker: np.ndarray, length: np.ndarray, *, prob: float, max_length: float,
                  rng: np.random.Generator, tries: int = 4) -> np.ndarray:
    """A prompt partner for each of ``rows``: another utterance of the same speaker, or -1.

    With probability ``prob`` a row gets a partner drawn uniformly among its speaker's other
    utterances such that ``length[row] + length[partner] <= max_length`` (up to ``tries`` draws;
    -1 when none fits or the speaker has a single utterance). ``speaker`` and ``length`` cover
    the whole pool; ``rows`` index into it.
    """
    rows = np.asarray(rows, dtype=np.int64)
    out = np.full(len(rows), -1, dtype=np.int64)
    if prob <= 0 or len(rows) == 0:
        return out
    order = np.argsort(speaker, kind="stable")  # the pool grouped by speaker
    rank = np.empty_like(order)
    rank[order] = np.arange(len(order))
    sorted_spk = speaker[order]
    start = np.searchsorted(sorted_spk, speaker[rows], side="left")
    size = np.searchsorted(sorted_spk, speaker[rows], side="right") - start
    want = (rng.random(len(rows)) < prob) & (size > 1)
    for _ in range(tries):
        todo = np.flatnonzero(want & (out < 0))
        if len(todo) == 0:
            break
        k = (rng.random(len(todo)) * (size[todo] - 1)).astype(np.int64)  # among the other size-1
        k += k >= rank[rows[todo]] - start[todo]  # skip the row itself
        cand = order[start[todo] + k]
        fits = length[rows[todo]] + length[cand] <= max_length
        out[todo[fits]] = cand[fits]
    return out


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
                 nar_prompt: tuple[float, float] = (0.1, 0.5), seed: int = 0, pair_prob: float = 0.0,
                 pair_max_seconds: float = 20.0, sep_id: int | None = None, pool=None):
        self.K, self.eos_id, self.pad_id = n_codebooks, eos_id, pad_id
        self.nar_crop_frames = nar_crop_frames
        self.nar_prompt = nar_prompt
        self.seed = seed
        self.epoch = 0
        self.reader = ShardReader()
        self.pair_prob, self.pair_max_seconds, self.sep_id = pair_prob, pair_max_seconds, sep_id
        if pair_prob > 0:
            if pool is None:
                raise ValueError("prompt pairs need the pool of cuts to draw partners from")
            self.pool = list(pool)
            self.pool_index = {c.id: i for i, c in enumerate(self.pool)}
            _, self.pool_speaker = index_speakers([cut_speaker(c) for c in self.pool])
            self.pool_seconds = np.array([c.duration for c in self.pool])

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def generator(self, ids: list[str]) -> torch.Generator:
        key = zlib.crc32("\n".join(ids).encode())
        return torch.Generator().manual_seed((self.seed * 1_000_003 + self.epoch * 7_919 + key) % (2**63))

    def load(self, cut) -> tuple[torch.Tensor, torch.Tensor]:
        tok = cut.custom["tokens"]
        return self.reader.read(Path(tok["root"]) / tok["shard"], tok["key"])

    def _partners(self, cuts, gen: torch.Generator) -> list:
        """A same-speaker partner cut (or None) for each cut of the batch."""
        if self.pair_prob <= 0:
            return [None] * len(cuts)
        rows = np.array([self.pool_index.get(c.id, -1) for c in cuts])
        rng = np.random.default_rng(int(torch.randint(0, 2**62, (1,), generator=gen)))
        known = rows >= 0  # a cut outside the pool gets no partner
        picked = np.full(len(cuts), -1)
        picked[known] = pick_partners(rows[known], self.pool_speaker, self.pool_seconds, prob=self.pair_prob,
                                      max_length=self.pair_max_seconds, rng=rng)
        return [self.pool[j] if j >= 0 else None for j in picked]

    def __getitem__(self, cuts) -> dict:
        cuts = list(cuts)
        ids = [c.id for c in cuts]
        gen = self.generator(ids)
        codes, texts, prompt_frames, prompt_text = [], [], [], []
        for cut, partner in zip(cuts, self._partners(cuts, gen)):
            c, phones = self.load(cut)
            if c.shape[0] != self.K:
                raise ValueError(f"cut {cut.id} has {c.shape[0]} codebooks; the model expects {self.K}")
            prompt_frames.append(0)
            prompt_text.append(0)
            if partner is not None:
                pc, pp = self.load(partner)
                sep = pp.new_tensor([] if self.sep_id is None else [self.sep_id])
                c, phones = torch.cat([pc, c], dim=-1), torch.cat([pp, sep, phones])
                prompt_frames[-1] = pc.shape[-1]
                prompt_text[-1] = len(pp) + len(sep)
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
        prompt = nar_prompt_split(batch["nar_code_lens"], *self.nar_prompt, gen)
        if self.pair_prob > 0:  # an uncropped pair: the NAR's prompt is the partner utterance, as at inference
            pf = torch.tensor(prompt_frames)
            whole = (pf > 0) & (batch["nar_code_lens"] == code_lens)
            prompt = torch.where(whole, pf.clamp(max=(code_lens - 1).clamp(min=1)), prompt)
            # segments for the NAR's progress encodings: (prompt text + separator, prompt frames)
            batch["nar_text_split"] = torch.tensor(prompt_text).masked_fill(~whole, 0)
            batch["nar_frame_split"] = pf.masked_fill(~whole, 0)
        batch["nar_prompt_lens"] = prompt
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
