"""Does a model use its transcript yet? Teacher-forced losses with the right text and with another
utterance's text, on held-out utterances. Equal losses = the model ignores the phones (it only
continues the audio); the gap grows as it learns to align text and speech.

    python benchmarks/text_dependence.py --model MODEL_DIR --corpus /work/data/corpus [--n 16]

Prints one JSON line: AR loss (codebook 0) and NAR loss (codebook 1, prompt = first third of the
same utterance) with the true and a wrong transcript, and their differences.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", required=True)
    ap.add_argument("--corpus", type=Path, required=True)
    ap.add_argument("--split", default="held-out")
    ap.add_argument("--n", type=int, default=16)
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)

    from valle2 import VallE2
    from valle2.audio import load_audio
    from valle2.eval.lists import from_lhotse, spaced_subset
    from valle2.generation.ar_decode import pad_text
    from valle2.models.grouping import clip_to_groups

    m = VallE2.from_pretrained(args.model).eval()
    utts = from_lhotse(args.corpus / f"synth_recordings_{args.split}.jsonl.gz",
                       args.corpus / f"synth_supervisions_{args.split}.jsonl.gz")
    utts = spaced_subset(utts, args.n)
    fe = m.frontend()
    data = []
    for u in utts:
        wav, _ = load_audio(u.audio, target_sr=m.sample_rate)
        data.append((torch.tensor(fe.encode(u.text) + [m.symbols.eos_id]), m.codec.encode(wav, m.sample_rate)))

    def losses(shift: int) -> tuple[float, float]:
        ar, nar = [], []
        for i, (_, codes) in enumerate(data):
            text, valid = pad_text([data[(i + shift) % len(data)][0]])
            K, T = codes.shape
            with torch.inference_mode():
                nl, _ = m.nar.loss(text, valid, codes[None], torch.tensor([T]), stage=torch.tensor([1]),
                                   prompt_lens=torch.tensor([T // 3]))
                c = clip_to_groups(codes, m.config.group_size)
                al, _ = m.ar.loss(text, valid, c[0][None], torch.tensor([c.shape[1]]))
            ar.append(al.item())
            nar.append(nl.item())
        return sum(ar) / len(ar), sum(nar) / len(nar)

    (ar_t, nar_t), (ar_w, nar_w) = losses(0), losses(len(data) // 3 or 1)
    print(json.dumps({"model": args.model, "n": len(data), "ar_true": round(ar_t, 4), "ar_wrong": round(ar_w, 4),
                      "ar_gap": round(ar_w - ar_t, 4), "nar_true": round(nar_t, 4), "nar_wrong": round(nar_w, 4),
                      "nar_gap": round(nar_w - nar_t, 4)}))


if __name__ == "__main__":
    main()
