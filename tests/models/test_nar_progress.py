"""NAR progress encodings: where each phone and frame sits within its segment (prompt or target)."""

import pytest
import torch

from valle2.config import ConfigError, load_config
from valle2.models.nar import NARModel, segment_progress


def test_segment_progress_runs_0_to_1_within_each_segment():
    valid = torch.tensor([[True] * 6 + [False] * 2, [True] * 5 + [False] * 3])
    p = segment_progress(valid, torch.tensor([3, 0]))
    # row 0: segments [0, 3) and [3, 6); row 1: one segment [0, 5); padding 0
    assert torch.allclose(p[0], torch.tensor([0, 0.5, 1, 0, 0.5, 1, 0, 0]))
    assert torch.allclose(p[1], torch.tensor([0, 0.25, 0.5, 0.75, 1, 0, 0, 0]))
    assert torch.equal(segment_progress(valid, None), segment_progress(valid, torch.tensor([0, 0])))


def _nar(progress: bool) -> NARModel:
    torch.manual_seed(0)
    return NARModel(n_text_tokens=20, n_codebooks=4, codebook_size=16, dim=32, n_layers=2, n_heads=4, ffn_dim=64,
                    dropout=0.0, progress=progress).eval()


def test_progress_model_reads_the_segments_and_plain_model_ignores_them():
    text = torch.randint(4, 20, (1, 12))
    valid = torch.ones(1, 12, dtype=torch.bool)
    codes = torch.randint(0, 16, (1, 4, 30))
    args = (text, valid, codes, torch.tensor([10]), torch.tensor([30]), torch.tensor([2]))
    split = (torch.tensor([5]), torch.tensor([10]))
    with torch.no_grad():
        plain = _nar(False)
        assert torch.equal(plain(*args), plain(*args, *split))
        prog = _nar(True)
        one, two = prog(*args), prog(*args, *split)
    assert not torch.allclose(one, two)  # the split moves every position's progress
    assert {"text_progress_alpha", "code_progress_alpha"} <= {n for n, _ in prog.named_parameters()}


def test_progress_needs_uncropped_nar_windows():
    load_config("debug", ["model.nar_progress=true"])
    with pytest.raises(ConfigError, match="nar_crop_seconds"):
        load_config("debug", ["model.nar_progress=true", "data.nar_crop_seconds=4"])


def test_config_switch_builds_it_and_synthesis_passes_the_prompt_split():
    from dataclasses import replace

    import numpy as np

    from valle2.models.builders import build_nar
    from valle2.models.valle2 import VallE2
    from valle2.training.loop import model_config

    mc = model_config(load_config("debug", ["model.nar_progress=true"]), 20, 4, 32)
    assert mc.nar_progress and build_nar(mc).progress
    m = VallE2.debug()
    m.config = replace(m.config, nar_progress=True)
    m.nar = build_nar(m.config).eval()
    seen = []
    real = type(m.nar).forward

    def spy(self, *args):
        seen.append(args[6:])
        return real(self, *args)

    type(m.nar).forward = spy
    try:
        sr = m.sample_rate
        wav = (0.3 * np.sin(np.arange(sr * 2) * 0.05)).astype(np.float32)
        prompt = m.prepare_prompt((wav, sr), "A prompt sentence.")
        rows = m.make_rows("Hello there.", prompt)
        m.generate(rows, seed=0)
    finally:
        type(m.nar).forward = real
    text_split, frame_split = seen[0]
    assert int(text_split[0]) == len(prompt.phone_ids) + len(m.symbols.separator_ids())
    assert int(frame_split[0]) == prompt.n_frames


def test_a_checkpoint_without_progress_starts_a_progress_run(tmp_path):
    from valle2.errors import Valle2Error
    from valle2.training.loop import TrainModule, _init_from

    from safetensors.torch import save_file

    plain = _nar(False)
    save_file({f"nar.{k}": v.contiguous() for k, v in plain.state_dict().items()}, str(tmp_path / "model.safetensors"))
    module = TrainModule(None, _nar(True))
    logs = []
    _init_from(module, tmp_path, lambda *a: logs.append(a[0] % a[1:]))
    assert "text_progress_alpha" in logs[0] and "start fresh" in logs[0]
    assert all(torch.equal(module.nar.state_dict()[k], v) for k, v in plain.state_dict().items())
    # anything else missing is still an error
    save_file({f"nar.{k}": v.contiguous() for k, v in plain.state_dict().items() if "stage_emb" not in k},
              str(tmp_path / "model.safetensors"))
    with pytest.raises(Valle2Error, match="lacks"):
        _init_from(TrainModule(None, _nar(True)), tmp_path, print)
