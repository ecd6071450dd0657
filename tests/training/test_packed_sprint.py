"""Packed token data (one file, batches gathered on the device) and the time-budgeted sprint run."""

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from valle2.data.dataset import TokenizedDataset
from valle2.data.shards import DataFileError
from valle2.data.tokenize import open_tokenized
from valle2.training.packed import PackedBatches, load_packed, pack_tokenized, plan_batches
from valle2.training.sprint import SprintSettings, export_sprint, load_weights, lr_at_time, save_weights, train_sprint
from trainkit import one_thread, tiny_tokens, train_config  # noqa: F401 (fixtures)


@pytest.fixture(scope="module")
def packed(tiny_tokens, tmp_path_factory):  # noqa: F811 (fixture)
    train_dir, valid_dir, _ = tiny_tokens
    out = tmp_path_factory.mktemp("packed")
    pack_tokenized([train_dir], out / "train.safetensors")
    pack_tokenized([valid_dir], out / "valid.safetensors")
    return out


def test_packed_batches_equal_the_lhotse_path(tiny_tokens, packed):  # noqa: F811 (fixture)
    train_dir, _, _ = tiny_tokens
    tok = open_tokenized([train_dir])
    cuts = list(tok.cuts)
    data = load_packed(packed / "train.safetensors")
    assert data.n_utterances == len(cuts) and data.meta["symbols"] == tok.symbols.to_dict()
    assert data.codes.dtype == torch.uint8  # the debug codec's codes fit a byte: the file is a quarter the size
    ds = TokenizedDataset(n_codebooks=tok.n_codebooks, eos_id=tok.symbols.eos_id, pad_id=tok.symbols.pad_id)
    pb = PackedBatches(data, eos_id=tok.symbols.eos_id, pad_id=tok.symbols.pad_id, max_frames=10**6)
    idx = np.array([3, 0, 5])
    want = ds[[cuts[i] for i in idx]]
    got = pb.collate(idx)
    for key in ("text", "text_valid", "codes", "code_lens"):
        assert torch.equal(got[key], want[key]), key
    assert got["frames"] == want["frames"]
    # NAR fields: no crop -> the whole codes; the prompt split leaves >= 1 frame each side; stages 1..K-1
    assert torch.equal(got["nar_codes"], got["codes"])
    p, n = got["nar_prompt_lens"], got["nar_code_lens"]
    assert bool(((p >= 1) & (p <= n - 1)).all())
    assert bool(((got["nar_stage"] >= 1) & (got["nar_stage"] < tok.n_codebooks)).all())


def test_xz_packed_file_loads_the_same(packed, tmp_path):
    import shutil

    from valle2.training.packed import compress_packed

    plain = shutil.copy(packed / "train.safetensors", tmp_path / "t.safetensors")
    xz = compress_packed(plain)
    assert xz.name == "t.safetensors.xz" and xz.stat().st_size < plain.stat().st_size
    a, b = load_packed(plain), load_packed(xz)
    assert torch.equal(a.codes, b.codes) and torch.equal(a.phones, b.phones) and a.meta == b.meta
    assert np.array_equal(a.code_len, b.code_len)
    bad = tmp_path / "bad.safetensors.xz"
    bad.write_bytes(b"not xz at all")
    with pytest.raises(DataFileError, match="not a readable .xz"):
        load_packed(bad)


def test_several_packed_files_join_into_one(packed):
    from valle2.training.packed import concat_packed

    a = load_packed(packed / "train.safetensors")
    b = load_packed(packed / "valid.safetensors")
    both = concat_packed([a, b])
    assert both.n_utterances == a.n_utterances + b.n_utterances
    eos = 1
    pa = PackedBatches(a, eos_id=eos, max_frames=10**6).collate(np.array([2]))
    pb = PackedBatches(b, eos_id=eos, max_frames=10**6).collate(np.array([1]))
    pj = PackedBatches(both, eos_id=eos, max_frames=10**6).collate(np.array([2, a.n_utterances + 1]))
    for key in ("codes", "text"):
        assert torch.equal(pj[key][0, ..., : pa[key].shape[-1]], pa[key][0])
        assert torch.equal(pj[key][1, ..., : pb[key].shape[-1]], pb[key][0])
    other = load_packed(packed / "valid.safetensors")
    other.meta = {**other.meta, "codebook_size": 999}
    with pytest.raises(DataFileError, match="codebook_size"):
        concat_packed([a, other])


