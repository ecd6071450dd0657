"""The training loop: AR, NAR or both, on one CPU or many GPUs (one explicit loop, top to bottom).

    setup      process group (torchrun env) -> data (tokenized folders) -> models -> DDP/FSDP -> AdamW
    resume     model, optimizer, step, RNG states and data position from the latest checkpoint
    loop       accumulate micro-batches -> clip -> lr(step) -> AdamW step
               every log_every: loss, accuracy, lr, frames/s to TensorBoard and metrics.jsonl
               every valid_every: validation loss and accuracy per codebook
               every sample_every: audio of validation prompts
               every checkpoint_every: atomic checkpoint, keep the last N
    finish     last validation, samples and checkpoint; export with save_pretrained

Per optimizer step every rank consumes ``accum_steps`` batches of at most
``data.max_batch_seconds`` of speech; gradients are averaged over ranks by DDP or FSDP2.
"""

from __future__ import annotations

import json
import logging
import math
import random
import time
from collections import defaultdict
from contextlib import nullcontext
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
import torch
from torch import nn

from valle2.codec.base import same_codes
from valle2.config import Config, build_codec, config_to_dict, dump_config
from valle2.data.dataset import ResumableSampler, TokenizedDataset, make_sampler
from valle2.data.tokenize import cut_text, frames_for_seconds, open_tokenized
from valle2.errors import Valle2Error
from valle2.generation.sampling import SamplingConfig
from valle2.models.builders import build_ar, build_nar
from valle2.models.config import ModelConfig, preset
from valle2.training import checkpoint as ckpt
from valle2.training.distributed import (
    DistEnv, all_reduce_sum, barrier, full_model_state, full_optimizer_state, grad_norm_value, init_distributed,
    load_full_model_state, load_full_optimizer_state, no_grad_sync, shutdown, wrap_model,
)
from valle2.training.lr import lr_at

logger = logging.getLogger(__name__)


class TrainModule(nn.Module):
    """The models being trained (AR, NAR or both) behind one forward that returns the summed loss."""

    def __init__(self, ar: nn.Module | None, nar: nn.Module | None):
        super().__init__()
        self.ar, self.nar = ar, nar

    def forward(self, batch: dict, *, parts: tuple[str, ...] = ("ar", "nar"), nar_stage: int | None = None):
        loss, metrics = 0.0, {}
        if self.ar is not None and "ar" in parts:
            ar_loss, m = self.ar.loss(batch["text"], batch["text_valid"], batch["codes"][:, 0], batch["code_lens"])
            loss, metrics = loss + ar_loss, {**metrics, **m}
        if self.nar is not None and "nar" in parts:
            stage = batch["nar_stage"] if nar_stage is None else torch.full_like(batch["nar_stage"], nar_stage)
            nar_loss, m = self.nar.loss(batch["text"], batch["text_valid"], batch["nar_codes"], batch["nar_code_lens"],
                                        stage=stage, prompt_lens=batch["nar_prompt_lens"],
                                        text_split=batch.get("nar_text_split"), frame_split=batch.get("nar_frame_split"))
            loss, metrics = loss + nar_loss, {**metrics, **m}
        return loss, metrics


@dataclass
class TrainResult:
    step: int
    out_dir: Path
    export_dir: Path | None
    module: TrainModule  # unwrapped (sharded parameters under FSDP)
    history: list[dict] = field(default_factory=list)  # rows of metrics.jsonl written by this run


@dataclass
class DataPosition:
    epoch: int = 0
    batches_done: int = 0  # batches of this epoch consumed by the loop (not merely prefetched)


def model_config(cfg: Config, n_text_tokens: int, n_codebooks: int, codebook_size: int) -> ModelConfig:
    ar, nar = preset(cfg.model.size), preset(cfg.model.size)
    if cfg.model.dropout is not None:
        ar, nar = replace(ar, dropout=cfg.model.dropout), replace(nar, dropout=cfg.model.dropout)
    return ModelConfig(n_text_tokens=n_text_tokens, n_codebooks=n_codebooks, codebook_size=codebook_size,
                       group_size=cfg.model.group_size, prefix_lm=cfg.model.prefix_lm,
                       nar_prompt_cond=cfg.model.nar_prompt_cond, nar_progress=cfg.model.nar_progress,
                       ar=ar, nar=nar)


