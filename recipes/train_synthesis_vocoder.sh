#!/usr/bin/env bash
# A synthesis vocoder for a model folder (valle2.generation.synthesis_vocoder), one resumable round:
#   1. the corpora's log-mels and audio (mel_train features; skipped when WORK has them);
#   2. ground-truth-aligned log-mels of the model as it decodes by default (recipes/vocoder_gta.py; skipped when done);
#   3. the model's codec's vocoder fine-tuned on them, GTA_PROB of the rows GTA, the rest the codec's own
#      reconstruction (mel_train vocoder; resumes from WORK's checkpoint);
#   4. exported as a codec folder WORK/codec_synthesis, whose vocoder goes into MODEL/synthesis_vocoder.safetensors
#      (recipes/synthesis_vocoder.py; with MAKE_DEFAULT=1 the model then decodes with it by default).
# The codec itself is untouched, so resynthesis keeps its vocoder.
# usage: recipes/train_synthesis_vocoder.sh MODEL CODEC WORK CORPUS [CORPUS:SPLIT ...]
#   MODEL  a model folder with a valle2-mel codec; CODEC its codec (a folder or a bundled name, e.g. valle2-mel-v4)
#   env: UTTERANCES (1200), GTA_PROB (0.8), MINUTES (30), STEPS (8000), LR (2e-4), THREADS (2), MAKE_DEFAULT (0),
#        VOCODER_ARGS (more `mel_train vocoder` arguments, e.g. "--batch 8 --frames 64")
# Session 16 (benchmarks/RESULTS.md) ran it with the defaults on the bundled model, corpora 1 and 5, in 15 + 30 min
# on the 2-vCPU host. On a CPU, preload jemalloc (LD_PRELOAD=libjemalloc.so.2).
set -euo pipefail
model=$1 codec=$2 work=$3
shift 3
here=$(dirname "$0")
export PYTHONPATH="$here/../src${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
py=${PYTHON:-python3}
threads=${THREADS:-2}
mkdir -p "$work"
[ -f "$work/features_train.npz" ] || "$py" -m valle2.codec.mel_train features --corpus "$@" --split train --work "$work"
[ -f "$work/gta_utts_train.npy" ] || "$py" "$here/vocoder_gta.py" --model "$model" --work "$work" --corpus "$@" \
    --utterances "${UTTERANCES:-1200}" --threads "$threads"
"$py" -m valle2.codec.mel_train --threads "$threads" vocoder --work "$work" --init-codec "$codec" --lr "${LR:-2e-4}" \
    --warmup 100 --minutes "${MINUTES:-30}" --total-steps "${STEPS:-8000}" --gta-prob "${GTA_PROB:-0.8}" ${VOCODER_ARGS:-}
"$py" -m valle2.codec.mel_train export --work "$work" --codec "$codec" --out "$work/codec_synthesis" \
    --name "$(basename "$codec")-synthesis" --float16
default=()
[ "${MAKE_DEFAULT:-0}" = 1 ] && default=(--make-default)
"$py" "$here/synthesis_vocoder.py" "$model" --codec "$work/codec_synthesis" "${default[@]}"
