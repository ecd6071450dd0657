"""Training recipe of the valle2-mel codec: features -> residual k-means -> vocoder -> export.

Each step is a pure-ish function plus a sub-command of ``python -m valle2.codec.mel_train``;
all state lives in one work folder, so every step can be re-run or resumed::

    python -m valle2.codec.mel_train features --corpus /work/data/corpus --split train --work W
    python -m valle2.codec.mel_train kmeans   --work W --codebooks 8 --size 256
    python -m valle2.codec.mel_train vocoder  --work W --minutes 60      # resumable
    python -m valle2.codec.mel_train export   --work W --out src/valle2/assets/codec/valle2-mel-v1

A phonetic codebook 0 (valle2-mel-v2, ``valle2.codec.phonetic``) adds a CTC phone recogniser
before the k-means (features of both splits first: held-out gives the phone error rate)::

    python -m valle2.codec.mel_train phones   --work W --corpus /work/data/corpus --minutes 25
    python -m valle2.codec.mel_train kmeans   --work W --phonetic --codebooks 8 --size 256
    python -m valle2.codec.mel_train export   --work W --out DIR --name valle2-mel-v2 --float16

Fine-tuning the vocoder of an exported codec on that codec's own quantisation (its codes and
their meaning stay the same, so models trained on it keep working)::

    python -m valle2.codec.mel_train features --corpus C1 C2:train-warped --split train --work W
    python -m valle2.codec.mel_train vocoder  --work W --init-codec valle2-mel-v3 --lr 3e-4 --minutes 60
    python -m valle2.codec.mel_train export   --work W --codec valle2-mel-v3 --out DIR --name valle2-mel-v4 --float16

Work folder: ``features_<split>.npz`` (log-mels [n_mels, ΣT] float16, audio int16, offsets),
``kmeans.safetensors`` (codebooks [K, V, n_mels]; + ``phone_centroids`` [V, dim] when
phonetic), ``phones.json`` + ``phone_ckpt.pt`` (the recogniser), ``vocoder_ckpt.pt`` (tensors only:
model, optimiser, step, RNG; read with ``weights_only=True``), ``train.log``.

The vocoder is trained on *quantised* mels (all K stages) against the original audio with
a multi-resolution STFT loss (spectral convergence + log-magnitude L1) and a log-mel L1.
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import os
import time
from dataclasses import asdict, replace
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from valle2.codec.mel import LogMel, MelCodec, MelCodecConfig, build_vocoder, rvq_decode, rvq_encode

log = logging.getLogger(__name__)


# ---------------------------------------------------------------------------------------
# Features


def corpus_split(spec: str | Path, split: str) -> tuple[Path, str]:
    """``FOLDER`` -> (FOLDER, split); ``FOLDER:SPLIT`` -> (FOLDER, SPLIT): a corpus naming its own split."""
    folder, sep, own = str(spec).rpartition(":")
    if sep and own and "/" not in own:
        return Path(folder), own
    return Path(spec), split


def read_manifest_paths(corpus: Path, split: str) -> list[tuple[str, str, Path]]:
    """(recording id, speaker, wav path) of a corpus split written by ``valle2 corpus synth``.

    ``corpus`` may name its own split as ``FOLDER:SPLIT`` (several corpora in one features file)."""
    from lhotse import load_manifest

    corpus, split = corpus_split(corpus, split)
    for name in (f"synth_recordings_{split}.jsonl.gz", f"synth_supervisions_{split}.jsonl.gz"):
        if not (corpus / name).is_file():
            raise FileNotFoundError(f"{corpus} has no {name} (split {split!r})")

    recs = load_manifest(corpus / f"synth_recordings_{split}.jsonl.gz")
    sups = load_manifest(corpus / f"synth_supervisions_{split}.jsonl.gz")
    speaker = {s.recording_id: s.speaker for s in sups}
    return [(r.id, speaker[r.id], Path(r.sources[0].source)) for r in recs]


def compute_features(items: list[tuple[str, str, Path]], cfg: MelCodecConfig) -> dict[str, np.ndarray]:
    """Log-mels and audio of every item, concatenated (frame-aligned: audio = frames * hop)."""
    import soundfile as sf

    frontend = LogMel(cfg)
    mels, audio, offsets, speakers, ids = [], [], [0], [], []
    hop = cfg.hop_length
    for i, (rid, spk, path) in enumerate(items):
        wav, sr = sf.read(str(path), dtype="float32")
        if sr != cfg.sample_rate:
            raise ValueError(f"{path} is {sr} Hz; expected {cfg.sample_rate}")
        n = math.ceil(len(wav) / hop) * hop
        wav = np.pad(wav, (0, n - len(wav)))
        with torch.inference_mode():
            mel = frontend(torch.from_numpy(wav)[None])[0]  # (n_mels, T)
        mels.append(mel.numpy().astype(np.float16))
        audio.append(np.clip(wav * 32767.0, -32768, 32767).astype(np.int16))
        offsets.append(offsets[-1] + mel.shape[1])
        speakers.append(spk)
        ids.append(rid)
        if (i + 1) % 500 == 0:
            log.info("features: %d/%d", i + 1, len(items))
    return {
        "mels": np.concatenate(mels, axis=1),
        "audio": np.concatenate(audio),
        "offsets": np.asarray(offsets, dtype=np.int64),
        "speakers": np.asarray(speakers),
        "ids": np.asarray(ids),
    }


def load_features(path: Path) -> dict[str, np.ndarray]:
    with np.load(path, allow_pickle=False) as z:
        return {k: z[k] for k in z.files}


def _utterances(feats: dict[str, np.ndarray]):
    offsets = feats["offsets"]
    for i, rid in enumerate(feats["ids"]):
        yield str(rid), offsets[i], offsets[i + 1]


# ---------------------------------------------------------------------------------------
# Residual k-means


def kmeans(x: torch.Tensor, k: int, n_iter: int, generator: torch.Generator, chunk: int = 65536) -> torch.Tensor:
    """Lloyd's k-means on [N, D] -> centroids [k, D]; empty clusters are re-seeded at random points."""
    n = x.shape[0]
    centroids = x[torch.randperm(n, generator=generator)[:k]].clone()
    for _ in range(n_iter):
        sums = torch.zeros_like(centroids)
        counts = torch.zeros(k)
        for start in range(0, n, chunk):
            xb = x[start : start + chunk]
            dist = (centroids * centroids).sum(-1)[None] - 2.0 * xb @ centroids.T
            idx = dist.argmin(-1)
            sums.index_add_(0, idx, xb)
            counts += torch.bincount(idx, minlength=k).float()
        empty = counts == 0
        centroids = sums / counts.clamp(min=1)[:, None]
        if empty.any():
            centroids[empty] = x[torch.randint(0, n, (int(empty.sum()),), generator=generator)]
    return centroids


