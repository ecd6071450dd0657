"""Training throughput: code frames per second through ``valle2.training.train`` on this machine.

    PYTHONPATH=src python benchmarks/train_throughput.py --config small --steps 30 --threads 2
    PYTHONPATH=src python benchmarks/train_throughput.py --config small --tokens tokens/train  # real data

Without ``--tokens``, a synthetic tokenized folder is written first: utterances of 2-8 s
(random codes of the recipe's codec shape, random phones at ~12 per second), which is all
the speed depends on. The loop is the real one (data loading, AdamW, clipping, logging);
throughput is the median of the logging windows after the first (warm-up), counting the
frames of codebook 0 that went through the models (for "both", once). The last line printed
is JSON.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import platform
import statistics
import tempfile
import time
from pathlib import Path

import torch


def synthetic_tokens(folder: Path, cfg, n: int = 400, seed: int = 0) -> Path:
    """A tokenized folder (valle2-tokens v1) of random codes and phones for the recipe's codec."""
    from lhotse import CutSet, MonoCut

    from valle2.config import build_codec
    from valle2.data.shards import TOKENS_FORMAT, TOKENS_VERSION, write_json, write_shard
    from valle2.data.tokenize import load_symbols, symbols_sha

    codec = build_codec(cfg.codec)
    symbols = load_symbols(cfg.text)
    g = torch.Generator().manual_seed(seed)
    (folder / "shards").mkdir(parents=True, exist_ok=True)
    entries, cuts, frames = [], [], 0
    for i in range(n):
        seconds = 2.0 + 6.0 * float(torch.rand((), generator=g))
        T = int(seconds * codec.frame_rate)
        codes = torch.randint(0, codec.codebook_size, (codec.n_codebooks, T), generator=g)
        phones = torch.randint(4, len(symbols), (int(seconds * 12),), generator=g)
        entries.append((str(i), codes, phones))
        cut = MonoCut(id=f"synthetic-{i:05d}", start=0.0, duration=T / codec.frame_rate, channel=0)
        cuts.append(cut.with_custom("tokens", {"shard": "shards/shard-000000.safetensors", "key": str(i),
                                               "frames": T, "phones": len(phones)}))
        frames += T
    write_shard(folder / "shards" / "shard-000000.safetensors", entries, {})
    CutSet.from_cuts(cuts).to_file(folder / "cuts.jsonl.gz")
    symbols.save(folder / "symbols.json")
    write_json(folder / "index.json", {
        "format": TOKENS_FORMAT, "version": TOKENS_VERSION, "codec": json.loads(json.dumps(codec.identity())),
        "n_codebooks": codec.n_codebooks, "codebook_size": codec.codebook_size, "frame_rate": codec.frame_rate,
        "sample_rate": codec.sample_rate, "language": cfg.text.language, "symbols_sha256": symbols_sha(symbols),
        "n_shards": 1, "n_cuts": n, "n_skipped": 0, "skipped_by_reason": {}, "frames": frames,
        "hours": round(sum(c.duration for c in cuts) / 3600, 4)})
    return folder


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--config", default="small")
    ap.add_argument("--steps", type=int, default=30)
    ap.add_argument("--log-every", type=int, default=5)
    ap.add_argument("--threads", type=int, default=None, help="torch intra-op threads (default: torch's choice)")
    ap.add_argument("--tokens", type=Path, help="a tokenized folder; default: synthetic data")
    ap.add_argument("overrides", nargs="*", help="config overrides, e.g. train.models=ar")
    args = ap.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    if args.threads:
        torch.set_num_threads(args.threads)

    from valle2.config import load_config
    from valle2.training import train

    with tempfile.TemporaryDirectory() as tmp:
        cfg = load_config(args.config, args.overrides)
        tokens = args.tokens or synthetic_tokens(Path(tmp) / "tokens", cfg)
        cfg = load_config(args.config, [*args.overrides, f"data.train=[{tokens}]", "data.valid=[]",
                                        f"train.out_dir={Path(tmp) / 'run'}", f"train.steps={args.steps}",
                                        f"train.log_every={args.log_every}", "train.checkpoint_every=0",
                                        "train.n_samples=0"])
        start = time.perf_counter()
        result = train(cfg)
        wall = time.perf_counter() - start
        n_params = sum(p.numel() for p in result.module.parameters())
    windows = [r for r in result.history if r["split"] == "train"]
    steady = windows[1:] or windows
    fps = statistics.median(r["frames_per_s"] for r in steady)
    device = torch.cuda.get_device_name() if torch.cuda.is_available() else platform.processor() or "cpu"
    print(json.dumps({
        "config": args.config, "overrides": args.overrides, "models": cfg.train.models, "size": cfg.model.size,
        "params_m": round(n_params / 1e6, 2), "max_batch_seconds": cfg.data.max_batch_seconds,
        "steps": args.steps, "frames_per_s": round(fps, 1),
        "frames_per_s_windows": [round(r["frames_per_s"], 1) for r in windows],
        "audio_seconds_per_s": round(fps / 75, 2), "wall_s": round(wall, 1),
        "threads": torch.get_num_threads(), "device": device, "cpus": os.cpu_count(),
        "torch": torch.__version__, "precision": cfg.train.precision,
    }))


if __name__ == "__main__":
    main()
