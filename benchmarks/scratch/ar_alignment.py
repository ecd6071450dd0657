"""Does the AR align codes to phones? Teacher-forced attention from code queries to text keys.

    python benchmarks/scratch/ar_alignment.py --model MODEL_DIR --corpus CORPUS [--n 12]

Per layer and head: the attention mass code queries put on the text block, and how diagonal
the text part is: the Spearman correlation between a code position and the text position it
attends most, and the mean |expected text position / S - code position / N| (0 = diagonal).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch
import torch.nn.functional as F

from valle2.eval.lists import spaced_subset as spaced  # shared with text_dependence.py


def layout(m, u, everyone: list | None = None):
    """Teacher-forcing input for utterance ``u``: phone ids (with the text EOS) and codes (K, T).

    With ``everyone`` (its split's utterances), in the inference layout: another 3-5 s utterance
    of the same voice first, its text and the word boundary before ``u``'s, its codes before
    ``u``'s. Returns ids, codes, the prompt's phone count and the prompt's code groups (0, 0 alone).
    """
    from valle2.audio import load_audio
    from valle2.models.grouping import clip_to_groups

    fe, G = m.frontend(), m.config.group_size
    wav, _ = load_audio(u.audio, target_sr=m.sample_rate)
    ids = torch.tensor(fe.encode(u.text) + [m.symbols.eos_id])
    codes = clip_to_groups(m.codec.encode(wav, m.sample_rate), G)
    if everyone is None:
        return ids, codes, 0, 0
    pu = next(x for x in everyone if x.speaker == u.speaker and x.id != u.id and 3 <= x.duration <= 5)
    pw, _ = load_audio(pu.audio, target_sr=m.sample_rate)
    pc = clip_to_groups(m.codec.encode(pw, m.sample_rate), G)
    p_ids = fe.encode(pu.text) + m.symbols.separator_ids()
    return torch.cat([torch.tensor(p_ids), ids]), torch.cat([pc, codes], dim=1), len(p_ids), pc.shape[1] // G


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", required=True)
    ap.add_argument("--corpus", type=Path, required=True)
    ap.add_argument("--split", default="held-out")
    ap.add_argument("--n", type=int, default=12)
    ap.add_argument("--concat", action="store_true",
                    help="inference layout: another utterance of the same voice as prompt (text + sep + text, codes ++ codes); "
                         "scores only the second utterance's code queries")
    args = ap.parse_args()
    torch.set_num_threads(2)

    from valle2 import VallE2
    from valle2.eval.lists import from_lhotse
    from valle2.generation.ar_decode import pad_text
    from valle2.modules import transformer as tr

    m = VallE2.from_pretrained(args.model).eval()
    everyone = sorted(from_lhotse(args.corpus / f"synth_recordings_{args.split}.jsonl.gz",
                                  args.corpus / f"synth_supervisions_{args.split}.jsonl.gz"), key=lambda u: u.id)
    utts = spaced(everyone, args.n)
    probs: list[torch.Tensor] = []

    def attn(self, x, mask, cache=None, start=0):
        B, L, D = x.shape
        q, k, v = self.qkv(x).view(B, L, 3, self.n_heads, D // self.n_heads).permute(2, 0, 3, 1, 4)
        s = (q @ k.transpose(-1, -2)) / (q.shape[-1] ** 0.5)
        p = s.masked_fill(~mask, float("-inf")).softmax(-1)
        probs.append(p[0])
        return self.out((p @ v).transpose(1, 2).reshape(B, L, D))

    tr.SelfAttention.forward = attn
    n_layers, n_heads = len(m.ar.transformer.blocks), m.ar.transformer.n_heads
    losses: list[float] = []
    mass = torch.zeros(n_layers, n_heads)
    rho = torch.zeros(n_layers, n_heads)
    dev = torch.zeros(n_layers, n_heads)
    for u in utts:
        ids, codes, t0, p_groups = layout(m, u, everyone if args.concat else None)
        text, valid = pad_text([ids])
        probs.clear()
        with torch.inference_mode():
            tokens, code_valid, targets = m.ar.training_inputs(codes[0][None], torch.tensor([codes.shape[1]]))
            logits = m.ar(text, valid, tokens, code_valid)[0, p_groups:]  # the target utterance's predictions
            tgt = targets[0, p_groups:]
            losses.append(F.cross_entropy(logits.flatten(0, 1).float(), tgt.flatten(), ignore_index=-100).item())
        S = len(ids)
        for li, p in enumerate(probs):  # (H, S+C, S+C)
            pc = p[:, S + 1 + p_groups :, t0:S]  # target code queries -> target text keys  (H, N, S - t0)
            N = pc.shape[1]
            mass[li] += pc.sum(-1).mean(-1) / len(utts)
            pn = pc / pc.sum(-1, keepdim=True).clamp_min(1e-9)
            arg = pn.argmax(-1).float()  # (H, N)
            t = torch.arange(N).float()
            for h in range(n_heads):
                ra = arg[h].argsort().argsort().float()
                rt = t.argsort().argsort().float()
                rho[li, h] += torch.corrcoef(torch.stack([ra, rt]))[0, 1].nan_to_num() / len(utts)
            expect = (pn * torch.arange(S - t0).float()).sum(-1) / max(S - t0 - 1, 1)
            dev[li] += (expect - t / max(N - 1, 1)).abs().mean(-1) / len(utts)
    out = {"model": args.model, "n": len(utts), "concat": args.concat,
           "ar_target_loss": round(sum(losses) / len(losses), 4), "layers": []}
    for li in range(n_layers):
        out["layers"].append({"text_mass": [round(x, 3) for x in mass[li].tolist()],
                              "spearman": [round(x, 3) for x in rho[li].tolist()],
                              "diag_dev": [round(x, 3) for x in dev[li].tolist()]})
    print(json.dumps({k: v for k, v in out.items() if k != "layers"}))
    for li, d in enumerate(out["layers"]):
        print(li, json.dumps(d))


if __name__ == "__main__":
    main()
