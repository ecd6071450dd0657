"""Training checkpoints: atomic, pickle-free, keep-last-N.

::

    <out_dir>/checkpoints/
      latest                    "step-00001000" (replaced atomically after a checkpoint is complete)
      step-00001000/
        model.safetensors       weights of the trained models ("ar.*", "nar.*"), full (not sharded)
        optimizer.safetensors   AdamW moments and step counts, "<param FQN>::<name>"
        optimizer.json          param groups (hyper-parameters, parameter FQNs) and non-tensor state
        rank-00000.json         per rank: data position (epoch, batches consumed) and RNG states
        trainer.json            written last: format, version, step, config, world size

A checkpoint is written into ``.step-XXXXXXXX.partial/`` and renamed into place only when
every file is on disk, then ``latest`` is replaced: a crash at any moment leaves the
previous checkpoint as the latest one. Nothing is pickled; loading needs no
``torch.load``. The learning-rate schedule is a function of the step (``lr.py``), so the
step is its whole state.
"""

from __future__ import annotations

import json
import logging
import os
import random
import re
import shutil
from pathlib import Path

import numpy as np
import torch

from valle2.data.shards import DataFileError, atomic_write_bytes, check_format, write_json
from valle2.training.distributed import DistEnv, barrier

logger = logging.getLogger(__name__)

FORMAT = "valle2-train-checkpoint"
VERSION = 1
_STEP_DIR = re.compile(r"^step-(\d{8})$")


class CheckpointError(DataFileError):
    """A checkpoint that is missing, incomplete, of an unknown version, or for another run shape."""


# ----------------------------------------------------------------------------- RNG states as JSON


def rng_state(device: torch.device | None = None) -> dict:
    version, state, gauss = random.getstate()
    name, keys, pos, has_gauss, cached = np.random.get_state()
    out = {
        "python": [version, list(state), gauss],
        "numpy": [name, keys.tolist(), int(pos), int(has_gauss), float(cached)],
        "torch": torch.get_rng_state().tolist(),
    }
    if device is not None and device.type == "cuda":
        out["cuda"] = torch.cuda.get_rng_state(device).tolist()
    return out


def set_rng_state(state: dict, device: torch.device | None = None) -> None:
    version, py_state, gauss = state["python"]
    random.setstate((version, tuple(py_state), gauss))
    name, keys, pos, has_gauss, cached = state["numpy"]
    np.random.set_state((name, np.array(keys, dtype=np.uint32), pos, has_gauss, cached))
    torch.set_rng_state(torch.tensor(state["torch"], dtype=torch.uint8))
    if "cuda" in state and device is not None and device.type == "cuda":
        torch.cuda.set_rng_state(torch.tensor(state["cuda"], dtype=torch.uint8), device)


# ----------------------------------------------------------------------------- optimizer state <-> files


def _split_optimizer_state(state: dict) -> tuple[dict[str, torch.Tensor], dict]:
    tensors, rest = {}, {}
    for fqn, entry in state["state"].items():
        for key, value in entry.items():
            if isinstance(value, torch.Tensor):
                tensors[f"{fqn}::{key}"] = value.detach().cpu().contiguous()
            else:
                rest.setdefault(str(fqn), {})[key] = value
    groups = [{k: (list(v) if isinstance(v, tuple) else v) for k, v in g.items()} for g in state["param_groups"]]
    return tensors, {"param_groups": groups, "state": rest}


def _join_optimizer_state(tensors: dict[str, torch.Tensor], doc: dict) -> dict:
    state: dict = {}
    for name, value in tensors.items():
        fqn, key = name.rsplit("::", 1)
        state.setdefault(fqn, {})[key] = value
    for fqn, entry in doc.get("state", {}).items():
        state.setdefault(fqn, {}).update(entry)
    groups = []
    for g in doc["param_groups"]:
        g = dict(g)
        if "betas" in g:
            g["betas"] = tuple(g["betas"])
        groups.append(g)
    return {"state": state, "param_groups": groups}


# ----------------------------------------------------------------------------- save / find / load


