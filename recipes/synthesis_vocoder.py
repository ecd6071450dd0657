"""Give a model folder a synthesis vocoder (valle2.generation.synthesis_vocoder) from a fine-tuned codec folder.

The vocoder is fine-tuned like a codec's (``mel_train vocoder --gta-prob P`` on the GTA log-mels that
``recipes/vocoder_gta.py`` made with this model) and exported as a codec folder (``mel_train export``). This
recipe checks that the folder has the model's codes (its codebooks and recogniser), takes its vocoder, and
writes ``MODEL/synthesis_vocoder.safetensors`` (float16). The model's codec, and so resynthesis, keep their
own vocoder. ``--make-default`` also sets the model's default decoding to use it (config.json's
``sampling.vocoder = "synthesis"``). ``recipes/train_synthesis_vocoder.sh`` runs the whole round::

    python recipes/synthesis_vocoder.py src/valle2/assets/models/default --codec /work/data/s16/codec_v7 --make-default
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("model", type=Path, help="model folder (save_pretrained) with a valle2-mel codec")
    ap.add_argument("--codec", type=Path, required=True, help="codec folder whose vocoder to take (mel_train export)")
    ap.add_argument("--make-default", action="store_true", help="set sampling.vocoder = 'synthesis' in config.json")
    args = ap.parse_args(argv)

    from valle2 import VallE2
    from valle2.codec.mel import MelCodec
    from valle2.generation.synthesis_vocoder import load_vocoder, save_vocoder

    model = VallE2.from_pretrained(str(args.model))
    tuned = MelCodec.load(args.codec)
    ours, theirs = model.codec.identity(), tuned.identity()
    if ours.get("codebooks_sha256") != theirs.get("codebooks_sha256"):
        raise SystemExit(f"{args.codec} has other codes (codebooks_sha256 {theirs.get('codebooks_sha256')}) than the "
                         f"model's codec {ours.get('name')} ({ours.get('codebooks_sha256')}): its vocoder learnt "
                         "another codec's log-mels")
    if tuned.vocoder is None:
        raise SystemExit(f"{args.codec} has no vocoder")
    source = f"{theirs.get('name')} ({json.dumps(tuned.config.extra, sort_keys=True)})"
    path = save_vocoder(args.model, tuned.vocoder, model.codec, source=source)
    load_vocoder(path, model.codec)  # reads back, or says why not
    print(f"wrote {path} ({path.stat().st_size / 1e6:.1f} MB), from {source}")
    if args.make_default:
        cfg_path = args.model / "config.json"
        meta = json.loads(cfg_path.read_text())
        meta.setdefault("sampling", {})["vocoder"] = "synthesis"
        cfg_path.write_text(json.dumps(meta, indent=2))
        VallE2.from_pretrained(str(args.model))  # loads with the new default, or says why not
        print(f"{cfg_path}: sampling.vocoder = 'synthesis'")
    elif model.sampling.vocoder != "synthesis":
        print("the model still decodes with its codec's vocoder by default (add --make-default, or pass "
              "--vocoder synthesis to synthesize)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
