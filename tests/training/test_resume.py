"""A run stopped and resumed ends with exactly the weights of an uninterrupted run (CPU: bit-identical)."""

import json

import pytest
import torch

from valle2.training import train
from trainkit import one_thread, tiny_tokens, train_config  # noqa: F401 (fixtures)

# Dropout on (the RNG state must be restored), 2 micro-batches per step, a small batch budget
# so that the stop falls inside an epoch and the run crosses epoch boundaries.
SETTINGS = ("train.steps=6", "optim.accum_steps=2", "model.dropout=0.1", "data.max_batch_seconds=5",
            "data.max_seconds=5", "train.checkpoint_every=100", "train.valid_every=3", "optim.warmup_steps=2")


@pytest.mark.parametrize("pairs", [(), ("data.pair_prob=0.5",)], ids=["single", "prompt-pairs"])
def test_stop_and_resume_is_bit_identical(tiny_tokens, tmp_path, pairs):  # noqa: F811 (fixture)
    train_dir, valid_dir, _ = tiny_tokens
    straight = train(train_config(train_dir, valid_dir, tmp_path / "straight", *SETTINGS, *pairs))

    cfg = train_config(train_dir, valid_dir, tmp_path / "resumed", *SETTINGS, *pairs)
    first = train(cfg, until_step=3)
    assert first.step == 3 and first.export_dir is None
    assert (tmp_path / "resumed" / "checkpoints" / "latest").read_text().strip() == "step-00000003"
    second = train(cfg, resume=True)
    assert second.step == 6

    a, b = straight.module.state_dict(), second.module.state_dict()
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), k
    epochs = [r["epoch"] for r in straight.history if r["split"] == "train"]
    assert epochs[-1] >= 1  # the runs crossed an epoch boundary
    valid = [r for r in second.history if r["split"] == "valid"]
    assert valid and valid[-1] == [r for r in straight.history if r["split"] == "valid"][-1]

    rank_state = json.loads((tmp_path / "resumed" / "checkpoints" / "step-00000006" / "rank-00000.json").read_text())
    assert set(rank_state["rng"]) >= {"python", "numpy", "torch"}
