"""Time per utterance of each evaluation metric on this machine's CPU.

Speech: ~5 s sentences spoken by espeak-ng voices (through the espeakng-loader
library, so no Debian package is needed). Each metric is warmed up on one clip, then
timed on every clip; the table gives the median and the mean milliseconds per clip, and
the model load times.

    python benchmarks/metric_speed.py                       # print the table
    python benchmarks/metric_speed.py --dnsmos ../shared/models/dnsmos --threads 1 --write out.md
"""

from __future__ import annotations

import argparse
import ctypes
import os
import platform
import statistics
import time
from pathlib import Path

import numpy as np

SENTENCES = [
    "The weather today is warm and sunny, so we will all walk down to the park together after our lunch.",
    "Please bring the old red book from the kitchen table to my office on the second floor before noon.",
    "He opened the big window because the small room was getting very hot and stuffy in the afternoon.",
    "The children played outside in the garden until their mother finally called them in for dinner.",
    "Our train leaves the central station at seven in the morning and arrives in the city after dark.",
    "She wrote a long letter to her younger brother, who lives on a quiet farm near the wide river.",
]
VOICES = ["en-us", "en-us+f3", "en-us+klatt4", "en-us+m7"]


def espeak_clips() -> tuple[list[np.ndarray], list[str], int]:
    """Every sentence in every voice: float32 clips at espeak-ng's 22.05 kHz."""
    import espeakng_loader

    lib = ctypes.CDLL(espeakng_loader.get_library_path())
    sr = lib.espeak_Initialize(2, 0, os.path.dirname(espeakng_loader.get_data_path()).encode(), 0)
    chunks: list[np.ndarray] = []
    cb_type = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.POINTER(ctypes.c_short), ctypes.c_int, ctypes.c_void_p)

    def on_audio(wav, n, events):
        if n > 0:
            chunks.append(np.ctypeslib.as_array(wav, shape=(n,)).copy())
        return 0

    callback = cb_type(on_audio)
    lib.espeak_SetSynthCallback(callback)
    clips, texts = [], []
    for voice in VOICES:
        lib.espeak_SetVoiceByName(voice.encode())
        for text in SENTENCES:
            chunks.clear()
            data = text.encode() + b"\0"
            lib.espeak_Synth(data, len(data), 0, 1, 0, 1, None, None)
            lib.espeak_Synchronize()
            clips.append(np.concatenate(chunks).astype(np.float32) / 32768.0)
            texts.append(text)
    return clips, texts, sr


def timed(fn, items) -> list[float]:
    out = []
    for item in items:
        t0 = time.perf_counter()
        fn(item)
        out.append(time.perf_counter() - t0)
    return out


def cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--dnsmos", help="folder with the DNSMOS ONNX models (skipped without)")
    ap.add_argument("--write", help="write the results as markdown to this file")
    ap.add_argument("--threads", type=int, default=0,
                    help="CPU threads for every backend (torch, CTranslate2, onnxruntime); 0: their defaults")
    args = ap.parse_args()
    if args.threads:
        import torch

        torch.set_num_threads(args.threads)
    asr_kw = {"cpu_threads": args.threads} if args.threads else {}

    from valle2.eval.asr import get_asr
    from valle2.eval.quality import DnsMos, signal_checks
    from valle2.eval.speaker import get_speaker_encoder
    from valle2.eval.wer import word_error_rate

    clips, texts, sr = espeak_clips()
    seconds = [len(c) / sr for c in clips]
    rows = []  # (metric, load s, median s/clip, mean s/clip, note)

    def bench(name, load, fn, items, note=""):
        t0 = time.perf_counter()
        obj = load()
        load_s = time.perf_counter() - t0
        t0 = time.perf_counter()
        fn(obj, items[0])  # warm-up: first-call costs (lazy imports, allocations)
        first_s = time.perf_counter() - t0
        times = timed(lambda it: fn(obj, it), items)
        rows.append((name, load_s, first_s, statistics.median(times), statistics.mean(times), note))
        print(f"{name}: median {1000 * statistics.median(times):.1f} ms/clip", flush=True)
        return obj

    items = list(zip(clips, texts))
    whisper = bench(
        "ASR faster-whisper tiny.en (int8, beam 5), clip by clip",
        lambda: get_asr("faster-whisper", **asr_kw),
        lambda m, it: m.transcribe(it[0], sr),
        items,
    )
    hyps = whisper.transcribe_batch([(c, sr) for c in clips])
    wer_loop = word_error_rate(texts, hyps)

    packed = get_asr("faster-whisper", pack_seconds=30.0, **asr_kw)
    t0 = time.perf_counter()
    packed_hyps = packed.transcribe_batch([(c, sr) for c in clips])
    packed_s = (time.perf_counter() - t0) / len(clips)
    wer_packed = word_error_rate(texts, packed_hyps)
    rows.append(("ASR same, packed into 30 s windows (`pack_seconds=30`)", 0.0, float("nan"), packed_s, packed_s,
                 f"corpus WER {wer_packed:.1%} vs {wer_loop:.1%} clip by clip"))
    rows[0] = rows[0][:5] + (f"corpus WER {wer_loop:.1%} on espeak-ng voices",)

    f32 = bench(
        "ASR same in float32 (`compute_type=\"float32\"`), clip by clip",
        lambda: get_asr("faster-whisper", compute_type="float32", **asr_kw),
        lambda m, it: m.transcribe(it[0], sr),
        items,
    )
    wer_f32 = word_error_rate(texts, f32.transcribe_batch([(c, sr) for c in clips]))
    rows[-1] = rows[-1][:5] + (f"corpus WER {wer_f32:.1%}; same transcripts in every process at a fixed thread count (int8: not always)",)

    bench("WER (normalise + jiwer), per pair", lambda: None, lambda _, it: word_error_rate(it[1], it[1]), items)
    bench(
        "SIM Resemblyzer, one embedding",
        lambda: get_speaker_encoder("resemblyzer"),
        lambda enc, it: enc.embed(it[0], sr),
        items,
        "a SIM score is 2 embeddings; the prompt's can be reused",
    )
    if args.dnsmos:
        bench(
            "DNSMOS (P.808 + P.835, onnxruntime)",
            lambda: DnsMos(args.dnsmos, threads=args.threads),
            lambda q, it: q.score(it[0], sr),
            items,
            "clips < 9.01 s are repeated to one 9.01 s window",
        )
    bench("Signal checks", lambda: None, lambda _, it: signal_checks(it[0], sr, 5.0), items)

    load = os.getloadavg()
    lines = [
        "## Evaluation metrics: time per utterance (CPU)",
        "",
        f"Command: `PYTHONPATH=src python benchmarks/metric_speed.py"
        f"{' --dnsmos ' + args.dnsmos if args.dnsmos else ''}{f' --threads {args.threads}' if args.threads else ''}`",
        f"Machine: {cpu_name()}, {os.cpu_count()} cores, Python {platform.python_version()}; "
        f"threads per backend: {args.threads or 'library defaults'}; "
        f"load average at the end {load[0]:.1f} / {load[1]:.1f} / {load[2]:.1f} (shared machine).",
        f"Clips: {len(clips)} espeak-ng sentences ({len(VOICES)} voices x {len(SENTENCES)} sentences), "
        f"{min(seconds):.1f}-{max(seconds):.1f} s, mean {statistics.mean(seconds):.1f} s.",
        "",
        "| metric | load (s) | first call (s) | median ms/clip | mean ms/clip | note |",
        "|---|---:|---:|---:|---:|---|",
    ]
    for name, load_s, first_s, med, mean, note in rows:
        first = "" if first_s != first_s else f"{first_s:.2f}"  # NaN: not measured
        lines.append(f"| {name} | {load_s:.2f} | {first} | {1000 * med:.1f} | {1000 * mean:.1f} | {note} |")
    text = "\n".join(lines) + "\n"
    print(text)
    if args.write:
        Path(args.write).write_text(text)


if __name__ == "__main__":
    main()
