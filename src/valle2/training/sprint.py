"""A time-budgeted training run on one device over packed data (``packed.py``).

For a lent GPU with a fixed slot (minutes, not hours): the learning-rate schedule follows the
wall clock, not a step count, so the run uses its whole slot whatever the throughput turns out
to be (linear warm-up over ``warmup_steps``, then cosine over the remaining time down to
``min_lr_ratio``). The models, losses, optimiser groups and validation are the training loop's
(``loop.py``); only the data path and the schedule differ.

What it writes in ``out_dir`` (small files, so a remote slot can hand them back)::

    last-00.safetensors ...   the latest weights ("ar.*", "nar.*"), split into files <= max_file_mb
    best-00.safetensors ...   the weights with the lowest validation loss so far
    run.json                  config, model config, symbols, codec, step, history (written last)

``export_sprint`` turns that into a ``save_pretrained`` folder.
"""

from __future__ import annotations

import json
import logging
import math
import time
from dataclasses import dataclass
from pathlib import Path

import torch

from valle2.config import Config, build_codec, config_from_dict, config_to_dict
from valle2.data.shards import write_json
from valle2.errors import Valle2Error
from valle2.models.builders import build_ar, build_nar
from valle2.models.config import ModelConfig
from valle2.training.distributed import DistEnv, grad_norm_value
from valle2.training.loop import (
    TrainModule, _init_from, autocast_context, model_config, pair_settings, param_groups, seed_everything, validate,
)
from valle2.training.packed import PackedBatches, concat_packed, load_packed

logger = logging.getLogger(__name__)


@dataclass
class SprintSettings:
    budget_s: float  # wall-clock seconds of training (data loading and the last save excluded)
    max_frames: int = 64000  # padded frames per batch (B x T_max)
    warmup_steps: int = 300
    valid_every_s: float = 60.0
    save_every_s: float = 60.0
    log_every: int = 50
    weights_dtype: str = "float16"  # of the files written (the training itself is fp32 + bf16 autocast)
    max_file_mb: float = 15.0
    save_last: bool = True  # False: only best-* (and run.json), for slots that hand back few files
    max_steps: int | None = None  # also stop after this many steps (the schedule still follows the clock)
    # Continue OUT's run from its resume.pt (fp32 weights, optimizer, step, clock) when there is one:
    # budget_s is then the run's total, so a run too long for one sitting goes on where it stopped
    # with the same schedule (no warm restart). Every save writes resume.pt (needs save_last).
    resume: bool = False


RESUME_FILE = "resume.pt"


def lr_at_time(step: int, elapsed: float, *, peak: float, warmup: int, budget: float, min_ratio: float) -> float:
    """Linear warm-up by steps, then cosine by the fraction of the time budget spent."""
    warm = min(1.0, (step + 1) / max(1, warmup))
    p = min(1.0, max(0.0, elapsed / budget))
    return peak * warm * (min_ratio + (1 - min_ratio) * 0.5 * (1 + math.cos(math.pi * p)))


