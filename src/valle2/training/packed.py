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
      speaker   (U,) int32   index into the header's ``speakers`` list (version 2)
      header metadata: format, version, codec identity, symbol table (JSON), language, speakers, ...

``PackedBatches`` yields the same batch dict as ``TokenizedDataset`` (text + <eos>, padded
codes, NAR window, prompt split, stage), from length-bucketed batches whose padded size
``B x T_max`` stays under a frame budget, reshuffled every epoch.

Prompt pairs (``pair_prob``): at inference the AR reads *prompt text + separator + target
text* and continues the prompt's codes, so a sequence holds two utterances of one voice. A
model trained on single utterances only has never seen that layout nor sequences that long:
it loses the alignment after the prompt and stops early (benchmarks/RESULTS.md, "Prompt
pairs"). With ``pair_prob`` > 0 a training row is, with that probability, another utterance
of the same speaker followed by the utterance itself, text and codes alike, exactly as
inference lays them out; the NAR then takes that first utterance as its prompt.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from valle2.data.dataset import cut_speaker, index_speakers, pick_partners
from valle2.data.shards import DataFileError

FORMAT = "valle2-packed-tokens"
VERSION = 2  # 2: per-utterance speaker; version 1 files still load (no prompt pairs)


@dataclass
class PackedData:
    codes: torch.Tensor  # (K, N)
    phones: torch.Tensor  # (P,)
    code_off: np.ndarray  # (U,) host copies: batch planning needs no device sync
    code_len: np.ndarray
    phone_off: np.ndarray
    phone_len: np.ndarray
    meta: dict
    speaker: np.ndarray | None = None  # (U,) index into meta["speakers"]; None for version-1 files

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
                          self.phone_off, self.phone_len, self.meta, self.speaker)


def _smallest_uint(max_value: int) -> torch.dtype:
    return torch.uint8 if max_value < 256 else torch.int16 if max_value < 2**15 else torch.int32