def fit_residual_kmeans(
    frames: torch.Tensor, n_codebooks: int, codebook_size: int, n_iter: int = 20, seed: int = 0
) -> torch.Tensor:
    """Frames [N, D] -> codebooks [K, V, D]: stage k is k-means on the residual after stages < k."""
    generator = torch.Generator().manual_seed(seed)
    residual = frames.float().clone()
    books = []
    for k in range(n_codebooks):
        cb = kmeans(residual, codebook_size, n_iter, generator)
        books.append(cb)
        residual = residual - cb[rvq_encode(residual, cb[None])[0]]
        log.info("stage %d: residual RMS %.4f", k, residual.pow(2).mean().sqrt().item())
    return torch.stack(books) if books else frames.new_zeros(0, codebook_size, frames.shape[1])


def encode_features(codec: MelCodec, feats: dict[str, np.ndarray]) -> torch.Tensor:
    """Codes [K, ΣT] of every utterance of a features file, encoded one utterance at a time
    (a phonetic first stage normalises and looks at context per utterance)."""
    return torch.cat([codec.encode_mel(torch.from_numpy(feats["mels"][:, a:b].astype(np.float32)))
                      for _, a, b in _utterances(feats)], dim=1)


def rvq_distortion(codec: MelCodec, feats: dict[str, np.ndarray]) -> list[float]:
    """Log-mel RMS error after 1..K stages over a features file (how much each stage buys)."""
    codes, books = encode_features(codec, feats), codec.codebooks
    x = torch.from_numpy(feats["mels"].astype(np.float32)).T
    return [(rvq_decode(codes[: k + 1], books) - x).pow(2).mean().sqrt().item() for k in range(len(books))]


def quantize_mels(codec: MelCodec, feats: dict[str, np.ndarray]) -> np.ndarray:
    """Every utterance's log-mel [D, ΣT] -> its reconstruction by ``codec`` (float16)."""
    return codec.dequantize(encode_features(codec, feats)).numpy().astype(np.float16)


