"""Does the NAR take the voice from its prompt? Teacher-forced NAR losses on held-out utterances
with a prompt from the SAME voice (another utterance) and from ANOTHER voice.

The NAR must add the speaker's detail to codebook 0 (which, in valle2-mel-v2, is mostly
speaker-independent): if it reads the prompt, the same-voice prompt gives the lower loss.

    python benchmarks/prompt_dependence.py --model MODEL_DIR --corpus /work/data/corpus [--n 20]

Prints one JSON line: mean NAR loss and accuracy over codebooks 1..K-1 for both prompts, and the
loss gap (other - same). Prompt: the first ``--prompt-seconds`` of the other utterance, with its
transcript before the target's (as at synthesis).
"""

from __future__ import annotations

import argparse
import json
from collections import defaultdict
from pathlib import Path

import torch


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", required=True)
    ap.add_argument("--corpus", type=Path, required=True)
    ap.add_argument("--split", default="held-out")
    ap.add_argument("--n", type=int, default=20)
    ap.add_argument("--prompt-seconds", type=float, default=3.0)
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)

    from valle2 import VallE2
    from valle2.audio import load_audio
    from valle2.eval.lists import from_lhotse
    from valle2.generation.ar_decode import pad_text

    m = VallE2.from_pretrained(args.model).eval()
    utts = sorted(from_lhotse(args.corpus / f"synth_recordings_{args.split}.jsonl.gz",
                              args.corpus / f"synth_supervisions_{args.split}.jsonl.gz"), key=lambda u: u.id)
    by_voice = defaultdict(list)
    for u in utts:
        by_voice[u.speaker].append(u)
    voices = sorted(by_voice)
    if len(voices) < 2:
        raise SystemExit("needs at least two voices")
    fe, sr = m.frontend(), m.sample_rate
    cache = {}

    def item(u):
        if u.id not in cache:
            wav, _ = load_audio(u.audio, target_sr=sr)
            cache[u.id] = (fe.encode(u.text), m.codec.encode(wav, sr))
        return cache[u.id]

    P = int(args.prompt_seconds * m.frame_rate)
    K = m.codec.n_codebooks
    res = {"same": [], "other": []}
    for i in range(args.n):
        v = voices[i % len(voices)]
        pool = by_voice[v]
        target, same = pool[(2 * i) % len(pool)], pool[(2 * i + 1) % len(pool)]
        other_pool = by_voice[voices[(i + 1 + i // len(voices)) % len(voices)]]
        if voices[(i + 1 + i // len(voices)) % len(voices)] == v:
            other_pool = by_voice[voices[(i + 1) % len(voices)]]
        other = other_pool[i % len(other_pool)]
        t_ids, t_codes = item(target)
        for kind, prompt in (("same", same), ("other", other)):
            p_ids, p_codes = item(prompt)
            p_codes = p_codes[:, :P]
            codes = torch.cat([p_codes, t_codes], dim=1)[None]
            text, valid = pad_text([torch.tensor(p_ids + t_ids + [m.symbols.eos_id])])
            losses, accs = [], []
            with torch.inference_mode():
                for j in range(1, K):
                    loss, stats = m.nar.loss(text, valid, codes, torch.tensor([codes.shape[-1]]),
                                           stage=torch.tensor([j]), prompt_lens=torch.tensor([p_codes.shape[1]]))
                    losses.append(loss.item())
                    accs.append(float(stats["nar_acc"]))
            res[kind].append((sum(losses) / len(losses), sum(accs) / len(accs)))
    out = {"model": args.model, "n": args.n}
    for kind, rows in res.items():
        out[f"nar_loss_{kind}"] = round(sum(r[0] for r in rows) / len(rows), 4)
        out[f"nar_acc_{kind}"] = round(sum(r[1] for r in rows) / len(rows), 4)
    out["loss_gap"] = round(out["nar_loss_other"] - out["nar_loss_same"], 4)
    print(json.dumps(out))


if __name__ == "__main__":
    main()
