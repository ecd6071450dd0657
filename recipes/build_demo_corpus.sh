#!/usr/bin/env bash
# Build the demo multi-voice corpus used to train the valle2-mel codec (and later the small VALL-E 2).
# Needs: apt-get install espeak-ng flite festival festvox-kallpc16k festvox-us-slt-hts sox
# Resumable: re-running skips the WAVs that exist and rewrites the manifests.
# Reserved evaluation voices (flite rms, festival ked_diphone) are refused by the builder.
set -euo pipefail
OUT=${1:-/work/data/corpus}
JOBS=${JOBS:-2}
# 47 training voices x 120 sentences (about 5.5 h of speech at 2-8 s per utterance)
nice -n 10 valle2 corpus synth --out "$OUT" --voices train --sentences-per-voice 120 --jobs "$JOBS" --seed 0
# 5 held-out voices x 30 sentences, separate manifests (synth_*_held-out.jsonl.gz)
nice -n 10 valle2 corpus synth --out "$OUT" --voices held-out --sentences-per-voice 30 --jobs "$JOBS" --seed 0
