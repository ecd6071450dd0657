"""``valle2 train``: train the AR and/or NAR from tokenized data (``valle2.training``)."""

from __future__ import annotations

import argparse
from pathlib import Path

EXAMPLES = """examples:
  valle2 train --config small data.train=[tokens/train] data.valid=[tokens/valid]
  valle2 train --config small data.train=[tokens/train] --resume
  torchrun --nproc_per_node=8 -m valle2 train --config paper data.train=[tokens/large] --resume
"""


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("train", help="train VALL-E 2 (one CPU, or many GPUs under torchrun)",
                              description="Train the AR and/or NAR from folders written by valle2 tokenize.",
                              epilog=EXAMPLES, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--config", required=True, help="recipe: a YAML file or debug/small/paper")
    p.add_argument("--resume", action="store_true",
                   help="continue from the latest checkpoint in <out_dir>/checkpoints "
                        "(from scratch when there is none)")
    p.add_argument("--resume-from", type=Path, metavar="CHECKPOINT", help="continue from this checkpoint folder")
    p.add_argument("--until-step", type=int, metavar="STEP",
                   help="stop this run at STEP with a checkpoint (continue later with --resume)")
    p.add_argument("--device", help="default: cuda:LOCAL_RANK when a GPU is present, else cpu")
    p.add_argument("overrides", nargs="*", metavar="KEY=VALUE", help="config overrides, e.g. train.steps=1000")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from valle2.config import load_config
    from valle2.training import train

    cfg = load_config(args.config, args.overrides)
    resume = args.resume_from if args.resume_from is not None else args.resume
    result = train(cfg, resume=resume, device=args.device, until_step=args.until_step)
    if result.export_dir is not None:
        print(result.export_dir)
    return 0
