"""Packed token data: a whole tokenized corpus in one file, batched on the training device.

The Lhotse path (``dataset.py``) reads every utterance from its shard on the host, one batch
at a time. That is right for large corpora and for many ranks, but for the small demo corpus
on one GPU the host becomes the bottleneck: a 12 M-parameter model steps faster than Python
collates 200 utterances. Here the corpus (15.7 h of 8 x 256 codes is 36 MB in uint8) lives
on the device, and a batch is a few vectorised gathers::

    valle2-packed.safetensors
      codes     (K, N) uint8/int16   every utterance's codes, end to end
      phones    (P,)   uint8/int16   every utterance's phone ids, end to end
      code_off, code_len, phone_off, phone_len   (U,) int64
      header metadata: format, version, codec identity, symbol table (JSON), language, ...

``PackedBatches`` yields the same batch dict as ``TokenizedDataset`` (text + <eos>, padded
codes, NAR window, prompt split, stage), from length-bucketed batches whose padded size
``B x T_max`` stays under a frame budget, reshuffled every epoch.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from valle2.data.shards import DataFileError

FORMAT = "valle2-packed-tokens"
VERSION = 1


@dataclass
class PackedData:
    codes: torch.Tensor  # (K, N)
    phones: torch.Tensor  # (P,)
    code_off: np.ndarray  # (U,) host copies: batch planning needs no device sync
    code_len: np.ndarray
    phone_off: np.ndarray
    phone_len: np.ndarray
    meta: dict

    @property
    def n_utterances(self) -> int:
        return len(self.code_len)

    @property
    def n_codebooks(self) -> int:
        return int(self.codes.shape[0])

    @property
    def hours(self) -> float:
        return float(self.code_len.sum()) / self.meta["frame_rate"] / 3600

    def to(self, device) -> "PackedData":
        return PackedData(self.codes.to(device), self.phones.to(device), self.code_off, self.code_len,
                          self.phone_off, self.phone_len, self.meta)


def _smallest_uint(max_value: int) -> torch.dtype:
    return torch.uint8 if max_value < 256 else torch.int16 if max_value < 2**15 else torch.int32


def pack_tokenized(dirs: list[str | Path], out: str | Path, *, min_seconds: float = 0.0,
                   max_seconds: float = float("inf")) -> dict:
    """Pack tokenized folders (``valle2 tokenize``) into one file; returns its metadata."""
    from safetensors.torch import save_file

    from valle2.data.shards import ShardReader
    from valle2.data.tokenize import open_tokenized

    data = open_tokenized(dirs)
    reader = ShardReader()
    codes, phones, skipped = [], [], 0
    for cut in data.cuts:
        if not (min_seconds <= cut.duration <= max_seconds):
            skipped += 1
            continue
        tok = cut.custom["tokens"]
        c, p = reader.read(Path(tok["root"]) / tok["shard"], tok["key"])
        if c.shape[0] != data.n_codebooks:
            raise DataFileError(f"cut {cut.id} has {c.shape[0]} codebooks, its folder says {data.n_codebooks}")
        codes.append(c)
        phones.append(p)
    if not codes:
        raise DataFileError(f"nothing to pack: every utterance of {', '.join(map(str, dirs))} is outside "
                            f"{min_seconds:g}-{max_seconds:g} s")
    code_len = torch.tensor([c.shape[-1] for c in codes])
    phone_len = torch.tensor([len(p) for p in phones])
    all_codes = torch.cat(codes, dim=-1)
    all_phones = torch.cat(phones)
    meta = {"format": FORMAT, "version": VERSION, "codec": data.codec, "n_codebooks": data.n_codebooks,
            "codebook_size": data.codebook_size, "frame_rate": data.frame_rate, "language": data.language,
            "symbols": data.symbols.to_dict() if hasattr(data.symbols, "to_dict") else None,
            "sources": [str(d) for d in dirs], "n_utterances": len(codes), "skipped": skipped,
            "min_seconds": min_seconds, "max_seconds": max_seconds}
    tensors = {
        "codes": all_codes.to(_smallest_uint(int(all_codes.max()))).contiguous(),
        "phones": all_phones.to(_smallest_uint(int(all_phones.max()))).contiguous(),
        "code_len": code_len, "code_off": torch.cumsum(code_len, 0) - code_len,
        "phone_len": phone_len, "phone_off": torch.cumsum(phone_len, 0) - phone_len,
    }
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.tmp")
    save_file(tensors, str(tmp), metadata={"valle2": json.dumps(meta)})
    tmp.replace(out)
    return meta


def compress_packed(path: str | Path) -> Path:
    """``path`` -> ``path.xz`` (codec codes compress 2-3x; a remote slot's transfer is small)."""
    import lzma
    import shutil

    path = Path(path)
    out = path.with_name(path.name + ".xz")
    tmp = out.with_name(f".{out.name}.tmp")
    with open(path, "rb") as src, lzma.open(tmp, "wb", preset=6) as dst:
        shutil.copyfileobj(src, dst, 1 << 24)
    tmp.replace(out)
    return out


def load_packed(path: str | Path, device: str | torch.device = "cpu") -> PackedData:
    """Read a packed file (or its ``.xz``, decompressed to a temporary file first)."""
    from safetensors import safe_open

    path = Path(path)
    if not path.is_file():
        raise DataFileError(f"packed token file {path} does not exist")
    if path.suffix == ".xz":
        import lzma
        import shutil
        import tempfile

        with tempfile.TemporaryDirectory() as tmp:
            plain = Path(tmp) / path.stem
            try:
                with lzma.open(path, "rb") as src, open(plain, "wb") as dst:
                    shutil.copyfileobj(src, dst, 1 << 24)
            except lzma.LZMAError as e:
                raise DataFileError(f"{path} is not a readable .xz file: {e}") from None
            return load_packed(plain, device)
    try:
        with safe_open(str(path), framework="pt") as f:
            meta = json.loads((f.metadata() or {}).get("valle2", "null"))
            t = {k: f.get_tensor(k) for k in f.keys()}
    except Exception as e:  # safetensors raises its own SafetensorError on a bad header
        raise DataFileError(f"{path} is not a packed token file: {e}") from None
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        raise DataFileError(f"{path} is not a packed token file (format {meta and meta.get('format')!r})")
    if meta.get("version") != VERSION:
        raise DataFileError(f"{path} is packed token format version {meta.get('version')}; "
                            f"this valle2 reads version {VERSION}")
    missing = {"codes", "phones", "code_off", "code_len", "phone_off", "phone_len"} - set(t)
    if missing:
        raise DataFileError(f"{path} lacks {', '.join(sorted(missing))}")
    return PackedData(t["codes"].to(device), t["phones"].to(device), t["code_off"].numpy(), t["code_len"].numpy(),
                      t["phone_off"].numpy(), t["phone_len"].numpy(), meta)


def concat_packed(parts: list[PackedData]) -> PackedData:
    """Several packed files (same codec and symbol table) as one."""
    first = parts[0]
    for p in parts[1:]:
        for key in ("codec", "symbols", "language", "n_codebooks", "codebook_size"):
            if p.meta[key] != first.meta[key]:
                raise DataFileError(f"packed files differ in {key}: {p.meta.get('sources')} vs {first.meta.get('sources')}")
    if len(parts) == 1:
        return first
    dtype = max((p.codes.dtype for p in parts), key=lambda d: torch.iinfo(d).bits)
    pdtype = max((p.phones.dtype for p in parts), key=lambda d: torch.iinfo(d).bits)
    code_base = np.cumsum([0] + [p.codes.shape[1] for p in parts[:-1]])
    phone_base = np.cumsum([0] + [p.phones.shape[0] for p in parts[:-1]])
    meta = {**first.meta, "sources": [s for p in parts for s in p.meta.get("sources", [])],
            "n_utterances": sum(p.n_utterances for p in parts)}
    return PackedData(
        torch.cat([p.codes.to(dtype) for p in parts], dim=1), torch.cat([p.phones.to(pdtype) for p in parts]),
        np.concatenate([p.code_off + b for p, b in zip(parts, code_base)]),
        np.concatenate([p.code_len for p in parts]),
        np.concatenate([p.phone_off + b for p, b in zip(parts, phone_base)]),
        np.concatenate([p.phone_len for p in parts]), meta)


def _cut_sorted(order: np.ndarray, lengths: np.ndarray, max_frames: int) -> list[np.ndarray]:
    """Indices sorted by length -> consecutive runs whose ``len(run) * max(lengths)`` is at most
    ``max_frames`` (an utterance longer than that is a run of its own)."""
    if len(order) == 0:
        return []
    batches, start = [], 0
    for i in range(1, len(order)):
        if (i - start + 1) * int(lengths[order[i]]) > max_frames:  # sorted: order[i] is the longest
            batches.append(order[start:i])
            start = i
    batches.append(order[start:])
    return batches


def plan_batches(lengths: np.ndarray, max_frames: int, rng: np.random.Generator, *,
                 pool: int = 2000) -> list[np.ndarray]:
    """One epoch of length-bucketed batches (indices), shuffled.

    The shuffled utterances are taken ``pool`` at a time and sorted by length; consecutive
    runs form batches whose padded size ``len(batch) * max(lengths)`` is at most
    ``max_frames`` (an utterance longer than that is a batch of its own).
    """
    order = rng.permutation(len(lengths))
    batches: list[np.ndarray] = []
    for s in range(0, len(order), pool):
        chunk = order[s : s + pool]
        batches += _cut_sorted(chunk[np.argsort(lengths[chunk], kind="stable")], lengths, max_frames)
    rng.shuffle(batches)
    return batches


class PackedBatches:
    """Batches of ``TokenizedDataset``'s layout, collated on the data's device."""

    def __init__(self, data: PackedData, *, eos_id: int, pad_id: int = 0, max_frames: int,
                 nar_crop_frames: int | None = None, nar_prompt: tuple[float, float] = (0.1, 0.5), seed: int = 0):
        self.data, self.eos_id, self.pad_id = data, eos_id, pad_id
        self.max_frames = max_frames
        self.nar_crop_frames = nar_crop_frames
        self.nar_prompt = nar_prompt
        self.seed = seed
        self.device = data.codes.device
        self.generator = torch.Generator(device=self.device).manual_seed(seed)

    def epoch(self, epoch: int, *, shuffle: bool = True):
        """The batches of one epoch (index arrays), deterministic in (seed, epoch)."""
        if not shuffle:
            return _cut_sorted(np.argsort(self.data.code_len, kind="stable"), self.data.code_len, self.max_frames)
        return plan_batches(self.data.code_len, self.max_frames, np.random.default_rng([self.seed, epoch]))

    def _gather(self, flat: torch.Tensor, off: np.ndarray, lens: np.ndarray, width: int, pad: int) -> torch.Tensor:
        """Rows ``flat[..., off_i : off_i + len_i]`` right-padded to ``width``: ``(*lead, B, width)``."""
        dev = self.device
        pos = torch.arange(width, device=dev)
        off_t = torch.as_tensor(off, device=dev)
        len_t = torch.as_tensor(lens, device=dev)
        valid = pos[None] < len_t[:, None]
        idx = (off_t[:, None] + pos[None]).clamp(max=flat.shape[-1] - 1)
        rows = flat[..., idx].long()
        return rows.masked_fill(~valid, pad)

    def collate(self, idx: np.ndarray) -> dict:
        d, dev = self.data, self.device
        clen, plen = d.code_len[idx], d.phone_len[idx]
        T, S = int(clen.max()), int(plen.max()) + 1
        codes = self._gather(d.codes, d.code_off[idx], clen, T, 0).transpose(0, 1)  # (B, K, T)
        text = self._gather(d.phones, d.phone_off[idx], plen, S, self.pad_id)  # (B, S)
        plen_t = torch.as_tensor(plen, device=dev)
        text.scatter_(1, plen_t[:, None], self.eos_id)
        code_lens = torch.as_tensor(clen, device=dev)
        batch = {
            "text": text,
            "text_valid": torch.arange(S, device=dev)[None] < (plen_t + 1)[:, None],
            "codes": codes,
            "code_lens": code_lens,
            "frames": int(clen.sum()),
        }
        g = self.generator
        crop = self.nar_crop_frames
        if crop is not None and T > crop:
            span = torch.as_tensor(np.maximum(clen - crop, 0) + 1, device=dev)
            start = (torch.rand(len(idx), generator=g, device=dev) * span).long().minimum(span - 1)
            ncl = code_lens.clamp(max=crop)
            pos = torch.arange(crop, device=dev)
            take = (start[:, None] + pos[None]).clamp(max=T - 1)  # (B, crop)
            nar = codes.gather(2, take[:, None].expand(-1, codes.shape[1], -1))
            batch["nar_codes"] = nar.masked_fill(~(pos[None] < ncl[:, None])[:, None], 0)
            batch["nar_code_lens"] = ncl
        else:
            batch["nar_codes"], batch["nar_code_lens"] = codes, code_lens
        lo, hi = self.nar_prompt
        frac = lo + (hi - lo) * torch.rand(len(idx), generator=g, device=dev)
        ncl = batch["nar_code_lens"]
        batch["nar_prompt_lens"] = (ncl.float() * frac).long().clamp(min=1).minimum((ncl - 1).clamp(min=1))
        batch["nar_stage"] = torch.randint(1, d.n_codebooks, (len(idx),), generator=g, device=dev)
        return batch