def param_groups(module: nn.Module, weight_decay: float) -> list[dict]:
    """Weight decay on matrices only; biases, norms, position scales and embeddings' padding stay free."""
    decay, free = [], []
    for _, p in module.named_parameters():
        if p.requires_grad:
            (decay if p.ndim >= 2 else free).append(p)
    return [{"params": decay, "weight_decay": weight_decay}, {"params": free, "weight_decay": 0.0}]


def autocast_context(cfg: Config, device: torch.device):
    precision = cfg.train.precision
    if precision == "auto":
        precision = "bf16" if device.type == "cuda" and torch.cuda.is_bf16_supported() else "fp32"
    if precision == "bf16":
        return lambda: torch.autocast(device.type, dtype=torch.bfloat16)
    return nullcontext


def to_device(batch: dict, device: torch.device) -> dict:
    return {k: (v.to(device, non_blocking=True) if isinstance(v, torch.Tensor) else v) for k, v in batch.items()}


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


# ----------------------------------------------------------------------------- the run


def train(cfg: Config, *, resume: bool | str | Path = False, device: str | None = None,
          until_step: int | None = None) -> TrainResult:
    """Train as ``cfg`` says.

    ``resume=True`` continues from the latest checkpoint in ``<out_dir>/checkpoints`` (from
    scratch when there is none); a path names a checkpoint. ``until_step`` stops this run
    early, with a checkpoint, at that step (for jobs with a time slot; resume later).
    """
    env = init_distributed(device)
    try:
        return _train(cfg, env, resume, until_step)
    finally:
        shutdown(env)


