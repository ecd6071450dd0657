import json
import random

import numpy as np
import pytest
import torch

from valle2.training import checkpoint as ckpt
from valle2.training.distributed import DistEnv, full_model_state, full_optimizer_state, load_full_optimizer_state
from trainkit import one_thread  # noqa: F401 (fixtures)

ENV = DistEnv(rank=0, world_size=1, local_rank=0, device=torch.device("cpu"), initialized_here=False)


def _model_and_optimizer(seed=0):
    torch.manual_seed(seed)
    model = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.LayerNorm(4), torch.nn.Linear(4, 2))
    opt = torch.optim.AdamW(model.parameters(), lr=1e-2, betas=(0.9, 0.95))
    for _ in range(2):
        opt.zero_grad()
        model(torch.randn(5, 3)).square().mean().backward()
        opt.step()
    return model, opt


def _save(root, step, model, opt, keep_last=3):
    return ckpt.save_checkpoint(root, step, ENV, model_state=full_model_state(model),
                                optimizer_state=full_optimizer_state(model, opt), trainer={"note": step},
                                rank_state={"epoch": 1, "batches_done": step, "rng": ckpt.rng_state()},
                                keep_last=keep_last)


def test_round_trip_restores_model_optimizer_and_rng(tmp_path):
    model, opt = _model_and_optimizer()
    path = _save(tmp_path, 5, model, opt)
    expected = (random.random(), float(np.random.rand()), torch.rand(3))
    state = ckpt.load_checkpoint(path, rank=0)
    assert state["trainer"]["step"] == 5 and state["rank"]["batches_done"] == 5
    for k, v in model.state_dict().items():
        assert torch.equal(state["model"][k], v)

    other, other_opt = _model_and_optimizer(seed=1)
    other.load_state_dict(state["model"])
    load_full_optimizer_state(other, other_opt, state["optimizer"])
    for a, b in zip(opt.state.values(), other_opt.state.values()):
        assert all(torch.equal(a[k], b[k]) for k in ("step", "exp_avg", "exp_avg_sq"))
    assert tuple(other_opt.param_groups[0]["betas"]) == (0.9, 0.95)

    ckpt.set_rng_state(state["rank"]["rng"])
    assert (random.random(), float(np.random.rand())) == expected[:2]
    assert torch.equal(torch.rand(3), expected[2])
    assert not any(p.suffix in (".pt", ".pkl", ".bin") for p in path.iterdir())  # nothing pickled


def test_crash_mid_write_keeps_the_previous_latest(tmp_path, monkeypatch):
    model, opt = _model_and_optimizer()
    first = _save(tmp_path, 10, model, opt)

    import safetensors.torch

    real = safetensors.torch.save_file

    def crash(tensors, path, *a, **k):
        if path.endswith("optimizer.safetensors"):
            raise OSError("disk full")
        return real(tensors, path, *a, **k)

    monkeypatch.setattr(safetensors.torch, "save_file", crash)
    with pytest.raises(OSError, match="disk full"):
        _save(tmp_path, 20, model, opt)
    monkeypatch.setattr(safetensors.torch, "save_file", real)

    assert (tmp_path / "latest").read_text().strip() == "step-00000010"
    assert ckpt.find_latest(tmp_path) == first
    assert (tmp_path / ".step-00000020.partial").is_dir()  # never mistaken for a checkpoint
    _save(tmp_path, 30, model, opt)
    assert not (tmp_path / ".step-00000020.partial").exists()
    assert ckpt.find_latest(tmp_path).name == "step-00000030"


def test_keep_last_n_and_a_dangling_latest(tmp_path):
    model, opt = _model_and_optimizer()
    for step in (1, 2, 3, 4):
        _save(tmp_path, step, model, opt, keep_last=2)
    assert [p.name for p in ckpt.complete_checkpoints(tmp_path)] == ["step-00000003", "step-00000004"]
    (tmp_path / "latest").write_text("step-00000099\n")
    assert ckpt.find_latest(tmp_path).name == "step-00000004"
    assert ckpt.find_latest(tmp_path / "nothing") is None


def test_unknown_version_is_refused(tmp_path):
    model, opt = _model_and_optimizer()
    path = _save(tmp_path, 1, model, opt)
    meta = json.loads((path / "trainer.json").read_text())
    (path / "trainer.json").write_text(json.dumps({**meta, "version": 99}))
    with pytest.raises(ckpt.CheckpointError, match="version 99; this valle2 reads version 1 only"):
        ckpt.load_checkpoint(path, rank=0)
