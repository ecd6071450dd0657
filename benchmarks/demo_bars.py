"""The bundled demo model's bars (issue 4), measured on the corpus's held-out voices.

Two sets, single sample each, the model's default sampling, one fixed seed per item. Every
held-out voice gets one 3-10 s prompt: one of its held-out corpus utterances, with transcript.

- **natural**: the 50 varied sentences of ``benchmarks/data/robustness_sentences.txt``
  (numbers, dates, questions, very short and long ones), sentence i in held-out voice i mod 5.
  Ground truth: the same sentence rendered by that voice's own engine (espeak-ng / flite), so
  the WER of the voice itself is known.
- **corpus**: ``--per-voice`` other held-out corpus utterances per voice (the corpus grammar's
  phonetically dense sentences; many are tongue twisters); ground truth: their recordings.
- **reserved** (``--reserved N``): the two reserved voices (flite ``rms``, festival
  ``ked_diphone``; never in any corpus) read N grammar sentences each, rendered into ``OUT``
  for this run only; their prompt is another such sentence of 3-10 s. Their rank is taken
  against all prompts (held-out and reserved); the held-out rows keep the held-out prompts only.

Measures:
- WER: faster-whisper tiny.en (``valle2.eval.asr``: int8, beam 5, temperature 0), corpus-level
  after ``valle2.eval.normalize``; also the mean per-utterance WER capped at 100 %.
- SIM: resemblyzer cosine between output and its prompt; **rank-correct** when that cosine is
  higher than the output's cosine with every other held-out voice's prompt. The same two
  measures on the ground-truth audio (``ground_truth_sim_mean``, ``ground_truth_rank_correct``)
  say what a perfect clone would score with these prompts.
- robustness (on **natural**): a *runaway* is an output longer than 2x its expected duration
  (prompt speaking rate x target phones); *empty* has no audio. ``hit_limit`` counts sentences
  the AR never ended itself (the decoder's length cap, 1.8x expected, cut them).
- **RTF**: wall time of ``VallE2.synthesize_batch`` (text front end, AR, NAR, codec decode,
  watermark) / output duration, summed over all items, ``--threads`` torch threads.

Usage (what benchmarks/RESULTS.md reports)::

    python benchmarks/demo_bars.py --model default --corpus /work/data/corpus \\
        --per-voice 6 --threads 2 --out /tmp/bars

``--sets natural`` runs the everyday sentences alone (each item keeps its seed, so such a run pairs
with a full run of the same ``--seed``). One seed moves the everyday WER by ±5 points: judge a change
on nine seeds or more with ``benchmarks/bars_summary.py`` (means, standard error, paired sign test).

Outputs: ``OUT/items.jsonl`` (one row per output), ``OUT/summary.json`` and ``OUT/audio/``.
The held-out voices are synthetic engine voices of the project's own corpus, so consent is
skipped (``unsafe_no_consent``: logged, and the outputs are still watermarked).
"""

from __future__ import annotations

import argparse
import json
import platform
import random
import time
from collections import defaultdict
from pathlib import Path

import numpy as np
import soundfile as sf
import torch

HERE = Path(__file__).resolve().parent


def held_out_utterances(corpus: Path, split: str):
    from valle2.eval.lists import from_lhotse

    return from_lhotse(corpus / f"synth_recordings_{split}.jsonl.gz", corpus / f"synth_supervisions_{split}.jsonl.gz")


def pick(utts, per_voice: int, seed: int, max_voices: int | None = None):
    """Per voice: a prompt of 3-10 s and ``per_voice`` other utterances as targets (seeded)."""
    by_voice = defaultdict(list)
    for u in utts:
        by_voice[u.speaker].append(u)
    rng = random.Random(seed)
    names = sorted(by_voice)
    if max_voices is not None and max_voices < len(names):
        names = sorted(rng.sample(names, max_voices))
    chosen = {}
    for voice in names:
        us = sorted(by_voice[voice], key=lambda u: u.id)
        prompts = [u for u in us if 3.0 <= u.duration <= 10.0]
        if not prompts:
            raise SystemExit(f"voice {voice} has no 3-10 s utterance for a prompt")
        prompt = rng.choice(prompts)
        others = [u for u in us if u.id != prompt.id]
        chosen[voice] = (prompt, rng.sample(others, min(per_voice, len(others))))
    return chosen


