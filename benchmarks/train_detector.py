"""Train and evaluate the synthetic-speech detector (valle2.safety.detector).

Negative class: engine speech from the synth corpus. Positive class: the same clips encoded
and decoded by the bundled valle2-mel codec — the vocoder every default-model output goes
through (no trained VALL-E 2 model exists yet, so codec resyntheses stand in for its output).

- train: ``--per-voice`` clips of every TRAIN voice (synth_recordings_train manifest);
- held-out: every clip of the HELD_OUT voices (synth_recordings_held-out manifest);
- reserved: flite ``rms`` and festival ``ked_diphone`` rendered here, in a temporary folder,
  for testing only (never written to a corpus, never trained on).

EER is reported per set, clean and after the watermark benchmark's transforms (resample to
16 kHz, MP3 64 kbps with lame, white noise at 20 dB SNR), applied to both classes.

The shipped detector (features ~10 min on a shared 2-core CPU; cached for reruns)::

    nice -n 10 .venv/bin/python benchmarks/train_detector.py --corpus /work/data/corpus \\
        --out src/valle2/assets/detector/detector.json --augment --ablate \\
        --cache /tmp/detector_features.npz

Figures: benchmarks/RESULTS.md, "Synthetic-speech detector".
"""

from __future__ import annotations

import argparse
import gzip
import json
import logging
import os
import subprocess
import tempfile
import time
from pathlib import Path

import numpy as np
import soundfile as sf
import soxr

from valle2.codec import load_codec
from valle2.data.corpus_synth import _engine_command, check_engine_output, voice_sentences
from valle2.data.voices import RESERVED
from valle2.safety.detector import FeatureConfig, SyntheticSpeechDetector, eer, features

log = logging.getLogger("train_detector")
SR = 24_000
CODEC_DIR = Path(__file__).resolve().parent.parent / "src/valle2/assets/codec/valle2-mel-v1"
TRANSFORMS = ("clean", "resample_16k", "mp3_64k", "noise_20db")


def manifest_clips(path: Path, per_voice: int | None, seed: int) -> list[tuple[str, Path]]:
    """(voice slug, wav path) pairs, at most ``per_voice`` per voice, chosen with ``seed``."""
    by_voice: dict[str, list[Path]] = {}
    with gzip.open(path, "rt") as f:
        for line in f:
            rec = json.loads(line)
            by_voice.setdefault(rec["id"].rsplit("-", 1)[0], []).append(Path(rec["sources"][0]["source"]))
    rng = np.random.default_rng(seed)
    out = []
    for voice, paths in sorted(by_voice.items()):
        if per_voice is not None and len(paths) > per_voice:
            paths = [paths[i] for i in sorted(rng.choice(len(paths), per_voice, replace=False))]
        out += [(voice, p) for p in paths]
    return out


def render_reserved(n: int, tmp: Path) -> list[tuple[str, np.ndarray]]:
    """``n`` sentences from each RESERVED voice, at 24 kHz — test data only."""
    out = []
    for voice in RESERVED:
        for i, text in enumerate(voice_sentences(voice, n, seed=7)):
            raw = str(tmp / f"{voice.slug}-{i}.wav")
            argv, _ = _engine_command(voice, raw)
            done = subprocess.run(argv, input=text, text=True, check=True, stdout=subprocess.DEVNULL,
                                  stderr=subprocess.PIPE)
            check_engine_output(voice, raw, done.stderr)
            wav, sr = sf.read(raw, dtype="float32")
            out.append((voice.slug, soxr.resample(wav, sr, SR).astype(np.float32) if sr != SR else wav))
    return out


def transform(name: str, wav: np.ndarray, rng: np.random.Generator, tmp: Path) -> tuple[np.ndarray, int]:
    """The watermark benchmark's transforms (benchmarks/watermark_robustness.py)."""
    if name == "clean":
        return wav, SR
    if name == "resample_16k":
        return soxr.resample(wav, SR, 16000), 16000
    if name == "mp3_64k":
        src, enc, dec = tmp / "in.wav", tmp / "enc.mp3", tmp / "dec.wav"
        sf.write(src, np.clip(wav, -1, 1), SR, subtype="PCM_16")
        subprocess.run(["lame", "--quiet", "-b", "64", str(src), str(enc)], check=True)
        subprocess.run(["lame", "--quiet", "--decode", str(enc), str(dec)], check=True)
        out, sr = sf.read(dec, dtype="float32")
        return (out.mean(axis=1) if out.ndim == 2 else out), sr
    if name == "noise_20db":
        power = float(np.mean(wav.astype(np.float64) ** 2))
        return (wav + np.sqrt(power / 100) * rng.standard_normal(len(wav))).astype(np.float32), SR
    raise ValueError(f"unknown transform {name!r}")


def featurize(clips: list[tuple[str, np.ndarray]], codec, transforms, cfg, tmp: Path, seed: int) -> dict:
    """{transform: (features [2N, F], labels [2N], voices [2N])}: each clip and its resynthesis."""
    rng = np.random.default_rng(seed)
    out = {t: ([], [], []) for t in transforms}
    for i, (voice, wav) in enumerate(clips):
        resynth = codec.decode(codec.encode(wav, SR))[: len(wav)]
        for label, x in ((0, wav), (1, resynth)):
            for t in transforms:
                y, sr = transform(t, x, rng, tmp)
                out[t][0].append(features(y, sr, cfg))
                out[t][1].append(label)
                out[t][2].append(voice)
        if (i + 1) % 50 == 0:
            log.info("  %d/%d clips", i + 1, len(clips))
    return {t: (np.array(f), np.array(l), np.array(v)) for t, (f, l, v) in out.items()}


