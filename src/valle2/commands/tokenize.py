"""``valle2 tokenize``: cuts -> codec codes + phone ids in resumable shards (``valle2.data.tokenize``)."""

from __future__ import annotations

import argparse
from pathlib import Path

DESCRIPTION = """Encode the cuts of Lhotse manifests to codec codes and phone ids, in shards.
Re-run the same command to resume: finished shards are not redone.

  one machine:  valle2 tokenize --config small --cuts a_cuts.jsonl.gz --out tokens/a --jobs 8
  a cluster:    torchrun --nnodes=N --nproc_per_node=8 ... -m valle2 tokenize --config paper ...
                (each rank encodes its own shards on its own GPU; the last one to finish merges them)
"""


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("tokenize", help="encode cuts to codec codes and phone ids (resumable, parallel)",
                              description=DESCRIPTION, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--cuts", type=Path, nargs="+", required=True, help="Lhotse cut manifests (from valle2 prepare)")
    p.add_argument("--out", type=Path, required=True, help="output folder (re-run to resume)")
    p.add_argument("--config", help="recipe naming the codec and language: a YAML file or debug/small/paper")
    p.add_argument("--jobs", type=int, help="worker processes (per rank); overrides tokenize.jobs")
    p.add_argument("--shard-size", type=int, help="cuts per shard; overrides tokenize.shard_size")
    p.add_argument("--device", help="codec device (default: cuda:LOCAL_RANK when a GPU is present, else cpu)")
    p.add_argument("overrides", nargs="*", metavar="KEY=VALUE", help="config overrides, e.g. tokenize.max_seconds=20")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from valle2.config import load_config
    from valle2.data.tokenize import tokenize

    # "--cuts a.jsonl.gz key=value" puts the override into --cuts (nargs="+"): move it back.
    cuts = [c for c in args.cuts if "=" not in c.name or c.exists()]
    overrides = [str(c) for c in args.cuts if c not in cuts] + list(args.overrides)
    if args.jobs is not None:
        overrides.append(f"tokenize.jobs={args.jobs}")
    if args.shard_size is not None:
        overrides.append(f"tokenize.shard_size={args.shard_size}")
    cfg = load_config(args.config, overrides)
    result = tokenize(cuts, args.out, codec=cfg.codec, text=cfg.text, settings=cfg.tokenize, device=args.device)
    if result.complete:
        print(f"{result.out_dir}: {result.n_cuts} utterances, {result.n_skipped} skipped (see skipped.jsonl)")
    else:
        print(f"{result.out_dir}: this rank is done; other ranks are still encoding")
    return 0