# ---------------------------------------------------------------------------------------
# Phonetic first stage (valle2.codec.phonetic): CTC phone recogniser, then k-means on its features


def read_transcripts(corpus: Path, split: str) -> dict[str, str]:
    from lhotse import load_manifest

    return {s.recording_id: s.text for s in load_manifest(corpus / f"synth_supervisions_{split}.jsonl.gz")}


def phone_targets(texts: dict[str, str], language: str = "en-us") -> tuple[list[str], dict[str, list[int]]]:
    """Phone inventory (sorted) and each text's CTC target ids (1-based: 0 is the blank)."""
    from valle2.codec.phonetic import phone_labels
    from valle2.text.g2p import Phonemizer
    from valle2.text.normalize import normalize_text

    g2p = Phonemizer(language)
    labels = {rid: phone_labels(g2p.phonemize(normalize_text(text, language))) for rid, text in texts.items()}
    inventory = sorted({p for seq in labels.values() for p in seq})
    index = {p: i + 1 for i, p in enumerate(inventory)}
    return inventory, {rid: [index[p] for p in seq] for rid, seq in labels.items()}


def _pad_mels(mels: list[np.ndarray]) -> tuple[torch.Tensor, torch.Tensor]:
    lengths = torch.tensor([m.shape[1] for m in mels])
    out = torch.zeros(len(mels), mels[0].shape[0], int(lengths.max()))
    for i, m in enumerate(mels):
        out[i, :, : m.shape[1]] = torch.from_numpy(m.astype(np.float32))
    return out, lengths


def phone_error_rate(encoder, feats: dict[str, np.ndarray], targets: dict[str, list[int]], limit: int = 200) -> float:
    """Greedy-CTC phone error rate (edit distance / reference phones) on up to ``limit`` utterances."""
    import jiwer

    from valle2.codec.phonetic import greedy_ctc

    refs, hyps = [], []
    encoder.eval()
    with torch.inference_mode():
        for n, (rid, a, b) in enumerate(_utterances(feats)):
            if n >= limit or rid not in targets:
                continue
            mel = torch.from_numpy(feats["mels"][:, a:b].astype(np.float32))[None]
            hyp = greedy_ctc(encoder(mel)[0])
            refs.append(" ".join(map(str, targets[rid])))
            hyps.append(" ".join(map(str, hyp)) or "-")
    encoder.train()
    return float(jiwer.wer(refs, hyps))


