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
from valle2_testlib import edit_saved_sampling, vowel_tone
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
    corpus, work = tmp_path / "corpus", tmp_path / "work"
    texts = ["a big dog", "the sun is hot", "she sells fish", "go home now"]
    for split, items in (("train", texts), ("held-out", texts[:2])):
        n = len(items)
        _write_corpus(corpus, split, [120 + 30 * i for i in range(n)], speakers=["s0"] * n, texts=items,
                      seconds=[0.6 + 0.1 * i for i in range(n)])
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


def _write_corpus(folder: Path, split: str, f0s: list[int], speakers: list[str] | None = None,
                  texts: list[str] | None = None, seconds: list[float] | None = None) -> None:
    """A corpus-synth-shaped split: one vowel tone per f0 (0.7 s unless ``seconds``), one speaker each unless
    ``speakers``, text "say i now" unless ``texts``; Lhotse manifests beside the WAVs."""
    from lhotse import Recording, RecordingSet, SupervisionSegment, SupervisionSet
    import soundfile as sf

    folder.mkdir(parents=True, exist_ok=True)
    recs, sups = [], []
    for i, f0 in enumerate(f0s):
        path = folder / f"{split}-{i}.wav"
        sf.write(path, vowel_tone(seconds[i] if seconds else 0.7, f0, i), SR)
        rec = Recording.from_file(path, recording_id=f"{folder.name}-{split}-{i}")
        recs.append(rec)
        sups.append(SupervisionSegment(id=rec.id, recording_id=rec.id, start=0, duration=rec.duration,
                                       text=texts[i] if texts else f"say {i} now",
                                       speaker=speakers[i] if speakers else f"s{i}"))
    RecordingSet.from_recordings(recs).to_file(folder / f"synth_recordings_{split}.jsonl.gz")
    SupervisionSet.from_segments(sups).to_file(folder / f"synth_supervisions_{split}.jsonl.gz")


def test_recipe_finetunes_an_exported_codecs_vocoder(codec: MelCodec, tmp_path: Path):
    """`features` over two corpora (one by FOLDER:SPLIT), `vocoder --init-codec` from an exported
    codec, `export --codec`: the same codes (identity) with a new name and a trained vocoder."""
    base = tmp_path / "base"
    codec.save(base)
    _write_corpus(tmp_path / "c1", "train", [120, 200])
    _write_corpus(tmp_path / "c2", "train-warped", [160])
    work, small = tmp_path / "work", ["--threads", "1"]
    assert mel_train_main(small + ["features", "--corpus", str(tmp_path / "c1"), f"{tmp_path / 'c2'}:train-warped",
                                   "--split", "train", "--work", str(work)]) == 0
    feats = np.load(work / "features_train.npz")
    assert len(feats["ids"]) == 3 and "c2-train-warped-0" in set(feats["ids"].tolist())
    with pytest.raises(FileNotFoundError, match="train-warped"):
        mel_train_main(small + ["features", "--corpus", f"{tmp_path / 'c1'}:train-warped", "--work", str(tmp_path / "w2")])

    args = small + ["vocoder", "--work", str(work), "--init-codec", str(base), "--batch", "2", "--frames", "16",
                    "--warmup", "1", "--lr", "1e-2"]
    assert mel_train_main(args + ["--total-steps", "2"]) == 0
    assert int(torch.load(work / "vocoder_ckpt.pt", weights_only=True)["step"]) == 2
    assert mel_train_main(args + ["--total-steps", "4"]) == 0  # resumes from its checkpoint, not from the codec
    assert int(torch.load(work / "vocoder_ckpt.pt", weights_only=True)["step"]) == 4
    # the training targets are the base codec's own reconstruction of the features
    qmels = np.load(work / "qmels_train.npy")
    first = feats["mels"][:, : feats["offsets"][1]].astype(np.float32)
    expect = codec.dequantize(codec.encode_mel(torch.from_numpy(first))).numpy()
    np.testing.assert_allclose(qmels[:, : feats["offsets"][1]].astype(np.float32), expect, atol=2e-2)

    out = tmp_path / "tuned"
    assert mel_train_main(small + ["export", "--work", str(work), "--codec", str(base), "--out", str(out),
                                   "--name", "tuned"]) == 0
    tuned = MelCodec.load(out)
    assert tuned.config.name == "tuned" and tuned.config.extra["vocoder_step"] == 4
    assert tuned.config.extra["vocoder_finetuned_from"] == codec.config.name
    ident, base_ident = tuned.identity(), codec.identity()
    assert ident["codebooks_sha256"] == base_ident["codebooks_sha256"]  # models trained on the base still load
    wav = vowel_tone(0.5, 150, 7)
    assert torch.equal(tuned.encode(wav, SR), codec.encode(wav, SR))
    moved = [not torch.equal(a, b) for a, b in zip(tuned.vocoder.state_dict().values(),
                                                    codec.vocoder.state_dict().values())]
    assert any(moved)

    no_vocoder = tmp_path / "plain"
    MelCodec(replace(CFG, vocoder_dim=None), codec.codebooks, None, codec.phonetic, codec.phone_centroids).save(no_vocoder)
    with pytest.raises(ValueError, match="no vocoder"):
        mel_train_main(small + ["vocoder", "--work", str(tmp_path / "w3"), "--init-codec", str(no_vocoder)])
    with pytest.raises(FileNotFoundError, match="run `features"):
        mel_train_main(small + ["vocoder", "--work", str(tmp_path / "w4"), "--init-codec", str(base)])