def pack_tokenized(dirs: list[str | Path], out: str | Path, *, min_seconds: float = 0.0,
                   max_seconds: float = float("inf"), speakers: set[str] | None = None,
                   per_speaker: int | None = None) -> dict:
    """Pack tokenized folders (``valle2 tokenize``) into one file; returns its metadata.

    ``speakers``: keep only these speakers' utterances (e.g. a voice split); ``per_speaker``:
    at most that many each, the first in the folders' order.
    """
    from safetensors.torch import save_file

    from valle2.data.shards import ShardReader
    from valle2.data.tokenize import open_tokenized

    data = open_tokenized(dirs)
    reader = ShardReader()
    codes, phones, names, skipped, left_out, count = [], [], [], 0, 0, {}
    for cut in data.cuts:
        spk = cut_speaker(cut)
        if (speakers is not None and spk not in speakers) or (per_speaker is not None
                                                                and count.get(spk, 0) >= per_speaker):
            left_out += 1
            continue
        if not (min_seconds <= cut.duration <= max_seconds):
            skipped += 1
            continue
        count[spk] = count.get(spk, 0) + 1
        tok = cut.custom["tokens"]
        c, p = reader.read(Path(tok["root"]) / tok["shard"], tok["key"])
        if c.shape[0] != data.n_codebooks:
            raise DataFileError(f"cut {cut.id} has {c.shape[0]} codebooks, its folder says {data.n_codebooks}")
        codes.append(c)
        phones.append(p)
        names.append(spk)
    if not codes:
        raise DataFileError(f"nothing to pack: every utterance of {', '.join(map(str, dirs))} is outside "
                            f"{min_seconds:g}-{max_seconds:g} s or of another speaker")
    code_len = torch.tensor([c.shape[-1] for c in codes])
    phone_len = torch.tensor([len(p) for p in phones])
    all_codes = torch.cat(codes, dim=-1)
    all_phones = torch.cat(phones)
    speaker_names, speaker = index_speakers(names)
    meta = {"format": FORMAT, "version": VERSION, "codec": data.codec, "n_codebooks": data.n_codebooks,
            "codebook_size": data.codebook_size, "frame_rate": data.frame_rate, "language": data.language,
            "symbols": data.symbols.to_dict() if hasattr(data.symbols, "to_dict") else None,
            "sources": [str(d) for d in dirs], "n_utterances": len(codes), "skipped": skipped,
            "min_seconds": min_seconds, "max_seconds": max_seconds, "speakers": speaker_names,
            "left_out_by_speaker": left_out}
    tensors = {
        "codes": all_codes.to(_smallest_uint(int(all_codes.max()))).contiguous(),
        "phones": all_phones.to(_smallest_uint(int(all_phones.max()))).contiguous(),
        "code_len": code_len, "code_off": torch.cumsum(code_len, 0) - code_len,
        "phone_len": phone_len, "phone_off": torch.cumsum(phone_len, 0) - phone_len,
        "speaker": torch.from_numpy(speaker).to(torch.int32),
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
    if meta.get("version") not in (1, VERSION):
        raise DataFileError(f"{path} is packed token format version {meta.get('version')}; "
                            f"this valle2 reads versions 1-{VERSION}")
    missing = {"codes", "phones", "code_off", "code_len", "phone_off", "phone_len"} - set(t)
    if missing:
        raise DataFileError(f"{path} lacks {', '.join(sorted(missing))}")
    speaker = t["speaker"].numpy().astype(np.int64) if "speaker" in t else None
    if speaker is not None and (len(speaker) != len(t["code_len"]) or
                                (len(speaker) and not 0 <= speaker.min() <= speaker.max() < len(meta.get("speakers", [])))):
        raise DataFileError(f"{path}: its speaker indices do not match its {len(meta.get('speakers', []))} speakers")
    return PackedData(t["codes"].to(device), t["phones"].to(device), t["code_off"].numpy(), t["code_len"].numpy(),
                      t["phone_off"].numpy(), t["phone_len"].numpy(), meta, speaker)


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
    speaker = None
    if all(p.speaker is not None for p in parts):  # one speaker list: a voice in two files is one speaker
        meta["speakers"], speaker = index_speakers([p.meta["speakers"][i] for p in parts for i in p.speaker])
    else:
        meta.pop("speakers", None)
    return PackedData(
        torch.cat([p.codes.to(dtype) for p in parts], dim=1), torch.cat([p.phones.to(pdtype) for p in parts]),
        np.concatenate([p.code_off + b for p, b in zip(parts, code_base)]),
        np.concatenate([p.code_len for p in parts]),
        np.concatenate([p.phone_off + b for p, b in zip(parts, phone_base)]),
        np.concatenate([p.phone_len for p in parts]), meta, speaker)


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
    """Batches of ``TokenizedDataset``'s layout, collated on the data's device.

    ``epoch()`` yields index arrays: ``(B,)`` utterances, or ``(B, 2)`` rows of (prompt partner
    or -1, utterance) when ``pair_prob`` > 0; ``collate`` takes either.
    """

    def __init__(self, data: PackedData, *, eos_id: int, pad_id: int = 0, max_frames: int,
                 nar_crop_frames: int | None = None, nar_prompt: tuple[float, float] = (0.1, 0.5), seed: int = 0,
                 pair_prob: float = 0.0, pair_max_frames: int | None = None, sep_id: int | None = None):
        self.data, self.eos_id, self.pad_id = data, eos_id, pad_id
        self.max_frames = max_frames
        self.nar_crop_frames = nar_crop_frames
        self.nar_prompt = nar_prompt
        self.seed = seed
        self.pair_prob, self.sep_id = pair_prob, sep_id
        self.pair_max_frames = pair_max_frames if pair_max_frames is not None else max_frames
        if pair_prob > 0 and data.speaker is None:
            raise DataFileError("prompt pairs need each utterance's speaker: re-pack the data with this valle2 "
                                "(packed format version 2)")
        self.device = data.codes.device
        self.generator = torch.Generator(device=self.device).manual_seed(seed)

    def epoch(self, epoch: int, *, shuffle: bool = True):
        """The batches of one epoch (index arrays), deterministic in (seed, epoch)."""
        d = self.data
        rng = np.random.default_rng([self.seed, epoch])
        lengths, partner = d.code_len, None
        if self.pair_prob > 0:
            partner = pick_partners(np.arange(d.n_utterances), d.speaker, d.code_len, prob=self.pair_prob,
                                    max_length=self.pair_max_frames, rng=rng)
            lengths = d.code_len + np.where(partner >= 0, d.code_len[np.maximum(partner, 0)], 0)
        if not shuffle:
            batches = _cut_sorted(np.argsort(lengths, kind="stable"), lengths, self.max_frames)
        else:
            batches = plan_batches(lengths, self.max_frames, rng)
        return batches if partner is None else [np.stack([partner[b], b], axis=1) for b in batches]

    def _gather2(self, flat: torch.Tensor, off_a: np.ndarray, len_a: np.ndarray, gap: np.ndarray, gap_value: int,
                 off_b: np.ndarray, len_b: np.ndarray, width: int, pad: int) -> torch.Tensor:
        """Rows ``a ++ [gap_value] * gap ++ b`` right-padded to ``width``: ``(*lead, B, width)``."""
        dev = self.device
        pos = torch.arange(width, device=dev)[None]
        la, g, lb = (torch.as_tensor(x, device=dev)[:, None] for x in (len_a, gap, len_b))
        oa, ob = (torch.as_tensor(x, device=dev)[:, None] for x in (off_a, off_b))
        in_a, in_b = pos < la, (pos >= la + g) & (pos < la + g + lb)
        idx = torch.where(in_a, oa + pos, ob + pos - la - g).clamp(0, flat.shape[-1] - 1)
        rows = flat[..., idx].long()
        rows = rows.masked_fill(~(in_a | in_b), pad)
        return rows.masked_fill((pos >= la) & (pos < la + g), gap_value)

    def collate(self, idx: np.ndarray) -> dict:
        d, dev = self.data, self.device
        idx = np.asarray(idx)
        if idx.ndim == 2:  # (prompt partner or -1, utterance)
            partner, idx = idx[:, 0], idx[:, 1]
        else:
            partner = np.full(len(idx), -1)
        paired = partner >= 0
        p = np.maximum(partner, 0)
        la = np.where(paired, d.code_len[p], 0)
        pa = np.where(paired, d.phone_len[p], 0)
        sep = (paired & (self.sep_id is not None)).astype(np.int64)
        clen = la + d.code_len[idx]
        plen = pa + sep + d.phone_len[idx]
        T, S = int(clen.max()), int(plen.max()) + 1
        codes = self._gather2(d.codes, d.code_off[p], la, np.zeros_like(la), 0, d.code_off[idx], d.code_len[idx],
                              T, 0).transpose(0, 1)  # (B, K, T)
        text = self._gather2(d.phones, d.phone_off[p], pa, sep, self.sep_id or 0, d.phone_off[idx],
                             d.phone_len[idx], S, self.pad_id)  # (B, S)
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
        prompt = (ncl.float() * frac).long()
        # an uncropped pair: the NAR's prompt is the partner utterance, as at inference
        whole = torch.as_tensor(paired, device=dev) & (ncl == code_lens)
        prompt = torch.where(whole, torch.as_tensor(la, device=dev), prompt)
        batch["nar_prompt_lens"] = prompt.clamp(min=1).minimum((ncl - 1).clamp(min=1))
        # segments for the NAR's progress encodings: (prompt text + separator, prompt frames) of a pair
        batch["nar_text_split"] = torch.as_tensor(pa + sep, device=dev).masked_fill(~whole, 0)
        batch["nar_frame_split"] = torch.as_tensor(la, device=dev).masked_fill(~whole, 0)
        batch["nar_stage"] = torch.randint(1, d.n_codebooks, (len(idx),), generator=g, device=dev)
        return batch