def _train(cfg: Config, env: DistEnv, resume, until_step: int | None = None) -> TrainResult:
    out_dir = Path(cfg.train.out_dir)
    ckpt_dir = out_dir / "checkpoints"
    t = cfg.train
    if env.is_main:
        out_dir.mkdir(parents=True, exist_ok=True)
        (out_dir / "config.yaml").write_text(dump_config(cfg))
    log = logger.info if env.is_main else logger.debug

    # -- data ---------------------------------------------------------------------------
    data = open_tokenized(cfg.data.train)
    valid = open_tokenized(cfg.data.valid) if cfg.data.valid else None
    if valid is not None and (valid.codec != data.codec or valid.symbols != data.symbols):
        raise Valle2Error("data.valid was tokenized with another codec or symbol table than data.train")
    symbols = data.symbols
    log("training data: %d utterances, %.2f h; validation: %s", data.n_cuts, data.hours,
        f"{valid.n_cuts} utterances" if valid else "none")
    crop = cfg.data.nar_crop_seconds
    dataset = TokenizedDataset(
        n_codebooks=data.n_codebooks, eos_id=symbols.eos_id, pad_id=symbols.pad_id,
        nar_crop_frames=frames_for_seconds(crop, data.frame_rate) if crop else None,
        nar_prompt=(cfg.data.nar_prompt_min, cfg.data.nar_prompt_max), seed=t.seed,
        **pair_settings(cfg, symbols), pair_max_seconds=cfg.data.pair_max_seconds, pool=data.cuts)
    sampler = ResumableSampler(make_sampler(
        data.cuts, max_batch_seconds=cfg.data.max_batch_seconds, min_seconds=cfg.data.min_seconds,
        max_seconds=cfg.data.max_seconds, shuffle=True, world_size=env.world_size, rank=env.rank, seed=t.seed,
        num_buckets=cfg.data.num_buckets, buffer_size=cfg.data.buffer_size))

    # -- models -------------------------------------------------------------------------
    mcfg = model_config(cfg, len(symbols), data.n_codebooks, data.codebook_size)
    exporter = Exporter(cfg, mcfg, symbols, data) if env.is_main else None  # builds the codec now: fail early
    seed_everything(t.seed)  # identical initial weights on every rank
    module = TrainModule(build_ar(mcfg) if t.models in ("ar", "both") else None,
                         build_nar(mcfg) if t.models in ("nar", "both") else None)
    if t.init_from:
        _init_from(module, Path(t.init_from), log)
    module.to(env.device)
    n_params = sum(p.numel() for p in module.parameters())
    log("models %s (%s preset, G=%d): %.2f M parameters, on %d x %s, %s", t.models, cfg.model.size,
        mcfg.group_size, n_params / 1e6, env.world_size, env.device, t.strategy)
    model = wrap_model(module, env, t.strategy)
    o = cfg.optim
    optimizer = torch.optim.AdamW(param_groups(model, o.weight_decay), lr=o.lr, betas=o.betas, eps=o.eps)
    autocast = autocast_context(cfg, env.device)

    # -- resume -------------------------------------------------------------------------
    step, pos = 0, DataPosition()
    seed_everything(t.seed + 1 + env.rank)  # dropout differs across ranks
    if resume:
        path = Path(resume) if isinstance(resume, (str, Path)) else ckpt.find_latest(ckpt_dir)
        if path is None:
            log("no checkpoint in %s: starting from scratch", ckpt_dir)
        else:
            step, pos = _resume(path, model, optimizer, env, cfg, log)
    sampler.resume(pos.epoch, pos.batches_done)

    loader = torch.utils.data.DataLoader(dataset, sampler=sampler, batch_size=None, num_workers=cfg.data.num_workers,
                                         generator=torch.Generator().manual_seed(t.seed))
    valid_loader = _valid_loader(cfg, valid, env, symbols) if valid is not None else None
    writer = _summary_writer(out_dir) if env.is_main else None
    history: list[dict] = []

    def record(row: dict) -> None:
        if not env.is_main:
            return
        history.append(row)
        with open(out_dir / "metrics.jsonl", "a") as f:
            f.write(json.dumps(row) + "\n")
        for k, v in row.items():
            if k not in ("step", "split") and isinstance(v, (int, float)):
                writer.add_scalar(f"{row['split']}/{k}", v, row["step"])

    def batches():
        """Batches forever, epoch after epoch; counts what the loop consumed."""
        while True:
            dataset.set_epoch(pos.epoch)
            got = 0
            for batch in loader:
                got += 1
                pos.batches_done += 1
                yield batch
            if got == 0 and pos.batches_done == 0:
                raise Valle2Error("no training batches: every utterance was filtered out "
                                  f"(data.min_seconds={cfg.data.min_seconds}, data.max_seconds={cfg.data.max_seconds})")
            pos.epoch, pos.batches_done = pos.epoch + 1, 0
            sampler.set_epoch(pos.epoch)

    def save() -> None:
        model_state = full_model_state(model)
        optim_state = full_optimizer_state(model, optimizer)
        ckpt.save_checkpoint(
            ckpt_dir, step, env, model_state=model_state if env.is_main else None,
            optimizer_state=optim_state if env.is_main else None,
            trainer={"config": config_to_dict(cfg), "model_config": mcfg.to_dict()},
            rank_state={"epoch": pos.epoch, "batches_done": pos.batches_done, "rng": ckpt.rng_state(env.device)},
            keep_last=t.keep_last)

    # -- loop ---------------------------------------------------------------------------
    stream = batches()
    window: dict[str, list[torch.Tensor]] = defaultdict(list)
    frames, last_log = 0, time.perf_counter()
    model.train()
    log("training from step %d to %d (epoch %d, batch %d)", step, t.steps, pos.epoch, pos.batches_done)
    stop = t.steps if until_step is None else min(t.steps, until_step)
    while step < stop:
        lr = lr_at(step, peak=o.lr, warmup=o.warmup_steps, total=t.steps, schedule=o.schedule,
                   min_ratio=o.min_lr_ratio)
        for g in optimizer.param_groups:
            g["lr"] = lr
        optimizer.zero_grad(set_to_none=True)
        for micro in range(o.accum_steps):
            batch = to_device(next(stream), env.device)
            with no_grad_sync(model, enabled=micro < o.accum_steps - 1):
                with autocast():
                    loss, metrics = model(batch)
                (loss / o.accum_steps).backward()
            frames += batch["frames"]
            window["loss"].append(loss.detach())  # tensors: no device sync until the next log line
            for k, v in metrics.items():
                if not k.endswith("_tokens"):
                    window[k].append(v.detach())
        norm = grad_norm_value(torch.nn.utils.clip_grad_norm_(model.parameters(), o.clip_norm or math.inf))
        if math.isfinite(norm):
            optimizer.step()
        else:
            logger.warning("step %d: gradient norm is %s; update skipped", step, norm)
        window["grad_norm"].append(torch.tensor(norm))
        step += 1

        if step % t.log_every == 0 or step == t.steps:
            keys = sorted(window)
            means = [float(torch.stack([v.float().cpu() for v in window[k]]).mean()) for k in keys]
            sums = all_reduce_sum(means + [frames], env)
            elapsed = time.perf_counter() - last_log
            row = {"step": step, "split": "train", "lr": lr, "epoch": pos.epoch,
                   **{k: s / env.world_size for k, s in zip(keys, sums[:-1])},
                   "frames_per_s": sums[-1] / max(elapsed, 1e-9)}
            record(row)
            log("step %d/%d  loss %.4f  %s  lr %.2e  %.0f frames/s", step, t.steps, row["loss"],
                "  ".join(f"{k} {row[k]:.3f}" for k in ("ar_acc", "nar_acc") if k in row), lr, row["frames_per_s"])
            window.clear()
            frames, last_log = 0, time.perf_counter()

        last = step == t.steps
        if valid_loader is not None and ((t.valid_every and step % t.valid_every == 0) or last):
            row = validate(model, valid_loader, env, autocast, data.n_codebooks)
            record({"step": step, "split": "valid", **row})
            log("step %d  validation %s", step, "  ".join(f"{k} {v:.4f}" for k, v in row.items()))
            model.train()
        if t.n_samples and valid is not None and ((t.sample_every and step % t.sample_every == 0) or last):
            state = full_model_state(model)  # a collective under FSDP: every rank takes part
            if env.is_main:
                exporter.samples(state, valid, step, writer, out_dir / "samples")
            barrier(env)
        if (t.checkpoint_every and step % t.checkpoint_every == 0) or step == stop:
            save()
    if step < t.steps:  # stopped early: the checkpoint is the result
        log("stopped at step %d of %d; continue with --resume", step, t.steps)
        if writer is not None:
            writer.close()
        return TrainResult(step=step, out_dir=out_dir, export_dir=None, module=module, history=history)
    # -- finish -------------------------------------------------------------------------
    state = full_model_state(model)
    export_dir = None
    if env.is_main:
        export_dir = exporter.export(state, Path(cfg.export.dir) if cfg.export.dir else out_dir / "model",
                                     training_codes=lambda: tokenized_codes(data))
        writer.close()
    barrier(env)
    return TrainResult(step=step, out_dir=out_dir, export_dir=export_dir, module=module, history=history)