def test_packed_nar_crop_windows_the_codes(packed):
    data = load_packed(packed / "train.safetensors")
    pb = PackedBatches(data, eos_id=1, max_frames=10**6, nar_crop_frames=20, seed=3)
    idx = np.arange(data.n_utterances)
    b = pb.collate(idx)
    assert b["nar_codes"].shape[-1] == 20
    for row in range(len(idx)):
        L = int(b["nar_code_lens"][row])
        assert L == min(20, int(b["code_lens"][row]))
        window = b["nar_codes"][row, :, :L]
        full = b["codes"][row, :, : int(b["code_lens"][row])]
        # the window is a contiguous stretch of the utterance
        hits = [s for s in range(full.shape[-1] - L + 1) if torch.equal(full[:, s : s + L], window)]
        assert hits, row


def test_plan_batches_cover_each_utterance_once_within_budget():
    rng = np.random.default_rng(0)
    lengths = rng.integers(10, 200, size=500)
    batches = plan_batches(lengths, 1000, np.random.default_rng(1), pool=100)
    flat = np.concatenate(batches)
    assert sorted(flat.tolist()) == list(range(500))
    assert all(len(b) * lengths[b].max() <= 1000 for b in batches)
    again = plan_batches(lengths, 1000, np.random.default_rng(1), pool=100)
    assert all(np.array_equal(a, b) for a, b in zip(batches, again))  # deterministic in the seed
    # an utterance longer than the budget is a batch of its own, not dropped
    solo = plan_batches(np.array([5, 5000, 5]), 100, np.random.default_rng(0))
    assert sorted(np.concatenate(solo).tolist()) == [0, 1, 2] and any(b.tolist() == [1] for b in solo)


def test_load_packed_names_bad_files(tmp_path):
    with pytest.raises(DataFileError, match="does not exist"):
        load_packed(tmp_path / "missing.safetensors")
    junk = tmp_path / "junk.safetensors"
    junk.write_bytes(b"not a safetensors file at all")
    with pytest.raises(DataFileError, match="not a packed token file"):
        load_packed(junk)
    from safetensors.torch import save_file

    other = tmp_path / "other.safetensors"
    save_file({"x": torch.zeros(2)}, str(other), metadata={"valle2": json.dumps({"format": "something-else"})})
    with pytest.raises(DataFileError, match="not a packed token file"):
        load_packed(other)


def test_lr_follows_the_clock():
    kw = dict(peak=1e-3, warmup=10, budget=100.0, min_ratio=0.1)
    assert lr_at_time(0, 0.0, **kw) == pytest.approx(1e-4)  # warm-up by steps
    assert lr_at_time(50, 0.0, **kw) == pytest.approx(1e-3)
    assert lr_at_time(50, 50.0, **kw) == pytest.approx(1e-3 * (0.1 + 0.9 * 0.5))
    assert lr_at_time(50, 100.0, **kw) == pytest.approx(1e-4)
    assert lr_at_time(50, 500.0, **kw) == pytest.approx(1e-4)  # past the budget: the floor


def test_weights_split_into_small_files_and_back(tmp_path):
    state = {"a.w": torch.randn(300, 300), "b.w": torch.randn(300, 300), "c.step": torch.tensor([3])}
    paths = save_weights(state, tmp_path, "best", torch.float16, max_file_mb=0.2)  # 180 kB per fp16 matrix
    assert len(paths) == 2 and all(p.stat().st_size < 0.25 * 2**20 for p in paths)
    back = load_weights(tmp_path, "best")
    assert back.keys() == state.keys() and back["a.w"].dtype == torch.float16
    assert torch.allclose(back["a.w"].float(), state["a.w"], atol=2e-3) and torch.equal(back["c.step"], state["c.step"])
    save_weights({"a.w": torch.zeros(2)}, tmp_path, "best", torch.float16, max_file_mb=1)
    assert load_weights(tmp_path, "best").keys() == {"a.w"}  # the earlier files are gone, not mixed in
    with pytest.raises(Exception, match="no last"):
        load_weights(tmp_path, "last")


