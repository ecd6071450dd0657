"""How much intelligibility do codebook 0 and the NAR carry? With the TRUE codebook-0 codes of
held-out utterances, decode four versions and transcribe them (faster-whisper tiny.en):

- ``full``: all K true codes (the codec's own resynthesis);
- ``cb0_mean``: codebook 0 + the mean entry of every later codebook (what codebook 0 alone says);
- ``nar``: codebooks 1..K-1 from the model's NAR, greedy (what synthesis does);
- ``nar_soft``: the NAR's expected entry per codebook (probability-weighted mean of the
  centroids; valle2-mel only).
- ``nar_med``: minimum-expected-distortion codes: per codebook, the centroid nearest to the
  NAR's expected entry (the Bayes choice under squared error, where greedy takes the most
  probable code), each stage conditioned on the codes chosen before it.
- ``cb01_true``: true codebooks 0 and 1 + the mean entry of the rest (how much a NAR that got
  only codebook 1 right would give).
- with a phonetic codebook 0 (valle2-mel-v2), two decoders that skip the NAR, to separate the
  AR's errors from the NAR's: each codebook-0 entry is replaced by the mean log-mel of the
  ``--knn`` prompt frames nearest to its centroid in the recogniser's feature space (kNN-VC
  style, Baas et al. 2023): ``knn_prompt`` on the TRUE codebook 0, ``ar_knn`` on the codebook 0
  the AR generates for the text (model's default sampling, seed = item), and ``ar_full`` =
  the model's own synthesis of the same sample (AR + NAR + vocoder, decoded as the model decodes
  but without the post-filter); ``ar_mean``: the AR's
  codebook 0 + the mean entry of every later codebook. ``ar_length_ratio``: generated frames /
  the true utterance's frames (below 1: the AR ends early).

The NAR's acoustic prompt is another utterance of the same voice, with its transcript.

    python benchmarks/nar_oracle.py --model MODEL_DIR --corpus /work/data/corpus \\
        --voices flite:awb espeak:en-us+quincy --per-voice 6
"""

from __future__ import annotations

import argparse
import json
from dataclasses import replace
from pathlib import Path

