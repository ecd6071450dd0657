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
    p.add_argument("--codec-by-name", action="store_true",
                   help="leave the codec out of the folder: it names a codec bundled with valle2 "
                        "(checked: same name and weights), as the bundled default model does")
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
    if args.codec_by_name:
        drop_codec_copy(path)
    print(path)
    return 0


def drop_codec_copy(model_dir: Path) -> None:
    """Remove ``model_dir/codec`` once the bundled codec it names is checked to be the same one.

    On failure the just-written folder is removed (it would not load without its codec)."""
    import json
    import shutil

    from valle2.codec import load_codec
    from valle2.config import BUNDLED_CODECS
    from valle2.errors import Valle2Error

    identity = json.loads((model_dir / "config.json").read_text())["codec"]
    name = str(identity.get("name", ""))
    try:
        if not name or not (BUNDLED_CODECS / name / "config.json").is_file():
            raise Valle2Error(f"the model's codec {name or identity.get('type')!r} is not bundled with valle2, "
                              "so the folder must keep its codec/ copy")
        load_codec(identity, None)  # the bundled codec of that name, its weights' hash checked
    except Valle2Error as exc:
        shutil.rmtree(model_dir, ignore_errors=True)
        raise Valle2Error(f"--codec-by-name: {exc}") from exc
    shutil.rmtree(model_dir / "codec")