def test_sprint_trains_validates_and_exports(tiny_tokens, packed, tmp_path):  # noqa: F811 (fixture)
    train_dir, valid_dir, _ = tiny_tokens
    cfg = train_config(train_dir, valid_dir, tmp_path / "unused", "model.nar_prompt_cond=true", "optim.lr=3e-3")
    settings = SprintSettings(budget_s=6.0, max_frames=400, warmup_steps=2, valid_every_s=2.0, save_every_s=2.0,
                              log_every=2, weights_dtype="float32")
    doc = train_sprint(cfg, [packed / "train.safetensors", packed / "train.safetensors"], tmp_path / "run", settings,
                       valid_path=packed / "valid.safetensors", device="cpu")
    assert doc["step"] > 4 and doc["epochs"] >= 1
    train_rows = [r for r in doc["history"] if r["split"] == "train"]
    valid_rows = [r for r in doc["history"] if r["split"] == "valid"]
    assert train_rows and valid_rows and valid_rows[-1]["step"] == doc["step"]
    assert train_rows[-1]["loss"] < train_rows[0]["loss"]  # it learns
    best = min(valid_rows, key=lambda r: r["ar_loss"] + r["nar_loss"])
    assert doc["best"]["step"] == best["step"]
    assert (tmp_path / "run" / "last-00.safetensors").is_file()

    from valle2.models.valle2 import VallE2

    folder = export_sprint(tmp_path / "run", tmp_path / "model", which="last",
                           overrides=["export.nar_decoding=min_distortion", "export.nar_temperature=0.5"])
    model = VallE2.from_pretrained(folder)
    assert model.config.nar_prompt_cond and model.sampling.nar_decoding == "min_distortion"
    assert model.sampling.nar_temperature == 0.5
    last = load_weights(tmp_path / "run", "last")
    own = model.state_dict()
    shared = [k for k in last if k in own]
    assert len(shared) > 10 and any(k.startswith("ar.") for k in shared) and any(k.startswith("nar.") for k in shared)
    assert all(torch.equal(own[k].float(), last[k].float()) for k in shared)
    with pytest.raises(Exception, match="not a sprint run folder"):
        export_sprint(tmp_path, tmp_path / "m2")
    # the residual prior, fitted at export from the run's packed training codes (here the same file twice)
    from valle2.generation.residual_prior import fit_code0_prior

    folder = export_sprint(tmp_path / "run", tmp_path / "model_prior", which="last",
                           overrides=["export.residual_prior=code0", "export.nar_weight=0.5"])
    model = VallE2.from_pretrained(folder)
    assert model.sampling.residual_prior == "code0" and model.sampling.nar_weight == 0.5
    codes = load_packed(packed / "train.safetensors").codes.long()
    want, counts = fit_code0_prior([codes, codes], model.codec.code_entries())
    torch.testing.assert_close(model.residual_prior, want)
    assert int(model.residual_prior_counts.sum()) == 2 * codes.shape[1] == int(counts.sum())
    # the same table from the recipe, on a model folder exported without it
    import subprocess
    import sys

    recipe = Path(__file__).resolve().parents[2] / "recipes" / "fit_residual_prior.py"
    run = subprocess.run([sys.executable, str(recipe), str(tmp_path / "model"), "--packed", str(packed / "train.safetensors"),
                          str(packed / "train.safetensors"), "--make-default", "--nar-weight", "0.4"],
                         capture_output=True, text=True)
    assert run.returncode == 0, run.stderr
    refit = VallE2.from_pretrained(tmp_path / "model")
    assert refit.sampling.residual_prior == "code0" and refit.sampling.nar_weight == 0.4
    torch.testing.assert_close(refit.residual_prior, want)


