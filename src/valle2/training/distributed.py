"""Distribution through ``torchrun``: process group from its environment, DDP or FSDP2 wrapping.

One process per device. ``torchrun`` sets ``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK`` and
the rendezvous (``MASTER_ADDR``/``MASTER_PORT`` or ``--rdzv-endpoint``), for one node::

    torchrun --nproc_per_node=8 -m valle2 train --config configs/paper.yaml

or several (``--nnodes=2 --node_rank=0 --rdzv-backend=c10d --rdzv-endpoint=host:29500``).
Without those variables the run is a single process. GPUs use NCCL, CPUs gloo. Gradients
are exchanged by DDP (the default) or by FSDP2 (``fully_shard``: parameters, gradients and
optimizer state sharded across ranks, for models that do not fit one GPU).
"""

from __future__ import annotations

import contextlib
import logging
import os
from dataclasses import dataclass
from datetime import timedelta

import torch
import torch.distributed as dist
from torch import nn

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class DistEnv:
    rank: int
    world_size: int
    local_rank: int
    device: torch.device
    initialized_here: bool  # this module started the process group (and ends it)

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1


def init_distributed(device: str | None = None, timeout_minutes: float = 30.0) -> DistEnv:
    """Join the process group that torchrun describes (if any) and pick this rank's device."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    if device is None:
        device = f"cuda:{local_rank}" if torch.cuda.is_available() else "cpu"
    dev = torch.device(device)
    if dev.type == "cuda":
        torch.cuda.set_device(dev)
    initialized_here = False
    if world > 1 and not dist.is_initialized():
        backend = "nccl" if dev.type == "cuda" else "gloo"
        dist.init_process_group(backend, timeout=timedelta(minutes=timeout_minutes),
                                device_id=dev if dev.type == "cuda" else None)
        initialized_here = True
        logger.info("rank %d/%d joined the %s process group on %s", rank, world, backend, dev)
    if dist.is_initialized():
        rank, world = dist.get_rank(), dist.get_world_size()
    return DistEnv(rank, world, local_rank, dev, initialized_here)


def shutdown(env: DistEnv) -> None:
    if env.initialized_here and dist.is_initialized():
        dist.destroy_process_group()


def barrier(env: DistEnv) -> None:
    if env.distributed:
        dist.barrier()


def all_reduce_sum(values: list[float], env: DistEnv) -> list[float]:
    """Sum a list of numbers over ranks (one collective)."""
    if not env.distributed:
        return list(values)
    t = torch.tensor(values, dtype=torch.float64, device=env.device)
    dist.all_reduce(t)
    return t.tolist()


def broadcast_object(obj, env: DistEnv):
    if not env.distributed:
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=0)
    return box[0]


# ----------------------------------------------------------------------------- wrapping


def wrap_model(module: nn.Module, env: DistEnv, strategy: str) -> nn.Module:
    """DDP or FSDP2 around ``module`` (already on ``env.device``); the module itself when alone."""
    if strategy not in ("ddp", "fsdp"):
        raise ValueError(f"unknown strategy {strategy!r}; use ddp or fsdp")
    if strategy == "fsdp":
        from torch.distributed.fsdp import fully_shard

        if not env.distributed:
            logger.info("single process: FSDP has nothing to shard; training unwrapped")
            return module
        # Each transformer block is one unit (its parameters are gathered just for its
        # forward/backward); the root holds the rest (embeddings, heads, norms).
        for part in module.children():
            for block in getattr(getattr(part, "transformer", None), "blocks", []):
                fully_shard(block)
        fully_shard(module)
        return module
    if not env.distributed:
        return module
    from torch.nn.parallel import DistributedDataParallel as DDP

    ids = [env.device.index] if env.device.type == "cuda" else None
    return DDP(module, device_ids=ids)


def unwrap(model: nn.Module) -> nn.Module:
    return model.module if hasattr(model, "module") and hasattr(model, "no_sync") else model


@contextlib.contextmanager
def no_grad_sync(model: nn.Module, enabled: bool):
    """Skip the gradient exchange for micro-batches before the last one of an accumulation."""
    if not enabled:
        yield
        return
    if hasattr(model, "no_sync"):  # DDP
        with model.no_sync():
            yield
    elif hasattr(model, "set_requires_gradient_sync"):  # FSDP2
        model.set_requires_gradient_sync(False)
        try:
            yield
        finally:
            model.set_requires_gradient_sync(True)
    else:
        yield


# ----------------------------------------------------------------------------- full state dicts


def _options(**kw):
    from torch.distributed.checkpoint.state_dict import StateDictOptions

    return StateDictOptions(full_state_dict=True, **kw)


def full_model_state(model: nn.Module) -> dict[str, torch.Tensor]:
    """The whole model's weights on CPU, FQN keys without wrapper prefixes (a collective under FSDP)."""
    from torch.distributed.checkpoint.state_dict import get_model_state_dict

    return get_model_state_dict(model, options=_options(cpu_offload=True))


def load_full_model_state(model: nn.Module, state: dict[str, torch.Tensor]) -> None:
    from torch.distributed.checkpoint.state_dict import set_model_state_dict

    set_model_state_dict(model, state, options=_options())


def full_optimizer_state(model: nn.Module, optimizer: torch.optim.Optimizer) -> dict:
    """Optimizer state keyed by parameter FQN, on CPU (a collective under FSDP)."""
    from torch.distributed.checkpoint.state_dict import get_optimizer_state_dict

    return get_optimizer_state_dict(model, optimizer, options=_options(cpu_offload=True))


def load_full_optimizer_state(model: nn.Module, optimizer: torch.optim.Optimizer, state: dict) -> None:
    from torch.distributed.checkpoint.state_dict import set_optimizer_state_dict

    set_optimizer_state_dict(model, optimizer, optim_state_dict=state, options=_options())


def grad_norm_value(norm) -> float:
    """A gradient norm from ``clip_grad_norm_`` as a float (FSDP2 returns a DTensor)."""
    if hasattr(norm, "full_tensor"):
        norm = norm.full_tensor()
    return float(norm)
