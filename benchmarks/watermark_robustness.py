"""Robustness, transparency and false positives of the valle2 watermark.

Marked set: N clips of 2-10 s of random sentences spoken by offline engine voices
(espeak-ng accents x variants, flite kal16/awb/slt, festival kal_diphone; never the
evaluation-reserved flite ``rms`` / festival ``ked_diphone``), at 24 kHz. Each clip is
marked with the default key and payload, then every transform below is applied and
``detect`` is run on the result (at the transform's own sample rate):

    clean, resample 16 kHz, resample 8 kHz, MP3 32 and 64 kbps (lame), Opus 32 and 64 kbps
    (opusenc/opusdec), white noise at 20 dB SNR, gain +6 and -6 dB, a random 2 s crop,
    the clip between two unmarked clips (concatenation)

Unmarked set: M clips of 2-10 s: speech from other sentences/voices, digital silence, near
silence (-70 dBFS noise), white/pink/brown noise, and music-like tones (harmonic notes with
vibrato, chords, sweeps, a drum-like pulse train). ``detect`` must say ``watermarked=False``.

Also reported: the SNR of the mark against the unmarked clip and, when the ``pesq`` package
is importable, PESQ-WB of the marked clip against the unmarked one (a transparency proxy).

    nice -n 10 python benchmarks/watermark_robustness.py --marked 200 --unmarked 1000 \
        --write benchmarks/RESULTS_safety_watermark.md
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import soundfile as sf
import soxr

SR = 24_000
WORDS = """time year people way day man thing woman life child world school state family student group
country problem hand part place case week company system program question work government number night
point home water room mother area money story fact month lot study book eye job word business issue side
kind head house service friend father power game line end member law car city community name president
team minute idea kid body information back parent face others level office door health person art war
history party result change morning reason research girl guy moment air teacher force education foot boy
age policy music market sense nation plan college interest death experience effect class control care
field development role effort rate heart drug show leader light voice wife police mind price report
decision son view relationship town road arm difference value building action model season society tax
director position player record paper space ground form event official matter center couple site project
activity star table need court oil situation cost industry figure street image phone data picture
practice piece land product doctor wall patient worker news test movie north love support technology
step baby computer type attention film tree source organization hair window evidence population truth
song quickly slowly green yellow bright quiet happy simple strong little great small large old young""".split()
ESPEAK_VARIANTS = """adam Alex Alicia Andrea Andy Annie antonio aunty belinda benjamin boris caleb david Denis
Diogo ed edward Gene gustave announcer Henrique Hugo iven Jacky john Lee linda marcelo Marco Mario max Michael
michel miguel Mike Mr Nguyen pablo paul pedro quincy rob robert steph Storm travis victor zac anika f1 f2 f3 f4 f5
m1 m2 m3 m4 m5 m6 m7 m8 norbert sandro shelby grandma grandpa klatt klatt2 klatt3 whisper""".split()
ESPEAK_ACCENTS = ["en-us", "en", "en-gb-x-rp", "en-029", "en-gb-scotland", "en-gb-x-gbclan"]
FLITE_VOICES = ["kal16", "awb", "slt"]  # never "rms": reserved for independent evaluation
FESTIVAL_VOICES = ["kal_diphone"]  # never "ked_diphone": reserved for independent evaluation

TRANSFORMS = ["clean", "resample_16k", "resample_8k", "mp3_32k", "mp3_64k", "opus_32k", "opus_64k",
              "noise_20db", "gain_+6db", "gain_-6db", "crop_2s", "concat"]


# ----------------------------------------------------------------------------- speech


def speak(rng: random.Random, tmp: Path) -> tuple[np.ndarray, str]:
    """One random sentence from a random engine voice, peak -6 dBFS, 24 kHz, 2-10 s."""
    text = " ".join(rng.choice(WORDS) for _ in range(rng.randint(5, 28))) + "."
    path = tmp / "speech.wav"
    u = rng.random()
    if u < 0.6:
        voice = f"{rng.choice(ESPEAK_ACCENTS)}+{rng.choice(ESPEAK_VARIANTS)}"
        cmd = ["espeak-ng", "-v", voice, "-s", str(rng.randint(130, 200)), "-w", str(path), text]
    elif u < 0.9:
        voice = rng.choice(FLITE_VOICES)
        cmd = ["flite", "-voice", voice, "-t", text, "-o", str(path)]
    else:
        voice = "festival_" + rng.choice(FESTIVAL_VOICES)
        (tmp / "text.txt").write_text(text)
        cmd = ["text2wave", "-eval", f"(voice_{voice[9:]})", str(tmp / "text.txt"), "-o", str(path)]
    subprocess.run(cmd, check=True, capture_output=True)
    wav, sr = sf.read(path, dtype="float32")
    wav = soxr.resample(wav, sr, SR).astype(np.float32)[: 10 * SR]
    if len(wav) < 2 * SR:
        wav = np.concatenate([wav, np.zeros(2 * SR - len(wav), np.float32)])
    return wav / (np.abs(wav).max() + 1e-9) * 0.5, voice


def other_signal(kind: str, rng: np.random.Generator) -> np.ndarray:
    """Unmarked non-speech audio of 2-10 s."""
    n = int(rng.uniform(2, 10) * SR)
    t = np.arange(n) / SR
    if kind == "silence":
        return np.zeros(n, np.float32)
    if kind == "near_silence":
        return (10 ** (-70 / 20) * rng.standard_normal(n)).astype(np.float32)
    if kind in ("white", "pink", "brown"):
        spec = np.fft.rfft(rng.standard_normal(n))
        f = np.maximum(np.fft.rfftfreq(n, 1 / SR), 1.0)
        spec *= {"white": 1.0, "pink": f**-0.5, "brown": f**-1.0}[kind]
        x = np.fft.irfft(spec, n)
    elif kind == "notes":  # harmonic notes with vibrato, a new note every 0.2-0.8 s
        x = np.zeros(n)
        i = 0
        while i < n:
            m = int(rng.uniform(0.2, 0.8) * SR)
            f0 = 110 * 2 ** (rng.integers(0, 36) / 12)
            tt = np.arange(min(m, n - i)) / SR
            ph = 2 * np.pi * np.cumsum(f0 * (1 + 0.005 * np.sin(2 * np.pi * 5 * tt))) / SR
            env = np.exp(-tt * rng.uniform(0.5, 4))
            x[i : i + len(tt)] += env * sum(np.sin(k * ph) / k**1.5 for k in range(1, 8))
            i += m
    elif kind == "chord":
        x = sum(np.sin(2 * np.pi * 220 * 2 ** (s / 12) * t + rng.uniform(0, 6)) for s in rng.choice(24, 4))
    elif kind == "sweep":
        f = np.geomspace(rng.uniform(50, 300), rng.uniform(2000, 8000), n)
        x = np.sin(2 * np.pi * np.cumsum(f) / SR)
    elif kind == "pulses":
        x = np.zeros(n)
        period = int(SR * rng.uniform(0.1, 0.5))
        x[::period] = 1.0
        x = np.convolve(x, np.exp(-np.arange(2000) / 200) * rng.standard_normal(2000), mode="same")
    else:
        raise ValueError(kind)
    return (x / (np.abs(x).max() + 1e-9) * rng.uniform(0.05, 0.9)).astype(np.float32)


# ----------------------------------------------------------------------------- transforms


def transform(name: str, wav: np.ndarray, rng: np.random.Generator, tmp: Path, pads) -> tuple[np.ndarray, int]:
    if name == "clean":
        return wav, SR
    if name.startswith("resample_"):
        to = int(name.split("_")[1][:-1]) * 1000
        return soxr.resample(wav, SR, to), to
    if name.startswith(("mp3_", "opus_")):
        kind, rate = name.split("_")
        from valle2.audio import lossy_roundtrip

        return lossy_roundtrip(wav, SR, kind, int(rate[:-1]))
    if name == "noise_20db":
        power = float(np.mean(wav.astype(np.float64) ** 2))
        return wav + np.sqrt(power / 100) * rng.standard_normal(len(wav)).astype(np.float32), SR
    if name.startswith("gain_"):
        return wav * np.float32(10 ** (float(name[5:-2]) / 20)), SR
    if name == "crop_2s":
        start = int(rng.integers(0, len(wav) - 2 * SR + 1))
        return wav[start : start + 2 * SR], SR
    if name == "concat":
        return np.concatenate([pads[0], wav, pads[1]]), SR
    raise ValueError(name)


def snr_db(ref: np.ndarray, marked: np.ndarray) -> float:
    noise = float(np.sum((marked.astype(np.float64) - ref) ** 2))
    return 10 * np.log10(float(np.sum(ref.astype(np.float64) ** 2)) / max(noise, 1e-30))


# ----------------------------------------------------------------------------- run


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--marked", type=int, default=200)
    ap.add_argument("--unmarked", type=int, default=1000)
    ap.add_argument("--seed", type=int, default=2026)
    ap.add_argument("--write", type=Path, help="write the markdown table here")
    ap.add_argument("--json", type=Path, help="write per-clip results here")
    args = ap.parse_args(argv)
    for tool in ("espeak-ng", "flite", "text2wave", "lame", "opusenc", "opusdec"):
        if shutil.which(tool) is None:
            sys.exit(f"needs {tool} (Debian: espeak-ng flite festival festvox-kallpc16k lame opus-tools)")

    from valle2.safety import watermark as wm
    from valle2.safety.keys import watermark_key

    try:
        from pesq import pesq
    except ImportError:
        pesq = None

    key = watermark_key()
    rng_py = random.Random(args.seed)
    rng = np.random.default_rng(args.seed)
    t_start = time.time()
    rows: dict[str, list] = {t: [] for t in TRANSFORMS}
    blind: dict[str, list] = {t: [] for t in TRANSFORMS}  # detect(payloads=()): any payload, sync part only
    payload_ok: dict[str, list] = {t: [] for t in TRANSFORMS}
    snrs, pesqs, embed_s, detect_s, durations, voices = [], [], [], [], [], []
    with tempfile.TemporaryDirectory() as tmpdir:
        tmp = Path(tmpdir)
        for i in range(args.marked):
            wav, voice = speak(rng_py, tmp)
            voices.append(voice)
            durations.append(len(wav) / SR)
            t0 = time.perf_counter()
            marked = wm.embed(wav, SR, key=key)
            embed_s.append(time.perf_counter() - t0)
            snrs.append(snr_db(wav, marked))
            if pesq is not None:
                ref16, deg16 = soxr.resample(wav, SR, 16000), soxr.resample(marked, SR, 16000)
                pesqs.append(float(pesq(16000, ref16, deg16, "wb")))
            pads = (speak(rng_py, tmp)[0], speak(rng_py, tmp)[0])
            for name in TRANSFORMS:
                audio, sr = transform(name, marked, rng, tmp, pads)
                t0 = time.perf_counter()
                res = wm.detect(audio, sr, key=key)
                detect_s.append(time.perf_counter() - t0)
                rows[name].append((res.watermarked, res.score))
                payload_ok[name].append(res.payload == wm.DEFAULT_PAYLOAD)
                res = wm.detect(audio, sr, key=key, payloads=())
                blind[name].append((res.watermarked, res.payload == wm.DEFAULT_PAYLOAD))
            if (i + 1) % 20 == 0:
                print(f"marked {i + 1}/{args.marked}  {time.time() - t_start:.0f} s", file=sys.stderr, flush=True)

        kinds = (["speech"] * 6 + ["silence", "near_silence", "white", "pink", "brown", "notes", "chord", "sweep",
                                    "pulses"])
        unmarked: dict[str, list] = {}
        for i in range(args.unmarked):
            kind = kinds[i % len(kinds)]
            wav = speak(rng_py, tmp)[0] if kind == "speech" else other_signal(kind, rng)
            res = wm.detect(wav, SR, key=key)
            res_blind = wm.detect(wav, SR, key=key, payloads=())
            unmarked.setdefault(kind, []).append((res.watermarked, res.score, res_blind.watermarked))
            if (i + 1) % 200 == 0:
                print(f"unmarked {i + 1}/{args.unmarked}  {time.time() - t_start:.0f} s", file=sys.stderr, flush=True)

    lines = [
        f"Marked clips: {args.marked} ({np.mean(durations):.1f} s mean, {min(durations):.1f}-{max(durations):.1f} s; "
        f"{sum(v.startswith('en') for v in voices)} espeak-ng, {sum(v in FLITE_VOICES for v in voices)} flite, "
        f"{sum(v.startswith('festival') for v in voices)} festival). Key: default; payload {wm.DEFAULT_PAYLOAD}.",
        "",
        f"Mark SNR against the unmarked clip: min {min(snrs):.1f} dB, median {np.median(snrs):.1f} dB, "
        f"max {max(snrs):.1f} dB."
        + (f" PESQ-WB (unmarked -> marked, 16 kHz): mean {np.mean(pesqs):.2f}, min {min(pesqs):.2f}." if pesqs else ""),
        f"Time per clip: embed {1000 * np.median(embed_s):.0f} ms, detect {1000 * np.median(detect_s):.0f} ms "
        "(median).",
        "",
        "Detection with the default call (`detect(...)`, which also tests valle2's own payload with the whole",
        "pattern) and payload-blind (`detect(..., payloads=())`: sync half of the pattern only, any payload):",
        "",
        "| transform | detected | rate | score median | score 1st pct | score min | payload read "
        "| blind: rate | blind: payload read |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for name in TRANSFORMS:
        det = [d for d, _ in rows[name]]
        sc = np.array([s for _, s in rows[name]])
        bdet = [d for d, _ in blind[name]]
        lines.append(f"| {name} | {sum(det)}/{len(det)} | {100 * np.mean(det):.1f} % | {np.median(sc):.1f} | "
                     f"{np.percentile(sc, 1):.1f} | {sc.min():.1f} | {100 * np.mean(payload_ok[name]):.0f} % | "
                     f"{100 * np.mean(bdet):.1f} % | {100 * np.mean([p for _, p in blind[name]]):.0f} % |")
    lines += ["", "| unmarked audio | clips | flagged | max score | flagged (blind) |", "|---|---|---|---|---|"]
    total, flagged, flagged_blind = 0, 0, 0
    for kind, res in unmarked.items():
        f, fb = sum(r[0] for r in res), sum(r[2] for r in res)
        total, flagged, flagged_blind = total + len(res), flagged + f, flagged_blind + fb
        lines.append(f"| {kind} | {len(res)} | {f} | {max(r[1] for r in res):.2f} | {fb} |")
    lines.append(f"| **all** | {total} | {flagged} ({100 * flagged / max(total, 1):.2f} %) | "
                 f"{max(r[1] for v in unmarked.values() for r in v):.2f} | "
                 f"{flagged_blind} ({100 * flagged_blind / max(total, 1):.2f} %) |")
    lines += ["", f"Machine: {platform.machine()} CPU, {os.cpu_count()} cores, Python {platform.python_version()}; "
              f"wall time {time.time() - t_start:.0f} s."]
    text = "\n".join(lines)
    print(text)
    if args.write:
        args.write.write_text(text + "\n")
    if args.json:
        args.json.write_text(json.dumps({"marked": rows, "blind": blind, "unmarked": unmarked, "snr_db": snrs,
                                         "pesq": pesqs, "voices": voices}, default=float))
    return 0


if __name__ == "__main__":
    sys.exit(main())
