#!/usr/bin/env bash
# The demo bars over many seeds: one benchmarks/demo_bars.py run per seed, JOBS at a time (one torch thread each),
# then benchmarks/bars_summary.py over them.
# usage: benchmarks/bars_seeds.sh MODEL CORPUS OUT_PREFIX "SEEDS" [demo_bars.py args...]
#   e.g. benchmarks/bars_seeds.sh default /work/data/corpus_eval runs/bars/new "0 1 2 3 4 10 11 12 13" --sets natural
#   writes OUT_PREFIX_sS/ (and OUT_PREFIX_sS.log) for each seed S; BASE="OLD_PREFIX" adds the paired comparison
#   against OLD_PREFIX_sS. JOBS (default 2) runs at once; PYTHON (default .venv/bin/python, else python3).
set -euo pipefail
[ $# -ge 4 ] || { sed -n '2,7p' "$0" >&2; exit 2; }
model=$1 corpus=$2 prefix=$3 seeds=$4
shift 4
root="$(cd "$(dirname "$0")/.." && pwd)"
py=${PYTHON:-$([ -x "$root/.venv/bin/python" ] && echo "$root/.venv/bin/python" || echo python3)}
export PYTHONPATH="$root/src${PYTHONPATH:+:$PYTHONPATH}"
if [ -z "${LD_PRELOAD:-}" ] && ldconfig -p 2>/dev/null | grep -q libjemalloc.so.2; then
    export LD_PRELOAD=libjemalloc.so.2  # glibc's heap grows with the changing shapes
fi
mkdir -p "$(dirname "$prefix")"
failed=0
printf '%s\n' $seeds | xargs -P "${JOBS:-2}" -I{} bash -c '"$0" "$1"/benchmarks/demo_bars.py --model "$2" --corpus "$3" \
    --per-voice 6 --threads 1 --seed {} "${@:5}" --out "$4"_s{} > "$4"_s{}.log 2>&1 || { echo "seed {} failed: see $4_s{}.log" >&2; exit 1; }' \
    "$py" "$root" "$model" "$corpus" "$prefix" "$@" || failed=1
runs=() base=()
for s in $seeds; do
    [ -f "${prefix}_s$s/summary.json" ] && runs+=("${prefix}_s$s") && [ -n "${BASE:-}" ] && base+=("${BASE}_s$s")
done
[ ${#runs[@]} -gt 0 ] || { echo "no seed finished" >&2; exit 1; }
"$py" "$root/benchmarks/bars_summary.py" "${runs[@]}" ${BASE:+--base "${base[@]}"}
exit $failed
