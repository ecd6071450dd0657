"""Two processes on CPU (gloo), launched by torchrun: DDP and FSDP2 leave identical weights on both ranks."""

import os
import subprocess
import sys
from pathlib import Path

import torch
from safetensors.torch import load_file
from trainkit import one_thread, tiny_tokens  # noqa: F401 (fixtures)

SCRIPT = r'''
import sys
import torch
import torch.distributed as dist
from safetensors.torch import save_file
from torch.distributed.checkpoint.state_dict import StateDictOptions, get_model_state_dict
from valle2.config import load_config
from valle2.training import train

out, train_dir, valid_dir = sys.argv[1:4]
dist.init_process_group("gloo")  # train() joins this group instead of making its own
rank = dist.get_rank()
for strategy in ("ddp", "fsdp"):
    cfg = load_config("debug", [f"data.train=[{train_dir}]", f"data.valid=[{valid_dir}]",
                                f"train.out_dir={out}/{strategy}", f"train.strategy={strategy}", "train.steps=3",
                                "train.n_samples=0", "train.valid_every=0", "train.checkpoint_every=0",
                                "data.max_batch_seconds=4", "data.max_seconds=4", "model.dropout=0.1"])
    result = train(cfg)
    state = get_model_state_dict(result.module, options=StateDictOptions(full_state_dict=True))
    save_file({k: v.contiguous() for k, v in state.items()}, f"{out}/{strategy}-rank{rank}.safetensors")
dist.destroy_process_group()
'''


def test_two_ranks_hold_identical_weights(tiny_tokens, tmp_path):  # noqa: F811 (fixture)
    train_dir, valid_dir, _ = tiny_tokens
    script = tmp_path / "run.py"
    script.write_text(SCRIPT)
    src = str(Path(__file__).resolve().parents[2] / "src")
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": os.pathsep.join([src, os.environ.get("PYTHONPATH", "")])}
    proc = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2", str(script),
         str(tmp_path), str(train_dir), str(valid_dir)],
        env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]

    weights = {name: load_file(tmp_path / f"{name}.safetensors")
               for name in ("ddp-rank0", "ddp-rank1", "fsdp-rank0", "fsdp-rank1")}
    init = {}
    for strategy in ("ddp", "fsdp"):
        a, b = weights[f"{strategy}-rank0"], weights[f"{strategy}-rank1"]
        assert a.keys() == b.keys() and len(a) > 10
        for k in a:
            assert torch.equal(a[k], b[k]), (strategy, k)
        init[strategy] = a
    # Same data, same updates; only the order of the gradient reduction differs.
    for k in init["ddp"]:
        torch.testing.assert_close(init["ddp"][k], init["fsdp"][k], rtol=1e-4, atol=1e-5)
    assert (tmp_path / "ddp" / "model" / "model.safetensors").is_file()  # rank 0 exported
    assert (tmp_path / "ddp" / "checkpoints" / "latest").is_file()