def train_phone_encoder(
    work: Path, cfg: MelCodecConfig, corpus: Path, minutes: float = 20.0, total_steps: int = 3000,
    batch_frames: int = 12000, lr: float = 2e-3, seed: int = 0,
) -> int:
    """Train (or resume) the CTC phone recogniser for ``minutes``; saves ``phone_ckpt.pt``, ``phones.json``."""
    from valle2.codec.mel import build_phone_encoder

    feats = load_features(work / "features_train.npz")
    held = work / "features_held-out.npz"
    held_feats = load_features(held) if held.exists() else None
    phones_path = work / "phones.json"
    texts = read_transcripts(corpus, "train")
    if held_feats is not None:
        texts.update(read_transcripts(corpus, "held-out"))
    inventory, targets = phone_targets(texts)
    if phones_path.exists():  # resume: keep the saved inventory (ids must not move)
        saved = json.loads(phones_path.read_text())["phones"]
        if saved != inventory:
            raise ValueError(f"{phones_path} lists other phones than the corpus gives now")
    phones_path.write_text(json.dumps({"phones": inventory}, ensure_ascii=False, indent=1))
    cfg = replace(cfg, first_stage="phonetic", n_phones=len(inventory))
    (work / "codec_config.json").write_text(json.dumps(asdict(cfg), indent=2))
    log.info("phones: %d (%s)", len(inventory), " ".join(inventory))

    torch.manual_seed(seed)
    encoder = build_phone_encoder(cfg)
    opt = torch.optim.AdamW(encoder.parameters(), lr=lr, weight_decay=0.01)
    ckpt = work / "phone_ckpt.pt"
    step = 0
    if ckpt.exists():
        state = torch.load(ckpt, weights_only=True)
        encoder.load_state_dict(state["model"])
        opt.load_state_dict(state["opt"])
        step = int(state["step"])
        log.info("resumed at step %d", step)
    log.info("phone encoder: %.2f M parameters", sum(p.numel() for p in encoder.parameters()) / 1e6)

    utts = [(rid, a, b) for rid, a, b in _utterances(feats) if rid in targets]
    utts.sort(key=lambda u: u[2] - u[1])
    batches, cur = [], []
    for u in utts:  # length-sorted batches of about batch_frames frames
        if cur and (len(cur) + 1) * (u[2] - u[1]) > batch_frames:
            batches.append(cur)
            cur = []
        cur.append(u)
    batches.append(cur)
    rng = np.random.default_rng(seed + step)

    def lr_at(s: int) -> float:
        warm = 200
        if s < warm:
            return lr * (s + 1) / warm
        return lr * (0.05 + 0.95 * 0.5 * (1 + math.cos(math.pi * min(1.0, (s - warm) / max(1, total_steps - warm)))))

    encoder.train()
    t_end = time.monotonic() + minutes * 60
    running, n_run = 0.0, 0
    while time.monotonic() < t_end and step < total_steps:
        chosen = batches[rng.integers(len(batches))]
        mel, lengths = _pad_mels([feats["mels"][:, a:b] for _, a, b in chosen])
        # Light augmentation: random gain (removed by the mean normalisation anyway) and
        # frequency masking, so that the features do not lean on one band.
        if rng.random() < 0.5:
            f0 = int(rng.integers(0, cfg.n_mels - 8))
            mel[:, f0 : f0 + int(rng.integers(1, 8))] = mel.mean()
        tgt = [torch.tensor(targets[rid]) for rid, _, _ in chosen]
        for group in opt.param_groups:
            group["lr"] = lr_at(step)
        logp = encoder(mel, lengths)  # (B, T, C)
        loss = F.ctc_loss(logp.transpose(0, 1), torch.cat(tgt), lengths, torch.tensor([len(t) for t in tgt]),
                          blank=0, zero_infinity=True)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(encoder.parameters(), 1.0)
        opt.step()
        step += 1
        running, n_run = running + loss.item(), n_run + 1
        if step % 50 == 0:
            log.info("step %d lr %.2e ctc %.4f", step, lr_at(step), running / n_run)
            running, n_run = 0.0, 0
        if step % 500 == 0 and held_feats is not None:
            log.info("step %d held-out PER %.4f", step, phone_error_rate(encoder, held_feats, targets))
    torch.save({"step": torch.tensor(step), "model": encoder.state_dict(), "opt": opt.state_dict()}, ckpt)
    if held_feats is not None:
        log.info("step %d held-out PER %.4f (greedy CTC, %d utterances)", step,
                 phone_error_rate(encoder, held_feats, targets), min(200, len(held_feats["ids"])))
    log.info("saved step %d to %s", step, ckpt)
    return step


def load_phone_encoder(work: Path, cfg: MelCodecConfig):
    from valle2.codec.mel import build_phone_encoder

    encoder = build_phone_encoder(cfg)
    encoder.load_state_dict(torch.load(work / "phone_ckpt.pt", weights_only=True)["model"])
    return encoder.eval()


def phonetic_features(encoder, feats: dict[str, np.ndarray]) -> np.ndarray:
    """The recogniser's features of every frame [ΣT, dim] (float32), utterance by utterance."""
    out = []
    with torch.inference_mode():
        for _, a, b in _utterances(feats):
            mel = torch.from_numpy(feats["mels"][:, a:b].astype(np.float32))[None]
            out.append(encoder.features(mel)[0].numpy())
    return np.concatenate(out)


def fit_phonetic_kmeans(
    mels: np.ndarray, features: np.ndarray, n_codebooks: int, codebook_size: int, n_iter: int = 20, seed: int = 0
) -> tuple[torch.Tensor, torch.Tensor]:
    """Frames' log-mels [D, N] and phonetic features [N, H] -> (codebooks [K, V, D], centroids [V, H]).

    Stage 0 clusters the features; its entries are each cluster's mean log-mel. Stages 1..K-1
    are residual k-means on the log-mel minus the stage-0 entry.
    """
    from valle2.codec.phonetic import nearest

    generator = torch.Generator().manual_seed(seed)
    x = torch.from_numpy(mels.astype(np.float32)).T
    h = torch.from_numpy(features.astype(np.float32))
    centroids = kmeans(h, codebook_size, n_iter, generator)
    first = torch.cat([nearest(h[i : i + 65536], centroids) for i in range(0, len(h), 65536)])
    counts = torch.bincount(first, minlength=codebook_size).float()
    entries = torch.zeros(codebook_size, x.shape[1]).index_add_(0, first, x) / counts.clamp(min=1)[:, None]
    entries[counts == 0] = x.mean(0)
    residual = x - entries[first]
    log.info("phonetic stage 0: %d/%d clusters used, residual RMS %.4f", int((counts > 0).sum()), codebook_size,
             residual.pow(2).mean().sqrt().item())
    rest = fit_residual_kmeans(residual, n_codebooks - 1, codebook_size, n_iter, seed + 1)
    return torch.cat([entries[None], rest]), centroids