def save_weights(state: dict, out_dir: Path, prefix: str, dtype: torch.dtype, max_file_mb: float) -> list[Path]:
    """``state`` in files ``<prefix>-NN.safetensors`` of at most ``max_file_mb`` each (old ones replaced)."""
    from safetensors.torch import save_file

    limit = max_file_mb * 2**20
    groups, size = [[]], 0
    for k in sorted(state):
        t = state[k]
        n = t.numel() * (torch.finfo(dtype).bits // 8 if t.is_floating_point() else t.element_size())
        if groups[-1] and size + n > limit:
            groups.append([])
            size = 0
        groups[-1].append(k)
        size += n
    for old in out_dir.glob(f"{prefix}-*.safetensors"):
        old.unlink()
    paths = []
    for i, keys in enumerate(groups):
        path = out_dir / f"{prefix}-{i:02d}.safetensors"
        tmp = path.with_name(f".{path.name}.tmp")
        save_file({k: (state[k].detach().to("cpu", dtype) if state[k].is_floating_point() else state[k].cpu())
                   .contiguous() for k in keys}, str(tmp))
        tmp.replace(path)
        paths.append(path)
    return paths


def load_weights(run_dir: Path, prefix: str) -> dict:
    from safetensors.torch import load_file

    files = sorted(Path(run_dir).glob(f"{prefix}-*.safetensors"))
    if not files:
        raise Valle2Error(f"{run_dir} has no {prefix}-*.safetensors weights")
    state = {}
    for f in files:
        state.update(load_file(str(f)))
    return state


def train_sprint(cfg: Config, train_path: str | Path | list, out_dir: str | Path, settings: SprintSettings, *,
                 valid_path: str | Path | None = None, device: str | None = None) -> dict:
    """Train ``cfg``'s models on packed data for ``settings.budget_s`` seconds; returns run.json's content."""
    from valle2.text import SymbolTable

    dev = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
    if dev.type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    paths = [train_path] if isinstance(train_path, (str, Path)) else list(train_path)
    data = concat_packed([load_packed(p, dev) for p in paths])
    valid = load_packed(valid_path, dev) if valid_path else None
    meta = data.meta
    if valid is not None and (valid.meta["codec"] != meta["codec"] or valid.meta["symbols"] != meta["symbols"]):
        raise Valle2Error("the validation data was packed with another codec or symbol table than the training data")
    name = meta["codec"].get("name")
    if name and getattr(cfg.codec, "path", None) and Path(cfg.codec.path).name != name and not _same_codes_as(cfg, meta):
        logger.warning("the data was tokenized with codec %s but the config names %s: export with "
                       "--set codec.path=<%s folder or bundled name>", name, cfg.codec.path, name)
    symbols = SymbolTable.from_dict(meta["symbols"])
    mcfg = model_config(cfg, len(symbols), data.n_codebooks, meta["codebook_size"])
    seed_everything(cfg.train.seed)
    module = TrainModule(build_ar(mcfg) if cfg.train.models in ("ar", "both") else None,
                         build_nar(mcfg) if cfg.train.models in ("nar", "both") else None)
    if cfg.train.init_from:  # a model folder or an earlier sprint's folder: slots add up
        _init_from(module, Path(cfg.train.init_from), logger.info)
    module = module.to(dev)
    o = cfg.optim
    optimizer = torch.optim.AdamW(param_groups(module, o.weight_decay), lr=o.lr, betas=o.betas, eps=o.eps,
                                  **({"fused": True} if dev.type == "cuda" else {}))
    autocast = autocast_context(cfg, dev)
    env = DistEnv(rank=0, world_size=1, local_rank=0, device=dev, initialized_here=False)
    crop = cfg.data.nar_crop_seconds
    pair_max_frames = int(cfg.data.pair_max_seconds * meta["frame_rate"])
    batches = PackedBatches(data, eos_id=symbols.eos_id, pad_id=symbols.pad_id, max_frames=settings.max_frames,
                            nar_crop_frames=int(crop * meta["frame_rate"]) if crop else None,
                            nar_prompt=(cfg.data.nar_prompt_min, cfg.data.nar_prompt_max), seed=cfg.train.seed,
                            **pair_settings(cfg, symbols), pair_max_frames=pair_max_frames)
    n_params = sum(p.numel() for p in module.parameters())
    logger.info("sprint: %d utterances (%.2f h) on %s, %.2f M parameters, %.0f s budget, %d frames per batch "
                "(loaded in %.1f s)", data.n_utterances, data.hours, dev, n_params / 1e6, settings.budget_s,
                settings.max_frames, time.perf_counter() - t0)
    dtype = getattr(torch, settings.weights_dtype)
    history: list[dict] = []
    best = math.inf
    step, epoch, frames = 0, 0, 0
    doc = {"format": "valle2-sprint", "version": 1, "config": config_to_dict(cfg), "model_config": mcfg.to_dict(),
           "symbols": meta["symbols"], "codec": meta["codec"], "language": meta["language"],
           "train_data": [str(p) for p in paths], "valid_data": str(valid_path) if valid_path else None,
           "device": torch.cuda.get_device_name(dev) if dev.type == "cuda" else "cpu",
           "n_params": n_params, "settings": settings.__dict__}

    def run_validation() -> dict | None:
        nonlocal best
        if valid is None:
            return None
        vb = PackedBatches(valid, eos_id=symbols.eos_id, pad_id=symbols.pad_id, max_frames=settings.max_frames,
                           nar_prompt=(cfg.data.nar_prompt_min, cfg.data.nar_prompt_max), seed=12345,
                           **pair_settings(cfg, symbols, validation=True), pair_max_frames=pair_max_frames)
        row = validate(module, (vb.collate(i) for i in vb.epoch(0, shuffle=False)), env, autocast,
                       data.n_codebooks)
        module.train()
        row = {"step": step, "split": "valid", "elapsed": round(time.perf_counter() - start, 1), **row}
        history.append(row)
        logger.info("step %d  validation %s", step,
                    "  ".join(f"{k} {v:.4f}" for k, v in row.items() if k not in ("step", "split")))
        total = row.get("ar_loss", 0.0) + row.get("nar_loss", 0.0)
        if total < best:
            best = total
            save_weights(module.state_dict(), out_dir, "best", dtype, settings.max_file_mb)
            doc["best"] = {"step": step, "valid_loss": total}
        return row

    def save() -> None:
        elapsed = time.perf_counter() - start
        if settings.save_last:
            state = module.state_dict()
            save_weights(state, out_dir, "last", dtype, settings.max_file_mb)
            tmp = out_dir / f".{RESUME_FILE}.tmp"
            torch.save({"version": 1, "model": {k: v.detach().cpu() for k, v in state.items()},
                        "optimizer": optimizer.state_dict(), "step": step, "epoch": epoch, "elapsed_s": elapsed,
                        "best": best, "doc_best": doc.get("best"), "history": history,
                        "rng": torch.get_rng_state()}, tmp)
            tmp.replace(out_dir / RESUME_FILE)
        write_json(out_dir / "run.json", {**doc, "step": step, "epochs": epoch, "elapsed_s": elapsed,
                                           "history": history})

    resumed_elapsed = 0.0
    if settings.resume and (out_dir / RESUME_FILE).is_file():
        ck = torch.load(out_dir / RESUME_FILE, map_location="cpu", weights_only=False)
        try:
            module.load_state_dict(ck["model"])
            optimizer.load_state_dict(ck["optimizer"])
        except (RuntimeError, ValueError, KeyError) as e:
            raise Valle2Error(f"{out_dir / RESUME_FILE} does not match this run's models ({e}); "
                              "resume with the same config, or train into a new OUT") from None
        step, epoch, resumed_elapsed = ck["step"], ck["epoch"] + 1, ck["elapsed_s"]
        best, history = ck["best"], ck["history"]
        if ck.get("doc_best"):
            doc["best"] = ck["doc_best"]
        torch.set_rng_state(ck["rng"])
        logger.info("resumed %s at step %d, %.0f of %.0f s spent (data from epoch %d)", out_dir, step,
                    resumed_elapsed, settings.budget_s, epoch)
    elif settings.resume:
        logger.info("nothing to resume in %s: a new run", out_dir)

    start = time.perf_counter() - resumed_elapsed
    last_valid = last_save = last_log = time.perf_counter()
    sums: dict[str, torch.Tensor] = {}
    n_in_window = 0
    module.train()
    done = False
    while not done:
        for idx in batches.epoch(epoch):
            elapsed = time.perf_counter() - start
            if elapsed >= settings.budget_s or (settings.max_steps is not None and step >= settings.max_steps):
                done = True
                break
            lr = lr_at_time(step, elapsed, peak=o.lr, warmup=settings.warmup_steps, budget=settings.budget_s,
                            min_ratio=o.min_lr_ratio)
            for g in optimizer.param_groups:
                g["lr"] = lr
            batch = batches.collate(idx)
            optimizer.zero_grad(set_to_none=True)
            with autocast():
                loss, metrics = module(batch)
            loss.backward()
            norm = grad_norm_value(torch.nn.utils.clip_grad_norm_(module.parameters(), o.clip_norm or math.inf))
            if math.isfinite(norm):
                optimizer.step()
            else:
                logger.warning("step %d: gradient norm is %s; update skipped", step, norm)
            step += 1
            frames += batch["frames"]
            n_in_window += 1
            for k, v in {"loss": loss, **metrics}.items():
                if not k.endswith("_tokens"):
                    sums[k] = sums.get(k, 0.0) + v.detach().float()
            now = time.perf_counter()
            if step % settings.log_every == 0:
                row = {"step": step, "split": "train", "lr": lr, "epoch": epoch, "elapsed": round(now - start, 1),
                       **{k: float(v) / n_in_window for k, v in sums.items()},
                       "frames_per_s": frames / max(now - last_log, 1e-9)}
                history.append(row)
                logger.info("step %d  epoch %d  loss %.4f  %s  lr %.2e  %.0f frames/s  %.0f s", step, epoch,
                            row["loss"], "  ".join(f"{k} {row[k]:.3f}" for k in ("ar_acc", "nar_acc") if k in row),
                            lr, row["frames_per_s"], now - start)
                sums, n_in_window, frames, last_log = {}, 0, 0, now
            if now - last_valid >= settings.valid_every_s:
                run_validation()
                last_valid = time.perf_counter()
            if now - last_save >= settings.save_every_s:
                save()
                last_save = time.perf_counter()
        else:
            epoch += 1
    if not history or history[-1]["split"] != "valid" or history[-1]["step"] != step:
        run_validation()
    save()
    logger.info("sprint done: %d steps, %d epochs, %.0f s", step, epoch, time.perf_counter() - start)
    return json.loads((out_dir / "run.json").read_text())


def _same_codes_as(cfg: Config, meta: dict) -> bool:
    """Whether the config's codec gives the codes the data was packed with (False if it cannot be built)."""
    from valle2.codec.base import same_codes

    try:
        return same_codes(build_codec(cfg.codec).identity(), meta["codec"])
    except Exception:  # the export names the problem; here it is only a warning
        return False


def export_sprint(run_dir: str | Path, out: str | Path, *, which: str = "best", dtype: torch.dtype | None = None,
                  overrides: list[str] | None = None) -> Path:
    """A sprint's weights (``best`` or ``last``) -> a ``save_pretrained`` folder."""
    from types import SimpleNamespace

    from valle2.config import apply_overrides
    from valle2.text import SymbolTable
    from valle2.training.loop import Exporter

    run_dir = Path(run_dir)
    doc_path = run_dir / "run.json"
    if not doc_path.is_file():
        raise Valle2Error(f"{run_dir} is not a sprint run folder (no run.json)")
    doc = json.loads(doc_path.read_text())
    cfg = config_from_dict(apply_overrides(doc["config"], list(overrides or [])))
    mcfg = ModelConfig.from_dict(doc["model_config"])
    symbols = SymbolTable.from_dict(doc["symbols"])
    exporter = Exporter(cfg, mcfg, symbols, SimpleNamespace(codec=doc["codec"], language=doc["language"]))
    state = {k: v.float() if v.is_floating_point() else v for k, v in load_weights(run_dir, which).items()}
    return exporter.export(state, Path(out), dtype=dtype, training_codes=lambda: packed_codes(doc["train_data"]))


def packed_codes(paths):
    """The codes (K, N) of each packed training file (for ``export.residual_prior``)."""
    from valle2.training.packed import load_packed

    for p in paths:
        yield load_packed(p).codes.long()
