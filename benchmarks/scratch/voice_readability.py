"""How well does the ASR read each corpus voice's own (engine) audio? Picks held-out voices the WER bar can use.

    python benchmarks/scratch/voice_readability.py --corpus /work/data/corpus --per-voice 8 [--split train]

Prints one JSON line per voice: corpus-level WER of faster-whisper tiny.en on ``per-voice``
utterances of the engine's own audio (seeded choice), then the voices sorted by WER.
"""

from __future__ import annotations

import argparse
import json
import random
from pathlib import Path


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--corpus", type=Path, required=True)
    ap.add_argument("--split", default="train")
    ap.add_argument("--per-voice", type=int, default=8)
    args = ap.parse_args()

    from valle2.audio import load_audio
    from valle2.eval.asr import get_asr
    from valle2.eval.lists import from_lhotse
    from valle2.eval.wer import wer_details

    utts = from_lhotse(args.corpus / f"synth_recordings_{args.split}.jsonl.gz",
                       args.corpus / f"synth_supervisions_{args.split}.jsonl.gz")
    by_voice: dict[str, list] = {}
    for u in sorted(utts, key=lambda u: u.id):
        by_voice.setdefault(u.speaker, []).append(u)
    asr = get_asr("faster-whisper")
    rng = random.Random(0)
    result = {}
    for voice, us in sorted(by_voice.items()):
        pick = rng.sample(us, min(args.per_voice, len(us)))
        hyps = [asr.transcribe(*load_audio(u.audio, target_sr=16000)) for u in pick]
        result[voice] = wer_details([u.text for u in pick], hyps).wer
        print(json.dumps({"voice": voice, "n": len(pick), "wer": round(result[voice], 4)}), flush=True)
    print(json.dumps({"sorted": sorted(((round(w, 3), v) for v, w in result.items()))}))


if __name__ == "__main__":
    main()