# ---------------------------------------------------------------------------------------
# Vocoder losses


class MultiResolutionSTFTLoss(torch.nn.Module):
    def __init__(self, resolutions=((512, 128), (1024, 256), (2048, 512))):
        super().__init__()
        self.resolutions = resolutions
        for n_fft, _ in resolutions:
            self.register_buffer(f"win{n_fft}", torch.hann_window(n_fft), persistent=False)

    def forward(self, pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        total = pred.new_zeros(())
        for n_fft, hop in self.resolutions:
            win = getattr(self, f"win{n_fft}")
            p = torch.stft(pred, n_fft, hop, window=win, return_complex=True).abs().clamp(min=1e-7)
            t = torch.stft(target, n_fft, hop, window=win, return_complex=True).abs().clamp(min=1e-7)
            sc = torch.linalg.norm(t - p, dim=(1, 2)) / torch.linalg.norm(t, dim=(1, 2)).clamp(min=1e-7)
            total = total + sc.mean() + F.l1_loss(p.log(), t.log())
        return total / len(self.resolutions)


# ---------------------------------------------------------------------------------------
# Vocoder training (resumable)


def _batch(feats, qmels, rng: np.random.Generator, batch: int, frames: int, hop: int, gta=None):
    """``batch`` random windows of ``frames`` frames: (input log-mels, audio). ``gta``: (log-mels,
    utterance indices, probability): each row comes from those log-mels with that probability."""
    offsets = feats["offsets"]
    lengths = np.diff(offsets)
    ok = np.nonzero(lengths > frames)[0]
    if len(ok) == 0:
        raise ValueError(f"no utterance is longer than {frames} frames")
    utt = rng.choice(ok, size=batch)
    source = [qmels] * batch
    if gta is not None:
        gta_mels, gta_utts, prob = gta
        gta_ok = gta_utts[lengths[gta_utts] > frames]
        if len(gta_ok) == 0:
            raise ValueError(f"no GTA utterance is longer than {frames} frames")
        use = rng.random(batch) < prob
        utt = np.where(use, rng.choice(gta_ok, size=batch), utt)
        source = [gta_mels if u else qmels for u in use]
    mel_b, wav_b = [], []
    for u, src in zip(utt, source):
        start = offsets[u] + rng.integers(0, lengths[u] - frames)
        mel_b.append(src[:, start : start + frames].astype(np.float32))
        wav_b.append(feats["audio"][start * hop : (start + frames) * hop].astype(np.float32) / 32767.0)
    return torch.from_numpy(np.stack(mel_b)), torch.from_numpy(np.stack(wav_b))


def _save_ckpt(path: Path, vocoder, opt, step: int, rng: np.random.Generator) -> None:
    state = {
        "step": torch.tensor(step),
        "model": vocoder.state_dict(),
        "opt": opt.state_dict(),
        "rng": torch.from_numpy(np.frombuffer(json.dumps(rng.bit_generator.state).encode(), dtype=np.uint8).copy()),
    }
    tmp = path.with_suffix(".tmp")
    torch.save(state, tmp)
    os.replace(tmp, path)


def train_vocoder(
    work: Path,
    cfg: MelCodecConfig,
    split: str = "train",
    minutes: float = 60.0,
    total_steps: int = 20000,
    batch: int = 16,
    frames: int = 48,
    lr: float = 1e-3,
    ckpt_every_s: float = 180.0,
    seed: int = 0,
    init_codec: MelCodec | None = None,
    warmup: int = 300,
    gta_prob: float = 0.0,
) -> int:
    """Train (or resume) the vocoder for ``minutes`` of wall time; returns the last step.

    ``init_codec``: fine-tune that codec's vocoder on that codec's own quantisation (instead of
    the work folder's k-means and a fresh vocoder); its codes keep their meaning. ``gta_prob``:
    the share of rows whose input is the synthesis-side log-mel of ``recipes/vocoder_gta.py``
    (``gta_mels_<split>.npy``) instead of the codec's reconstruction."""
    if init_codec is not None and init_codec.vocoder is None:
        raise ValueError(f"codec {init_codec.config.name!r} has no vocoder to fine-tune")
    if not (work / f"features_{split}.npz").is_file():
        raise FileNotFoundError(f"{work} has no features_{split}.npz: run `features --split {split}` first")
    feats = load_features(work / f"features_{split}.npz")
    qpath = work / f"qmels_{split}.npy"
    if not qpath.exists():
        log.info("quantising %d frames", feats["mels"].shape[1])
        quantiser = init_codec if init_codec is not None else build_codec(work, cfg, with_vocoder=False)
        np.save(qpath, quantize_mels(quantiser, feats))
    qmels = np.load(qpath, mmap_mode="r")
    gta = None
    if gta_prob > 0:
        gpath, upath = work / f"gta_mels_{split}.npy", work / f"gta_utts_{split}.npy"
        if not gpath.is_file() or not upath.is_file():
            raise FileNotFoundError(f"{work} has no {gpath.name} + {upath.name}: run recipes/vocoder_gta.py first")
        gta = (np.load(gpath, mmap_mode="r"), np.load(upath), gta_prob)
        log.info("%.0f %% of rows from %d synthesis-side (GTA) utterances", 100 * gta_prob, len(gta[1]))

    torch.manual_seed(seed)
    cfg = init_codec.config if init_codec is not None else cfg
    vocoder = build_vocoder(cfg)
    if init_codec is not None:
        vocoder.load_state_dict({k: v.float() for k, v in init_codec.vocoder.state_dict().items()})
    opt = torch.optim.AdamW(vocoder.parameters(), lr=lr, betas=(0.8, 0.99), weight_decay=0.01)
    rng = np.random.default_rng(seed)
    step = 0
    ckpt = work / "vocoder_ckpt.pt"
    if ckpt.exists():
        state = torch.load(ckpt, weights_only=True)
        vocoder.load_state_dict(state["model"])
        opt.load_state_dict(state["opt"])
        step = int(state["step"])
        rng.bit_generator.state = json.loads(bytes(state["rng"].numpy()).decode())
        log.info("resumed at step %d", step)
    n_params = sum(p.numel() for p in vocoder.parameters())
    log.info("vocoder: %.2f M parameters", n_params / 1e6)

    stft_loss = MultiResolutionSTFTLoss()
    frontend = LogMel(cfg)
    # Cosine decay to 10 % over total_steps after a short warm-up.
    def lr_at(s: int) -> float:
        warm = warmup
        if s < warm:
            return lr * (s + 1) / warm
        p = min(1.0, (s - warm) / max(1, total_steps - warm))
        return lr * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * p)))

    vocoder.train()
    t_end = time.monotonic() + minutes * 60
    last_ckpt = time.monotonic()
    running: dict[str, float] = {}
    while time.monotonic() < t_end and step < total_steps:
        mel, wav = _batch(feats, qmels, rng, batch, frames, cfg.hop_length, gta)
        for group in opt.param_groups:
            group["lr"] = lr_at(step)
        pred = vocoder(mel)
        l_stft = stft_loss(pred, wav)
        l_mel = F.l1_loss(frontend(pred), frontend(wav))
        loss = l_stft + l_mel
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(vocoder.parameters(), 1.0)
        opt.step()
        step += 1
        for name, value in (("loss", loss.item()), ("stft", l_stft.item()), ("mel", l_mel.item())):
            running[name] = running.get(name, 0.0) + value
        if step % 50 == 0:
            log.info("step %d lr %.2e %s", step, lr_at(step),
                     " ".join(f"{k} {v / 50:.4f}" for k, v in running.items()))
            running = {}
        if time.monotonic() - last_ckpt > ckpt_every_s:
            _save_ckpt(ckpt, vocoder, opt, step, rng)
            last_ckpt = time.monotonic()
    _save_ckpt(ckpt, vocoder, opt, step, rng)
    log.info("saved step %d to %s", step, ckpt)
    return step


