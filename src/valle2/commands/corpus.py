"""``valle2 corpus synth``: build a multi-voice synthetic corpus with Lhotse manifests."""

from __future__ import annotations

import argparse
import logging
import time
from pathlib import Path

log = logging.getLogger(__name__)


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("corpus", help="build training corpora")
    sub = parser.add_subparsers(dest="corpus_command", required=True, metavar="ACTION")
    synth = sub.add_parser(
        "synth",
        help="render generated sentences with offline voices (espeak-ng, flite, festival)",
        description="Render generated English sentences with the offline voices of "
        "valle2.data.voices (reserved evaluation voices are never used) to 24 kHz WAVs and "
        "write Lhotse manifests. Resumable: existing files are kept.",
    )
    synth.add_argument("--out", type=Path, required=True, help="output folder")
    synth.add_argument("--voices", choices=("train", "held-out", "all"), default="train")
    synth.add_argument("--sentences-per-voice", type=int, default=100)
    synth.add_argument("--jobs", type=int, default=2, help="parallel engine processes")
    synth.add_argument("--seed", type=int, default=0)
    synth.add_argument("--min-duration", type=float, default=2.0, help="seconds; shorter files stay out of the manifests")
    synth.add_argument("--max-duration", type=float, default=8.0, help="seconds; longer files stay out of the manifests")
    synth.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from valle2.data.corpus_synth import synth_corpus
    from valle2.data.voices import select

    voices = select(args.voices)
    start = time.monotonic()
    rec, sup = synth_corpus(
        args.out, voices, split=args.voices, sentences_per_voice=args.sentences_per_voice,
        jobs=args.jobs, seed=args.seed, min_duration=args.min_duration, max_duration=args.max_duration,
    )
    log.info("wrote %s and %s in %.1f s", rec, sup, time.monotonic() - start)
    print(rec)
    print(sup)
    return 0
