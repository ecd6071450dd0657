#!/usr/bin/env bash
# Rebuild, on a fresh machine, everything the demo model's GPU slot and CPU continuations train
# and validate on, then stage it in the git-ignored folders the device tool carries:
#   .sprint/   packed5-train.safetensors.xz (corpora 1 + 2), valid.safetensors (342 held-out
#              utterances, inference layout), init/ (the bundled model, for --init-from)
#   .sprint2/  train45.safetensors.xz (corpus 4: broad vocabulary; corpus 5: warped voices)
# and the evaluation corpora the bars read: DATA/corpus_eval (the 142 held-out grammar
# utterances of demo_bars.py) and DATA/corpus_eval4 (200 held-out pool utterances).
#
#   recipes/prepare_sprint_data.sh [DATA]      (default /work/data; run from the repository root)
#
# Needs the Debian packages of `make test` (espeak-ng, flite, festival + voices, sox) and
# wordnet-base. Resumable: every step skips what already exists, so a stopped run is re-run as is.
# Each step's seconds go to DATA/prepare_times.tsv. The corpora are rendered in the current
# voice split (valle2.data.voices); benchmarks/RESULTS.md ("Rebuilding the sprint data") gives
# the sizes and times measured.
set -euo pipefail
DATA=${1:-/work/data}
JOBS=${JOBS:-2}
ROOT=$(cd "$(dirname "$0")/.." && pwd)
VALLE2=${VALLE2:-$ROOT/.venv/bin/valle2}
PY=${PY:-$ROOT/.venv/bin/python}
mkdir -p "$DATA"
TIMES=$DATA/prepare_times.tsv

step() {  # step NAME DONE_FILE COMMAND...: run COMMAND unless DONE_FILE exists; log its seconds
    local name=$1 done=$2; shift 2
    if [ -e "$done" ]; then echo "== $name: done already ($done)"; return; fi
    echo "== $name"
    local t0=$SECONDS
    "$@"
    printf '%s\t%s\n' "$name" "$((SECONDS - t0))" >> "$TIMES"
}

synth() {  # synth DIR VOICES N SEED [extra args]
    local dir=$1 voices=$2 n=$3 seed=$4; shift 4
    nice -n 10 "$VALLE2" corpus synth --out "$dir" --voices "$voices" --sentences-per-voice "$n" \
        --jobs "$JOBS" --seed "$seed" "$@"
}

tokens() {  # tokens CORPUS SPLIT NAME: lhotse cuts + codes of the bundled codec that configs/demo.yaml names (v4: the same codes as v3)
    local corpus=$1 split=$2 name=$3
    "$VALLE2" prepare lhotse --recordings "$corpus/synth_recordings_$split.jsonl.gz" \
        --supervisions "$corpus/synth_supervisions_$split.jsonl.gz" --out "$DATA/manifests" --name "$name"
    nice -n 10 "$VALLE2" tokenize --config demo --cuts "$DATA/manifests/${name}_cuts.jsonl.gz" \
        --out "$DATA/tokens/$name" --jobs "$JOBS"
}

# Corpus 1: the 47 training voices x 120 grammar sentences (2-8 s); corpus 2: 240 more each.
step corpus1 "$DATA/corpus1/synth_supervisions_train.jsonl.gz" synth "$DATA/corpus1" train 120 0
step corpus2 "$DATA/corpus2/synth_supervisions_train.jsonl.gz" synth "$DATA/corpus2" train 240 1
# The held-out grammar set of the bars (demo_bars.py --corpus DATA/corpus_eval).
step corpus_eval "$DATA/corpus_eval/synth_supervisions_held-out.jsonl.gz" synth "$DATA/corpus_eval" held-out 30 0
# The sentence pool (WordNet examples, numbers, grammar) minus the robustness sentences of the bars.
step sentences "$DATA/sentences4.txt" "$VALLE2" corpus sentences --out "$DATA/sentences4.txt" \
    --exclude "$ROOT/benchmarks/data/robustness_sentences.txt"
