"""Does the int8 AR (``ar_precision="int8"``) predict what the fp32 AR predicts, on real speech?

    python benchmarks/scratch/int8_ar_check.py --model default --corpus /work/data/corpus_eval [--n 40]

Teacher-forced, in the inference layout (prompt = another 3-5 s utterance of the same voice,
then the target; only the target's code predictions are scored), both ARs on the same held-out
utterances: codebook-0 cross-entropy and accuracy, the mean KL(fp32 || int8) of the next-code
distributions, and how often their top choices agree. The last line printed is JSON.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # benchmarks/
from demo_bars import held_out_utterances  # noqa: E402
from scratch.ar_alignment import layout, spaced  # noqa: E402  (the inference layout, shared)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", default="default")
    ap.add_argument("--corpus", type=Path, required=True)
    ap.add_argument("--split", default="held-out")
    ap.add_argument("--n", type=int, default=40)
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)

    from valle2 import VallE2
    from valle2.generation.ar_decode import pad_text
    from valle2.generation.pipeline import quantize_ar

    m = VallE2.from_pretrained(args.model).eval()
    ars = {"fp32": m.ar, "int8": quantize_ar(m.ar)}
    everyone = sorted(held_out_utterances(args.corpus, args.split), key=lambda u: u.id)
    utts = spaced(everyone, args.n)
    loss = {k: 0.0 for k in ars}
    correct = {k: 0 for k in ars}
    kl_sum, agree, count = 0.0, 0, 0
    for u in utts:
        ids, codes, _, p_groups = layout(m, u, everyone)
        text, valid = pad_text([ids])
        logp = {}
        with torch.inference_mode():
            tokens, code_valid, targets = m.ar.training_inputs(codes[0][None], torch.tensor([codes.shape[1]]))
            tgt = targets[0, p_groups:].flatten()
            keep = tgt != -100
            for k, ar in ars.items():
                lg = ar(text, valid, tokens, code_valid)[0, p_groups:].flatten(0, 1).float()[keep]
                logp[k] = lg.log_softmax(-1)
                loss[k] += F.nll_loss(logp[k], tgt[keep], reduction="sum").item()
                correct[k] += int((lg.argmax(-1) == tgt[keep]).sum())
        kl_sum += float((logp["fp32"].exp() * (logp["fp32"] - logp["int8"])).sum())
        agree += int((logp["fp32"].argmax(-1) == logp["int8"].argmax(-1)).sum())
        count += int(keep.sum())
    out = {"model": args.model, "utterances": len(utts), "codes": count,
           **{f"{k}_loss": round(loss[k] / count, 4) for k in ars},
           **{f"{k}_acc": round(correct[k] / count, 4) for k in ars},
           "kl_fp32_int8": round(kl_sum / count, 5), "top1_agreement": round(agree / count, 4)}
    print(json.dumps(out))


if __name__ == "__main__":
    main()
