"""``valle2 eval`` (score a model on a test list) and ``valle2 eval-list`` (make a test list).

::

    valle2 eval-list --from librispeech ~/data/LibriSpeech/test-clean --setting both --out lists/test-clean.jsonl
    valle2 eval --model M --list lists/test-clean.jsonl --setting continuation --samples 5 --select sim,wer \\
        --out runs/M-cont --unsafe-no-consent

``eval`` writes ``rows.jsonl``, ``summary.md``, ``summary.json``, ``summary.png`` and the
outputs under ``audio/`` in ``--out``; run it again with the same ``--out`` to resume.
"""

from __future__ import annotations

import argparse
import logging
import random
import sys
from pathlib import Path

from valle2.errors import Valle2Error

logger = logging.getLogger(__name__)


def register(sub) -> None:
    p = sub.add_parser(
        "eval",
        help="evaluate a model on a test list: WER, speaker similarity, quality (resumable)",
        description="Synthesise every item of a test list (valle2 eval-list), score it with ASR (WER), a "
        "speaker encoder (SIM) and signal checks / DNSMOS, and write per-utterance rows, a summary table "
        "with 95 % confidence intervals and a per-speaker plot. Ground truth and codec resynthesis are "
        "scored too, for reference. Re-running with the same --out resumes.",
    )
    p.add_argument("--model", default="default", help="'default', 'debug' (tiny random model) or a model folder")
    p.add_argument("--list", required=True, type=Path, dest="list_path", help="test list made by valle2 eval-list")
    p.add_argument("--root", type=Path, default=None,
                   help="audio root of the list on this machine (default: the list's)")
    p.add_argument("--setting", default="both", help="continuation, cross-sentence or both (default: all in the list)")
    p.add_argument("--samples", type=int, default=1, help="outputs per utterance; all scored, the best marked")
    p.add_argument("--select", default="sim,wer", help="best-of-N ranking: sim, wer, duration or a comma list")
    p.add_argument("--out", required=True, type=Path, help="output folder (re-use it to resume)")
    p.add_argument("--asr", default="faster-whisper",
                   help="ASR backend: faster-whisper[:<model>] or transformers:<model>")
    p.add_argument("--speaker", default="resemblyzer", help="speaker encoder: resemblyzer, wavlm or wavlm:<model>")
    p.add_argument("--quality", default="signal", help="'signal' (checks only) or a DNSMOS model folder")
    p.add_argument("--max-items", type=int, default=None, help="a seeded random subset of this many items")
    p.add_argument("--seed", type=int, default=0, help="run seed (item subset and synthesis)")
    p.add_argument("--no-reference-rows", action="store_true", help="skip the ground-truth and codec rows")
    p.add_argument("--no-audio", action="store_true", help="do not keep the outputs under OUT/audio")
    p.add_argument("--top-p", type=float, default=None, help="nucleus sampling mass (default from the model)")
    p.add_argument("--temperature", type=float, default=None)
    p.add_argument("--post-filter", choices=["none", "prompt_match"], default=None,
                   help="log-mel post-filter before the vocoder (valle2-mel codecs; default from the model)")
    p.add_argument("--post-filter-strength", type=float, default=None, metavar="S",
                   help="how far prompt_match moves the log-mel, 0-1 (default from the model)")
    p.add_argument("--nar-weight", type=float, default=None, metavar="W",
                   help="how much of the NAR's codebooks 1..K-1 the codec decodes, 0-1 (default from the model)")
    p.add_argument("--residual-prior", choices=["mean", "code0"], default=None,
                   help="what the rest of that blend is: the mean entries, or the model's per-codebook-0-code "
                        "table (default from the model)")
    p.add_argument("--prompt-residual", type=float, default=None, metavar="B",
                   help="share of that blend taken from the prompt's nearest frames, 0-1 (default from the model)")
    p.add_argument("--vocoder", choices=["codec", "synthesis"], default=None,
                   help="the codec's vocoder or the model's synthesis vocoder (default from the model)")
    p.add_argument("--device", default="cpu")
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.add_argument("--unsafe-no-consent", action="store_true",
                   help="skip the consent check (public datasets only; logged, outputs still watermarked)")
    p.set_defaults(func=run)

    q = sub.add_parser(
        "eval-list",
        help="make a test list (continuation / cross-sentence) from LibriSpeech, Lhotse or a folder",
        description="Select 4-10 s utterances and give each a prompt: the first 3 s of the utterance "
        "(continuation) or another utterance of the same speaker (cross-sentence), reproducibly from --seed.",
    )
    q.add_argument("--from", dest="source", required=True, choices=("librispeech", "lhotse", "folder"))
    q.add_argument("path", type=Path, help="LibriSpeech part folder, Lhotse manifest, or folder / CSV of your voices")
    q.add_argument("--supervisions", type=Path, default=None, help="Lhotse SupervisionSet (with a RecordingSet PATH)")
    q.add_argument("--part", default="test-clean", help="LibriSpeech part, when PATH holds several")
    q.add_argument("--alignments", type=Path, default=None, help="folder of LibriSpeech *.alignment.txt files")
    q.add_argument("--setting", default="both", help="continuation, cross-sentence or both")
    q.add_argument("--out", required=True, type=Path, help="list file to write (JSONL)")
    q.add_argument("--seed", type=int, default=0)
    q.add_argument("--min-s", type=float, default=4.0, help="shortest utterance (s)")
    q.add_argument("--max-s", type=float, default=10.0, help="longest utterance (s)")
    q.add_argument("--prompt-seconds", type=float, default=3.0, help="continuation prompt length (s)")
    q.add_argument("--cross-prompt-seconds", type=float, default=None, help="crop cross-sentence prompts (s)")
    q.add_argument("--max-items", type=int, default=None, help="a seeded random subset of this many utterances")
    q.set_defaults(func=run_list)


