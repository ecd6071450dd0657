"""``valle2 export``: a training checkpoint -> a model folder that ``synthesize`` / ``serve`` load."""

from __future__ import annotations

import argparse
from pathlib import Path

EXAMPLES = """examples:
  valle2 export runs/demo/checkpoints --out my-model                       # latest checkpoint
  valle2 export runs/demo/checkpoints/step-00002000 --out m2000 --dtype float16 --set export.name=demo
"""

DTYPES = {"float32": None, "float16": "float16", "bfloat16": "bfloat16"}


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("export", help="turn a training checkpoint into a model folder",
                              description="Export a checkpoint of valle2 train with save_pretrained, while the run "
                                          "goes on or after it stopped. The run's own config (saved in the "
                                          "checkpoint) rebuilds the model.",
                              epilog=EXAMPLES, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("checkpoint", type=Path, help="a checkpoint folder, or a run's checkpoints/ folder (latest)")
    p.add_argument("--out", type=Path, required=True, help="model folder to write (replaced if it exists)")
    p.add_argument("--data", type=Path, nargs="+",
                   help="the run's tokenized training data (symbols, codec); default: its data.train")
    p.add_argument("--dtype", choices=sorted(DTYPES), default="float32", help="weights on disk (float16 halves them)")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="change an export setting, e.g. --set export.name=demo (repeatable)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    import torch

    from valle2.errors import Valle2Error
    from valle2.training.loop import export_checkpoint

    bad = [o for o in args.overrides if not o.startswith("export.")]
    if bad:
        raise Valle2Error(f"only export.* settings can be changed here, not {', '.join(bad)}")
    dtype = getattr(torch, DTYPES[args.dtype]) if DTYPES[args.dtype] else None
    path = export_checkpoint(args.checkpoint, args.out, data=args.data, dtype=dtype, overrides=args.overrides)
    print(path)
    return 0