def _resume(path: Path, model, optimizer, env: DistEnv, cfg: Config, log) -> tuple[int, DataPosition]:
    state = ckpt.load_checkpoint(path, env.rank)
    trainer = state["trainer"]
    load_full_model_state(model, state["model"])
    load_full_optimizer_state(model, optimizer, state["optimizer"])
    step = int(trainer["step"])
    old = trainer.get("config", {})
    changed = sorted(f"{s}.{k}" for s in ("model", "optim", "data") for k in old.get(s, {})
                     if old[s][k] != config_to_dict(cfg)[s].get(k))
    if changed:
        logger.warning("resuming with changed settings: %s", ", ".join(changed))
    if state["rank"] is None or trainer["world_size"] != env.world_size:
        # The data order of each rank depends on the world size: continue with a new epoch.
        logger.warning("checkpoint %s was written by %d ranks, this run has %d: data restarts at a new epoch "
                       "(the run continues, but not bit-exactly)", path, trainer["world_size"], env.world_size)
        epoch = max((state["rank"] or {}).get("epoch", 0) + 1, 1)
        seed_everything(cfg.train.seed + step + 1 + env.rank)
        return step, DataPosition(epoch, 0)
    ckpt.set_rng_state(state["rank"]["rng"], env.device)
    log("resumed from %s at step %d", path, step)
    return step, DataPosition(int(state["rank"]["epoch"]), int(state["rank"]["batches_done"]))


def load_init_weights(folder: Path) -> dict:
    """The weights of a ``save_pretrained`` folder, or of a sprint run folder (its best)."""
    from safetensors.torch import load_file

    weights = folder / "model.safetensors"
    if weights.is_file():
        return load_file(str(weights))
    if (folder / "run.json").is_file():
        from valle2.training.sprint import load_weights

        return load_weights(folder, "best")
    raise Valle2Error(f"train.init_from {folder} has no model.safetensors "
                      "(give a folder written by save_pretrained, or a sprint run folder)")


