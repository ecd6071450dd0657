"""Helpers of the training tests: a tiny generated corpus, tokenized once per session.

Not a conftest.py: test modules import what they use (``from trainkit import ...``), so this
file never shadows another directory's ``conftest`` module.
"""

from __future__ import annotations

import numpy as np
import pytest
import soundfile as sf

SENTENCES = [
    "The cat sat on the mat.", "A quick brown fox jumps.", "Rain falls on the hills.",
    "She reads a short book.", "We walk to the river.", "Birds sing in the morning.",
    "He opened the old door.", "Light comes through the window.", "The train is late again.",
    "Put the cup on the table.", "Cold wind blows at night.", "They laughed at the joke.",
]


def make_corpus(folder, n: int = 12, sr: int = 16000, seed: int = 0, corrupt: bool = False, empty: bool = False):
    """``n`` utterances of gliding tones and noise (1-2 s) with .txt transcripts, two speakers.

    ``corrupt`` adds a file that is not audio; ``empty`` one whose transcript is empty.
    """
    rng = np.random.default_rng(seed)
    for i in range(n):
        spk = folder / f"spk{i % 2}"
        spk.mkdir(parents=True, exist_ok=True)
        dur = 1.0 + rng.random()
        t = np.arange(int(dur * sr)) / sr
        f0 = (140 if i % 2 else 220) * (1 + 0.2 * np.sin(2 * np.pi * rng.uniform(1, 3) * t))
        wav = 0.3 * np.sin(2 * np.pi * np.cumsum(f0) / sr) * np.hanning(len(t)) + 0.01 * rng.standard_normal(len(t))
        sf.write(spk / f"utt{i:03d}.wav", wav.astype(np.float32), sr)
        (spk / f"utt{i:03d}.txt").write_text(SENTENCES[i % len(SENTENCES)] + "\n")
    if corrupt:
        (folder / "spk0" / "broken.wav").write_bytes(b"RIFF\x00\x00\x00\x00WAVEjunkjunkjunk")
        (folder / "spk0" / "broken.txt").write_text("This file is not audio.\n")
    if empty:
        sf.write(folder / "spk1" / "silent_text.wav", (0.3 * np.sin(np.arange(sr) * 0.05)).astype(np.float32), sr)
        (folder / "spk1" / "silent_text.txt").write_text("   \n")
    return folder


_BUILT: dict = {}  # one tokenized corpus per session, whichever module asks first


@pytest.fixture(scope="session")
def tiny_tokens(tmp_path_factory):
    """(train_dir, valid_dir, root) of a tiny corpus with one corrupt file and one empty transcript."""
    from valle2.config import load_config
    from valle2.data.recipes import prepare_generic_folder
    from valle2.data.tokenize import tokenize

    if "tokens" in _BUILT:
        return _BUILT["tokens"]
    root = tmp_path_factory.mktemp("corpus")
    make_corpus(root / "train", n=12, corrupt=True, empty=True)
    make_corpus(root / "valid", n=3, seed=1)
    cfg = load_config("debug")
    out = {}
    for split in ("train", "valid"):
        prepared = prepare_generic_folder(root / split, root / "manifests", name=split)
        tokenize([prepared.cuts[split]], root / "tokens" / split, codec=cfg.codec, text=cfg.text,
                 settings=cfg.tokenize)
        out[split] = root / "tokens" / split
    _BUILT["tokens"] = (out["train"], out["valid"], root)
    return _BUILT["tokens"]


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    """These tests run tiny models, for which one intra-op thread is fastest on a shared CPU."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def train_config(train_dir, valid_dir, out_dir, *extra):
    from valle2.config import load_config

    return load_config("debug", [f"data.train=[{train_dir}]", f"data.valid=[{valid_dir}]", f"train.out_dir={out_dir}",
                                 "train.n_samples=0", "train.log_every=1", *extra])