def test_recipe_script_packs_trains_and_exports(tiny_tokens, tmp_path):  # noqa: F811 (fixture)
    import importlib.util
    from pathlib import Path

    script = Path(__file__).resolve().parents[2] / "recipes" / "gpu_sprint.py"
    spec = importlib.util.spec_from_file_location("gpu_sprint", script)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    train_dir, valid_dir, _ = tiny_tokens
    assert mod.main(["pack", "--data", str(train_dir), "--out", str(tmp_path / "t.safetensors")]) == 0
    assert mod.main(["pack", "--data", str(valid_dir), "--out", str(tmp_path / "v.safetensors")]) == 0
    assert mod.main(["train", "--config", "debug", "--train", str(tmp_path / "t.safetensors"), "--valid",
                     str(tmp_path / "v.safetensors"), "--out", str(tmp_path / "run"), "--minutes", "0.03",
                     "--max-frames", "400", "--no-last", "--device", "cpu"]) == 0
    assert not list((tmp_path / "run").glob("last-*")) and list((tmp_path / "run").glob("best-*"))
    assert mod.main(["export", str(tmp_path / "run"), "--out", str(tmp_path / "model")]) == 0
    assert (tmp_path / "model" / "model.safetensors").is_file()


# ----------------------------------------------------------------------------- prompt pairs


def test_pick_partners_same_speaker_other_utterance_within_length():
    from valle2.data.dataset import pick_partners

    speaker = np.array([0, 1, 0, 2, 1, 0, 1])  # speaker 2 has a single utterance
    length = np.array([10, 20, 30, 10, 50, 40, 10])
    rng = np.random.default_rng(0)
    for _ in range(50):
        p = pick_partners(np.arange(7), speaker, length, prob=1.0, max_length=70, rng=rng)
        assert p[3] == -1  # no other utterance of speaker 2
        for i, j in enumerate(p):
            if j >= 0:
                assert j != i and speaker[j] == speaker[i] and length[i] + length[j] <= 70
        assert p[0] >= 0 and p[6] >= 0  # partners that fit always exist for these (4 draws of 2 candidates)
    assert (pick_partners(np.arange(7), speaker, length, prob=0.0, max_length=70, rng=rng) == -1).all()
    # nothing fits under max_length 15 -> no pairs
    assert (pick_partners(np.arange(7), speaker, length, prob=1.0, max_length=15, rng=rng) == -1).all()
    # about half the rows are paired at prob 0.5 (a speaker with many short utterances)
    many = pick_partners(np.arange(2000), np.zeros(2000, dtype=np.int64), np.ones(2000), prob=0.5, max_length=2,
                         rng=rng)
    assert 0.45 < (many >= 0).mean() < 0.55


def test_pairs_lay_out_prompt_separator_target_as_inference_does(tiny_tokens, packed):  # noqa: F811 (fixture)
    train_dir, _, _ = tiny_tokens
    tok = open_tokenized([train_dir])
    data = load_packed(packed / "train.safetensors")
    assert data.speaker is not None and sorted(data.meta["speakers"]) == ["spk0", "spk1"]
    cuts = list(tok.cuts)
    assert [data.meta["speakers"][s] for s in data.speaker] == [c.supervisions[0].speaker for c in cuts]
    sep = tok.symbols.separator_ids()[0]
    pb = PackedBatches(data, eos_id=tok.symbols.eos_id, pad_id=tok.symbols.pad_id, max_frames=10**6,
                       pair_prob=1.0, pair_max_frames=10**6, sep_id=sep)
    rows = np.concatenate(pb.epoch(0))
    assert rows.shape == (data.n_utterances, 2) and (rows[:, 0] >= 0).all()
    assert sorted(rows[:, 1].tolist()) == list(range(data.n_utterances))  # each utterance once as the target
    assert (data.speaker[rows[:, 0]] == data.speaker[rows[:, 1]]).all() and (rows[:, 0] != rows[:, 1]).all()
    single = PackedBatches(data, eos_id=tok.symbols.eos_id, pad_id=tok.symbols.pad_id, max_frames=10**6)
    batch_rows = np.array([[2, 0], [-1, 5], [1, 3]])
    got = pb.collate(batch_rows)
    for r, (a, b) in enumerate(batch_rows):
        one_b = single.collate(np.array([b]))
        tb, cb = one_b["text"][0][one_b["text_valid"][0]], one_b["codes"][0][:, : int(one_b["code_lens"][0])]
        if a >= 0:
            one_a = single.collate(np.array([a]))
            ta = one_a["text"][0][one_a["text_valid"][0]][:-1]  # without its <eos>
            ca = one_a["codes"][0][:, : int(one_a["code_lens"][0])]
            want_text = torch.cat([ta, torch.tensor([sep]), tb])
            want_codes = torch.cat([ca, cb], dim=1)
            assert int(got["nar_prompt_lens"][r]) == ca.shape[1]  # the NAR's prompt is the partner utterance
            # the NAR's segments: prompt transcript + separator, prompt frames
            assert int(got["nar_text_split"][r]) == len(ta) + 1 and int(got["nar_frame_split"][r]) == ca.shape[1]
        else:
            want_text, want_codes = tb, cb
            assert int(got["nar_text_split"][r]) == 0 and int(got["nar_frame_split"][r]) == 0  # one segment
        n = len(want_text)
        assert torch.equal(got["text"][r][:n], want_text) and int(got["text_valid"][r].sum()) == n
        assert bool((got["text"][r][n:] == tok.symbols.pad_id).all())
        T = want_codes.shape[1]
        assert int(got["code_lens"][r]) == T and torch.equal(got["codes"][r][:, :T], want_codes)
        assert bool((got["codes"][r][:, T:] == 0).all())
    assert got["frames"] == int(got["code_lens"].sum())