# ---------------------------------------------------------------------------------------
# Export


def build_codec(work: Path, cfg: MelCodecConfig, with_vocoder: bool = True) -> MelCodec:
    """The codec from the work folder's codebooks (+ the vocoder checkpoint if asked and present)."""
    from safetensors.torch import load_file

    tensors = load_file(str(work / "kmeans.safetensors"))
    codebooks = tensors["codebooks"]
    cfg = replace(cfg, n_codebooks=codebooks.shape[0], codebook_size=codebooks.shape[1])
    phonetic = centroids = None
    if cfg.first_stage == "phonetic":
        phonetic, centroids = load_phone_encoder(work, cfg), tensors["phone_centroids"]
    ckpt = work / "vocoder_ckpt.pt"
    if not with_vocoder or not ckpt.exists():
        return MelCodec(replace(cfg, vocoder_dim=None), codebooks, None, phonetic, centroids)
    vocoder, step = _vocoder_from_ckpt(ckpt, cfg)
    return MelCodec(replace(cfg, extra=dict(cfg.extra, vocoder_step=step)), codebooks, vocoder, phonetic, centroids)


def _vocoder_from_ckpt(ckpt: Path, cfg: MelCodecConfig):
    """The vocoder of a training checkpoint, and its step."""
    vocoder = build_vocoder(cfg)
    state = torch.load(ckpt, weights_only=True)
    vocoder.load_state_dict(state["model"])
    return vocoder, int(state["step"])


