"""The phonetic first stage of valle2-mel (format version 2): recogniser, k-means, files, recipe."""

import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch

from valle2.codec.mel import MelCodec, MelCodecConfig, build_phone_encoder, build_vocoder, rvq_decode
from valle2.codec.mel_train import fit_phonetic_kmeans, fit_residual_kmeans, main as mel_train_main
from valle2.codec.phonetic import PhoneEncoder, greedy_ctc, nearest, phone_labels
from valle2_testlib import vowel_tone
from valle2.errors import ModelFileError

SR = 24000


CFG = MelCodecConfig(n_codebooks=4, codebook_size=16, vocoder_dim=16, vocoder_intermediate=32, vocoder_layers=1,
                     first_stage="phonetic", phonetic_dim=24, phonetic_intermediate=48, phonetic_layers=2, n_phones=5)


@pytest.fixture(scope="module")
def codec() -> MelCodec:
    torch.manual_seed(0)
    probe = MelCodec(replace(CFG, vocoder_dim=None, first_stage="mel"), torch.zeros(4, 16, 80))
    mels = [probe.mel(vowel_tone(1.0, f0, i), SR) for i, f0 in enumerate((110, 180, 240))]
    encoder = build_phone_encoder(CFG).eval()
    with torch.inference_mode():
        feats = torch.cat([encoder.features(m[None])[0] for m in mels])
    books, centroids = fit_phonetic_kmeans(torch.cat(mels, 1).numpy(), feats.numpy(), 4, 16, n_iter=5)
    return MelCodec(CFG, books, build_vocoder(CFG), encoder, centroids)


def test_phone_labels_keep_only_phones():
    # stress, length, word boundary and punctuation go; the phones stay in order
    assert phone_labels(["h", "ə", "l", "ˈ", "o", "ː", "_", "w", "ɜ", "ː", "l", "d", "!"]) == \
        ["h", "ə", "l", "o", "w", "ɜ", "l", "d"]


def test_greedy_ctc_collapses_repeats_and_blanks():
    path = [0, 3, 3, 0, 3, 1, 1, 0, 0, 2]
    logp = torch.full((len(path), 4), -10.0)
    logp[torch.arange(len(path)), torch.tensor(path)] = 0.0
    assert greedy_ctc(logp) == [3, 3, 1, 2]


def test_masked_normalisation_matches_unpadded():
    mel = torch.randn(1, 80, 30) + 3.0
    padded = torch.cat([mel, torch.full((1, 80, 10), -11.5)], dim=-1)
    out = PhoneEncoder.normalize(padded, torch.tensor([30]))
    torch.testing.assert_close(out[..., :30], PhoneEncoder.normalize(mel))
    assert out[..., 30:].abs().max() == 0
    encoder = build_phone_encoder(CFG).eval()
    with torch.inference_mode():
        torch.testing.assert_close(encoder.features(padded, torch.tensor([30]))[:, :30].shape, (1, 30, 24))
        logp = encoder(mel)
    assert logp.shape == (1, 30, 6)
    torch.testing.assert_close(logp.exp().sum(-1), torch.ones(1, 30))


def test_first_code_is_the_nearest_phonetic_centroid(codec: MelCodec):
    wav = vowel_tone(0.5, 150, 7)
    codes = codec.encode(wav, SR)
    assert codes.shape == (4, 38) and codes.dtype == torch.int64
    mel = codec.mel(wav, SR)
    with torch.inference_mode():
        feats = codec.phonetic.features(mel[None])[0]
    assert torch.equal(codes[0], nearest(feats, codec.phone_centroids))
    # the later stages quantise the residual of the first: each stage lowers the error
    errors = [(rvq_decode(codes[:k], codec.codebooks) - mel.T).pow(2).mean().item() for k in range(1, 5)]
    assert errors == sorted(errors, reverse=True)
    assert codec.decode(codes).shape == (38 * 320,)


def test_stage_zero_entries_are_cluster_means():
    gen = torch.Generator().manual_seed(1)
    mels = torch.randn(80, 400, generator=gen).numpy()
    feats = torch.randn(400, 8, generator=gen).numpy()
    books, centroids = fit_phonetic_kmeans(mels, feats, 2, 4, n_iter=3)
    first = nearest(torch.from_numpy(feats), centroids)
    for v in range(4):
        members = torch.from_numpy(mels).T[first == v]
        if len(members):
            torch.testing.assert_close(books[0, v], members.mean(0), atol=1e-5, rtol=1e-5)


