# ONE-OFF EXPERIMENT (session 4, 2026-11-26), kept so that the figure in RESULTS.md can be
# reproduced; hard-coded corpus path (/work/data/corpus); no tests.
"""Fraction of frames that are leading or trailing silence (40 dB below the utterance's loudest
75 Hz frame) in the reference utterances that nar_oracle.py uses (training voices slt + david,
5 each; held-out voices awb + quincy, 6 each)."""
import numpy as np
import soundfile as sf

from valle2.eval.lists import from_lhotse

CORPUS = "/work/data/corpus"

for split, voices, n in (("train", ["flite:slt", "espeak:en-us+david"], 5),
                         ("held-out", ["flite:awb", "espeak:en-us+quincy"], 6)):
    utts = from_lhotse(f"{CORPUS}/synth_recordings_{split}.jsonl.gz", f"{CORPUS}/synth_supervisions_{split}.jsonl.gz")
    total = edge = 0
    for v in voices:
        for u in sorted((x for x in utts if x.speaker == v), key=lambda x: x.id)[1 : n + 1]:
            wav, sr = sf.read(u.audio)
            hop = sr // 75
            rms = np.array([np.sqrt(np.mean(wav[i : i + hop] ** 2) + 1e-12) for i in range(0, len(wav) - hop, hop)])
            loud = np.where(20 * np.log10(rms / rms.max()) > -40)[0]
            total += len(rms)
            edge += loud[0] + len(rms) - 1 - loud[-1]
    print(split, voices, "leading+trailing silence fraction:", round(edge / total, 3))