def finetuned_codec(work: Path, base: MelCodec, name: str) -> MelCodec:
    """``base`` (codebooks, recogniser: the same codes) with the work folder's vocoder checkpoint."""
    ckpt = work / "vocoder_ckpt.pt"
    if not ckpt.is_file():
        raise FileNotFoundError(f"{work} has no vocoder_ckpt.pt: run `vocoder --init-codec` first")
    vocoder, step = _vocoder_from_ckpt(ckpt, base.config)
    extra = dict(base.config.extra, vocoder_step=step, vocoder_finetuned_from=base.config.name)
    cfg = replace(base.config, name=name, extra=extra)
    return MelCodec(cfg, base.codebooks, vocoder, base.phonetic, base.phone_centroids)


def load_codec_arg(value: str) -> MelCodec:
    """A codec folder, or the name of a bundled codec (``valle2-mel-v3``), as a recipe's ``codec.path``."""
    from valle2.config import CodecConfig, build_codec as codec_from_config

    return codec_from_config(CodecConfig(type="valle2-mel", path=value))


def _config_from_work(work: Path) -> MelCodecConfig:
    path = work / "codec_config.json"
    if path.exists():
        return MelCodecConfig(**json.loads(path.read_text()))
    return MelCodecConfig()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m valle2.codec.mel_train", description=__doc__.split("\n")[0])
    parser.add_argument("--threads", type=int, default=1)
    sub = parser.add_subparsers(dest="cmd", required=True)
    p = sub.add_parser("features")
    p.add_argument("--corpus", nargs="+", required=True,
                   help="corpus folders; FOLDER:SPLIT reads that split of it (default: --split)")
    p.add_argument("--split", default="train", help="the split to read, and the features file's name")
    p.add_argument("--work", type=Path, required=True)
    p = sub.add_parser("kmeans")
    p.add_argument("--work", type=Path, required=True)
    p.add_argument("--split", default="train")
    p.add_argument("--codebooks", type=int, default=8)
    p.add_argument("--size", type=int, default=256)
    p.add_argument("--max-frames", type=int, default=200_000)
    p.add_argument("--iters", type=int, default=20)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--eval-split", default="held-out", help="report distortion on this split's features if present")
    p.add_argument("--phonetic", action="store_true",
                   help="stage 0 = k-means on the phone recogniser's features (run `phones` first)")
    p = sub.add_parser("phones", help="train the CTC phone recogniser of a phonetic first stage")
    p.add_argument("--work", type=Path, required=True)
    p.add_argument("--corpus", type=Path, required=True)
    p.add_argument("--minutes", type=float, default=20.0)
    p.add_argument("--total-steps", type=int, default=3000)
    p.add_argument("--batch-frames", type=int, default=12000)
    p.add_argument("--lr", type=float, default=2e-3)
    p = sub.add_parser("vocoder")
    p.add_argument("--work", type=Path, required=True)
    p.add_argument("--split", default="train")
    p.add_argument("--minutes", type=float, default=60.0)
    p.add_argument("--total-steps", type=int, default=20000)
    p.add_argument("--batch", type=int, default=16)
    p.add_argument("--frames", type=int, default=48)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--warmup", type=int, default=300)
    p.add_argument("--gta-prob", type=float, default=0.0,
                   help="share of rows from the synthesis-side log-mels of recipes/vocoder_gta.py")
    p.add_argument("--init-codec", default=None,
                   help="fine-tune this codec's vocoder (folder or bundled name) on its own quantisation")
    p = sub.add_parser("export")
    p.add_argument("--work", type=Path, required=True)
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--name", default="valle2-mel-v1")
    p.add_argument("--no-vocoder", action="store_true", help="export a Griffin-Lim-decoding codec")
    p.add_argument("--float16", action="store_true", help="store the networks' weights in float16 (half the size)")
    p.add_argument("--codec", default=None,
                   help="export this codec (folder or bundled name) with the work folder's fine-tuned vocoder")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    torch.set_num_threads(args.threads)
    args.work.mkdir(parents=True, exist_ok=True)
    cfg = _config_from_work(args.work)
    cfg_path = args.work / "codec_config.json"
    if not cfg_path.exists():
        cfg_path.write_text(json.dumps(asdict(cfg), indent=2))

    if args.cmd == "features":
        items = [item for corpus in args.corpus for item in read_manifest_paths(Path(corpus), args.split)]
        feats = compute_features(items, cfg)
        np.savez(args.work / f"features_{args.split}.npz", **feats)
        log.info("features: %d frames (%.2f h)", feats["mels"].shape[1], feats["mels"].shape[1] / cfg.frame_rate / 3600)
    elif args.cmd == "kmeans":
        from safetensors.torch import save_file

        feats = load_features(args.work / f"features_{args.split}.npz")
        mels = feats["mels"]
        rng = np.random.default_rng(args.seed)
        idx = np.sort(rng.choice(mels.shape[1], size=min(args.max_frames, mels.shape[1]), replace=False))
        t0 = time.monotonic()
        if args.phonetic:
            if cfg.first_stage != "phonetic":
                parser.error("--phonetic needs a trained phone recogniser: run `phones` first")
            features = phonetic_features(load_phone_encoder(args.work, cfg), feats)[idx]
            books, centroids = fit_phonetic_kmeans(mels[:, idx], features, args.codebooks, args.size, args.iters,
                                                   args.seed)
            tensors = {"codebooks": books.contiguous(), "phone_centroids": centroids.contiguous()}
        else:
            cfg = replace(cfg, first_stage="mel")
            frames = torch.from_numpy(mels[:, idx].astype(np.float32)).T
            books = fit_residual_kmeans(frames, args.codebooks, args.size, args.iters, args.seed)
            tensors = {"codebooks": books.contiguous()}
        log.info("k-means %dx%d on %d frames in %.1f s", args.codebooks, args.size, len(idx), time.monotonic() - t0)
        save_file(tensors, str(args.work / "kmeans.safetensors"))
        cfg = replace(cfg, n_codebooks=args.codebooks, codebook_size=args.size)
        cfg_path.write_text(json.dumps(asdict(cfg), indent=2))
        eval_path = args.work / f"features_{args.eval_split}.npz"
        if eval_path.exists():
            rms = rvq_distortion(build_codec(args.work, cfg, with_vocoder=False), load_features(eval_path))
            log.info("%s log-mel RMS error after 1..%d stages: %s", args.eval_split, len(rms),
                     " ".join(f"{r:.4f}" for r in rms))
    elif args.cmd == "phones":
        train_phone_encoder(args.work, cfg, args.corpus, args.minutes, args.total_steps, args.batch_frames, args.lr)
    elif args.cmd == "vocoder":
        init = load_codec_arg(args.init_codec) if args.init_codec else None
        train_vocoder(args.work, cfg, args.split, args.minutes, args.total_steps, args.batch, args.frames, args.lr,
                      init_codec=init, warmup=args.warmup, gta_prob=args.gta_prob)
    elif args.cmd == "export":
        if args.codec:
            codec = finetuned_codec(args.work, load_codec_arg(args.codec), args.name)
        else:
            codec = build_codec(args.work, replace(cfg, name=args.name), with_vocoder=not args.no_vocoder)
        codec.save(args.out, dtype=torch.float16 if args.float16 else None)
        log.info("exported %s to %s", MelCodec.load(args.out).identity(), args.out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
