"""Fit a model folder's "code0" residual prior from its training codes (valle2.generation.residual_prior).

Reads packed token files (``valle2-packed.safetensors``, as ``recipes/gpu_sprint.py`` trains on), checks
that they were tokenised with the model's codec, and writes ``MODEL/residual_prior.safetensors``: for each
codebook-0 code, the mean of what codebooks 1..K-1 add to its frames. Codes only; no audio, seconds on a
CPU. ``--make-default`` also sets the model's default decoding to use it (config.json's
``sampling.residual_prior = "code0"``, and ``--nar-weight`` if given)::

    python recipes/fit_residual_prior.py src/valle2/assets/models/default \\
        --packed /work/data/packed/train12.safetensors /work/data/packed/train45.safetensors \\
        --make-default --nar-weight 0.5
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path


def packed_codes(path: Path, codec_identity: dict):
    """A packed file's codes (K, N) (or its ``.xz``'s), after checking its codec against the model's."""
    from valle2.codec.base import same_codes
    from valle2.training.packed import load_packed

    data = load_packed(path)
    theirs = data.meta.get("codec")
    if not isinstance(theirs, dict) or not same_codes(theirs, codec_identity):
        raise SystemExit(f"{path} was tokenised with codec {theirs}; the model's codec is {codec_identity}")
    return data.codes


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("model", type=Path, help="model folder (save_pretrained)")
    ap.add_argument("--packed", type=Path, nargs="+", required=True, help="packed token files of its training set")
    ap.add_argument("--min-count", type=int, default=20, help="codes seen in fewer frames keep the mean prior")
    ap.add_argument("--make-default", action="store_true", help="set sampling.residual_prior = 'code0' in config.json")
    ap.add_argument("--nar-weight", type=float, default=None, help="with --make-default: also set sampling.nar_weight")
    args = ap.parse_args()

    from valle2 import VallE2
    from valle2.generation.residual_prior import fit_code0_prior, save_prior

    model = VallE2.from_pretrained(str(args.model))
    identity = model.codec.identity()
    prior, counts = fit_code0_prior((packed_codes(p, identity) for p in args.packed),
                                    model.codec.code_entries(), min_count=args.min_count)
    path = save_prior(args.model, prior, counts, model.codec)
    seen = int((counts >= args.min_count).sum())
    print(f"wrote {path}: {int(counts.sum())} frames, {seen}/{len(counts)} codes fitted "
          f"(the rest keep the mean prior)")
    if args.make_default:
        cfg_path = args.model / "config.json"
        meta = json.loads(cfg_path.read_text())
        meta.setdefault("sampling", {})["residual_prior"] = "code0"
        if args.nar_weight is not None:
            meta["sampling"]["nar_weight"] = args.nar_weight
        cfg_path.write_text(json.dumps(meta, indent=2))
        VallE2.from_pretrained(str(args.model))  # loads with the new defaults, or says why not
        print(f"{cfg_path}: sampling.residual_prior = 'code0'"
              + (f", nar_weight = {args.nar_weight}" if args.nar_weight is not None else ""))
    elif model.sampling.residual_prior != "code0":
        print("the model still decodes with residual_prior 'mean' by default (add --make-default, or pass "
              "--residual-prior code0 to synthesize)")


if __name__ == "__main__":
    main()