def test_save_load_roundtrip_is_version_2(codec: MelCodec, tmp_path: Path):
    codec.save(tmp_path)
    assert json.loads((tmp_path / "config.json").read_text())["version"] == 2
    loaded = MelCodec.load(tmp_path)
    wav = vowel_tone(0.4, 200, 3)
    assert torch.equal(codec.encode(wav, SR), loaded.encode(wav, SR))
    assert loaded.identity() == codec.identity() and loaded.identity()["version"] == 2


def test_identity_covers_the_recogniser(codec: MelCodec):
    moved = MelCodec(CFG, codec.codebooks, codec.vocoder, codec.phonetic, codec.phone_centroids + 0.5)
    assert moved.identity()["codebooks_sha256"] != codec.identity()["codebooks_sha256"]


def test_plain_codec_still_writes_version_1(tmp_path: Path):
    plain_cfg = replace(CFG, first_stage="mel", vocoder_dim=None)
    books = fit_residual_kmeans(torch.randn(300, 80), 4, 16, n_iter=2)
    plain = MelCodec(plain_cfg, books, None)
    plain.save(tmp_path)
    assert json.loads((tmp_path / "config.json").read_text())["version"] == 1
    assert MelCodec.load(tmp_path).identity() == plain.identity()


def test_phonetic_codec_needs_its_parts(codec: MelCodec):
    with pytest.raises(ModelFileError, match="phone encoder"):
        MelCodec(CFG, codec.codebooks, None)
    with pytest.raises(ModelFileError, match="centroids"):
        MelCodec(CFG, codec.codebooks, None, codec.phonetic, codec.phone_centroids[:3])
    with pytest.raises(ModelFileError, match="first_stage"):
        MelCodec(replace(CFG, first_stage="hubert"), codec.codebooks, None)


def test_recipe_phones_kmeans_export(tmp_path: Path):
    """`phones` trains (and resumes) the recogniser; `kmeans --phonetic` + `export` give a v2 codec."""
    from lhotse import Recording, RecordingSet, SupervisionSegment, SupervisionSet
    import soundfile as sf

    corpus, work = tmp_path / "corpus", tmp_path / "work"
    corpus.mkdir()
    texts = ["a big dog", "the sun is hot", "she sells fish", "go home now"]
    recs, sups = [], []
    for split, items in (("train", texts), ("held-out", texts[:2])):
        recs, sups = [], []
        for i, text in enumerate(items):
            path = corpus / f"{split}-{i}.wav"
            sf.write(path, vowel_tone(0.6 + 0.1 * i, 120 + 30 * i, i), SR)
            rec = Recording.from_file(path, recording_id=f"{split}-{i}")
            recs.append(rec)
            sups.append(SupervisionSegment(id=rec.id, recording_id=rec.id, start=0, duration=rec.duration,
                                           text=text, speaker="s0"))
        RecordingSet.from_recordings(recs).to_file(corpus / f"synth_recordings_{split}.jsonl.gz")
        SupervisionSet.from_segments(sups).to_file(corpus / f"synth_supervisions_{split}.jsonl.gz")
    small = ["--threads", "1"]
    for split in ("train", "held-out"):
        assert mel_train_main(small + ["features", "--corpus", str(corpus), "--split", split, "--work", str(work)]) == 0
    cfg = json.loads((work / "codec_config.json").read_text())
    cfg.update(phonetic_dim=16, phonetic_intermediate=32, phonetic_layers=1, vocoder_dim=None)
    (work / "codec_config.json").write_text(json.dumps(cfg))

    args = ["phones", "--work", str(work), "--corpus", str(corpus), "--batch-frames", "200"]
    assert mel_train_main(small + args + ["--total-steps", "3"]) == 0
    assert torch.load(work / "phone_ckpt.pt", weights_only=True)["step"] == 3
    assert mel_train_main(small + args + ["--total-steps", "5"]) == 0  # resumes
    assert torch.load(work / "phone_ckpt.pt", weights_only=True)["step"] == 5
    phones = json.loads((work / "phones.json").read_text())["phones"]
    assert {"d", "ɡ", "s", "ʃ"} <= set(phones)
    assert json.loads((work / "codec_config.json").read_text())["n_phones"] == len(phones)

    with pytest.raises(SystemExit):  # a plain k-means run resets the first stage; --phonetic then refuses
        bad = tmp_path / "bad"
        mel_train_main(small + ["features", "--corpus", str(corpus), "--split", "train", "--work", str(bad)])
        mel_train_main(small + ["kmeans", "--work", str(bad), "--phonetic", "--codebooks", "2", "--size", "4"])
    assert mel_train_main(small + ["kmeans", "--work", str(work), "--phonetic", "--codebooks", "3", "--size", "8",
                                   "--iters", "2"]) == 0
    out = tmp_path / "codec"
    assert mel_train_main(small + ["export", "--work", str(work), "--out", str(out), "--name", "t"]) == 0
    codec = MelCodec.load(out)
    assert codec.config.first_stage == "phonetic" and codec.n_codebooks == 3
    codes = codec.encode(vowel_tone(0.5, 150, 9), SR)
    assert codes.shape == (3, 38) and int(codes.max()) < 8