def test_pairs_need_speakers_and_join_speaker_lists(packed):
    from dataclasses import replace

    from valle2.training.packed import concat_packed

    a, b = load_packed(packed / "train.safetensors"), load_packed(packed / "valid.safetensors")
    old = replace(a, speaker=None)  # what a version-1 file loads as
    with pytest.raises(DataFileError, match="re-pack"):
        PackedBatches(old, eos_id=1, max_frames=1000, pair_prob=0.5)
    PackedBatches(old, eos_id=1, max_frames=1000)  # single utterances still train
    both = concat_packed([a, b])
    names = both.meta["speakers"]
    want = [a.meta["speakers"][s] for s in a.speaker] + [b.meta["speakers"][s] for s in b.speaker]
    assert [names[s] for s in both.speaker] == want
    assert concat_packed([old, b]).speaker is None


def test_sprint_with_pairs_starts_from_earlier_weights(tiny_tokens, packed, tmp_path):  # noqa: F811 (fixture)
    from valle2.errors import Valle2Error

    train_dir, valid_dir, _ = tiny_tokens
    cfg = train_config(train_dir, valid_dir, tmp_path / "unused", "data.pair_prob=0.5", "optim.lr=3e-3")
    settings = SprintSettings(budget_s=30.0, max_frames=600, warmup_steps=2, valid_every_s=100.0, log_every=2,
                              weights_dtype="float32", max_steps=5)
    first = train_sprint(cfg, packed / "train.safetensors", tmp_path / "a", settings,
                         valid_path=packed / "valid.safetensors", device="cpu")
    assert first["step"] == 5  # max_steps ends the run before its 30 s budget
    start = load_weights(tmp_path / "a", "best")
    nothing = SprintSettings(budget_s=0.0, max_frames=600, weights_dtype="float32")
    again = train_config(train_dir, valid_dir, tmp_path / "unused", "data.pair_prob=0.5", f"train.init_from={tmp_path / 'a'}")
    second = train_sprint(again, packed / "train.safetensors", tmp_path / "b", nothing,
                          valid_path=packed / "valid.safetensors", device="cpu")
    assert second["step"] == 0
    # no step taken: its weights and validation loss are the first run's best
    assert all(torch.equal(v, start[k]) for k, v in load_weights(tmp_path / "b", "last").items())
    assert second["best"]["valid_loss"] == pytest.approx(first["best"]["valid_loss"], rel=1e-5)
    small = train_config(train_dir, valid_dir, tmp_path / "unused", "model.size=small",
                         f"train.init_from={tmp_path / 'a'}")
    with pytest.raises(Valle2Error, match="lacks .* weights|do not fit"):
        train_sprint(small, packed / "train.safetensors", tmp_path / "c", nothing, device="cpu")


