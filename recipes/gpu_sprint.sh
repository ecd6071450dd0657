#!/usr/bin/env bash
# Two demo-model sprints side by side on one lent GPU (the model is far too small to fill it),
# a learning-rate hedge: A = lr 2e-3 with 64k-frame batches, B = lr 1e-3 with 32k-frame batches.
# usage: recipes/gpu_sprint.sh DATA_DIR OUT_DIR MINUTES [FRAMES_A FRAMES_B [MORE TRAIN ARGS, e.g. --set model.dropout=0.2]]
#   DATA_DIR holds train*.safetensors[.xz] (all are used) and valid.safetensors (recipes/gpu_sprint.py pack [--xz])
#   configs/demo.yaml trains on prompt pairs (data.pair_prob), which need packed format version 2 (speakers)
#   to continue an earlier slot's run: pass --init-from ITS_OUT/a (or a model folder) among the extra args
#   LR_A / LR_B (default 2e-3 / 1e-3) set each run's learning rate; A_ARGS / B_ARGS add train args to A / B alone,
#   e.g. LR_B=2e-3 B_ARGS="--set model.nar_progress=true" makes B an A/B test of one option
#   C_ARGS (with LR_C, default 1e-3, and FRAMES_C, default FRAMES_A) adds a third run beside them, e.g.
#   B_ARGS="--set train.models=nar" C_ARGS="--set train.models=ar": the NAR and the AR each alone, next to A's both
#   LIMIT_S (default MINUTES * 60 + 90) kills a run still going after that many seconds (its best weights stay)
#   on a CPU, preload jemalloc (LD_PRELOAD=libjemalloc.so.2): glibc's heap grows without bound with the
#   changing batch shapes (11.5 GB after 90 steps, measured)
set -u
data=$1 out=$2 minutes=$3 frames_a=${4:-64000} frames_b=${5:-32000}
shift $(( $# < 5 ? $# : 5 ))
export PYTHONPATH="$(dirname "$0")/../src${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1 OMP_NUM_THREADS=${OMP_NUM_THREADS:-4}
mkdir -p "$out/a" "$out/b"
py=${PYTHON:-python3}
shopt -s nullglob
train=("$data"/train*.safetensors "$data"/train*.safetensors.xz)  # several are joined
common=(train --config demo --train "${train[@]}"
        --valid "$data/valid.safetensors" --minutes "$minutes" --no-last --valid-every-s 45 "$@")
limit=${LIMIT_S:-$(python3 -c "print(int($minutes * 60 + 90))")}
timeout "$limit" "$py" "$(dirname "$0")/gpu_sprint.py" "${common[@]}" --set optim.lr="${LR_A:-2e-3}" --max-frames "$frames_a" \
    ${A_ARGS:-} --out "$out/a" >"$out/a.log" 2>&1 &
timeout "$limit" "$py" "$(dirname "$0")/gpu_sprint.py" "${common[@]}" --set optim.lr="${LR_B:-1e-3}" --max-frames "$frames_b" ${B_ARGS:-} \
    --out "$out/b" >"$out/b.log" 2>&1 &
logs=("$out/a.log" "$out/b.log")
if [ -n "${C_ARGS:-}" ]; then
    mkdir -p "$out/c"
    timeout "$limit" "$py" "$(dirname "$0")/gpu_sprint.py" "${common[@]}" --set optim.lr="${LR_C:-1e-3}" \
        --max-frames "${FRAMES_C:-$frames_a}" $C_ARGS --out "$out/c" >"$out/c.log" 2>&1 &
    logs+=("$out/c.log")
fi
wait
tail -n 4 "${logs[@]}"