def load_clips(pairs) -> list[tuple[str, np.ndarray]]:
    out = []
    for voice, path in pairs:
        wav, sr = sf.read(path, dtype="float32")
        out.append((voice, soxr.resample(wav, sr, SR).astype(np.float32) if sr != SR else wav))
    return out


def ablate(data: dict, train_t, cfg: FeatureConfig, l2: float) -> None:
    """EER with one feature group alone (column layout of :func:`features`)."""
    nb = cfg.n_bands
    groups = {"band mean": slice(0, nb), "band std": slice(nb, 2 * nb), "flatness": slice(2 * nb, 3 * nb),
              "roughness": slice(3 * nb, 4 * nb), "phase coherence": slice(4 * nb, 5 * nb),
              "frame-rate peak": slice(5 * nb, 5 * nb + 2)}
    for group, cols in groups.items():
        f = np.concatenate([data["train"][t][0][:, cols] for t in train_t])
        l = np.concatenate([data["train"][t][1] for t in train_t])
        det = SyntheticSpeechDetector.fit(f, l, cfg, l2=l2)
        row = []
        for name in ("held-out", "reserved"):
            for t in TRANSFORMS:
                if name in data:
                    s, y = det.score_features(data[name][t][0][:, cols]), data[name][t][1]
                    row.append(f"{100 * eer(s[y == 0], s[y == 1])[0]:5.1f}")
        log.info("ablation %-16s held-out/reserved EER %% (%s): %s", group, ", ".join(TRANSFORMS), " ".join(row))


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--corpus", type=Path, required=True, help="folder with synth_recordings_*.jsonl.gz")
    ap.add_argument("--out", type=Path, required=True, help="detector JSON to write")
    ap.add_argument("--per-voice", type=int, default=8, help="training clips per TRAIN voice")
    ap.add_argument("--held-out-per-voice", type=int, default=None, help="cap on held-out clips per voice")
    ap.add_argument("--reserved", type=int, default=15, help="sentences per RESERVED voice (0: skip)")
    ap.add_argument("--augment", action="store_true",
                    help="also train on the transformed copies (resample 16k, MP3 64k, noise 20 dB)")
    ap.add_argument("--l2", type=float, default=1.0)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--cache", type=Path, default=None, help="npz cache of computed features")
    ap.add_argument("--results", type=Path, default=None, help="write the EER table as JSON here")
    ap.add_argument("--ablate", action="store_true", help="also log held-out/reserved EER per feature group")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    t0 = time.time()
    cfg = FeatureConfig()
    codec = load_codec({"type": "valle2-mel"}, CODEC_DIR)

    if args.cache is not None and args.cache.exists():
        z = np.load(args.cache)
        data = {k: {t: (z[f"{k}/{t}/f"], z[f"{k}/{t}/l"], z[f"{k}/{t}/v"]) for t in TRANSFORMS}
                for k in ("train", "held-out", "reserved") if f"{k}/clean/f" in z}
        log.info("features from cache %s", args.cache)
    else:
        data = {}
        with tempfile.TemporaryDirectory(prefix="valle2-detector-") as tmp:
            tmp = Path(tmp)
            sets = {
                "train": load_clips(manifest_clips(args.corpus / "synth_recordings_train.jsonl.gz",
                                                   args.per_voice, args.seed)),
                "held-out": load_clips(manifest_clips(args.corpus / "synth_recordings_held-out.jsonl.gz",
                                                      args.held_out_per_voice, args.seed)),
            }
            if args.reserved:
                sets["reserved"] = render_reserved(args.reserved, tmp)
            for name, clips in sets.items():
                log.info("%s: %d clips x 2 classes x %d transforms", name, len(clips), len(TRANSFORMS))
                data[name] = featurize(clips, codec, TRANSFORMS, cfg, tmp, args.seed + len(name))
        if args.cache is not None:
            np.savez(args.cache, **{f"{k}/{t}/{s}": a for k, d in data.items() for t, v in d.items()
                                    for s, a in zip("flv", v)})

    train_t = TRANSFORMS if args.augment else ("clean",)
    feats = np.concatenate([data["train"][t][0] for t in train_t])
    labels = np.concatenate([data["train"][t][1] for t in train_t])
    extra = {"trained_on": f"{len(data['train']['clean'][1]) // 2} TRAIN-voice clips x 2 classes, transforms "
                           f"{list(train_t)}", "l2": args.l2, "per_voice": args.per_voice}
    det = SyntheticSpeechDetector.fit(feats, labels, cfg, l2=args.l2, extra=extra)

    table = {}
    for name, d in data.items():
        for t in TRANSFORMS:
            f, l, _ = d[t]
            s = det.score_features(f)
            e, _ = eer(s[l == 0], s[l == 1])
            pred = s >= det.threshold
            table[f"{name}/{t}"] = {"eer": round(e, 4), "far": round(float(pred[l == 0].mean()), 4),
                                    "frr": round(float((~pred[l == 1]).mean()), 4), "n": int(len(l))}
            log.info("%-9s %-13s EER %5.1f%%  FAR %5.1f%%  FRR %5.1f%%  (n=%d)", name, t, 100 * e,
                     100 * table[f"{name}/{t}"]["far"], 100 * table[f"{name}/{t}"]["frr"], len(l))
    det.extra["eer"] = {k: v["eer"] for k, v in table.items()}
    det.save(args.out)
    log.info("wrote %s (%d bytes), threshold %.3f, %.0fs", args.out, os.path.getsize(args.out), det.threshold,
             time.time() - t0)
    if args.ablate:
        ablate(data, train_t, cfg, args.l2)
    if args.results is not None:
        args.results.write_text(json.dumps({"threshold": det.threshold, "table": table}, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
