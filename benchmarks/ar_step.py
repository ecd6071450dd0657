"""AR decoding speed: milliseconds per KV-cached step, against the memory-bandwidth floor.

    python benchmarks/ar_step.py --size paper --threads 1 --group-size 1

Setup (issue 2): text of 60 phonemes, 3 s prompt (225 frames at 75 Hz), 150 generated
frames, batch 1, fp32, random weights. The floor is the time to read every AR weight a step uses
once (the fastest of a sum, a max and a GEMV over each weight tensor, best of several,
interleaved with the decoding runs so both see the same machine load): at batch 1 a step
can't be faster than that.
The last line printed is JSON.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import time

import torch

from valle2.generation.ar_decode import ar_generate
from valle2.generation.sampling import SamplingConfig
from valle2.models.builders import build_ar
from valle2.models.config import ModelConfig, preset


def read_weights_once(tensors: list[torch.Tensor]) -> float:
    """Seconds to read every byte of ``tensors`` once: the memory floor of a step.

    The fastest of three ways to stream each tensor through the core (a sum, a max, and a
    matrix-vector product against a ones vector), since which one saturates the memory
    system depends on the CPU (on the Xeon here, the sum reaches ~11.6 GB/s, the GEMV ~14.6).
    """
    def timed(fn) -> float:
        t = time.perf_counter()
        for w in tensors:
            fn(w)
        return time.perf_counter() - t

    ones = {}

    def gemv(w):
        m = w.reshape(w.shape[0], -1) if w.dim() > 1 else w[None]
        v = ones.setdefault(m.shape[1], torch.ones(m.shape[1]))
        torch.mv(m, v)

    return min(timed(lambda w: w.sum()), timed(lambda w: w.amax()), timed(gemv))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--size", default="paper", choices=["debug", "small", "paper"])
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--group-size", type=int, default=1, choices=[1, 2, 4, 8])
    ap.add_argument("--text-len", type=int, default=60)
    ap.add_argument("--prompt-frames", type=int, default=225)
    ap.add_argument("--frames", type=int, default=150)
    ap.add_argument("--batch", type=int, default=1)
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)

    cfg = ModelConfig(n_text_tokens=128, n_codebooks=8, codebook_size=1024, group_size=args.group_size,
                      ar=preset(args.size), nar=preset(args.size))
    model = build_ar(cfg).eval()
    n_params = sum(p.numel() for p in model.parameters())
    # The weights a step reads: everything except the text embedding table (one row is read).
    step_weights = [p.detach() for n, p in model.named_parameters() if not n.startswith("text_emb")]
    step_bytes = sum(w.numel() * w.element_size() for w in step_weights)
    G = args.group_size
    texts = [torch.randint(4, 128, (args.text_len,)) for _ in range(args.batch)]
    prompt_frames = args.prompt_frames - args.prompt_frames % G
    prompts = [torch.randint(0, 1024, (prompt_frames,)) for _ in range(args.batch)]
    sampling = SamplingConfig(top_p=0.8)

    def run():
        t0 = time.perf_counter()
        res = ar_generate(model, texts, prompts, [args.frames] * args.batch, sampling, torch.Generator().manual_seed(0),
                          min_frames=[args.frames] * args.batch)  # no early EOS: a fixed number of steps
        return time.perf_counter() - t0, res.steps

    # Prefill alone (a run limited to one group) is timed so that it can be taken out.
    def prefill_only():
        t0 = time.perf_counter()
        ar_generate(model, texts, prompts, [G] * args.batch, sampling, torch.Generator().manual_seed(0))
        return time.perf_counter() - t0

    run()  # warm-up
    prefill = statistics.median(prefill_only() for _ in range(args.repeats))
    totals, floors, steps = [], [], 0
    for _ in range(args.repeats):  # interleaved, so that both see the same machine load
        t, steps = run()
        totals.append(t)
        floors.extend(read_weights_once(step_weights) for _ in range(5))
    total = statistics.median(totals)
    ms_per_step = (total - prefill) / max(steps - 1, 1) * 1000
    floor_s = min(floors)
    bandwidth = step_bytes / floor_s
    floor_ms = floor_s * 1000
    seconds_audio = args.frames / 75.0
    result = {
        "size": args.size, "group_size": G, "threads": args.threads, "batch": args.batch,
        "ar_params": n_params, "step_weight_bytes": step_bytes,
        "steps": steps, "prefill_ms": round(prefill * 1000, 2), "ms_per_step": round(ms_per_step, 2),
        "floor_ms": round(floor_ms, 2), "ratio_to_floor": round(ms_per_step / floor_ms, 3),
        "bandwidth_gb_s": round(bandwidth / 1e9, 2),
        "steps_per_audio_second": round(steps / seconds_audio, 2),
        "ar_seconds_per_audio_second": round(total / seconds_audio, 4),
        "torch": torch.__version__, "machine": platform.processor() or platform.machine(),
    }
    print(f"{args.size} G={G}: {ms_per_step:.1f} ms/step over {steps} steps (floor {floor_ms:.1f} ms at "
          f"{bandwidth / 1e9:.1f} GB/s; ratio {ms_per_step / floor_ms:.2f}); prefill {prefill * 1000:.0f} ms")
    print(json.dumps(result))


if __name__ == "__main__":
    main()