_SETTING_NAMES = {
    "continuation": {"continuation"},
    "cont": {"continuation"},
    "cross-sentence": {"cross-sentence"},
    "cross": {"cross-sentence"},
    "both": {"continuation", "cross-sentence"},
    "all": {"continuation", "cross-sentence"},
}


def select_items(items: list, setting: str, max_items: int | None, seed: int) -> list:
    """Items of ``setting`` (or all for "both"), then a seeded subset of ``max_items``.

    The subset is a prefix of one seeded shuffle, so raising ``--max-items`` keeps the
    items already evaluated (and a resumed run reuses their rows).
    """
    wanted = _SETTING_NAMES.get(setting.strip().lower().replace("_", "-"))
    if wanted is None:
        raise Valle2Error(f"unknown setting {setting!r}; use continuation, cross-sentence or both")
    chosen = [it for it in items if it.setting in wanted]
    if not chosen:
        have = ", ".join(sorted({it.setting for it in items})) or "none"
        raise Valle2Error(f"the list has no {setting} items (it has: {have})")
    if max_items is not None:
        if max_items < 1:
            raise Valle2Error(f"--max-items is {max_items}; need a positive number")
        order = list(range(len(chosen)))
        random.Random(seed).shuffle(order)
        keep = set(order[:max_items])
        chosen = [it for i, it in enumerate(chosen) if i in keep]
    return chosen


def run(args: argparse.Namespace) -> int:
    import torch

    from valle2 import VallE2
    from valle2.eval.lists import load_list
    from valle2.eval.report import markdown_table
    from valle2.eval.run import load_backends, run_eval
    from valle2.eval.scorers import get_scorer

    if args.samples < 1:
        raise Valle2Error(f"--samples is {args.samples}; must be >= 1")
    if args.threads:
        torch.set_num_threads(args.threads)
    if not getattr(args, "verbose", False):
        # faster-whisper logs a line per clip at INFO, which buries the progress bar.
        logging.getLogger("faster_whisper").setLevel(logging.WARNING)
    items = select_items(load_list(args.list_path, root=args.root), args.setting, args.max_items, args.seed)
    # Backends before the model: a missing package is reported before anything slow happens.
    asr, speaker, quality = load_backends(args.asr, args.speaker, args.quality)
    try:
        get_scorer(args.select, asr=asr, speaker=speaker)
    except ValueError as exc:
        raise Valle2Error(f"--select: {exc}") from None
    model = VallE2.from_pretrained(args.model, device=args.device)
    if model.name == "debug":
        print("note: using the tiny RANDOM 'debug' model: its output is noise, expect WER near 100%", file=sys.stderr)
    sampling = {k: v for k, v in (("top_p", args.top_p), ("temperature", args.temperature),
                                  ("post_filter", args.post_filter),
                                  ("post_filter_strength", args.post_filter_strength),
                                  ("nar_weight", args.nar_weight),
                                  ("residual_prior", args.residual_prior),
                                  ("prompt_residual", args.prompt_residual),
                                  ("vocoder", args.vocoder)) if v is not None}
    try:
        model.sampling_config(**sampling)
    except ValueError as exc:
        raise Valle2Error(str(exc)) from None
    from valle2.safety.consent import ConsentError

    try:
        summary = run_eval(
            model, items, args.out, samples=args.samples, select=args.select, asr=asr, speaker=speaker,
            quality=quality, seed=args.seed, include_reference_rows=not args.no_reference_rows,
            unsafe_no_consent=args.unsafe_no_consent, progress=not args.no_progress, sampling=sampling,
            save_audio=not args.no_audio, meta={"model_path": args.model, "list": str(args.list_path), "setting": args.setting,
                                                "max_items": args.max_items},
        )
    except ConsentError as exc:
        if exc.reason != "none":
            raise
        raise ConsentError(
            f"{exc}; for a public dataset whose speakers agreed to research use (e.g. LibriSpeech), "
            "pass --unsafe-no-consent (outputs are still watermarked and audited)", exc.reason
        ) from None
    print(markdown_table(summary))
    for kind, path in summary.files.items():
        print(f"{kind}: {path}", file=sys.stderr)
    return 0


def run_list(args: argparse.Namespace) -> int:
    from valle2.eval.lists import build_list, from_folder, from_lhotse, from_librispeech, save_list

    if args.source == "librispeech":
        utts = from_librispeech(args.path, part=args.part, alignments_dir=args.alignments)
    elif args.source == "lhotse":
        utts = from_lhotse(args.path, args.supervisions)
    else:
        utts = from_folder(args.path)
    try:
        items = build_list(utts, args.setting, seed=args.seed, min_s=args.min_s, max_s=args.max_s,
                           prompt_seconds=args.prompt_seconds, max_items=args.max_items,
                           cross_prompt_seconds=args.cross_prompt_seconds)
    except ValueError as exc:
        raise Valle2Error(str(exc)) from None
    if not items:
        raise Valle2Error(
            f"no usable utterances of {args.min_s:g}-{args.max_s:g} s among the {len(utts)} under {str(args.path)!r}"
        )
    path = save_list(items, args.out, seed=args.seed, source=args.source, min_s=args.min_s, max_s=args.max_s,
                     prompt_seconds=args.prompt_seconds)
    speakers = len({it.speaker for it in items})
    settings = ", ".join(f"{s}: {sum(it.setting == s for it in items)}" for s in sorted({it.setting for it in items}))
    print(f"{path}: {len(items)} items ({settings}) from {speakers} speakers")
    return 0
