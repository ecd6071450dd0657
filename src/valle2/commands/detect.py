"""``valle2 detect``: check audio files for the valle2 watermark, one JSON line per file."""

from __future__ import annotations

import argparse
import json
import sys

from valle2.errors import Valle2Error


def register(sub) -> None:
    p = sub.add_parser(
        "detect", help="check audio files for the valle2 watermark",
        description="Print one JSON line per FILE: file, watermarked (bool), score (z-score), payload "
                    "(16-bit model id, or null), p_value (bound on the false-positive chance), threshold. "
                    "An unreadable file gives a line with an 'error' field; the exit status is then 1, "
                    "after every file has been processed.")
    p.add_argument("files", nargs="+", metavar="FILE", help="audio files (WAV, FLAC, OGG, MP3, ...; any sample rate)")
    p.add_argument("--key", default=None,
                   help="watermark key as hex (default: $VALLE2_WATERMARK_KEY, else valle2's public key)")
    p.add_argument("--payload", type=int, action="append", default=None, metavar="N",
                   help="a payload to test with the whole pattern (repeatable; default: this valle2's model id)")
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
    failed = 0
    for path in args.files:
        try:
            wav, sr = read_audio(path)
            line = {"file": path, **detect(wav, sr, key=key, payloads=payloads).as_dict()}
        except (Valle2Error, OSError, RuntimeError) as exc:
            failed += 1
            line = {"file": path, "error": str(exc)}
        print(json.dumps(line), flush=True)
    if failed:
        print(f"valle2 detect: {failed} of {len(args.files)} files could not be read", file=sys.stderr)
    return 1 if failed else 0
