"""Training: the loop (``train``), distribution through torchrun, checkpoints, the LR schedule."""

from valle2.training.loop import TrainModule, TrainResult, train

__all__ = ["TrainModule", "TrainResult", "train"]
