"""Scratch: does a prompt-matched log-mel post-filter (mean and/or global variance, per mel bin)
before the vocoder win back voice or words? Synthesises demo_bars' items once (same seeds and
sampling as demo_bars), keeps the codes, then decodes them with each filter and scores them
(faster-whisper WER, resemblyzer SIM and rank against the five prompts). No watermark on any
variant, so they compare with each other, not with demo_bars' figures.

    python benchmarks/scratch/postfilter.py --model M --corpus /work/data/corpus_eval --out DIR [--seed S]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import demo_bars as db  # noqa: E402


def speech_frames(mel: torch.Tensor, q: float = 0.3) -> torch.Tensor:
    e = mel.mean(0)
    return e >= torch.quantile(e, q)


def stats(mel: torch.Tensor, mask=None):
    m = speech_frames(mel) if mask is None else mask
    x = mel[:, m]
    return x.mean(1, keepdim=True), x.std(1, keepdim=True)


def post_filter(mel: torch.Tensor, ref: torch.Tensor, alpha: float, beta: float, gmax: float = 2.0,
                mask_o=None, mask_r=None, gmin=None) -> torch.Tensor:
    mu_o, sd_o = stats(mel, mask_o)
    mu_p, sd_p = stats(ref, mask_r)
    gain = (sd_p / sd_o.clamp(min=1e-3)).clamp(1 / gmax if gmin is None else gmin, gmax) ** beta
    return mu_o + (mel - mu_o) * gain + alpha * (mu_p - mu_o)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default="default")
    ap.add_argument("--corpus", type=Path, required=True)
    ap.add_argument("--per-voice", type=int, default=6)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--variants", nargs="+", default=["0,0", "1,0", "0,1", "1,1", "0.5,0.5", "1,0.5"])
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    from valle2 import VallE2
    from valle2.audio import crossfade_concat, load_audio
    from valle2.eval.asr import get_asr
    from valle2.eval.speaker import cosine, get_speaker_encoder
    from valle2.eval.wer import char_error_rate, wer_details

    args.out.mkdir(parents=True, exist_ok=True)
    model = VallE2.from_pretrained(args.model)
    model.eval()
    sr = model.sample_rate
    codec = model.codec
    chosen = db.pick(db.held_out_utterances(args.corpus, "held-out"), args.per_voice, args.seed)
    sampling = model.sampling_config()
    voices = sorted(chosen)
    prompts = {v: model.prepare_prompt((db.load_span(chosen[v][0], sr), sr), chosen[v][0].text) for v in voices}
    sentences = db.read_sentences(db.HERE / "data" / "robustness_sentences.txt")
    todo = [("natural", voices[i % len(voices)], t) for i, t in enumerate(sentences)]
    todo += [("corpus", v, u.text) for v in voices for u in chosen[v][1]]

    cache = args.out / "codes.pt"
    if cache.exists():
        items = torch.load(cache)
    else:
        items = []
        for i, (kind, voice, text) in enumerate(todo):
            rows = model.make_rows(text, prompts[voice])
            res = model.generate(rows, seed=args.seed + i, sampling=sampling)
            items.append({"set": kind, "voice": voice, "text": text, "codes": [r.codes for r in res]})
            print(f"[{i + 1}/{len(todo)}]", flush=True)
        torch.save(items, cache)

    asr = get_asr("faster-whisper")
    spk = get_speaker_encoder("resemblyzer")
    prompt_emb = {v: spk.embed(prompts[v].wav, prompts[v].sr) for v in voices}
    ref_q = {v: codec.dequantize(prompts[v].codes) for v in voices}
    ref_t = {v: codec.mel(prompts[v].wav, prompts[v].sr) for v in voices}

    results = {}
    for variant in args.variants:
        src = "t" if variant.endswith("t") else "q"
        resid = variant.endswith("r")  # filter only the NAR's part (codebooks 1..K-1), not codebook 0
        mres = variant.endswith("m")  # the mean shift measured on the residuals (content-free), GV on the mel
        expand = variant.endswith("e")  # GV gain >= 1 only
        parts = [float(x) for x in variant.rstrip("trme").split(",")]
        alpha, beta, gmax = (parts + [2.0])[:3]
        rows = []
        for it in items:
            ref = (ref_t if src == "t" else ref_q)[it["voice"]]
            pieces = []
            for c in it["codes"]:
                mel = codec.dequantize(c)
                if resid:
                    pc = prompts[it["voice"]].codes
                    base, pbase = codec.dequantize(c[:1]), codec.dequantize(pc[:1])
                    pmel = codec.dequantize(pc)
                    mel = base + post_filter(mel - base, pmel - pbase, alpha, beta, gmax,
                                             speech_frames(mel), speech_frames(pmel))
                elif mres:
                    pc = prompts[it["voice"]].codes
                    base, pbase = codec.dequantize(c[:1]), codec.dequantize(pc[:1])
                    pmel = codec.dequantize(pc)
                    mo, mp = speech_frames(mel), speech_frames(pmel)
                    shift = stats(pmel - pbase, mp)[0] - stats(mel - base, mo)[0]
                    mel = post_filter(mel, pmel, 0.0, beta, gmax) + alpha * shift
                elif alpha or beta:
                    if expand:
                        mel = post_filter(mel, ref, alpha, beta, gmax, gmin=1.0)
                    else:
                        mel = post_filter(mel, ref, alpha, beta, gmax)
                with torch.inference_mode():
                    pieces.append(codec.vocoder(mel[None])[0].clamp(-1, 1).numpy())
            wav = crossfade_concat(pieces, sr, crossfade_ms=30.0)
            hyp = asr.transcribe(wav, sr)
            e = spk.embed(wav, sr)
            sims = {v: cosine(e, prompt_emb[v]) for v in voices}
            other = max(s for v, s in sims.items() if v != it["voice"])
            rows.append({"set": it["set"], "voice": it["voice"], "text": it["text"], "hyp": hyp,
                         "sim": sims[it["voice"]], "rank": sims[it["voice"]] > other,
                         "wer": wer_details(it["text"], hyp).wer})
        summ = {}
        for k in ("natural", "corpus"):
            sub = [r for r in rows if r["set"] == k]
            summ[k] = {"wer": wer_details([r["text"] for r in sub], [r["hyp"] for r in sub]).wer,
                       "wer_capped": statistics.mean(min(r["wer"], 1) for r in sub),
                       "cer": char_error_rate([r["text"] for r in sub], [r["hyp"] for r in sub])}
        summ["sim"] = statistics.mean(r["sim"] for r in rows)
        summ["rank"] = statistics.mean(r["rank"] for r in rows)
        summ["per_voice_sim"] = {v: round(statistics.mean(r["sim"] for r in rows if r["voice"] == v), 3) for v in voices}
        summ["per_voice_rank"] = {v: round(statistics.mean(r["rank"] for r in rows if r["voice"] == v), 3) for v in voices}
        results[variant] = summ
        print(variant, json.dumps(summ), flush=True)
        with open(args.out / f"items_{variant}.jsonl", "w") as f:
            for r in rows:
                f.write(json.dumps(r) + "\n")
    (args.out / "summary.json").write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