def _load_recipe(name: str):
    import importlib.util

    script = Path(__file__).resolve().parents[2] / "recipes" / f"{name}.py"
    spec = importlib.util.spec_from_file_location(name, script)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_gta_mels_are_the_nar_completion_of_the_true_codebook_0(mel_model, tmp_path: Path):
    """recipes/vocoder_gta.py: the chosen utterances get the model's synthesis-side log-mel on their
    own frames (true codebook 0 + NAR codes), the others stay zero; `vocoder --gta-prob` trains on them."""
    codec = mel_model.codec
    folder = mel_model.save_pretrained(tmp_path / "m")
    corpus, work = tmp_path / "c", tmp_path / "work"
    _write_corpus(corpus, "train", [110, 150, 190, 230], speakers=["a", "a", "b", "b"])
    small = ["--threads", "1"]
    assert mel_train_main(small + ["features", "--corpus", str(corpus), "--work", str(work)]) == 0
    gta = _load_recipe("vocoder_gta")
    args = ["--model", str(folder), "--work", str(work), "--corpus", str(corpus), "--threads", "1", "--batch", "2"]
    assert gta.main(args + ["--utterances", "3"]) == 0
    feats = np.load(work / "features_train.npz")
    mels, done = np.load(work / "gta_mels_train.npy"), np.load(work / "gta_utts_train.npy")
    assert mels.shape == feats["mels"].shape and len(done) == 3
    books, off = codec.codebooks, feats["offsets"]
    for i in range(4):
        x = torch.from_numpy(mels[:, off[i]:off[i + 1]].astype(np.float32)).T  # (T, n_mels)
        if i not in done:
            assert not x.any()
            continue
        true0 = codec.encode_mel(torch.from_numpy(feats["mels"][:, off[i]:off[i + 1]].astype(np.float32)))[0]
        own = (x - books[0][true0]).pow(2).mean().sqrt()
        other = (x - books[0][true0.roll(7)]).pow(2).mean().sqrt()
        assert own < 0.8 < other  # codebook 0 is the utterance's own (later stages are at most ~0.6 wide)
    assert gta.main(args + ["--utterances", "3"]) == 0  # seeded: the same utterances and prompts
    np.testing.assert_array_equal(np.load(work / "gta_mels_train.npy"), mels)
    # a model that decodes the NAR's expected entries at half weight: its GTA log-mels are those, not greedy codes'
    edit_saved_sampling(folder, nar_decoding="expected", nar_weight=0.5)
    assert gta.main(args + ["--utterances", "3"]) == 0
    soft = np.load(work / "gta_mels_train.npy")
    assert not np.array_equal(soft, mels) and (soft.any(axis=0) == mels.any(axis=0)).all()
    for i in done:
        x = torch.from_numpy(soft[:, off[i]:off[i + 1]].astype(np.float32)).T
        true0 = codec.encode_mel(torch.from_numpy(feats["mels"][:, off[i]:off[i + 1]].astype(np.float32)))[0]
        assert (x - books[0][true0]).pow(2).mean().sqrt() < 0.8  # still codebook 0's own entries underneath
    edit_saved_sampling(folder, nar_decoding="greedy", nar_weight=1.0)
    _write_corpus(tmp_path / "other", "train", [100])
    with pytest.raises(SystemExit, match="no transcript"):
        gta.main(["--model", str(folder), "--work", str(work), "--corpus", str(tmp_path / "other"), "--threads", "1"])

    # every row from the GTA log-mels at probability 1, none at 0
    from valle2.codec.mel_train import _batch

    marked = np.full_like(mels, 7.0)
    rng = np.random.default_rng(0)
    qmels = np.zeros_like(mels)
    mel_b, _ = _batch(feats, qmels, rng, 6, 8, 320, (marked, done, 1.0))
    assert (mel_b == 7.0).all()
    mel_b, _ = _batch(feats, qmels, rng, 6, 8, 320, (marked, done, 0.0))
    assert (mel_b == 0.0).all()
    with pytest.raises(ValueError, match="longer than 10000 frames"):
        _batch(feats, qmels, rng, 2, 10_000, 320, (marked, done, 0.5))
    short = dict(feats, offsets=np.array([0, 5, 10, 200, 210]))  # only utterance 2 is long enough
    with pytest.raises(ValueError, match="no GTA utterance"):
        _batch(short, qmels, rng, 2, 20, 320, (marked, np.array([0, 1]), 0.5))

    base = tmp_path / "base"
    codec.save(base)
    vargs = small + ["vocoder", "--work", str(work), "--init-codec", str(base), "--batch", "2", "--frames", "16",
                     "--total-steps", "2", "--gta-prob", "0.5"]
    assert mel_train_main(vargs) == 0
    assert int(torch.load(work / "vocoder_ckpt.pt", weights_only=True)["step"]) == 2
    (work / "gta_utts_train.npy").unlink()
    with pytest.raises(FileNotFoundError, match="vocoder_gta"):
        mel_train_main(vargs)


