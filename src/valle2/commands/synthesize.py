"""``valle2 synthesize``: speak a text in the voice of a prompt recording."""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from pathlib import Path

from valle2.errors import TextError, Valle2Error

logger = logging.getLogger(__name__)


def register(sub) -> None:
    p = sub.add_parser("synthesize", help="speak TEXT in the voice of a prompt recording",
                       description="Zero-shot TTS: continue the prompt recording with TEXT in the same voice.")
    p.add_argument("--text", help="text to speak (or use --text-file)")
    p.add_argument("--text-file", type=Path, help="read the text from this UTF-8 file")
    p.add_argument("--prompt", required=True, help="prompt recording (WAV/FLAC/OGG, 1-30 s, any sample rate)")
    p.add_argument("--prompt-text", required=True, help="transcript of the prompt recording")
    p.add_argument("--out", required=True, type=Path, help="output WAV file")
    p.add_argument("--model", default="default", help="'default' (bundled), 'debug' (tiny random model) or a model folder")
    p.add_argument("--seed", type=int, default=None, help="random seed (same seed, same output)")
    p.add_argument("--candidates", type=int, default=1, help="draw N samples per sentence and keep the best")
    p.add_argument("--select", default=None, help="how to pick among candidates: duration (default), sim, wer, sim,wer")
    p.add_argument("--top-p", type=float, default=None, help="nucleus sampling mass (default from the model)")
    p.add_argument("--top-k", type=int, default=None)
    p.add_argument("--temperature", type=float, default=None)
    p.add_argument("--no-ras", action="store_true", help="plain nucleus sampling instead of repetition-aware sampling")
    p.add_argument("--nar-decoding", choices=["greedy", "min_distortion", "expected"], default=None,
                   help="how the NAR picks codebooks 1..K-1: most probable code, or the code nearest the expected "
                        "code vector; expected: the codec decodes the expected vectors themselves (default from the model)")
    p.add_argument("--nar-temperature", type=float, default=None,
                   help="min_distortion and expected only: sharpen the NAR's distribution first (< 1: nearer greedy; "
                        "default from the model)")
    p.add_argument("--post-filter", choices=["none", "prompt_match"], default=None,
                   help="before the vocoder, give the output the prompt's log-mel mean and spread per mel bin "
                        "(valle2-mel codecs; default from the model)")
    p.add_argument("--post-filter-strength", type=float, default=None, metavar="S",
                   help="how far prompt_match moves the log-mel, 0-1 (default from the model)")
    p.add_argument("--nar-weight", type=float, default=None, metavar="W",
                   help="how much of the NAR's codebooks 1..K-1 the codec decodes, 0-1: 1 all (the paper), lower "
                        "blends in their mean entries: more of the words, less of the voice (default from the model)")
    p.add_argument("--residual-prior", choices=["mean", "code0"], default=None,
                   help="what --nar-weight blends in: the mean entries, or what codebooks 1..K-1 add on average to "
                        "each codebook-0 code (a table the model folder carries; default from the model)")
    p.add_argument("--prompt-residual", type=float, default=None, metavar="B",
                   help="share of the residual taken from the prompt's own frames nearest each output frame "
                        "(kNN; nar_weight + B <= 1): more of the voice (default from the model)")
    p.add_argument("--vocoder", choices=["codec", "synthesis"], default=None,
                   help="codec: the codec's own vocoder (the one resynthesis uses); synthesis: the model folder's "
                        "vocoder fine-tuned on its synthesis log-mels (default from the model)")
    p.add_argument("--ar-precision", choices=["fp32", "int8"], default=None,
                   help="int8: decode codebook 0 with an int8 copy of the AR (CPU; faster where memory bounds "
                        "the AR's steps; default from the model)")
    p.add_argument("--language", default=None, help="espeak-ng language of the text, e.g. en-us, fr-fr (default: the model's)")
    p.add_argument("--device", default="cpu")
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    p.add_argument("--unsafe-no-consent", action="store_true",
                   help="skip the consent check (research on public datasets only; logged, watermark still applied)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    import torch

    from valle2 import VallE2
    from valle2.audio import save_audio

    if args.text_file is not None:
        try:
            args.text = args.text_file.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as e:
            raise TextError(f"cannot read --text-file {str(args.text_file)!r}: {e}") from None
    if args.text is None:
        raise TextError("give the text with --text or --text-file")
    if args.candidates < 1:
        raise Valle2Error(f"--candidates is {args.candidates}; must be >= 1")
    if args.threads:
        torch.set_num_threads(args.threads)
    if not args.out.parent.exists():
        raise Valle2Error(f"output folder {str(args.out.parent)!r} does not exist")

    t0 = time.perf_counter()
    model = VallE2.from_pretrained(args.model, device=args.device)
    t_load = time.perf_counter() - t0
    if args.ar_precision:
        model.ar_precision = args.ar_precision
    if model.name == "debug":
        print("note: using the tiny RANDOM 'debug' model: the output is noise, not speech", file=sys.stderr)
    try:
        sampling = dict(top_p=args.top_p, top_k=args.top_k, temperature=args.temperature,
                        repetition_aware=False if args.no_ras else None, nar_decoding=args.nar_decoding,
                        nar_temperature=args.nar_temperature, post_filter=args.post_filter,
                        post_filter_strength=args.post_filter_strength, nar_weight=args.nar_weight,
                        residual_prior=args.residual_prior, prompt_residual=args.prompt_residual,
                        vocoder=args.vocoder)
        chosen = model.sampling_config(**sampling)  # validate before the expensive work
        if args.nar_temperature is not None and chosen.nar_decoding == "greedy":
            raise ValueError("--nar-temperature applies to min_distortion and expected NAR decoding; this run decodes "
                             "greedy (add --nar-decoding min_distortion)")
    except ValueError as e:
        raise Valle2Error(str(e)) from None
    t1 = time.perf_counter()
    wav, sr = model.synthesize(args.text, args.prompt, args.prompt_text, seed=args.seed, candidates=args.candidates,
                               select=args.select, language=args.language, unsafe_no_consent=args.unsafe_no_consent,
                               **sampling)
    t_synth = time.perf_counter() - t1
    path = save_audio(args.out, wav, sr)
    seconds = len(wav) / sr
    print(json.dumps({"out": str(path), "model": model.name, "audio_seconds": round(seconds, 3),
                      "synthesis_seconds": round(t_synth, 3), "load_seconds": round(t_load, 3),
                      "rtf": round(t_synth / seconds, 4) if seconds else None}))
    return 0
