"""Tokenization: Lhotse cuts -> codec codes + phone ids, in shards (format in ``shards.py``).

The cuts of the input manifests, in order, are cut into shards of ``shard_size``; shard
``s`` belongs to rank ``s % world_size`` (under ``torchrun`` each rank encodes its own
shards on its own device; on one machine ``jobs`` processes share the rank's shards).
A shard whose ``shard-*.json`` exists, and lists the same cuts, is done and not redone:
an interrupted run resumes where it stopped. When every shard is done, the shards are
merged into ``cuts.jsonl.gz`` / ``skipped.jsonl`` / ``index.json`` (by whichever rank
finishes last; no process group is needed, so ranks may finish hours apart).

Utterances are skipped, with the reason logged and written to ``skipped.jsonl``, when
their transcript is empty or cannot be phonemized, their audio cannot be read or is
silent, or they are shorter or longer than the limits.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import math
import os
import time
from collections import Counter
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from pathlib import Path

import numpy as np
import torch

from valle2.config import CodecConfig, TextConfig, TokenizeConfig, build_codec
from valle2.data.shards import (
    TOKENS_FORMAT, TOKENS_VERSION, DataFileError, atomic_write_bytes, read_json, write_json, write_shard,
)

logger = logging.getLogger(__name__)

SETTINGS_FORMAT = "valle2-tokenize-settings"
SHARD_INDEX_FORMAT = "valle2-token-shard-index"
FORMAT_VERSION = 1
SILENCE_PEAK = 1e-4


@dataclasses.dataclass
class TokenizeResult:
    out_dir: Path
    n_shards: int  # in the whole plan
    done_now: int  # shards this process encoded
    already_done: int  # shards of this rank found complete
    complete: bool  # every shard done and merged (index.json written)
    n_cuts: int = 0  # in the merged index (when complete)
    n_skipped: int = 0


def symbols_sha(symbols) -> str:
    return hashlib.sha256("\n".join(symbols.symbols).encode()).hexdigest()[:16]


def load_symbols(text: TextConfig, texts=None):
    """The symbol table a recipe names: a file, else the language's built-in table, else one built from ``texts``."""
    from valle2.errors import TextError
    from valle2.text import SymbolTable

    if text.symbols:
        return SymbolTable.load(text.symbols)
    try:
        return SymbolTable.default(text.language)
    except TextError:
        if texts is None:
            raise
        logger.info("no built-in symbol table for %s: building one from the transcripts", text.language)
        return SymbolTable.from_texts([t for t in texts if t and t.strip()], text.language)


def cut_text(cut) -> str:
    return " ".join((s.text or "").strip() for s in cut.supervisions).strip()


def _iter_cuts(manifests: list[Path]):
    from lhotse import CutSet

    for m in manifests:
        yield from CutSet.from_jsonl_lazy(m)


def _shard_name(s: int) -> str:
    return f"shard-{s:06d}"


def _fingerprint(ids: list[str]) -> str:
    return hashlib.sha256("\n".join(ids).encode()).hexdigest()[:16]


def shard_done(out_dir: Path, s: int, fingerprint: str, quiet: bool = False) -> bool:
    """Shard ``s`` is complete and holds exactly the cuts ``fingerprint`` names."""
    path = out_dir / "shards" / f"{_shard_name(s)}.json"
    if not path.is_file():
        return False
    try:
        meta = read_json(path, format=SHARD_INDEX_FORMAT, version=FORMAT_VERSION, what="shard index")
    except DataFileError as e:
        if not quiet:
            logger.warning("redoing shard %d: %s", s, e)
        return False
    if meta.get("fingerprint") != fingerprint:
        if not quiet:
            logger.warning("redoing shard %d: its cuts changed since it was encoded", s)
        return False
    return True


# ----------------------------------------------------------------------------- encoding one shard


