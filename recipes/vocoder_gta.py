"""Ground-truth-aligned (GTA) log-mels for fine-tuning the valle2-mel vocoder on what synthesis feeds it.

At synthesis the vocoder does not get a codec's reconstruction of real speech: it gets the codes
the NAR chose for codebooks 1..K-1 (minimum-distortion decoding), dequantised and, with the
prompt-matched post-filter, moved to the prompt's per-bin statistics. Those log-mels are smoother
than any real utterance's. Tacotron 2's answer (Shen et al. 2018) is to train the vocoder on the
acoustic model's own predictions, aligned with the true audio: here, each training utterance's
TRUE codebook 0 (so the frames stay aligned with its audio) completed by the model's NAR exactly as
synthesis does (same decoding, precision and post-filter), with another utterance of the same
voice as the prompt.

Reads a ``mel_train features`` work folder and writes beside it ``gta_mels_<split>.npy``
([n_mels, ΣT] float16, zeros for utterances not done) and ``gta_utts_<split>.npy`` (the indices of
the utterances done). ``mel_train vocoder --gta-prob P`` then draws a row from them with
probability P::

    python recipes/vocoder_gta.py --model default --work W --corpus C1 C2:train-warped --utterances 1500
    python -m valle2.codec.mel_train vocoder --work W --init-codec valle2-mel-v3 --gta-prob 0.5 ...
"""

from __future__ import annotations

import argparse
import logging
import time
from pathlib import Path

import numpy as np
import torch

log = logging.getLogger("vocoder_gta")


def transcripts(corpora: list[str], split: str) -> dict[str, str]:
    """Recording id -> text over corpus folders (``FOLDER:SPLIT`` as in ``mel_train features``)."""
    from valle2.codec.mel_train import corpus_split, read_transcripts

    out: dict[str, str] = {}
    for spec in corpora:
        out.update(read_transcripts(*corpus_split(spec, split)))
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", default="default", help="model folder or 'default' (its codec must be valle2-mel)")
    ap.add_argument("--work", type=Path, required=True, help="mel_train work folder with features_<split>.npz")
    ap.add_argument("--corpus", nargs="+", required=True, help="the corpora of the features (for the transcripts)")
    ap.add_argument("--split", default="train")
    ap.add_argument("--utterances", type=int, default=1500, help="how many utterances (a seeded sample)")
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    torch.set_num_threads(args.threads)

    from valle2 import VallE2
    from valle2.codec.mel_train import load_features
    from valle2.generation.nar_decode import nar_generate
    from valle2.generation.pipeline import Prompt, Row, RowResult
    from valle2.models.grouping import clip_to_groups

    m = VallE2.from_pretrained(args.model).eval()
    codec = m.codec
    if not hasattr(codec, "codebooks"):
        raise SystemExit(f"model {args.model} does not use a valle2-mel codec")
    feats = load_features(args.work / f"features_{args.split}.npz")
    offsets, ids, speakers = feats["offsets"], [str(i) for i in feats["ids"]], [str(s) for s in feats["speakers"]]
    texts = transcripts(args.corpus, args.split)
    missing = [i for i in ids if i not in texts]
    if missing:
        raise SystemExit(f"{len(missing)} utterances of the features have no transcript in {args.corpus} "
                         f"(first: {missing[0]})")
    by_voice: dict[str, list[int]] = {}
    for i, spk in enumerate(speakers):
        by_voice.setdefault(spk, []).append(i)
    rng = np.random.default_rng(args.seed)
    usable = [i for i, spk in enumerate(speakers) if len(by_voice[spk]) > 1]
    chosen = np.sort(rng.choice(usable, size=min(args.utterances, len(usable)), replace=False))
    order = chosen[np.argsort(np.diff(offsets)[chosen], kind="stable")]  # batches of similar lengths pad less

    def mel(i: int) -> torch.Tensor:
        return torch.from_numpy(feats["mels"][:, offsets[i] : offsets[i + 1]].astype(np.float32))

    out = np.zeros_like(feats["mels"], dtype=np.float16)
    expected = m.sampling.nar_decoding == "expected"
    entries = codec.code_entries() if m.sampling.nar_decoding in ("min_distortion", "expected") else None
    frontend, sep, eos = m.frontend(), m.symbols.separator_ids(), m.symbols.id("<eos>")
    t0, frames = time.monotonic(), 0
    for start in range(0, len(order), args.batch):
        batch = order[start : start + args.batch]
        layouts, prompts, targets = [], [], []  # (text ids, prompt length in ids), prompt codes, codebook 0
        for i in batch:
            p = int(rng.choice([j for j in by_voice[speakers[i]] if j != i]))
            pcodes = clip_to_groups(codec.encode_mel(mel(p)), m.config.group_size)
            prompt = Prompt(wav=np.zeros(0, np.float32), sr=m.sample_rate, text=texts[ids[p]],
                            phone_ids=frontend.encode(texts[ids[p]]), codes=pcodes)
            layouts.append(Row(prompt, frontend.encode(texts[ids[i]])).text_ids(sep, eos))
            prompts.append(pcodes)
            targets.append(codec.encode_mel(mel(int(i)))[0])
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=m.nar_precision == "bf16"):
            full = nar_generate(m.nar, [torch.tensor(t) for t, _ in layouts], prompts, targets, entries=entries,
                                text_splits=[lead for _, lead in layouts], temperature=m.sampling.nar_temperature,
                                return_expected=expected)
        expected_res = full.expected or [None] * len(full.codes)
        # what synthesis decodes on top of codebook 0 (expected entries, nar_weight); None: the codes as they are
        residuals = m.residuals([RowResult(c, False, 0.0, residual=r) for c, r in zip(full.codes, expected_res)],
                                m.sampling, prompts=prompts)
        for n, (i, codes, pcodes) in enumerate(zip(batch, full.codes, prompts)):
            reference = pcodes if m.sampling.post_filter == "prompt_match" else None
            x = codec.synthesis_mel(codes, reference, m.sampling.post_filter_strength,
                                    None if residuals is None else residuals[n])  # what decode() vocodes
            out[:, offsets[i] : offsets[i + 1]] = x.numpy().astype(np.float16)
            frames += codes.shape[1]
        if (start // args.batch) % 10 == 0:
            log.info("%d/%d utterances, %.1f min of audio, %.0f s", start + len(batch), len(chosen),
                     frames / codec.frame_rate / 60, time.monotonic() - t0)
    np.save(args.work / f"gta_mels_{args.split}.npy", out)
    np.save(args.work / f"gta_utts_{args.split}.npy", chosen.astype(np.int64))
    log.info("wrote %d utterances (%.1f min of audio) in %.0f s to %s", len(chosen), frames / codec.frame_rate / 60,
             time.monotonic() - t0, args.work)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