import torch


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", required=True)
    ap.add_argument("--corpus", type=Path, required=True)
    ap.add_argument("--split", default="held-out")
    ap.add_argument("--voices", nargs="+", default=["flite:awb", "espeak:en-us+quincy"])
    ap.add_argument("--per-voice", type=int, default=6)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--knn", type=int, default=4, help="prompt frames averaged per codebook-0 entry")
    ap.add_argument("--nar-decoding", choices=["greedy", "min_distortion", "expected"], default=None,
                    help="the NAR decoding of ar_full (the model's own synthesis); default: the model's")
    ap.add_argument("--nar-temperature", type=float, nargs="+", default=None,
                    help="sharpening of min-distortion decoding (nar_med, ar_full; default: the model's); "
                         "K-1 values: one per codebook 1..K-1, for nar_med only")
    ap.add_argument("--nar-weight", type=float, default=None,
                    help="share of the NAR's residual that ar_full decodes (default: the model's)")
    ap.add_argument("--top-p", type=float, default=None, help="AR sampling of ar_* (default: the model's)")
    ap.add_argument("--temperature", type=float, default=None)
    ap.add_argument("--sim", action="store_true",
                    help="also the resemblyzer cosine of each output to its prompt, per voice (where the voice is lost)")
    ap.add_argument("--min-ratio", type=float, default=None,
                    help="the AR may not end before this fraction of the expected length (default: the model's)")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)

    from valle2 import VallE2
    from valle2.audio import load_audio
    from valle2.eval.asr import get_asr
    from valle2.eval.lists import from_lhotse
    from valle2.eval.wer import wer_details
    from valle2.generation.ar_decode import pad_text
    from valle2.generation.nar_decode import pick_codes
    from valle2.generation.pipeline import Row

    m = VallE2.from_pretrained(args.model).eval()
    m.sampling = m.sampling_config(top_p=args.top_p, temperature=args.temperature, nar_decoding=args.nar_decoding,
                                  nar_weight=args.nar_weight,
                                  nar_temperature=args.nar_temperature[0] if args.nar_temperature and
                                  len(args.nar_temperature) == 1 else None)
    if args.min_ratio is not None:
        m.length = replace(m.length, min_ratio=args.min_ratio)
    codec, sr = m.codec, m.sample_rate
    if not hasattr(codec, "codebooks"):
        raise SystemExit("this diagnostic needs the valle2-mel codec (explicit centroids)")
    C = codec.codebooks  # (K, V, n_mels)
    per_codebook = [m.sampling.nar_temperature] * (C.shape[0] - 1)
    if args.nar_temperature and len(args.nar_temperature) > 1:
        if len(args.nar_temperature) != C.shape[0] - 1:
            raise SystemExit(f"--nar-temperature takes 1 or {C.shape[0] - 1} values, not {len(args.nar_temperature)}")
        per_codebook = args.nar_temperature
    utts = from_lhotse(args.corpus / f"synth_recordings_{args.split}.jsonl.gz",
                       args.corpus / f"synth_supervisions_{args.split}.jsonl.gz")
    asr = get_asr("faster-whisper", cpu_threads=args.threads)
    kinds = ["full", "cb0_mean", "cb01_true", "nar", "nar_soft", "nar_med"]
    phonetic = getattr(codec, "phonetic", None) is not None
    if phonetic:
        kinds += ["knn_prompt", "ar_knn", "ar_full", "ar_mean"]
    lengths = {"true": 0, "ar": 0}
    refs, hyps = [], {k: [] for k in kinds}
    sims: dict = {}  # voice -> kind -> cosines to the prompt
    if args.sim:
        from valle2.eval.speaker import cosine, get_speaker_encoder

        spk = get_speaker_encoder("resemblyzer")

    def vocode(mel):  # (T, n_mels) -> waveform
        with torch.inference_mode():
            return codec.vocoder(mel.T[None].float())[0].clamp(-1, 1).numpy()

    for voice in args.voices:
        us = sorted((u for u in utts if u.speaker == voice), key=lambda u: u.id)[: args.per_voice + 1]
        if len(us) < 2:
            raise SystemExit(f"voice {voice} has fewer than 2 utterances in {args.split}")
        p, targets = us[0], us[1:]
        pwav, _ = load_audio(p.audio, target_sr=sr)
        prompt = m.prepare_prompt((pwav, sr), p.text)
        if args.sim:
            prompt_emb = spk.embed(pwav, sr)
            sims[voice] = {k: [] for k in kinds}
        if phonetic:  # the prompt's own log-mel for each codebook-0 entry (kNN in feature space)
            from valle2.codec.phonetic import knn_entries

            table = knn_entries(codec.phonetic, codec.phone_centroids, [codec.mel(pwav, sr)], args.knn)  # (V, n_mels)
        for n, u in enumerate(targets):
            wav, _ = load_audio(u.audio, target_sr=sr)
            codes = codec.encode(wav, sr)
            K, T = codes.shape
            ids, lead = Row(prompt, m.frontend().encode(u.text)).text_ids(m.symbols.separator_ids(), m.symbols.eos_id)
            text, valid = pad_text([torch.tensor(ids)])  # the text as synthesis lays it out
            P = prompt.codes.shape[1]
            split = (torch.tensor([lead]), torch.tensor([P]))  # segments (progress encodings)
            allc = torch.zeros(1, K, P + T, dtype=torch.long)
            allc[0, :, :P], allc[0, 0, P:] = prompt.codes, codes[0]
            soft = C[0][codes[0]].clone()
            med = allc.clone()
            with torch.inference_mode():
                for j in range(1, K):
                    logits = m.nar(text, valid, allc, torch.tensor([P]), torch.tensor([P + T]), torch.tensor([j]), *split)[0, P:]
                    allc[0, j, P:] = logits.argmax(-1)
                    soft += logits.float().softmax(-1) @ C[j]
                    logits = m.nar(text, valid, med, torch.tensor([P]), torch.tensor([P + T]), torch.tensor([j]), *split)[0, P:]
                    med[0, j, P:] = pick_codes(logits, C[j], per_codebook[j - 1])
            mean_rest = sum(C[j].mean(0) for j in range(1, K))
            outs = {"full": codec.decode(codes), "cb0_mean": vocode(C[0][codes[0]] + mean_rest),
                    "cb01_true": vocode(C[0][codes[0]] + C[1][codes[1]] + sum(C[j].mean(0) for j in range(2, K))),
                    "nar": codec.decode(allc[0, :, P:]), "nar_soft": vocode(soft),
                    "nar_med": codec.decode(med[0, :, P:])}
            if phonetic:
                outs["knn_prompt"] = vocode(table[codes[0]])
                results = m.generate(m.make_rows(u.text, prompt), seed=n)
                gen = torch.cat([r.codes for r in results], dim=1)
                outs["ar_knn"] = vocode(table[gen[0]])
                # as the model decodes (expected entries, nar_weight), without the post-filter
                residuals = m.residuals(results, m.sampling, prompts=[prompt.codes] * len(results))
                outs["ar_full"] = codec.decode(gen, residual=None if residuals is None else torch.cat(residuals, dim=1))
                outs["ar_mean"] = vocode(C[0][gen[0]] + mean_rest)
                lengths["true"] += T
                lengths["ar"] += gen.shape[1]
            refs.append(u.text)
            for k in kinds:
                hyps[k].append(asr.transcribe(outs[k], sr))
                if args.sim:
                    sims[voice][k].append(cosine(spk.embed(outs[k], sr), prompt_emb))
    extra = {"ar_length_ratio": round(lengths["ar"] / max(1, lengths["true"]), 3)} if phonetic else {}
    print(json.dumps({"model": args.model, "sampling": m.sampling.to_dict(), "min_ratio": m.length.min_ratio, **extra, "utterances": len(refs), "voices": args.voices,
                      **{f"wer_{k}": round(wer_details(refs, hyps[k]).wer, 3) for k in kinds}}))
    for voice, by_kind in sims.items():
        print(json.dumps({"voice": voice, **{f"sim_{k}": round(sum(v) / len(v), 3) for k, v in by_kind.items()}}))


if __name__ == "__main__":
    main()