class ShardEncoder:
    """Encodes the cuts of one shard with one codec and one text front end."""

    def __init__(self, codec, frontend, settings: TokenizeConfig):
        self.codec, self.frontend, self.settings = codec, frontend, settings
        self.chunk = max(64, 4 * settings.batch_size)  # utterances loaded before they are encoded

    def check(self, cut) -> tuple[str, str] | tuple[None, list[int]]:
        """(reason, detail) when the cut must be skipped, else (None, phone ids)."""
        from valle2.errors import TextError

        s = self.settings
        if cut.duration > s.max_seconds:
            return "too long", f"{cut.duration:.1f} s > {s.max_seconds:g} s"
        if cut.duration < s.min_seconds:
            return "too short", f"{cut.duration:.2f} s < {s.min_seconds:g} s"
        text = cut_text(cut)
        if not text:
            return "empty transcript", ""
        try:
            phones = self.frontend.encode(text)
        except TextError as e:
            return "bad transcript", str(e)
        if not phones:
            return "bad transcript", "no phones"
        return None, phones

    def load(self, cut) -> tuple[str, str] | tuple[None, np.ndarray]:
        from valle2.audio import resample

        try:
            wav = np.asarray(cut.load_audio(), dtype=np.float32)  # (C, N)
        except Exception as e:  # decoders raise many types for a damaged file
            return "unreadable audio", str(e).strip().splitlines()[0][:200] if str(e).strip() else type(e).__name__
        wav = wav.mean(axis=0) if wav.ndim == 2 else wav.reshape(-1)
        if wav.size == 0:
            return "unreadable audio", "0 samples"
        if not np.isfinite(wav).all():
            return "unreadable audio", "NaN or infinite samples"
        if float(np.abs(wav).max()) < SILENCE_PEAK:
            return "silent audio", f"peak {float(np.abs(wav).max()):.1e}"
        return None, resample(wav, int(cut.sampling_rate), int(self.codec.sample_rate))

    def encode(self, wavs: list[np.ndarray]) -> list[torch.Tensor]:
        sr = int(self.codec.sample_rate)
        if hasattr(self.codec, "encode_batch"):
            return self.codec.encode_batch(wavs, sr, batch_size=self.settings.batch_size)
        return [self.codec.encode(w, sr) for w in wavs]

    def run(self, s: int, cuts: list, out_dir: Path, fingerprint: str, meta: dict) -> dict:
        start = time.monotonic()
        name = _shard_name(s)
        rel = f"shards/{name}.safetensors"
        skipped: list[dict] = []
        pending: list[tuple] = []  # (cut, phones, wav): waveforms wait here until a chunk is full
        entries, out_cuts = [], []

        def skip(cut, reason, detail):
            logger.warning("skipping %s: %s%s", cut.id, reason, f" ({detail})" if detail else "")
            skipped.append({"id": cut.id, "reason": reason, "detail": detail, "duration": round(cut.duration, 3)})

        def flush():
            codes = self.encode([w for _, _, w in pending]) if pending else []
            for (cut, phones, _), c in zip(pending, codes):
                c = torch.as_tensor(c)
                if c.shape[-1] == 0:
                    skip(cut, "unreadable audio", "the codec returned no frames")
                    continue
                key = str(len(entries))
                entries.append((key, c, torch.tensor(phones, dtype=torch.long)))
                out_cuts.append(cut.with_custom("tokens", {"shard": rel, "key": key, "frames": int(c.shape[-1]),
                                                           "phones": len(phones)}))
            pending.clear()

        for cut in cuts:
            reason, value = self.check(cut)
            if reason is not None:
                skip(cut, reason, value)
                continue
            bad, wav = self.load(cut)
            if bad is not None:
                skip(cut, bad, wav)
                continue
            pending.append((cut, value, wav))
            if len(pending) >= self.chunk:  # bounded memory: a shard of long files never sits in RAM
                flush()
        flush()
        shards = out_dir / "shards"
        write_shard(shards / f"{name}.safetensors", entries, meta)
        _write_cuts(shards / f"{name}.cuts.jsonl.gz", out_cuts)
        atomic_write_bytes(shards / f"{name}.skipped.jsonl",
                           "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in skipped).encode())
        frames = sum(c.custom["tokens"]["frames"] for c in out_cuts)
        summary = {
            "format": SHARD_INDEX_FORMAT, "version": FORMAT_VERSION, "shard": s, "fingerprint": fingerprint,
            "n_cuts": len(out_cuts), "n_skipped": len(skipped), "frames": frames,
            "seconds": round(sum(c.duration for c in out_cuts), 3),
            "skipped_by_reason": dict(Counter(r["reason"] for r in skipped)),
        }
        write_json(shards / f"{name}.json", summary)  # last: marks the shard complete
        logger.info("%s: %d cuts, %d skipped, %.1f s", name, len(out_cuts), len(skipped), time.monotonic() - start)
        return summary


def _write_cuts(path: Path, cuts: list) -> None:
    from lhotse import CutSet

    tmp = path.with_name(f".{path.name[:-len('.jsonl.gz')]}.tmp-{os.getpid()}.jsonl.gz")
    CutSet.from_cuts(cuts).to_file(tmp)
    os.replace(tmp, path)


# worker processes (``jobs`` > 1) keep their encoder here, set by the pool initializer
_WORKER: dict = {}


def _worker_init(codec_cfg: CodecConfig, symbols_path: str, language: str, settings: TokenizeConfig,
                 device: str, threads: int) -> None:
    from valle2.text import SymbolTable, TextFrontend

    torch.set_num_threads(threads)
    symbols = SymbolTable.load(symbols_path)
    _WORKER["encoder"] = ShardEncoder(build_codec(codec_cfg, device), TextFrontend(symbols, language), settings)


def _worker_run(s: int, cut_dicts: list[dict], out_dir: str, fingerprint: str, meta: dict) -> dict:
    from lhotse.serialization import deserialize_item

    cuts = [deserialize_item(d) for d in cut_dicts]
    return _WORKER["encoder"].run(s, cuts, Path(out_dir), fingerprint, meta)


# ----------------------------------------------------------------------------- the whole run


def tokenize(
    manifests: list[str | Path],
    out_dir: str | Path,
    *,
    codec: CodecConfig,
    text: TextConfig,
    settings: TokenizeConfig,
    rank: int | None = None,
    world_size: int | None = None,
    device: str | None = None,
    codec_obj=None,
) -> TokenizeResult:
    """Tokenize the cuts of ``manifests`` into ``out_dir`` (resumable; see the module docstring).

    ``rank``/``world_size`` default to torchrun's ``RANK``/``WORLD_SIZE`` (0/1 without it);
    ``device`` to ``cuda:LOCAL_RANK`` when a GPU is present, else CPU. ``codec_obj`` replaces
    the codec the config names (``jobs`` must then be 1; tests use it).
    """
    from valle2.text import TextFrontend

    manifests = [Path(m) for m in manifests]
    for m in manifests:
        if not m.is_file():
            raise DataFileError(f"cut manifest {m} does not exist")
    out_dir = Path(out_dir)
    rank = int(os.environ.get("RANK", 0)) if rank is None else rank
    world_size = int(os.environ.get("WORLD_SIZE", 1)) if world_size is None else world_size
    if device is None:
        device = f"cuda:{int(os.environ.get('LOCAL_RANK', 0))}" if torch.cuda.is_available() else "cpu"
    if codec_obj is not None and settings.jobs > 1:
        raise ValueError("a codec object can only be used with jobs=1 (workers build their own from the config)")
    (out_dir / "shards").mkdir(parents=True, exist_ok=True)

    symbols = load_symbols(text, texts=(cut_text(c) for c in _iter_cuts(manifests)))
    codec_obj = codec_obj if codec_obj is not None else build_codec(codec, device)
    identity = codec_obj.identity()
    settings_doc = {
        "format": SETTINGS_FORMAT, "version": FORMAT_VERSION, "codec": identity,
        "n_codebooks": int(codec_obj.n_codebooks), "codebook_size": int(codec_obj.codebook_size),
        "frame_rate": float(codec_obj.frame_rate), "sample_rate": int(codec_obj.sample_rate),
        "language": text.language, "symbols_sha256": symbols_sha(symbols), "shard_size": settings.shard_size,
        "min_seconds": settings.min_seconds, "max_seconds": settings.max_seconds,
        "inputs": [m.name for m in manifests],
    }
    _check_settings(out_dir, settings_doc)
    symbols_path = out_dir / "symbols.json"
    if not symbols_path.is_file():
        tmp = out_dir / f".symbols.json.tmp-{os.getpid()}"
        symbols.save(tmp)
        os.replace(tmp, symbols_path)
    meta = {"codec": identity, "symbols_sha256": settings_doc["symbols_sha256"]}

    encoder = pool = None
    if settings.jobs == 1:
        encoder = ShardEncoder(codec_obj, TextFrontend(symbols, text.language), settings)
    else:
        import multiprocessing

        threads = max(1, (os.cpu_count() or 1) // settings.jobs)
        pool = ProcessPoolExecutor(
            settings.jobs, mp_context=multiprocessing.get_context("spawn"), initializer=_worker_init,
            initargs=(codec, str(symbols_path), text.language, settings, device, threads))

    done_now = already = 0
    fingerprints: list[str] = []  # of every shard, this rank's or not: the merge checks them all
    index_path = out_dir / "index.json"
    pending: set = set()

    def dispatch(chunk: list) -> None:
        nonlocal done_now, already
        s, fingerprint = len(fingerprints), _fingerprint([c.id for c in chunk])
        fingerprints.append(fingerprint)
        if s % world_size != rank:
            return
        if shard_done(out_dir, s, fingerprint):
            already += 1
            return
        index_path.unlink(missing_ok=True)  # the folder is no longer complete
        done_now += 1
        if pool is None:
            encoder.run(s, chunk, out_dir, fingerprint, meta)
            return
        while len(pending) >= 2 * settings.jobs:  # bound the cuts held in memory
            finished, _ = wait(pending, return_when=FIRST_COMPLETED)
            for f in finished:
                f.result()
                pending.discard(f)
        pending.add(pool.submit(_worker_run, s, [c.to_dict() for c in chunk], str(out_dir), fingerprint, meta))

    try:
        chunk: list = []
        for cut in _iter_cuts(manifests):
            chunk.append(cut)
            if len(chunk) == settings.shard_size:
                dispatch(chunk)
                chunk = []
        if chunk:
            dispatch(chunk)
        if pool is not None:
            for f in pending:
                f.result()
    finally:
        if pool is not None:
            pool.shutdown(cancel_futures=True)
    n_shards = len(fingerprints)
    write_json(out_dir / "plan.json", {"format": "valle2-tokenize-plan", "version": FORMAT_VERSION,
                                       "n_shards": n_shards, "world_size": world_size})
    logger.info("rank %d/%d: %d shards encoded now, %d were already done (of %d in all)",
                rank, world_size, done_now, already, n_shards)

    result = TokenizeResult(out_dir, n_shards, done_now, already, complete=False)
    if done_now == 0 and index_path.is_file():  # nothing new: the merged index is current
        index = read_json(index_path, format=TOKENS_FORMAT, version=TOKENS_VERSION, what="tokenized folder index")
        result.complete, result.n_cuts, result.n_skipped = True, index["n_cuts"], index["n_skipped"]
        return result
    missing = [s for s, fp in enumerate(fingerprints) if not shard_done(out_dir, s, fp, quiet=True)]
    if missing:
        logger.info("%d shard(s) still being encoded by other ranks; the last rank to finish merges them", len(missing))
        return result
    index = merge_shards(out_dir, n_shards, settings_doc)
    result.complete, result.n_cuts, result.n_skipped = True, index["n_cuts"], index["n_skipped"]
    return result


def _check_settings(out_dir: Path, doc: dict) -> None:
    path = out_dir / "tokenize.json"
    if path.is_file():
        old = read_json(path, format=SETTINGS_FORMAT, version=FORMAT_VERSION, what="tokenize settings")
        diff = sorted(k for k in doc if old.get(k) != doc[k])
        if diff:
            raise DataFileError(
                f"{out_dir} was tokenized with other settings ({', '.join(diff)} differ); "
                f"use a new output folder or delete it")
        return
    write_json(path, doc)


def merge_shards(out_dir: Path, n_shards: int, settings_doc: dict) -> dict:
    """Join the shards' cuts and skip lists; write ``index.json`` last. Returns the index."""
    from lhotse import CutSet

    shards = out_dir / "shards"
    summaries = [read_json(shards / f"{_shard_name(s)}.json", format=SHARD_INDEX_FORMAT, version=FORMAT_VERSION,
                           what="shard index") for s in range(n_shards)]
    tmp_cuts = out_dir / f".cuts.tmp-{os.getpid()}.jsonl.gz"
    with CutSet.open_writer(tmp_cuts) as writer:
        for s in range(n_shards):
            for cut in CutSet.from_jsonl_lazy(shards / f"{_shard_name(s)}.cuts.jsonl.gz"):
                writer.write(cut)
    os.replace(tmp_cuts, out_dir / "cuts.jsonl.gz")
    skipped = b"".join((shards / f"{_shard_name(s)}.skipped.jsonl").read_bytes() for s in range(n_shards))
    atomic_write_bytes(out_dir / "skipped.jsonl", skipped)
    for leftover in shards.glob(".*.tmp-*"):  # partial files of an interrupted run
        leftover.unlink(missing_ok=True)
    reasons: Counter = Counter()
    for m in summaries:
        reasons.update(m["skipped_by_reason"])
    seconds = sum(m["seconds"] for m in summaries)
    index = {
        "format": TOKENS_FORMAT, "version": TOKENS_VERSION,
        **{k: settings_doc[k] for k in ("codec", "n_codebooks", "codebook_size", "frame_rate", "sample_rate",
                                         "language", "symbols_sha256")},
        "n_shards": n_shards, "n_cuts": sum(m["n_cuts"] for m in summaries),
        "n_skipped": sum(m["n_skipped"] for m in summaries), "skipped_by_reason": dict(reasons),
        "frames": sum(m["frames"] for m in summaries), "hours": round(seconds / 3600, 4),
    }
    write_json(out_dir / "index.json", index)
    logger.info("%s: %d utterances (%.2f h) in %d shards; skipped %d %s", out_dir, index["n_cuts"], index["hours"],
                n_shards, index["n_skipped"], dict(reasons) if reasons else "")
    return index


# ----------------------------------------------------------------------------- reading for training


@dataclasses.dataclass
class TokenizedData:
    """Tokenized folders opened for training: their cuts (lazy) and what the ids mean."""

    cuts: object  # lhotse CutSet; custom["tokens"]["root"] names the folder of each cut
    symbols: object  # SymbolTable
    codec: dict  # the codec identity
    n_codebooks: int
    codebook_size: int
    frame_rate: float
    language: str
    hours: float
    n_cuts: int


class _Rooted:
    """Lazy map: remember which tokenized folder a cut came from (picklable for DataLoader workers)."""

    def __init__(self, root: str):
        self.root = root

    def __call__(self, cut):
        return cut.with_custom("tokens", {**cut.custom["tokens"], "root": self.root})


def open_tokenized(dirs: list[str | Path] | tuple) -> TokenizedData:
    """Open complete tokenized folders; they must share codec, symbol table and language."""
    from lhotse import CutSet

    from valle2.text import SymbolTable

    if not dirs:
        raise DataFileError("no tokenized folders given (set data.train, e.g. data.train=[tokens/train])")
    first = None
    parts, hours, n = [], 0.0, 0
    for d in map(Path, dirs):
        index_path = d / "index.json"
        if not index_path.is_file():
            plan = d / "plan.json"
            done = len(list((d / "shards").glob("shard-*.json"))) if (d / "shards").is_dir() else 0
            total = f" of {json.loads(plan.read_text()).get('n_shards')}" if plan.is_file() else ""
            raise DataFileError(f"{d} is not a complete tokenized folder ({done}{total} shard(s) done, no index.json); "
                                f"run valle2 tokenize again")
        index = read_json(index_path, format=TOKENS_FORMAT, version=TOKENS_VERSION, what="tokenized folder index")
        symbols = SymbolTable.load(d / "symbols.json")
        if first is None:
            first = (index, symbols, d)
        else:
            i0, s0, d0 = first
            for key in ("codec", "n_codebooks", "codebook_size", "language"):
                if index[key] != i0[key]:
                    raise DataFileError(f"{d} and {d0} were tokenized with different {key}: "
                                        f"{index[key]!r} vs {i0[key]!r}")
            if symbols != s0:
                raise DataFileError(f"{d} and {d0} use different symbol tables")
        parts.append(CutSet.from_jsonl_lazy(d / "cuts.jsonl.gz").map(_Rooted(str(d.resolve()))))
        hours += index["hours"]
        n += index["n_cuts"]
    index, symbols, _ = first
    cuts = parts[0] if len(parts) == 1 else CutSet.mux(*parts, weights=[1.0] * len(parts), seed=0)
    return TokenizedData(cuts=cuts, symbols=symbols, codec=index["codec"], n_codebooks=index["n_codebooks"],
                         codebook_size=index["codebook_size"], frame_rate=index["frame_rate"],
                         language=index["language"], hours=hours, n_cuts=n)


def frames_for_seconds(seconds: float, frame_rate: float) -> int:
    return max(1, int(math.floor(seconds * frame_rate)))