def test_a_stopped_sprint_resumes_where_it_stopped(tiny_tokens, packed, tmp_path):  # noqa: F811 (fixture)
    from valle2.errors import Valle2Error

    train_dir, valid_dir, _ = tiny_tokens
    cfg = train_config(train_dir, valid_dir, tmp_path / "unused", "optim.lr=3e-3")
    run = tmp_path / "run"

    def sprint(max_steps, config=cfg):
        settings = SprintSettings(budget_s=60.0, max_frames=400, warmup_steps=2, valid_every_s=100.0,
                                  save_every_s=100.0, log_every=1, weights_dtype="float32", max_steps=max_steps,
                                  resume=True)
        return train_sprint(config, packed / "train.safetensors", run, settings,
                            valid_path=packed / "valid.safetensors", device="cpu")

    first = sprint(3)  # nothing to resume yet: a new run
    assert first["step"] == 3 and (run / "resume.pt").is_file()
    saved = torch.load(run / "resume.pt", weights_only=False)
    assert saved["step"] == 3 and all(float(st["step"]) == 3 for st in saved["optimizer"]["state"].values())
    second = sprint(6)
    assert second["step"] == 6
    ck = torch.load(run / "resume.pt", weights_only=False)
    # the optimizer went on from its saved moments (6 updates in all, not 3), and the clock from 3 steps' time
    assert all(float(st["step"]) == 6 for st in ck["optimizer"]["state"].values())
    train_rows = [r for r in second["history"] if r["split"] == "train"]
    assert [r["step"] for r in train_rows] == [1, 2, 3, 4, 5, 6]  # one history across both sittings
    assert train_rows[3]["elapsed"] >= train_rows[2]["elapsed"]
    assert ck["elapsed_s"] > saved["elapsed_s"]
    assert not all(torch.equal(ck["model"][k], saved["model"][k]) for k in ck["model"])
    bigger = train_config(train_dir, valid_dir, tmp_path / "unused", "model.size=small")
    with pytest.raises(Valle2Error, match="does not match this run's models"):
        sprint(8, bigger)


def test_nar_only_sprint_exports_with_the_ar_of_its_init(tiny_tokens, packed, tmp_path):  # noqa: F811 (fixture)
    import shutil

    from valle2.models.valle2 import VallE2

    train_dir, valid_dir, _ = tiny_tokens
    settings = SprintSettings(budget_s=30.0, max_frames=600, warmup_steps=1, valid_every_s=100.0, log_every=2,
                              weights_dtype="float32", max_steps=3)
    cfg = train_config(train_dir, valid_dir, tmp_path / "unused", "optim.lr=3e-3")
    train_sprint(cfg, packed / "train.safetensors", tmp_path / "a", settings, valid_path=packed / "valid.safetensors",
                 device="cpu")
    init = load_weights(tmp_path / "a", "best")
    nar = train_config(train_dir, valid_dir, tmp_path / "unused", "optim.lr=3e-3", "train.models=nar",
                       f"train.init_from={tmp_path / 'a'}")
    train_sprint(nar, packed / "train.safetensors", tmp_path / "b", settings, valid_path=packed / "valid.safetensors",
                 device="cpu")
    trained = load_weights(tmp_path / "b", "best")
    assert trained and all(k.startswith("nar.") for k in trained)  # only what it trained is saved
    # the init folder moves (as it does between a lent GPU and this machine): export names it again
    shutil.move(tmp_path / "a", tmp_path / "moved")
    with pytest.raises(Exception, match="trained only the NAR; its AR comes from .* --set train.init_from=PATH"):
        export_sprint(tmp_path / "b", tmp_path / "m0")
    folder = export_sprint(tmp_path / "b", tmp_path / "m", overrides=[f"train.init_from={tmp_path / 'moved'}"])
    own = VallE2.from_pretrained(folder).state_dict()
    ar = [k for k in init if k.startswith("ar.") and k in own]
    assert ar and all(torch.equal(own[k].float(), init[k].float()) for k in ar)  # the AR is the init's
    changed = [k for k in trained if k in own and not torch.equal(trained[k].float(), init[k].float())]
    assert changed and all(torch.equal(own[k].float(), trained[k].float()) for k in changed)  # the NAR is new