def _init_from(module: TrainModule, folder: Path, log) -> None:
    """Start from the weights of a ``save_pretrained`` folder or of a sprint run folder (its best)."""
    state = load_init_weights(folder)
    own = module.state_dict()
    take = {k: v.to(own[k].dtype) for k, v in state.items() if k in own}
    fresh = {f"{name}.{p}" for name in ("ar", "nar") if getattr(module, name, None) is not None
             for p in getattr(getattr(module, name), "fresh_parameters", lambda: [])()}
    missing = [k for k in own if k not in take and k not in fresh]
    if missing:
        raise Valle2Error(f"train.init_from {folder} lacks {len(missing)} weights of the models being trained "
                          f"(e.g. {missing[0]}); is it the same size and codec?")
    wrong = [k for k in take if take[k].shape != own[k].shape]
    if wrong:
        raise Valle2Error(f"train.init_from {folder}: {len(wrong)} weights do not fit this model config "
                          f"(e.g. {wrong[0]}: {tuple(take[wrong[0]].shape)} vs {tuple(own[wrong[0]].shape)})")
    module.load_state_dict(take, strict=False)
    new = sorted(k for k in fresh if k not in take)
    log("initialised %s from %s%s", ", ".join(sorted({k.split('.')[0] for k in take})), folder,
        f" ({', '.join(new)} start fresh)" if new else "")


def pair_settings(cfg: Config, symbols, *, validation: bool = False) -> dict:
    """Prompt-pair arguments of TokenizedDataset and PackedBatches (besides the length limit):
    validation pairs every row it can, so its loss is the inference layout's."""
    prob = cfg.data.pair_prob if not validation or cfg.data.pair_prob <= 0 else 1.0
    return {"pair_prob": prob, "sep_id": (symbols.separator_ids() or [None])[0]}


def _valid_loader(cfg: Config, valid, env: DistEnv, symbols):
    ds = TokenizedDataset(n_codebooks=valid.n_codebooks, eos_id=symbols.eos_id, pad_id=symbols.pad_id,
                          nar_crop_frames=None, nar_prompt=(cfg.data.nar_prompt_min, cfg.data.nar_prompt_max),
                          seed=cfg.train.seed, **pair_settings(cfg, symbols, validation=True),
                          pair_max_seconds=cfg.data.pair_max_seconds, pool=valid.cuts)
    sampler = make_sampler(valid.cuts, max_batch_seconds=cfg.data.max_batch_seconds, min_seconds=cfg.data.min_seconds,
                           max_seconds=cfg.data.max_seconds, shuffle=False, world_size=env.world_size, rank=env.rank,
                           seed=cfg.train.seed, num_buckets=cfg.data.num_buckets, buffer_size=cfg.data.buffer_size)
    return torch.utils.data.DataLoader(ds, sampler=sampler, batch_size=None, num_workers=0,
                                       generator=torch.Generator().manual_seed(0))


@torch.no_grad()
def validate(model, loader, env: DistEnv, autocast, n_codebooks: int) -> dict:
    """Token-weighted validation loss and accuracy per codebook (AR: codebook 0; NAR: every stage j)."""
    model.eval()
    sums: dict[str, float] = defaultdict(float)
    for batch in loader:
        batch = to_device(batch, env.device)
        with autocast():
            _, m = model(batch, parts=("ar",))
            if "ar_tokens" in m:
                n = float(m["ar_tokens"])
                sums["ar_loss"] += float(m["ar_loss"]) * n
                sums["acc/cb0"] += float(m["ar_acc"]) * n
                sums["n/ar"] += n
            for j in range(1, n_codebooks):
                _, m = model(batch, parts=("nar",), nar_stage=j)
                if "nar_tokens" not in m:
                    break
                n = float(m["nar_tokens"])
                sums["nar_loss"] += float(m["nar_loss"]) * n
                sums[f"acc/cb{j}"] += float(m["nar_acc"]) * n
                sums[f"n/cb{j}"] += n
    keys = sorted(sums)
    totals = dict(zip(keys, all_reduce_sum([sums[k] for k in keys], env)))
    out = {}
    if totals.get("n/ar"):
        out["ar_loss"] = totals["ar_loss"] / totals["n/ar"]
        out["acc/cb0"] = totals["acc/cb0"] / totals["n/ar"]
    nar_n = sum(v for k, v in totals.items() if k.startswith("n/cb"))
    if nar_n:
        out["nar_loss"] = totals["nar_loss"] / nar_n
        for j in range(1, n_codebooks):
            if totals.get(f"n/cb{j}"):
                out[f"acc/cb{j}"] = totals[f"acc/cb{j}"] / totals[f"n/cb{j}"]
    return out