def render_reserved_set(n: int, folder: Path) -> dict:
    """voice id -> (prompt path, prompt text, [(text, path)] x n) for the reserved voices, rendered
    into ``folder`` (evaluation only: nothing here feeds a corpus or a choice of training)."""
    from codec_resynth import render_reserved  # benchmarks/: the one renderer of the reserved voices

    out = {}
    for voice_id, utts in render_reserved(n + 6, folder, seed=4321).items():
        fits = [u for u in utts if 3.0 <= sf.info(str(u[1])).duration <= 10.0]
        if not fits:
            raise SystemExit(f"reserved voice {voice_id} rendered no 3-10 s sentence for a prompt")
        prompt = fits[0]
        out[voice_id] = (prompt[1], prompt[0], [u for u in utts if u is not prompt][:n])
    return out


def read_sentences(path: Path) -> list[str]:
    lines = [ln.strip() for ln in path.read_text().splitlines()]
    return [ln for ln in lines if ln and not ln.startswith("#")]


def load_span(u, sr: int) -> np.ndarray:
    from valle2.audio import load_audio

    wav, _ = load_audio(u.audio, target_sr=sr)
    a = int(round(u.start * sr))
    return wav[a : a + int(round(u.duration * sr))]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", default="default")
    ap.add_argument("--corpus", type=Path, required=True, help="folder of valle2 corpus synth manifests")
    ap.add_argument("--split", default="held-out")
    ap.add_argument("--per-voice", type=int, default=6)
    ap.add_argument("--sentences", type=Path, default=HERE / "data" / "robustness_sentences.txt")
    ap.add_argument("--max-voices", type=int, default=None, help="a seeded subset of the split's voices")
    ap.add_argument("--top-p", type=float, default=None, help="sampling override (default: the model's)")
    ap.add_argument("--temperature", type=float, default=None)
    ap.add_argument("--top-k", type=int, default=None)
    ap.add_argument("--nar-decoding", choices=["greedy", "min_distortion", "expected"], default=None,
                    help="default: the model's")
    ap.add_argument("--nar-temperature", type=float, default=None, help="min-distortion sharpening (default: the model's)")
    ap.add_argument("--post-filter", choices=["none", "prompt_match"], default=None,
                    help="log-mel post-filter before the vocoder (default: the model's)")
    ap.add_argument("--post-filter-strength", type=float, default=None, help="0-1 (default: the model's)")
    ap.add_argument("--nar-weight", type=float, default=None, help="0-1 (default: the model's)")
    ap.add_argument("--residual-prior", choices=["mean", "code0"], default=None, help="default: the model's")
    ap.add_argument("--prompt-residual", type=float, default=None, help="0-1 (default: the model's)")
    ap.add_argument("--vocoder", choices=["codec", "synthesis"], default=None, help="default: the model's")
    ap.add_argument("--ras-threshold", type=float, default=None, help="repetition-aware sampling's t_r (default: the model's)")
    ap.add_argument("--ras-window", type=int, default=None, help="repetition-aware sampling's K (default: the model's)")
    ap.add_argument("--sets", default="natural,corpus", help="which of natural,corpus to run (each item keeps its "
                    "seed, so a run of one set pairs with a full run of the same --seed)")
    ap.add_argument("--reserved", type=int, default=0, metavar="N",
                    help="also N sentences in each reserved voice (independent evaluation; see above)")
    ap.add_argument("--ar-precision", choices=["fp32", "int8"], default=None, help="default: the model's")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", type=Path, required=True)
    args = ap.parse_args()
    sets = {x.strip() for x in args.sets.split(",") if x.strip()}
    if not sets or sets - {"natural", "corpus"}:
        raise SystemExit(f"--sets takes natural and/or corpus, not {args.sets!r}")
    sets.add("reserved")

    torch.set_num_threads(args.threads)
    from valle2 import VallE2
    from valle2.eval.asr import get_asr
    from valle2.eval.speaker import cosine, get_speaker_encoder
    from valle2.eval.wer import wer_details
    from valle2.models.valle2 import SynthesisJob

    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "audio").mkdir(exist_ok=True)
    model = VallE2.from_pretrained(args.model)
    model.eval()
    if args.ar_precision:
        model.ar_precision = args.ar_precision
    sr = model.sample_rate
    chosen = pick(held_out_utterances(args.corpus, args.split), args.per_voice, args.seed, args.max_voices)
    sampling = model.sampling_config(top_p=args.top_p, temperature=args.temperature, top_k=args.top_k,
                                     nar_decoding=args.nar_decoding, nar_temperature=args.nar_temperature,
                                     post_filter=args.post_filter,
                                     post_filter_strength=args.post_filter_strength, nar_weight=args.nar_weight,
                                     residual_prior=args.residual_prior, prompt_residual=args.prompt_residual,
                                     vocoder=args.vocoder, ras_threshold=args.ras_threshold,
                                     ras_window=args.ras_window)
    voices = sorted(chosen)
    prompts = {v: model.prepare_prompt((load_span(chosen[v][0], sr), sr), chosen[v][0].text) for v in voices}
    reserved = render_reserved_set(args.reserved, args.out / "reserved") if args.reserved else {}
    for v, (prompt_path, prompt_text, _) in reserved.items():
        prompts[v] = model.prepare_prompt(str(prompt_path), prompt_text)

    # (set, voice, text, ground-truth audio)
    from valle2.data.corpus_synth import render
    from valle2.data.voices import Voice

    sentences = read_sentences(args.sentences)
    todo = []
    for i, text in enumerate(sentences):
        voice = voices[i % len(voices)]
        gt = render(Voice.parse(voice), text, args.out / "ground_truth" / f"{i:03d}.wav")
        todo.append(("natural", voice, text, str(gt)))
    for v in voices:
        for u in chosen[v][1]:
            todo.append(("corpus", v, u.text, u))
    for v, (_, _, targets) in reserved.items():
        for text, path in targets:
            todo.append(("reserved", v, text, str(path)))

    # Warm-up (first calls allocate caches and pick kernels), not timed.
    model.synthesize_batch([SynthesisJob("A short warm up.", prompts[voices[0]], unsafe_no_consent=True)], seed=0)

    rows = []
    for i, (kind, voice, text, ref) in enumerate(todo):
        if kind not in sets:
            continue
        details: list = []
        t0 = time.perf_counter()
        [wav] = model.synthesize_batch([SynthesisJob(text, prompts[voice], unsafe_no_consent=True)],
                                       seed=args.seed + i, details=details, sampling=sampling)
        dt = time.perf_counter() - t0
        d = details[0]
        name = f"{i:03d}_{kind}_{voice.replace(':', '_').replace('+', '_')}.wav"
        sf.write(args.out / "audio" / name, wav, sr)
        rows.append({"i": i, "set": kind, "voice": voice, "text": text, "ref": ref if isinstance(ref, str) else ref.id,
                     "seconds": len(wav) / sr, "synth_s": dt, "frames": d["frames"],
                     "expected_frames": d["expected_frames"], "hit_limit": d["hit_limit"], "audio": name})
        print(f"[{i + 1}/{len(todo)}] {kind} {voice}: {len(wav) / sr:.2f} s in {dt:.2f} s", flush=True)

    # --- scoring (after synthesis, so the ASR and speaker encoder do not share the timing)
    asr = get_asr("faster-whisper")
    spk = get_speaker_encoder("resemblyzer")
    prompt_emb = {v: spk.embed(prompts[v].wav, prompts[v].sr) for v in prompts}
    refs = {u.id: u for v in voices for u in chosen[v][1]}

    def voice_scores(wav, voice) -> dict:
        """Cosine to the voice's own prompt, the best other prompt's, and whose prompt is nearest."""
        if len(wav) < sr // 2:  # too short for the speaker encoder
            return {"sim": None, "sim_best_other": None, "rank_correct": False, "nearest_prompt": None}
        e = spk.embed(wav, sr)
        pool = list(prompts) if voice in reserved else voices  # held-out rows: the held-out prompts only
        sims = {v: cosine(e, prompt_emb[v]) for v in pool}
        best_other = max(s for v, s in sims.items() if v != voice)
        return {"sim": sims[voice], "sim_best_other": best_other, "rank_correct": sims[voice] > best_other,
                "nearest_prompt": max(sims, key=sims.get)}

    for r in rows:
        wav, _ = sf.read(args.out / "audio" / r["audio"], dtype="float32")
        r["hyp"] = asr.transcribe(wav, sr) if len(wav) else ""
        r.update(voice_scores(wav, r["voice"]))
        if r["set"] == "corpus":
            gt_wav = load_span(refs[r["ref"]], sr)
        else:
            from valle2.audio import load_audio

            gt_wav, _ = load_audio(r["ref"], target_sr=sr)
        r["gt_hyp"] = asr.transcribe(gt_wav, sr)
        # the same voice measures on the voice's own audio: what a perfect clone would score
        gt = voice_scores(gt_wav, r["voice"])
        r["gt_sim"], r["gt_rank_correct"] = gt["sim"], gt["rank_correct"]
        r["gt_wer"] = wer_details(r["text"], r["gt_hyp"]).wer
        r["wer"] = wer_details(r["text"], r["hyp"]).wer
        expected_s = sum(r["expected_frames"]) / model.frame_rate
        r["duration_ratio"] = r["seconds"] / expected_s if expected_s else None

    with open(args.out / "items.jsonl", "w") as f:
        for r in rows:
            f.write(json.dumps(r) + "\n")

    from bars_summary import run_document  # benchmarks/: the one summary of a set of rows

    summary = run_document({
        "model": args.model, "seed": args.seed, "split": args.split, "sampling": sampling.to_dict(), "threads": args.threads,
        "utterances_per_voice": args.per_voice,
        "voices": {v: {"prompt_id": chosen[v][0].id, "prompt_s": chosen[v][0].duration} for v in voices},
        "machine": {"cpu": platform.processor() or platform.machine(), "torch": torch.__version__,
                    "threads": torch.get_num_threads()},
    }, voices, rows)
    (args.out / "summary.json").write_text(json.dumps(summary, indent=2))
    print(json.dumps({k: summary[k] for k in ("natural", "corpus", "reserved", "both", "all_rtf")}, indent=2))
    nan = float("nan")
    for v in voices:
        n, c = summary["per_voice"][v]["natural"], summary["per_voice"][v]["corpus"]
        print(f"{v:24s} natural WER {n.get('wer', nan):.3f} (gt {n.get('ground_truth_wer', nan):.3f}) "
              f"SIM {n.get('sim_mean') or nan:.3f} (gt {n.get('ground_truth_sim_mean') or nan:.3f}) "
              f"rank {n.get('rank_correct', nan):.2f} (gt {n.get('ground_truth_rank_correct', nan):.2f}) | "
              f"corpus WER {c.get('wer', nan):.3f} (gt {c.get('ground_truth_wer', nan):.3f}) SIM {c.get('sim_mean') or nan:.3f}")


if __name__ == "__main__":
    main()
