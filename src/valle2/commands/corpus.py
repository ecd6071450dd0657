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
    synth.add_argument("--voices", choices=("train", "train-warped", "held-out", "all"), default="train",
                       help="train-warped: engine voices made new speakers by a pitch-and-formant warp")
    synth.add_argument("--sentences-per-voice", type=int, default=100)
    synth.add_argument("--jobs", type=int, default=2, help="parallel engine processes")
    synth.add_argument("--seed", type=int, default=0)
    synth.add_argument("--min-duration", type=float, default=2.0, help="seconds; shorter files stay out of the manifests")
    synth.add_argument("--max-duration", type=float, default=8.0, help="seconds; longer files stay out of the manifests")
    synth.add_argument("--sentences", type=Path, metavar="FILE",
                       help="draw each voice's sentences from this file (one per line; `valle2 corpus sentences`) "
                       "instead of the built-in grammar")
    synth.set_defaults(func=run)

    sents = sub.add_parser(
        "sentences",
        help="write a sentence pool for `corpus synth --sentences`",
        description="Write a pool of English sentences, one per line: WordNet's usage examples "
        "(29,000 words; needs the wordnet-base package), sentences with numbers, dates, times and "
        "prices written out by valle2's normaliser, and sentences of the built-in grammar. "
        "Sentences also found in an --exclude file (e.g. an evaluation set) are left out.",
    )
    sents.add_argument("--out", type=Path, required=True, help="output text file")
    sents.add_argument("--wordnet", type=Path, default=None, help="WordNet database folder (default /usr/share/wordnet)")
    sents.add_argument("--no-wordnet", action="store_true", help="leave WordNet out")
    sents.add_argument("--numbers", type=int, default=3000, help="how many number sentences")
    sents.add_argument("--grammar", type=int, default=3000, help="how many grammar sentences")
    sents.add_argument("--exclude", type=Path, action="append", default=[], metavar="FILE",
                       help="leave out sentences of this file (compared after WER normalisation); repeatable")
    sents.add_argument("--seed", type=int, default=0)
    sents.set_defaults(func=run_sentences)


def run(args: argparse.Namespace) -> int:
    from valle2.data.corpus_synth import synth_corpus
    from valle2.data.sentences import read_sentences
    from valle2.data.voices import select

    voices = select(args.voices)
    start = time.monotonic()
    rec, sup = synth_corpus(
        args.out, voices, split=args.voices, sentences_per_voice=args.sentences_per_voice,
        jobs=args.jobs, seed=args.seed, min_duration=args.min_duration, max_duration=args.max_duration,
        sentences=read_sentences(args.sentences) if args.sentences else None,
    )
    log.info("wrote %s and %s in %.1f s", rec, sup, time.monotonic() - start)
    print(rec)
    print(sup)
    return 0


def run_sentences(args: argparse.Namespace) -> int:
    from valle2.data.sentences import WORDNET_DIR, generate_sentences, number_sentences, read_sentences, wordnet_examples
    from valle2.data.shards import atomic_write_bytes
    from valle2.eval.normalize import normalize_for_wer

    parts = {}
    if not args.no_wordnet:
        parts["wordnet"] = wordnet_examples(args.wordnet or WORDNET_DIR)
    parts["numbers"] = number_sentences(args.numbers, seed=args.seed) if args.numbers > 0 else []
    parts["grammar"] = generate_sentences(args.grammar, seed=args.seed) if args.grammar > 0 else []
    excluded = {normalize_for_wer(s) for path in args.exclude for s in read_sentences(path)}
    pool: dict[str, str] = {}
    dropped = 0
    for sentences in parts.values():
        for s in sentences:
            key = normalize_for_wer(s)
            if key in excluded:
                dropped += 1
            else:
                pool.setdefault(key, s)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_bytes(args.out, "".join(s + "\n" for s in pool.values()).encode("utf-8"))
    counts = ", ".join(f"{len(v)} {k}" for k, v in parts.items())
    print(f"{args.out}: {len(pool)} sentences ({counts}; {dropped} excluded)")
    return 0
