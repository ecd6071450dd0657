"""Fixtures shared by the generation tests: a tiny NAR with its inputs."""

from __future__ import annotations

import pytest
import torch

from valle2.models.nar import NARModel


@pytest.fixture(scope="module")
def nar_inputs():
    """A random one-layer NAR (4 codebooks of 16) and two rows: texts, prompts (4, P_i), codebook-0 targets."""
    torch.manual_seed(0)
    nar = NARModel(n_text_tokens=20, n_codebooks=4, codebook_size=16, dim=32, n_layers=1, n_heads=4, ffn_dim=64,
                   dropout=0.0).eval()
    texts = [torch.randint(4, 20, (7,)), torch.randint(4, 20, (5,))]
    prompts = [torch.randint(0, 16, (4, 6)), torch.randint(0, 16, (4, 9))]
    targets = [torch.randint(0, 16, (11,)), torch.randint(0, 16, (4,))]
    return nar, texts, prompts, targets
