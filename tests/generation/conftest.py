"""Fixtures shared by the generation tests: a tiny model on the log-mel codec, and a tiny NAR with its inputs."""

from __future__ import annotations

import pytest
import torch

from valle2 import VallE2
from valle2.codec.mel import MelCodec
from valle2.models.nar import NARModel


@pytest.fixture(scope="module")
def mel_model():
    """A random debug-size model on a debug valle2-mel codec (4 x 16): a codec with a log-mel to post-filter."""
    from valle2.models.config import PRESETS, ModelConfig
    from valle2.text import SymbolTable

    symbols = SymbolTable.default("en-us")
    codec = MelCodec.debug(n_codebooks=4, codebook_size=16)
    config = ModelConfig(n_text_tokens=len(symbols), n_codebooks=4, codebook_size=16, group_size=2,
                         ar=PRESETS["debug"], nar=PRESETS["debug"])
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        return VallE2(config, symbols, codec, requires_consent=False, name="mel-debug")


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
