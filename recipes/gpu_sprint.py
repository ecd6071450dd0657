#!/usr/bin/env python3
"""Train the demo model in a fixed slot on one (lent) GPU, from packed token data.

    # here, once: the tokenized corpus -> one file each (36 MB for the 15.7 h demo corpus)
    python recipes/gpu_sprint.py pack --data tokens/train tokens/train2 --out packed/train.safetensors [--xz]
    python recipes/gpu_sprint.py pack --data tokens/held-out --out packed/valid.safetensors
    # a voice split wherever its utterances were tokenized (valle2.data.voices)
    python recipes/gpu_sprint.py pack --data tokens/train tokens/held-out --voices train --out packed/train.safetensors
    # on the GPU machine: 8 minutes of training, weights + run.json into OUT
    python recipes/gpu_sprint.py train --config demo --train packed/train.safetensors \\
        --valid packed/valid.safetensors --out OUT --minutes 8 [--set optim.lr=2e-3 ...] [--resume]
    # (--resume: go on from OUT/resume.pt after a stop; --minutes is the run's total, the schedule continues)
    # here again: a model folder (fp16, codec named rather than copied)
    python recipes/gpu_sprint.py export OUT --out model --dtype float16 --codec-by-name

See valle2.training.packed and valle2.training.sprint; benchmarks/RESULTS.md has the runs.
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    p = sub.add_parser("pack", help="tokenized folders -> one packed file")
    p.add_argument("--data", nargs="+", required=True)
    p.add_argument("--out", required=True)
    p.add_argument("--min-seconds", type=float, default=1.0)
    p.add_argument("--max-seconds", type=float, default=20.0)
    p.add_argument("--xz", action="store_true", help="also write OUT.xz (train/valid accept it directly)")
    p.add_argument("--voices", choices=["train", "held-out"],
                   help="keep only this voice split's utterances (valle2.data.voices), wherever they were tokenized; "
                   "train includes the warped training voices")
    p.add_argument("--per-voice", type=int, help="at most this many utterances per voice")
    t = sub.add_parser("train", help="a time-budgeted run on one device")
    t.add_argument("--config", default="demo")
    t.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE")
    t.add_argument("--train", required=True, nargs="+", help="packed file(s) [.xz]; several are joined")
    t.add_argument("--valid")
    t.add_argument("--out", required=True)
    t.add_argument("--minutes", type=float, required=True)
    t.add_argument("--max-frames", type=int, default=64000)
    t.add_argument("--warmup-steps", type=int, default=300)
    t.add_argument("--valid-every-s", type=float, default=60.0)
    t.add_argument("--save-every-s", type=float, default=60.0)
    t.add_argument("--log-every", type=int, default=50)
    t.add_argument("--max-steps", type=int, help="also stop after this many steps (the LR schedule follows the clock)")
    t.add_argument("--no-last", action="store_true", help="write only the best weights (fewer files)")
    t.add_argument("--init-from", help="start from these weights: a sprint OUT folder (best) or a model folder "
                   "(= --set train.init_from=...)")
    t.add_argument("--resume", action="store_true",
                   help="continue OUT's run from its resume.pt, if any (--minutes is then the run's total)")
    t.add_argument("--device")
    e = sub.add_parser("export", help="a sprint's weights -> a save_pretrained folder")
    e.add_argument("run_dir")
    e.add_argument("--out", required=True)
    e.add_argument("--which", choices=["best", "last"], default="best")
    e.add_argument("--dtype", choices=["float32", "float16", "bfloat16"], default="float16")
    e.add_argument("--codec-by-name", action="store_true")
    e.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s", stream=sys.stdout)

    if args.cmd == "pack":
        from valle2.training.packed import pack_tokenized

        speakers = None
        if args.voices:
            from valle2.data.voices import select

            speakers = {v.id for v in select(args.voices) + (select("train-warped") if args.voices == "train" else [])}
        meta = pack_tokenized(args.data, args.out, min_seconds=args.min_seconds, max_seconds=args.max_seconds,
                              speakers=speakers, per_speaker=args.per_voice)
        print(f"{args.out}: {meta['n_utterances']} utterances of {len(meta['speakers'])} speakers "
              f"({meta['skipped']} outside the duration limits, {meta['left_out_by_speaker']} of other or "
              "surplus speakers)")
        if args.xz:
            from valle2.training.packed import compress_packed

            print(compress_packed(args.out))
    elif args.cmd == "train":
        from valle2.config import load_config
        from valle2.training.sprint import SprintSettings, train_sprint

        cfg = load_config(args.config, args.overrides + ([f"train.init_from={args.init_from}"] if args.init_from else []))
        s = SprintSettings(budget_s=args.minutes * 60, max_frames=args.max_frames, warmup_steps=args.warmup_steps,
                           valid_every_s=args.valid_every_s, save_every_s=args.save_every_s, log_every=args.log_every,
                           save_last=not args.no_last, max_steps=args.max_steps, resume=args.resume)
        doc = train_sprint(cfg, args.train, args.out, s, valid_path=args.valid, device=args.device)
        print(f"{args.out}: {doc['step']} steps, {doc['epochs']} epochs; best {doc.get('best')}")
    else:
        import torch

        from valle2.training.sprint import export_sprint

        dtype = None if args.dtype == "float32" else getattr(torch, args.dtype)
        path = export_sprint(args.run_dir, args.out, which=args.which, dtype=dtype, overrides=args.overrides)
        if args.codec_by_name:
            from valle2.commands.export import drop_codec_copy

            drop_codec_copy(path)
        print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
