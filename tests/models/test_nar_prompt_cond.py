"""NAR speaker conditioning pooled from the prompt (ModelConfig.nar_prompt_cond)."""

import torch

from valle2.config import load_config
from valle2.models.builders import build_nar
from valle2.models.config import PRESETS, ModelConfig
from valle2.models.nar import NARModel
from valle2.training.loop import model_config


def _nar(prompt_cond: bool) -> NARModel:
    torch.manual_seed(0)
    return NARModel(n_text_tokens=20, n_codebooks=4, codebook_size=32, dim=32, n_layers=1, n_heads=4, ffn_dim=64,
                    dropout=0.0, prompt_cond=prompt_cond).eval()


def _inputs(seed: int = 1):
    g = torch.Generator().manual_seed(seed)
    text = torch.randint(4, 20, (2, 6), generator=g)
    codes = torch.randint(0, 32, (2, 4, 30), generator=g)
    return text, torch.ones(2, 6, dtype=torch.bool), codes, torch.tensor([10, 8]), torch.tensor([30, 25]), torch.tensor([1, 3])


def test_starts_as_without():  # the AdaLN projections start at zero, so the condition is inert
    plain, cond = _nar(False), _nar(True)
    missing = cond.load_state_dict(plain.state_dict(), strict=False).missing_keys
    assert sorted(missing) == ["prompt_proj.bias", "prompt_proj.weight"]
    assert cond.prompt_proj.weight.abs().sum() > 0
    args = _inputs()
    with torch.no_grad():
        torch.testing.assert_close(cond(*args), plain(*args))


def test_the_prompt_moves_the_target_predictions_and_gets_gradients():
    m = _nar(True)
    for mod in m.modules():  # as after some training: the AdaLN projections have moved
        if type(mod).__name__ == "AdaLayerNorm":
            torch.nn.init.normal_(mod.proj.weight, std=0.1)
    text, valid, codes, p_lens, c_lens, stage = _inputs()
    other = codes.clone()
    other[0, :, :10] = (codes[0, :, :10] + 7) % 32  # another prompt, same target frames
    with torch.no_grad():
        a, b = m(text, valid, codes, p_lens, c_lens, stage), m(text, valid, other, p_lens, c_lens, stage)
    assert not torch.allclose(a[0, 10:], b[0, 10:])  # row 0's target reads its prompt
    torch.testing.assert_close(a[1], b[1])  # row 1 untouched
    loss, _ = m.loss(text, valid, codes, c_lens, stage=stage, prompt_lens=p_lens)
    loss.backward()
    assert m.prompt_proj.weight.grad.abs().sum() > 0


def test_config_switch_and_old_configs():
    cfg = load_config("debug", ["model.nar_prompt_cond=true"])
    mc = model_config(cfg, n_text_tokens=20, n_codebooks=4, codebook_size=32)
    assert mc.nar_prompt_cond and build_nar(mc).prompt_proj is not None
    assert build_nar(model_config(load_config("debug", []), 20, 4, 32)).prompt_proj is None
    legacy = ModelConfig(n_text_tokens=10, ar=PRESETS["debug"], nar=PRESETS["debug"]).to_dict()
    del legacy["nar_prompt_cond"]
    assert ModelConfig.from_dict(legacy).nar_prompt_cond is False