def test_ar_only_and_nar_only_sprints_join_in_one_export(tiny_tokens, packed, tmp_path):  # noqa: F811 (fixture)
    """recipes/gpu_sprint.sh's runs B (NAR alone) and C (AR alone): B exports with its init's AR, then C
    exports with B's folder as its init, so the model holds C's AR and B's NAR."""
    from valle2.models.valle2 import VallE2

    train_dir, valid_dir, _ = tiny_tokens
    settings = SprintSettings(budget_s=30.0, max_frames=600, warmup_steps=1, valid_every_s=100.0, log_every=2,
                              weights_dtype="float32", max_steps=2)
    base = train_config(train_dir, valid_dir, tmp_path / "unused", "optim.lr=3e-3")
    valid = packed / "valid.safetensors"
    train_sprint(base, packed / "train.safetensors", tmp_path / "a", settings, valid_path=valid, device="cpu")
    runs = {}
    for models in ("nar", "ar"):
        cfg = train_config(train_dir, valid_dir, tmp_path / "unused", "optim.lr=3e-3", f"train.models={models}",
                           f"train.init_from={tmp_path / 'a'}")
        train_sprint(cfg, packed / "train.safetensors", tmp_path / models, settings, valid_path=valid, device="cpu")
        runs[models] = load_weights(tmp_path / models, "best")
    nar_model = export_sprint(tmp_path / "nar", tmp_path / "m_nar")
    joined = export_sprint(tmp_path / "ar", tmp_path / "m", overrides=[f"train.init_from={nar_model}"])
    own = VallE2.from_pretrained(joined).state_dict()
    for models, weights in runs.items():
        assert weights and all(k.startswith(f"{models}.") for k in weights)
        shared = [k for k in weights if k in own]
        assert shared and all(torch.equal(own[k].float(), weights[k].float()) for k in shared), models


def test_lhotse_path_pairs_same_speaker_utterances(tiny_tokens):  # noqa: F811 (fixture)
    from valle2.data.shards import ShardReader

    train_dir, _, _ = tiny_tokens
    tok = open_tokenized([train_dir])
    cuts = list(tok.cuts)
    sep = tok.symbols.separator_ids()[0]
    ds = TokenizedDataset(n_codebooks=tok.n_codebooks, eos_id=tok.symbols.eos_id, pad_id=tok.symbols.pad_id,
                          pair_prob=1.0, pair_max_seconds=100.0, sep_id=sep, pool=cuts)
    reader = ShardReader()

    def load(c):
        t = c.custom["tokens"]
        return reader.read(Path(t["root"]) / t["shard"], t["key"])

    batch = ds[cuts[:5]]
    for r, cut in enumerate(cuts[:5]):
        own_codes, own_phones = load(cut)
        T, n = int(batch["code_lens"][r]), own_codes.shape[1]
        P = T - n  # the partner's frames come first
        assert P > 0 and int(batch["nar_prompt_lens"][r]) == P and int(batch["nar_frame_split"][r]) == P
        codes = batch["codes"][r][:, :T]
        assert torch.equal(codes[:, P:], own_codes)
        partners = [c for c in cuts if c.id != cut.id and c.supervisions[0].speaker == cut.supervisions[0].speaker
                    and load(c)[0].shape[1] == P and torch.equal(load(c)[0], codes[:, :P])]
        assert partners, "the first part is another utterance of the same speaker"
        text = batch["text"][r][batch["text_valid"][r]]
        pp = load(partners[0])[1]
        assert torch.equal(text, torch.cat([pp, torch.tensor([sep]), own_phones, torch.tensor([tok.symbols.eos_id])]))
        assert int(batch["nar_text_split"][r]) == len(pp) + 1
    with pytest.raises(ValueError, match="pool"):
        TokenizedDataset(n_codebooks=tok.n_codebooks, eos_id=1, pair_prob=0.5)


def test_pair_settings_are_checked():
    from valle2.config import ConfigError, load_config

    with pytest.raises(ConfigError, match="pair_prob"):
        load_config("debug", ["data.pair_prob=1.5"])


def test_pack_keeps_the_speakers_asked_for(tiny_tokens, tmp_path):  # noqa: F811 (fixture)
    train_dir, valid_dir, _ = tiny_tokens
    meta = pack_tokenized([train_dir, valid_dir], tmp_path / "a.safetensors", speakers={"spk1"}, per_speaker=3)
    data = load_packed(tmp_path / "a.safetensors")
    assert meta["speakers"] == ["spk1"] and data.n_utterances == 3 and (data.speaker == 0).all()
    assert meta["left_out_by_speaker"] > 0
    with pytest.raises(DataFileError, match="another speaker"):
        pack_tokenized([train_dir], tmp_path / "b.safetensors", speakers={"nobody"})
