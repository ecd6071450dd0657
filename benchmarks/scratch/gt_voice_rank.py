# ONE-OFF EXPERIMENT (session 7, 2026-11-26), kept so that the figures in RESULTS.md can be
# reproduced; no tests. demo_bars.py now reports the same figures itself for new runs; this
# script scores the bar runs made before it did (their items.jsonl + audio).
"""The voice bars on the ground truth, and whose prompt each output is nearest to.

    python benchmarks/scratch/gt_voice_rank.py BARS_DIR [--corpus /work/data/corpus_eval]
"""
import argparse
import collections
import json
import sys
from pathlib import Path

import numpy as np
import soundfile as sf

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from demo_bars import held_out_utterances, load_span  # noqa: E402

from valle2.audio import load_audio  # noqa: E402
from valle2.eval.speaker import cosine, get_speaker_encoder  # noqa: E402

ap = argparse.ArgumentParser()
ap.add_argument("bars", type=Path)
ap.add_argument("--corpus", type=Path, default=Path("/work/data/corpus_eval"))
args = ap.parse_args()
summary = json.loads((args.bars / "summary.json").read_text())
utts = {u.id: u for u in held_out_utterances(args.corpus, summary.get("split", "held-out"))}
spk, sr = get_speaker_encoder("resemblyzer"), 24000
prompt_emb = {v: spk.embed(load_span(utts[d["prompt_id"]], sr), sr) for v, d in summary["voices"].items()}
rows = [json.loads(line) for line in open(args.bars / "items.jsonl")]


def score(wav, voice):
    sims = {v: cosine(spk.embed(wav, sr), e) for v, e in prompt_emb.items()}
    return sims[voice], sims[voice] > max(s for v, s in sims.items() if v != voice), max(sims, key=sims.get)


gt, model = collections.defaultdict(list), collections.defaultdict(list)
for r in rows:
    wav = load_span(utts[r["ref"]], sr) if r["set"] == "corpus" else load_audio(r["ref"], target_sr=sr)[0]
    if len(wav) >= sr // 2:
        gt[r["voice"]].append(score(wav, r["voice"]))
    out, _ = sf.read(args.bars / "audio" / r["audio"], dtype="float32")
    if len(out) >= sr // 2:
        model[r["voice"]].append(score(out, r["voice"]))
for name, res in (("ground truth", gt), ("model", model)):
    every = [x for v in res for x in res[v]]
    print(f"{name}: SIM {np.mean([s for s, _, _ in every]):.3f} rank-correct {np.mean([c for _, c, _ in every]):.2f}")
    for v in sorted(res):
        print(f"  {v:24s} SIM {np.mean([s for s, _, _ in res[v]]):.3f} rank {np.mean([c for _, c, _ in res[v]]):.2f} "
              f"nearest {dict(collections.Counter(n for _, _, n in res[v]))}")
