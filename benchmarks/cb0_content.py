"""How many of the words does a phonetic codebook 0 carry? (valle2-mel-v2; no model involved)

For held-out utterances, decode the TRUE codebook-0 sequence alone in three ways and transcribe
(faster-whisper tiny.en):

- ``mean``: each entry's own log-mel (the speaker-independent cluster mean) + the mean entry
  of every later codebook (what ``codec_resynth.py --systems first-stage`` does);
- ``knn_prompt``: each entry replaced by the mean log-mel of the ``--knn`` frames nearest to its
  centroid (recogniser feature space) in ONE other utterance of the same voice (3-8 s: what a
  prompt gives; kNN-VC style, Baas et al. 2023);
- ``knn_voice``: the same over ALL the voice's other held-out utterances (~2-3 min): enough
  reference that every entry finds frames of the right phone.
- ``knn_frames``: no quantisation — every frame's own recogniser features query the voice's
  reference frames (kNN-VC proper): what the features carry before k-means.

If ``knn_voice`` is intelligible, codebook 0 carries the words and what is missing is the
speaker-specific detail (the NAR's job). Usage::

    python benchmarks/cb0_content.py --codec src/valle2/assets/codec/valle2-mel-v2 --corpus /work/data/corpus
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--codec", type=Path, required=True)
    ap.add_argument("--corpus", type=Path, required=True)
    ap.add_argument("--split", default="held-out")
    ap.add_argument("--voices", nargs="+", default=["flite:awb", "espeak:en-us+quincy"])
    ap.add_argument("--per-voice", type=int, default=6)
    ap.add_argument("--knn", type=int, default=4)
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)

    from valle2.audio import load_audio
    from valle2.codec.mel import MelCodec
    from valle2.codec.phonetic import knn_entries
    from valle2.eval.asr import get_asr
    from valle2.eval.lists import from_lhotse
    from valle2.eval.wer import wer_details

    codec = MelCodec.load(args.codec)
    if codec.phonetic is None:
        raise SystemExit("this diagnostic needs a codec with a phonetic codebook 0")
    sr, C = codec.sample_rate, codec.codebooks
    utts = from_lhotse(args.corpus / f"synth_recordings_{args.split}.jsonl.gz",
                       args.corpus / f"synth_supervisions_{args.split}.jsonl.gz")
    asr = get_asr("faster-whisper", cpu_threads=args.threads)
    kinds = ("full", "mean", "knn_prompt", "knn_voice", "knn_frames")
    refs, hyps = [], {k: [] for k in kinds}

    def vocode(mel):  # (T, n_mels) -> waveform
        with torch.inference_mode():
            return codec.vocoder(mel.T[None].float())[0].clamp(-1, 1).numpy()

    def features(mel):
        with torch.inference_mode():
            return codec.phonetic.features(mel[None])[0]

    def knn(queries, mels):  # queries (N, H), reference mels [(n_mels, T)] -> (N, n_mels)
        return knn_entries(codec.phonetic, queries, mels, args.knn)

    def table(mels):  # (V, n_mels): kNN frames per centroid
        return knn(codec.phone_centroids, mels)

    mean_rest = C[1:].mean(1).sum(0)
    for voice in args.voices:
        us = sorted((u for u in utts if u.speaker == voice), key=lambda u: u.id)
        mels = {u.id: codec.mel(load_audio(u.audio, target_sr=sr)[0], sr) for u in us}
        for n, u in enumerate(us[1 : args.per_voice + 1]):
            codes = codec.encode_mel(mels[u.id])
            prompt_table = table([mels[us[0].id]])
            reference = [mels[o.id] for o in us if o.id != u.id]
            voice_table = table(reference)
            outs = {"full": codec.decode(codes), "mean": vocode(C[0][codes[0]] + mean_rest),
                    "knn_prompt": vocode(prompt_table[codes[0]]), "knn_voice": vocode(voice_table[codes[0]]),
                    "knn_frames": vocode(knn(features(mels[u.id]), reference))}
            refs.append(u.text)
            for k in kinds:
                hyps[k].append(asr.transcribe(outs[k], sr))
    print(json.dumps({"codec": str(args.codec), "utterances": len(refs), "voices": args.voices,
                      **{f"wer_{k}": round(wer_details(refs, hyps[k]).wer, 3) for k in kinds}}))


if __name__ == "__main__":
    main()
