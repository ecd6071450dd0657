"""``valle2 detect``: check audio files for the valle2 watermark, one JSON line per file.

``--classifier`` also runs the synthetic-speech detector (:mod:`valle2.safety.detector`), which
needs no watermark: it looks for the traces of valle2's vocoder itself."""

from __future__ import annotations

import argparse
import json
import sys

from valle2.errors import Valle2Error


def register(sub) -> None:
    p = sub.add_parser(
        "detect", help="check audio files for the valle2 watermark",
        description="Print one JSON line per FILE: file, watermarked (bool), score (z-score), payload "
                    "(16-bit model id, or null), p_value (bound on the false-positive chance), threshold; "
                    "with --classifier also synthetic (bool) and synthetic_score (0-1, the detector's "
                    "probability that the audio went through valle2's vocoder). "
                    "An unreadable file gives a line with an 'error' field; the exit status is then 1, "
                    "after every file has been processed.")
    p.add_argument("files", nargs="+", metavar="FILE", help="audio files (WAV, FLAC, OGG, MP3, ...; any sample rate)")
    p.add_argument("--key", default=None,
                   help="watermark key as hex (default: $VALLE2_WATERMARK_KEY, else valle2's public key)")
    p.add_argument("--payload", type=int, action="append", default=None, metavar="N",
                   help="a payload to test with the whole pattern (repeatable; default: this valle2's model id)")
    p.add_argument("--classifier", action="store_true",
                   help="also run the synthetic-speech detector (works when the watermark was removed)")
    p.add_argument("--classifier-model", default=None, metavar="PATH",
                   help="detector file for --classifier (default: the one bundled with valle2)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from valle2.safety import read_audio
    from valle2.safety.keys import parse_hex_key, watermark_key
    from valle2.safety.watermark import DEFAULT_PAYLOAD, detect

    key = parse_hex_key(args.key, what="--key") if args.key else watermark_key()
    payloads = tuple(args.payload) if args.payload else (DEFAULT_PAYLOAD,)
    for q in payloads:
        if not 0 <= q < 65536:
            raise Valle2Error(f"--payload {q} is out of range; need 0-65535")
    detector = None
    if args.classifier or args.classifier_model:
        from valle2.safety.detector import SyntheticSpeechDetector

        detector = SyntheticSpeechDetector.load(args.classifier_model)
    failed = 0
    for path in args.files:
        try:
            wav, sr = read_audio(path)
            line = {"file": path, **detect(wav, sr, key=key, payloads=payloads).as_dict()}
            if detector is not None:
                line.update(_classify(detector, wav, sr))
        except (Valle2Error, OSError, RuntimeError) as exc:
            failed += 1
            line = {"file": path, "error": str(exc)}
        print(json.dumps(line), flush=True)
    if failed:
        print(f"valle2 detect: {failed} of {len(args.files)} files could not be read", file=sys.stderr)
    return 1 if failed else 0


def _classify(detector, wav, sr) -> dict:
    """The detector's fields; null ones (and the reason) where it cannot score a readable file,
    e.g. under 0.5 s or silent, so the watermark verdict is still reported."""
    from valle2.errors import AudioError

    try:
        verdict = detector.predict(wav, sr)
    except AudioError as exc:
        return {"synthetic": None, "synthetic_score": None, "synthetic_error": str(exc)}
    return {"synthetic": verdict["synthetic"], "synthetic_score": verdict["score"]}