def test_float16_save_halves_the_networks(codec: MelCodec, tmp_path: Path):
    codec.save(tmp_path / "f32")
    codec.save(tmp_path / "f16", dtype=torch.float16)
    from safetensors.torch import load_file

    t32, t16 = load_file(str(tmp_path / "f32" / "model.safetensors")), load_file(str(tmp_path / "f16" / "model.safetensors"))
    assert t16["codebooks"].dtype == torch.float32 and t16["phone_centroids"].dtype == torch.float32
    assert t16["vocoder.head.weight"].dtype == torch.float16 and t16["phonetic.head.weight"].dtype == torch.float16
    torch.testing.assert_close(t16["phonetic.head.weight"].float(), t32["phonetic.head.weight"], atol=1e-3, rtol=1e-3)
    loaded = MelCodec.load(tmp_path / "f16")
    assert loaded.phonetic.head.weight.dtype == torch.float32
    wav = vowel_tone(0.6, 170, 2)
    agree = (loaded.encode(wav, SR)[0] == codec.encode(wav, SR)[0]).float().mean()
    assert agree > 0.9  # rounding the recogniser's weights moves few frames to another centroid


def test_knn_entries_average_the_nearest_reference_frames(codec: MelCodec):
    from valle2.codec.phonetic import knn_entries

    mel = codec.mel(vowel_tone(0.5, 160, 4), SR)
    with torch.inference_mode():
        feat = codec.phonetic.features(mel[None])[0]
    # each frame's own features query the same utterance: k=1 returns the frame itself
    torch.testing.assert_close(knn_entries(codec.phonetic, feat, [mel], k=1), mel.T)
    # several references: features per reference utterance, frames pooled across them
    refs = [mel[:, :20], mel[:, 20:]]
    out = knn_entries(codec.phonetic, codec.phone_centroids, refs, k=3)
    assert out.shape == (16, 80)
    with torch.inference_mode():
        pooled = torch.cat([codec.phonetic.features(r[None])[0] for r in refs])
    near = torch.cdist(codec.phone_centroids[:1], pooled).topk(3, largest=False).indices[0]
    torch.testing.assert_close(out[0], mel.T[near].mean(0))


def test_a_single_codebook_fits():  # the phonetic stage alone (K = 1): no residual stages
    g = torch.Generator().manual_seed(0)
    mels, feats = torch.randn(80, 200, generator=g).numpy(), torch.randn(200, 12, generator=g).numpy()
    books, centroids = fit_phonetic_kmeans(mels, feats, n_codebooks=1, codebook_size=8, n_iter=2)
    assert books.shape == (1, 8, 80) and centroids.shape == (8, 12)
    assert fit_residual_kmeans(torch.randn(50, 80), 0, 8).shape == (0, 8, 80)


def test_a_single_codebook_codec_encodes_and_decodes(codec: MelCodec):
    one = MelCodec(replace(CFG, n_codebooks=1), codec.codebooks[:1], codec.vocoder, codec.phonetic,
                   codec.phone_centroids)
    wav = vowel_tone(0.4, 200, 3)
    codes = one.encode(wav, SR)
    assert codes.shape[0] == 1 and torch.equal(codes[0], codec.encode(wav, SR)[0])
    assert one.decode(codes).size > 0