def test_train_synthesis_vocoder_recipe_runs_the_round(mel_model, tmp_path: Path):
    """recipes/train_synthesis_vocoder.sh: features, GTA log-mels, a fine-tune, the export, and the vocoder in the
    model folder as its default; the model's codec keeps its own vocoder."""
    import os
    import subprocess
    import sys

    from valle2 import VallE2

    folder = mel_model.save_pretrained(tmp_path / "m")
    corpus, work = tmp_path / "c", tmp_path / "work"
    _write_corpus(corpus, "train", [110, 150, 190, 230], speakers=["a", "a", "b", "b"])
    script = Path(__file__).resolve().parents[2] / "recipes" / "train_synthesis_vocoder.sh"
    env = dict(os.environ, PYTHON=sys.executable, UTTERANCES="3", STEPS="2", MINUTES="5", THREADS="1", MAKE_DEFAULT="1", LR="1e-2",
               VOCODER_ARGS="--batch 2 --frames 16 --warmup 1")
    out = subprocess.run(["bash", str(script), str(folder), str(folder / "codec"), str(work), str(corpus)],
                         env=env, capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr[-3000:]
    assert (work / "gta_utts_train.npy").is_file() and (work / "codec_synthesis").is_dir()
    loaded = VallE2.from_pretrained(folder)
    assert loaded.sampling.vocoder == "synthesis" and "vocoder_step" in loaded.synthesis_vocoder_source
    codec_side = mel_model.codec.vocoder.state_dict()
    for key, value in loaded.codec.vocoder.state_dict().items():
        torch.testing.assert_close(value, codec_side[key], atol=1e-3, rtol=1e-3)  # untouched (a float16 copy)
    moved = [not torch.allclose(a, codec_side[k], atol=1e-3, rtol=1e-3)
             for k, a in loaded.synthesis_vocoder.state_dict().items()]
    assert any(moved)  # trained