def _summary_writer(out_dir: Path):
    from torch.utils.tensorboard import SummaryWriter

    return SummaryWriter(str(out_dir / "tensorboard"))


# ----------------------------------------------------------------------------- samples and export


class Exporter:
    """Rank 0's complete model (codec included) for audio samples and the final ``save_pretrained``."""

    def __init__(self, cfg: Config, mcfg: ModelConfig, symbols, data):
        from valle2.models.valle2 import VallE2

        codec = build_codec(cfg.codec)
        if not same_codes(json.loads(json.dumps(codec.identity())), data.codec):
            raise Valle2Error(f"the config's codec ({codec.identity().get('type')}, {cfg.codec.type}) is not the one "
                              f"the training data was tokenized with ({data.codec}); set the codec section to match")
        self.cfg = cfg
        with torch.random.fork_rng(devices=[]):  # building it must not move the training RNG
            self.model = VallE2(mcfg, symbols, codec, language=data.language,
                                requires_consent=cfg.export.requires_consent, name=cfg.export.name,
                                nar_precision=cfg.export.nar_precision, ar_precision=cfg.export.ar_precision,
                                sampling=SamplingConfig(nar_decoding=cfg.export.nar_decoding, top_p=cfg.export.top_p,
                                                        temperature=cfg.export.temperature,
                                                        nar_temperature=cfg.export.nar_temperature,
                                                        post_filter=cfg.export.post_filter,
                                                        post_filter_strength=cfg.export.post_filter_strength,
                                                        nar_weight=cfg.export.nar_weight,
                                                        residual_prior=cfg.export.residual_prior,
                                                        prompt_residual=cfg.export.prompt_residual))
        self.trained: set[str] = set()
        self.base: dict = {}
        if cfg.train.init_from and cfg.train.models != "both":  # parts not trained now come from there
            base = Path(cfg.train.init_from)
            if not base.exists():
                other = "NAR" if cfg.train.models == "ar" else "AR"
                raise Valle2Error(f"this run trained only the {cfg.train.models.upper()}; its {other} comes from "
                                  f"train.init_from {base}, which does not exist here: name that folder with "
                                  "--set train.init_from=PATH")
            self.base = load_init_weights(base)

    def load(self, state: dict) -> None:
        own = self.model.state_dict()
        take = {k: v for k, v in {**self.base, **state}.items() if k in own}
        self.model.load_state_dict(take, strict=False)
        self.trained = {k.split(".")[0] for k in take}
        self.model.eval()

    def samples(self, state: dict, valid, step: int, writer, folder: Path) -> None:
        """Continue validation prompts with the next validation utterance's text; write WAVs and TensorBoard audio."""
        from valle2.audio import save_audio
        from valle2.generation.pipeline import Prompt, Row
        from valle2.models.grouping import clip_to_groups
        from valle2.models.valle2 import SynthesisJob

        self.load(state)
        model, n = self.model, self.cfg.train.n_samples
        cuts = []
        for cut in valid.cuts:
            cuts.append(cut)
            if len(cuts) == n + 1:
                break
        if len(cuts) < 2:
            logger.warning("audio samples need at least 2 validation utterances; skipped")
            return
        reader = TokenizedDataset(n_codebooks=valid.n_codebooks, eos_id=model.symbols.eos_id)
        rows, prompts = [], []
        for a, b in zip(cuts, cuts[1:]):
            codes, phones = reader.load(a)
            _, target = reader.load(b)
            codes = clip_to_groups(codes, model.config.group_size)
            prompt_wav = model.codec.decode(codes)
            prompt = Prompt(wav=prompt_wav, sr=model.sample_rate, text=cut_text(a), phone_ids=phones.tolist(),
                            codes=codes)
            expected, max_frames, min_frames = model.length.limits(prompt.n_frames, len(prompt.phone_ids),
                                                                   len(target), model.frame_rate)
            rows.append(Row(prompt, target.tolist(), cut_text(b), expected, max_frames, min_frames))
            prompts.append(prompt_wav)
        # Samples are model output like any other: through the safety policy (watermark + audit). The
        # prompts are training data, whose use the dataset's licence covers, hence no consent record.
        jobs = [SynthesisJob(r.text, r.prompt, rows=[r], unsafe_no_consent=True) for r in rows]
        results = model.synthesize_batch(jobs, seed=step)
        out = folder / f"step-{step:08d}"
        for i, (wav, p) in enumerate(zip(results, prompts)):
            wav = wav if len(wav) else np.zeros(1, np.float32)
            save_audio(out / f"{i}-prompt.wav", p, model.sample_rate)
            save_audio(out / f"{i}-sample.wav", wav, model.sample_rate)
            if writer is not None:
                writer.add_audio(f"samples/{i}", torch.from_numpy(np.clip(wav, -1, 1))[None], step,
                                 sample_rate=model.sample_rate)
                writer.add_text(f"samples/{i}/text", rows[i].text, step)
        logger.info("step %d: %d audio samples in %s", step, len(results), out)

    def export(self, state: dict, folder: Path, dtype: torch.dtype | None = None, training_codes=None) -> Path:
        """Save the model with ``state``'s weights. ``export.residual_prior: code0`` fits the prior from
        ``training_codes`` (a callable giving an iterable of (K, T) code tensors: the training set's)."""
        self.load(state)
        if self.cfg.export.residual_prior == "code0":
            from valle2.generation.residual_prior import fit_code0_prior

            if training_codes is None:
                raise Valle2Error("export.residual_prior 'code0' is fitted from the training codes, and this export "
                                  "was given none")
            self.model.set_residual_prior(*fit_code0_prior(training_codes(), self.model.codec.code_entries()))
        untrained = {"ar", "nar"} - self.trained
        if untrained:
            logger.warning("exported model's %s is untrained (random); train it too, or start from a model "
                           "that has it (train.init_from)", " and ".join(sorted(untrained)).upper())
        path = self.model.save_pretrained(folder, dtype=dtype)
        logger.info("exported the model to %s (valle2 synthesize --model %s)", path, path)
        return path