def save_checkpoint(root: Path, step: int, env: DistEnv, *, model_state: dict | None, optimizer_state: dict | None,
                    trainer: dict, rank_state: dict, keep_last: int) -> Path:
    """Write a checkpoint (every rank calls this; rank 0 passes the full model/optimizer state)."""
    from safetensors.torch import save_file

    root = Path(root)
    name = f"step-{step:08d}"
    tmp, final = root / f".{name}.partial", root / name
    if env.is_main:
        root.mkdir(parents=True, exist_ok=True)
        if tmp.exists():
            shutil.rmtree(tmp)
        tmp.mkdir()
    barrier(env)
    write_json(tmp / f"rank-{env.rank:05d}.json",
               {"format": FORMAT, "version": VERSION, "rank": env.rank, **rank_state})
    barrier(env)
    if env.is_main:
        save_file({k: v.contiguous() for k, v in model_state.items()}, str(tmp / "model.safetensors"))
        tensors, doc = _split_optimizer_state(optimizer_state)
        save_file(tensors, str(tmp / "optimizer.safetensors"))
        write_json(tmp / "optimizer.json", doc)
        write_json(tmp / "trainer.json", {"format": FORMAT, "version": VERSION, "step": step,
                                          "world_size": env.world_size, **trainer})
        _fsync_dir(tmp)
        if final.exists():  # the same step saved again (e.g. the final checkpoint after a resume)
            shutil.rmtree(final)
        os.replace(tmp, final)
        atomic_write_bytes(root / "latest", (name + "\n").encode())
        _fsync_dir(root)
        _prune(root, keep_last, keep=name)
        logger.info("checkpoint %s written", final)
    barrier(env)
    return final


def _fsync_dir(path: Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def complete_checkpoints(root: Path) -> list[Path]:
    """Complete checkpoints under ``root``, oldest first."""
    root = Path(root)
    if not root.is_dir():
        return []
    found = [p for p in root.iterdir() if _STEP_DIR.match(p.name) and (p / "trainer.json").is_file()]
    return sorted(found, key=lambda p: p.name)


def _prune(root: Path, keep_last: int, keep: str) -> None:
    done = complete_checkpoints(root)
    for old in done[: max(0, len(done) - keep_last)]:
        if old.name != keep:
            shutil.rmtree(old, ignore_errors=True)
    for partial in root.glob(".step-*.partial"):  # left by a crash of an earlier run
        if partial.name != f".{keep}.partial":
            shutil.rmtree(partial, ignore_errors=True)


def find_latest(root: Path) -> Path | None:
    """The checkpoint ``latest`` names, else the newest complete one, else None."""
    root = Path(root)
    pointer = root / "latest"
    if pointer.is_file():
        name = pointer.read_text().strip()
        cand = root / name
        if _STEP_DIR.match(name) and (cand / "trainer.json").is_file():
            return cand
        logger.warning("%s names %r, which is not a complete checkpoint; using the newest complete one", pointer, name)
    done = complete_checkpoints(root)
    return done[-1] if done else None


def load_checkpoint(path: Path, rank: int) -> dict:
    """Everything a rank needs to continue: model and optimizer state, trainer info, its own rank state."""
    from safetensors.torch import load_file

    path = Path(path)
    trainer = _read(path / "trainer.json")
    try:
        model_state = load_file(str(path / "model.safetensors"))
        opt_tensors = load_file(str(path / "optimizer.safetensors"))
    except Exception as e:  # safetensors raises its own error types for damaged files
        raise CheckpointError(f"checkpoint {path} is damaged: {e}") from None
    opt_doc = json.loads((path / "optimizer.json").read_text())
    rank_file = path / f"rank-{rank:05d}.json"
    rank_state = _read(rank_file) if rank_file.is_file() else None
    return {"trainer": trainer, "model": model_state, "optimizer": _join_optimizer_state(opt_tensors, opt_doc),
            "rank": rank_state}


def _read(path: Path) -> dict:
    try:
        doc = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as e:
        raise CheckpointError(f"cannot read {path}: {e}") from None
    try:
        check_format(doc, format=FORMAT, version=VERSION, source=str(path))
    except DataFileError as e:
        raise CheckpointError(str(e)) from None
    return doc
