# ONE-OFF EXPERIMENT (session 3, 2026-11-26), kept so that the figures in RESULTS.md can be
# reproduced: run inside a tokens folder (cd /work/data/demo2/tokens/train); no tests.
"""How predictable is codebook j from codebook 0, with and without knowing the speaker?
Majority vote of a lookup table fitted on 80 % of the utterances of 6 shards, scored on the rest."""
import collections
import glob
import gzip
import json

import numpy as np
from safetensors.torch import load_file

rows = []
for sh in sorted(glob.glob('shards/*.safetensors'))[:6]:
    t = load_file(sh)
    cuts = [json.loads(line) for line in gzip.open(sh.replace('.safetensors', '.cuts.jsonl.gz'), 'rt')]
    for i, c in enumerate(cuts):
        rows.append((c['supervisions'][0]['speaker'], t[f'{i}.codes'].long().numpy()))
rng = np.random.default_rng(0)
rng.shuffle(rows)
fit, ev = rows[: len(rows) * 4 // 5], rows[len(rows) * 4 // 5:]


def key(ctx, spk, codes, t):
    if ctx == 'cb0':
        return (codes[0, t],)
    if ctx == 'spk+cb0':
        return (spk, codes[0, t])
    return (spk, codes[0, t], codes[0, t - 1] if t else -1)


for ctx in ('cb0', 'spk+cb0', 'spk+cb0+cb0prev'):
    for j in (1, 2):
        counts = collections.defaultdict(collections.Counter)
        for spk, codes in fit:
            for t in range(codes.shape[1]):
                counts[key(ctx, spk, codes, t)][codes[j, t]] += 1
        hit = tot = 0
        for spk, codes in ev:
            for t in range(codes.shape[1]):
                c = counts.get(key(ctx, spk, codes, t))
                if c:
                    hit += c.most_common(1)[0][0] == codes[j, t]
                tot += 1
        print(ctx, f'cb{j}', 'majority acc', round(hit / tot, 3), 'frames', tot, flush=True)
