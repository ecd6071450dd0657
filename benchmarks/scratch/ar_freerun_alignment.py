"""Where does the AR look while it generates? Free-running attention of one aligned head.

    python benchmarks/scratch/ar_freerun_alignment.py --model M --corpus C --layer L --head H [--n 10]

For prompt/target pairs of held-out utterances of the same voice: at every AR step, the text
position (argmax of the head's attention over the text block) relative to the target text.
Reports how far into the target text the head got before EOS (1.0 = the last phone), how
often it moved backwards, the output/ground-truth length ratio, and the teacher-forced run's
figures on the same layout for comparison.
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
    ap.add_argument("--layer", type=int, required=True)
    ap.add_argument("--head", type=int, required=True)
    ap.add_argument("--n", type=int, default=10)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--top-p", type=float, default=None)
    ap.add_argument("--temperature", type=float, default=None)
    args = ap.parse_args()
    torch.set_num_threads(2)

    from valle2 import VallE2
    from valle2.eval.lists import from_lhotse
    from valle2.modules import transformer as tr

    m = VallE2.from_pretrained(args.model).eval()
    utts = sorted(from_lhotse(args.corpus / "synth_recordings_held-out.jsonl.gz",
                              args.corpus / "synth_supervisions_held-out.jsonl.gz"), key=lambda u: u.id)
    by_voice: dict[str, list] = {}
    for u in utts:
        by_voice.setdefault(u.speaker, []).append(u)
    pairs = []
    for i in range(args.n):
        us = list(by_voice.values())[i % len(by_voice)]
        k = i // len(by_voice)
        pairs.append((us[(7 * k) % len(us)], us[(7 * k + 3) % len(us)]))
    trace: list[torch.Tensor] = []
    capture = {"on": False, "layer": 0}

    def attn(self, x, mask, cache=None, start=0):
        B, L, D = x.shape
        q, k, v = self.qkv(x).view(B, L, 3, self.n_heads, D // self.n_heads).permute(2, 0, 3, 1, 4)
        if cache is not None:
            k, v = cache.update(start, k, v)
        s = (q @ k.transpose(-1, -2)) / (q.shape[-1] ** 0.5)
        p = s.masked_fill(~mask, float("-inf")).softmax(-1)
        if capture["on"] and L == 1:
            if capture["layer"] == args.layer:
                trace.append(p[0, args.head, 0])
            capture["layer"] = (capture["layer"] + 1) % len(m.ar.transformer.blocks)
        return self.out((p @ v).transpose(1, 2).reshape(B, L, D))

    tr.SelfAttention.forward = attn
    sampling = m.sampling_config(top_p=args.top_p, temperature=args.temperature)
    rows_out = []
    for pu, tu in pairs:
        prompt = m.prepare_prompt(pu.audio, pu.text)
        row = m.make_rows(tu.text, prompt)[0]
        trace.clear()
        capture.update(on=True, layer=0)
        res = m.generate([row], seed=args.seed, sampling=sampling)[0]
        capture["on"] = False
        ids, t0 = row.text_ids(m.symbols.separator_ids(), m.symbols.eos_id)
        S = len(ids)
        pos = torch.stack([p[:S].argmax() for p in trace]).float()  # text position per step
        rel = ((pos - t0) / max(len(row.target_ids) - 1, 1)).tolist()
        back = sum(1 for a, b in zip(rel, rel[1:]) if b < a - 0.05)
        gt_frames = round(tu.duration * m.frame_rate)
        rows_out.append({"voice": tu.speaker, "reached": round(max(rel), 3), "end": round(rel[-1], 3),
                         "back_jumps": back, "steps": len(rel), "prompt_frames": prompt.n_frames, "gt_frames": gt_frames, "total_out": prompt.n_frames + res.codes.shape[1], "len_ratio": round(res.codes.shape[1] / gt_frames, 3),
                         "hit_limit": res.hit_limit,
                         "path": [round(x, 2) for x in rel[:: max(1, len(rel) // 12)]]})
        print(json.dumps(rows_out[-1]), flush=True)
    n = len(rows_out)
    print(json.dumps({"model": args.model, "layer": args.layer, "head": args.head, "n": n,
                      "reached_mean": round(sum(r["reached"] for r in rows_out) / n, 3),
                      "len_ratio_mean": round(sum(r["len_ratio"] for r in rows_out) / n, 3),
                      "back_jumps_mean": round(sum(r["back_jumps"] for r in rows_out) / n, 2)}))


if __name__ == "__main__":
    main()
