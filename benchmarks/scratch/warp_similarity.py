"""Warped engine voices: resemblyzer cosine between warps of one voice, and whisper's reading
of each (RESULTS.md, "warped engine voices").

    python benchmarks/scratch/warp_similarity.py --voice flite:slt --warps 0.84 0.88 0.92 1.0 1.08 1.12 1.18
"""

import argparse
import tempfile
from pathlib import Path

import numpy as np
import soundfile as sf

from valle2.data.corpus_synth import render
from valle2.data.voices import Voice
from valle2.eval.asr import get_asr

TEXT = "The weather is nice today, and the children are playing in the park."


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--voice", default="flite:slt")
    ap.add_argument("--warps", type=float, nargs="+", default=[0.84, 0.88, 0.92, 1.0, 1.08, 1.12, 1.18])
    args = ap.parse_args()
    from resemblyzer import VoiceEncoder, preprocess_wav

    base, asr, enc = Voice.parse(args.voice), get_asr("faster-whisper"), VoiceEncoder(verbose=False)
    with tempfile.TemporaryDirectory() as tmp:
        paths = [render(Voice(base.engine, base.name, w), TEXT, Path(tmp) / f"{w}.wav") for w in args.warps]
        emb = [enc.embed_utterance(preprocess_wav(str(p))) for p in paths]
        for w, p, e in zip(args.warps, paths, emb):
            wav, sr = sf.read(str(p), dtype="float32")
            print(f"warp {w:g}: cosines {[round(float(np.dot(e, o)), 2) for o in emb]}  whisper: {asr.transcribe(wav, sr)}")


if __name__ == "__main__":
    main()
