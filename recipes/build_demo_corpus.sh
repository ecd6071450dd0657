#!/usr/bin/env bash
# Build the demo multi-voice corpus used to train the valle2-mel codec and the small VALL-E 2.
# Needs: apt-get install espeak-ng flite festival festvox-kallpc16k festvox-us-slt-hts sox wordnet-base
# Resumable: re-running skips the WAVs that exist and rewrites the manifests.
# Reserved evaluation voices (flite rms, festival ked_diphone) are refused by the builder.
#   recipes/build_demo_corpus.sh [OUT]          the grammar corpus (corpus 1) and the held-out voices
#   BROAD=1 recipes/build_demo_corpus.sh OUT    a broad-vocabulary corpus (corpus 4, below)
set -euo pipefail
OUT=${1:-/work/data/corpus}
JOBS=${JOBS:-2}
if [ "${BROAD:-0}" = 1 ]; then
    # The grammar knows ~300 words; WordNet's usage examples bring 29,000 (benchmarks/RESULTS.md,
    # "The bundled demo model"). The robustness sentences of the bars stay out of the pool.
    mkdir -p "$OUT"
    valle2 corpus sentences --out "$OUT/sentences.txt" --exclude "$(dirname "$0")/../benchmarks/data/robustness_sentences.txt"
    # 47 training voices x 600 sentences of the pool (about 17 h; many WordNet examples are short)
    nice -n 10 valle2 corpus synth --out "$OUT" --voices train --sentences-per-voice 600 --jobs "$JOBS" --seed 4 \
        --sentences "$OUT/sentences.txt" --min-duration 1.0 --max-duration 10.0
    exit 0
fi
# 47 training voices x 120 sentences (about 5.5 h of speech at 2-8 s per utterance)
nice -n 10 valle2 corpus synth --out "$OUT" --voices train --sentences-per-voice 120 --jobs "$JOBS" --seed 0
# 5 held-out voices x 30 sentences, separate manifests (synth_*_held-out.jsonl.gz)
nice -n 10 valle2 corpus synth --out "$OUT" --voices held-out --sentences-per-voice 30 --jobs "$JOBS" --seed 0
