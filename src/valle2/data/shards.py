"""Token shards: the codec codes and phone ids of many utterances, in one pickle-free file.

A tokenized folder, as ``valle2 tokenize`` writes it::

    tokenize.json        the settings it is made with (codec identity, symbol table hash, limits)
    symbols.json         the symbol table the phone ids refer to
    shards/
      shard-000000.safetensors     "<key>.codes" (K, T) and "<key>.phones" (S,) integer tensors;
                                   header metadata {"format": "valle2-token-shard", "version": "1", ...}
      shard-000000.cuts.jsonl.gz   the shard's Lhotse cuts, custom["tokens"] pointing into the file
      shard-000000.skipped.jsonl   one {"id", "reason", "detail"} per utterance left out
      shard-000000.json            written last: the shard is complete (resumption skips it)
    cuts.jsonl.gz        all shards' cuts, merged
    skipped.jsonl        all shards' skipped utterances
    index.json           written last: {"format": "valle2-tokens", "version": 1, ...}; the folder is complete

Every file is written under a temporary name and renamed into place, so an interrupted
run never leaves a file that looks complete. Readers refuse formats and versions they do
not know, naming the file.
"""

from __future__ import annotations

import json
import os
from collections import OrderedDict
from pathlib import Path

import torch

from valle2.errors import Valle2Error

SHARD_FORMAT = "valle2-token-shard"
SHARD_VERSION = 1
TOKENS_FORMAT = "valle2-tokens"
TOKENS_VERSION = 1


class DataFileError(Valle2Error):
    """A data file (token shard, tokenized folder) that is missing, incomplete, corrupt or of an unknown version."""


# ----------------------------------------------------------------------------- small atomic helpers


def atomic_write_bytes(path: Path, data: bytes) -> None:
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    with open(tmp, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def write_json(path: Path, obj) -> None:
    atomic_write_bytes(path, (json.dumps(obj, indent=1, ensure_ascii=False) + "\n").encode())


def read_json(path: Path, *, format: str, version: int, what: str) -> dict:
    """Read a JSON header and check its ``format`` and ``version``."""
    path = Path(path)
    try:
        obj = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise DataFileError(f"{what} {path} does not exist") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise DataFileError(f"{what} {path} is not readable JSON: {e}") from None
    check_format(obj, format=format, version=version, source=f"{what} {path}")
    return obj


def check_format(meta: dict, *, format: str, version: int, source: str) -> None:
    if not isinstance(meta, dict) or meta.get("format") != format:
        got = meta.get("format") if isinstance(meta, dict) else type(meta).__name__
        raise DataFileError(f"{source} is not a {format} file (format {got!r})")
    v = meta.get("version")
    try:
        v = int(v)
    except (TypeError, ValueError):
        raise DataFileError(f"{source} has no valid format version ({v!r})") from None
    if v != version:
        hint = " (written by a newer valle2: upgrade)" if v > version else ""
        raise DataFileError(f"{source} has {format} version {v}; this valle2 reads version {version} only{hint}")


# ----------------------------------------------------------------------------- shard files


def smallest_int_dtype(max_value: int) -> torch.dtype:
    return torch.int16 if max_value < 2**15 else torch.int32


def write_shard(path: Path, entries: list[tuple[str, torch.Tensor, torch.Tensor]], metadata: dict) -> None:
    """Write ``(key, codes (K, T), phones (S,))`` entries to one safetensors file, atomically.

    ``metadata`` values are stored as JSON strings in the safetensors header, next to the
    format name and version.
    """
    from safetensors.torch import save

    tensors = {}
    for key, codes, phones in entries:
        if "." in key:
            raise ValueError(f"shard key {key!r} must not contain '.'")
        codes = torch.as_tensor(codes)
        phones = torch.as_tensor(phones)
        for name, t in (("codes", codes), ("phones", phones)):
            tensors[f"{key}.{name}"] = t.to(smallest_int_dtype(int(t.max()) if t.numel() else 0)).contiguous()
    header = {k: json.dumps(v) for k, v in metadata.items()}
    header.update(format=SHARD_FORMAT, version=str(SHARD_VERSION))
    atomic_write_bytes(path, save(tensors, metadata=header))


def shard_metadata(path: Path) -> dict:
    """The header metadata of a shard file (format and version checked)."""
    from safetensors import safe_open

    try:
        with safe_open(str(path), framework="pt") as f:
            raw = f.metadata() or {}
    except FileNotFoundError:
        raise DataFileError(f"token shard {path} does not exist") from None
    except Exception as e:  # safetensors raises its own error types for truncated files
        raise DataFileError(f"token shard {path} is corrupt: {e}") from None
    check_format(raw, format=SHARD_FORMAT, version=SHARD_VERSION, source=f"token shard {path}")
    return {k: (json.loads(v) if k not in ("format", "version") else v) for k, v in raw.items()}


class ShardReader:
    """Reads entries of token shards, keeping up to ``max_open`` files open (memory-mapped).

    Each process (DataLoader worker) gets its own copy; handles are opened lazily.
    """

    def __init__(self, max_open: int = 64):
        self.max_open = max_open
        self._open: OrderedDict[str, object] = OrderedDict()

    def __getstate__(self):  # open handles do not cross process boundaries
        return {"max_open": self.max_open, "_open": OrderedDict()}

    def _handle(self, path: str):
        from safetensors import safe_open

        h = self._open.get(path)
        if h is not None:
            self._open.move_to_end(path)
            return h
        shard_metadata(Path(path))  # refuse unknown versions once per file
        h = safe_open(path, framework="pt")
        self._open[path] = h
        if len(self._open) > self.max_open:
            self._open.popitem(last=False)
        return h

    def read(self, path: str | Path, key: str) -> tuple[torch.Tensor, torch.Tensor]:
        """``(codes (K, T) long, phones (S,) long)`` of entry ``key``."""
        h = self._handle(str(path))
        try:
            codes = h.get_tensor(f"{key}.codes")
            phones = h.get_tensor(f"{key}.phones")
        except Exception as e:
            raise DataFileError(f"token shard {path} has no entry {key!r}: {e}") from None
        return codes.long(), phones.long()
