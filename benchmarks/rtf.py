"""Real-time factor of synthesis, split into AR, NAR and codec decode.

    python benchmarks/rtf.py --model MODEL_DIR --threads 1 [--nar-precision fp32|bf16] [--ar-precision fp32|int8] [--frames 270] \
        [--nar-decoding greedy|min_distortion|expected] [--nar-weight W] [--post-filter none|prompt_match]

Runs one sentence in the voice of the bundled demo prompt. The AR is held to exactly
``--frames`` frames (EOS suppressed until then) so that models with different weights —
untrained ones included — are timed on the same amount of audio. Best of ``--repeats``.
The last line printed is JSON.
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from pathlib import Path

import torch

from valle2 import VallE2
from valle2.generation.ar_decode import ar_generate
from valle2.generation.nar_decode import nar_generate
from valle2.generation.pipeline import RowResult

DEMO = Path(__file__).resolve().parents[1] / "src" / "valle2" / "assets" / "voices" / "demo"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", required=True)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--nar-precision", choices=["fp32", "bf16"], default=None, help="default: the model's")
    ap.add_argument("--ar-precision", choices=["fp32", "int8"], default=None, help="default: the model's")
    ap.add_argument("--frames", type=int, default=270, help="generated frames (270 = 3.6 s at 75 Hz)")
    ap.add_argument("--text", default="The quick brown fox jumps over the lazy dog by the river.")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--nar-decoding", choices=["greedy", "min_distortion", "expected"], default=None, help="default: the model's")
    ap.add_argument("--post-filter", choices=["none", "prompt_match"], default=None, help="default: the model's")
    ap.add_argument("--nar-weight", type=float, default=None, help="0-1 (default: the model's)")
    ap.add_argument("--residual-prior", choices=["mean", "code0"], default=None, help="default: the model's")
    ap.add_argument("--prompt-residual", type=float, default=None, help="0-1 (default: the model's)")
    ap.add_argument("--vocoder", choices=["codec", "synthesis"], default=None, help="default: the model's")
    ap.add_argument("--post-filter-strength", type=float, default=None, help="0-1 (default: the model's)")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)

    model = VallE2.from_pretrained(args.model)
    precision = args.nar_precision or model.nar_precision
    model.ar_precision = args.ar_precision or model.ar_precision
    ar_model = model.decoding_ar()  # an int8 copy is made here, once, not timed (as in a server)
    decoding = args.nar_decoding or model.sampling.nar_decoding
    entries = model.codec.code_entries() if decoding in ("min_distortion", "expected") else None
    sampling = model.sampling_config(nar_decoding=decoding, nar_weight=args.nar_weight, post_filter=args.post_filter,
                                     residual_prior=args.residual_prior, prompt_residual=args.prompt_residual,
                                     vocoder=args.vocoder,
                                     post_filter_strength=args.post_filter_strength)
    post_filter = sampling.post_filter
    prompt = model.prepare_prompt(DEMO / "prompt.wav", (DEMO / "prompt.txt").read_text().strip())
    [row] = model.make_rows(args.text, prompt)
    ids, lead = row.text_ids(model.symbols.separator_ids(), model.symbols.id("<eos>"))
    text = [torch.tensor(ids)]
    best = None
    for _ in range(args.repeats):
        t0 = time.perf_counter()
        ar = ar_generate(ar_model, text, [prompt.codes[0]], [args.frames], model.sampling,
                         torch.Generator().manual_seed(0), min_frames=[args.frames])
        t1 = time.perf_counter()
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=precision == "bf16"):
            out = nar_generate(model.nar, text, [prompt.codes], ar.codes, entries=entries, text_splits=[lead],
                               temperature=sampling.nar_temperature, return_expected=decoding == "expected")
        codes, residual = out.codes[0], out.expected[0] if out.expected else None
        t2 = time.perf_counter()
        # as synthesis decodes: the NAR's residual at nar_weight (or its expected entries), the post-filter
        [wav] = model.decode_rows([row], [RowResult(codes, False, 0.0, residual=residual)], sampling)
        t3 = time.perf_counter()
        times = (t1 - t0, t2 - t1, t3 - t2)
        best = times if best is None or sum(times) < sum(best) else best
    seconds = len(wav) / model.sample_rate
    ar_s, nar_s, codec_s = best
    result = {
        "model": args.model, "threads": args.threads, "nar_precision": precision, "ar_precision": model.ar_precision, "nar_decoding": decoding, "nar_weight": sampling.nar_weight, "residual_prior": sampling.residual_prior, "prompt_residual": sampling.prompt_residual, "vocoder": sampling.vocoder,
        "post_filter_strength": sampling.post_filter_strength, "post_filter": post_filter, "audio_seconds": round(seconds, 3),
        "ar_s": round(ar_s, 3), "ar_ms_per_step": round(ar_s / ar.steps * 1000, 2), "nar_s": round(nar_s, 3),
        "codec_s": round(codec_s, 3), "rtf": round(sum(best) / seconds, 4),
        "torch": torch.__version__, "cpu": platform.processor() or platform.machine(),
    }
    print(f"{seconds:.1f} s of audio: AR {ar_s:.2f} s, NAR ({precision}) {nar_s:.2f} s, codec {codec_s:.3f} s "
          f"-> RTF {sum(best) / seconds:.3f}")
    print(json.dumps(result))


if __name__ == "__main__":
    main()