def export_checkpoint(checkpoint: str | Path, out: str | Path, *, data: list[str] | None = None,
                      dtype: torch.dtype | None = None, overrides: list[str] | None = None) -> Path:
    """A training checkpoint -> a model folder (``save_pretrained``), while the run goes on or after it.

    ``checkpoint`` is a checkpoint folder, or a run's ``checkpoints`` folder (its latest is taken).
    The model is rebuilt from the run's own config (saved in the checkpoint); the symbol table and
    codec identity come from the tokenized training data, ``data`` (default: the run's
    ``data.train``, resolved from the current folder). ``overrides`` change the ``export`` section
    (e.g. ``export.name=demo``); ``dtype=torch.float16`` halves the files.
    """
    from valle2.config import apply_overrides, config_from_dict

    path = Path(checkpoint)
    if not (path / "trainer.json").is_file():
        latest = ckpt.find_latest(path) if path.is_dir() else None
        if latest is None:
            raise Valle2Error(f"{path} is not a training checkpoint (no trainer.json) nor a folder of checkpoints")
        path = latest
    state = ckpt.load_checkpoint(path, 0)
    trainer = state["trainer"]
    cfg_dict = dict(trainer["config"])
    if data:
        cfg_dict["data"] = {**cfg_dict["data"], "train": [str(d) for d in data]}
    cfg = config_from_dict(apply_overrides(cfg_dict, list(overrides or [])))
    missing = [d for d in cfg.data.train if not Path(d).exists()]
    if missing:
        raise Valle2Error(f"the run's tokenized data {', '.join(missing)} is not here; name it with --data "
                          "(its symbol table and codec identity go into the model)")
    tok = open_tokenized(cfg.data.train)
    mcfg = ModelConfig.from_dict(trainer["model_config"])
    exporter = Exporter(cfg, mcfg, tok.symbols, tok)
    logger.info("exporting %s (step %d)", path, int(trainer["step"]))
    return exporter.export(state["model"], Path(out), dtype=dtype, training_codes=lambda: tokenized_codes(tok))


def tokenized_codes(tok):
    """Every training cut's codes (K, T), read from its token shard (for ``export.residual_prior``)."""
    from valle2.data.shards import ShardReader

    reader = ShardReader()
    for cut in tok.cuts:
        t = cut.custom["tokens"]
        yield reader.read(Path(t["root"]) / t["shard"], t["key"])[0]