# Corpus 4: training voices x 600 pool sentences (1-10 s); corpus 5: the warped voices x 600.
step corpus4 "$DATA/corpus4/synth_supervisions_train.jsonl.gz" synth "$DATA/corpus4" train 600 4 \
    --sentences "$DATA/sentences4.txt" --min-duration 1.0 --max-duration 10.0
step corpus5 "$DATA/corpus5/synth_supervisions_train-warped.jsonl.gz" synth "$DATA/corpus5" train-warped 600 5 \
    --sentences "$DATA/sentences4.txt" --min-duration 1.0 --max-duration 10.0
# The pool sentences that no training voice reads, and 40 of them per held-out voice.
unused() {
    "$PY" - "$DATA" <<'EOF'
import sys
from pathlib import Path
from lhotse import load_manifest
data = Path(sys.argv[1])
used = set()
for path in ("corpus4/synth_supervisions_train.jsonl.gz", "corpus5/synth_supervisions_train-warped.jsonl.gz"):
    used.update(s.text for s in load_manifest(data / path))
pool = [line for line in (data / "sentences4.txt").read_text().splitlines() if line.strip()]
left = [s for s in pool if s not in used]
(data / "sentences4_unused.txt").write_text("\n".join(left) + "\n")
print(f"{len(left)} of {len(pool)} pool sentences are read by no training voice")
EOF
}
step unused "$DATA/sentences4_unused.txt" unused
step corpus_eval4 "$DATA/corpus_eval4/synth_supervisions_held-out.jsonl.gz" synth "$DATA/corpus_eval4" held-out 40 6 \
    --sentences "$DATA/sentences4_unused.txt" --min-duration 1.0 --max-duration 10.0

step tokens1 "$DATA/tokens/train1" tokens "$DATA/corpus1" train train1
step tokens2 "$DATA/tokens/train2" tokens "$DATA/corpus2" train train2
step tokens4 "$DATA/tokens/train4" tokens "$DATA/corpus4" train train4
step tokens5 "$DATA/tokens/train5" tokens "$DATA/corpus5" train-warped train5
step tokens_eval "$DATA/tokens/eval" tokens "$DATA/corpus_eval" held-out eval
step tokens_eval4 "$DATA/tokens/eval4" tokens "$DATA/corpus_eval4" held-out eval4

PACK=$DATA/packed
mkdir -p "$PACK"
step pack12 "$PACK/train12.safetensors.xz" "$PY" "$ROOT/recipes/gpu_sprint.py" pack \
    --data "$DATA/tokens/train1" "$DATA/tokens/train2" --voices train --out "$PACK/train12.safetensors" --xz
step pack45 "$PACK/train45.safetensors.xz" "$PY" "$ROOT/recipes/gpu_sprint.py" pack \
    --data "$DATA/tokens/train4" "$DATA/tokens/train5" --voices train --out "$PACK/train45.safetensors" --xz
step pack_valid "$PACK/valid.safetensors" "$PY" "$ROOT/recipes/gpu_sprint.py" pack \
    --data "$DATA/tokens/eval" "$DATA/tokens/eval4" --voices held-out --out "$PACK/valid.safetensors"

# Stage for the device tool (both folders are git-ignored; each travels in its own call).
mkdir -p "$ROOT/.sprint/init" "$ROOT/.sprint2"
cp "$PACK/train12.safetensors.xz" "$PACK/valid.safetensors" "$ROOT/.sprint/"
cp "$ROOT"/src/valle2/assets/models/default/{model.safetensors,config.json,symbols.json} "$ROOT/.sprint/init/"
cp "$PACK/train45.safetensors.xz" "$ROOT/.sprint2/"
du -sh "$ROOT/.sprint" "$ROOT/.sprint2"
cat "$TIMES"
