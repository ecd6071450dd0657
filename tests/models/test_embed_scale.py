"""Token embeddings start on the scale of the sinusoidal positions; old configs keep the old inputs."""

import torch

from valle2.models.ar import ARModel
from valle2.models.config import PRESETS, ModelConfig
from valle2.models.nar import NARModel
from valle2.modules.transformer import sinusoids


def _ar(embed_scale):
    torch.manual_seed(0)
    return ARModel(n_text_tokens=40, codebook_size=64, group_size=2, dim=64, n_layers=1, n_heads=4, ffn_dim=128,
                   dropout=0.0, embed_scale=embed_scale)


def test_phones_and_positions_have_comparable_scale():
    pos_rms = sinusoids(torch.arange(50)[None], 64).pow(2).mean().sqrt()
    text = torch.arange(1, 40)[None]
    for m in (_ar(True), NARModel(n_text_tokens=40, n_codebooks=4, codebook_size=64, dim=64, n_layers=1, n_heads=4,
                                  ffn_dim=128, dropout=0.0)):
        token_rms = (m.text_emb(text) * m.in_scale).pow(2).mean().sqrt()
        assert 0.5 < float(token_rms / pos_rms) < 2.5
    # the tied output head of the AR gives unit-scale logits at init, not peaked ones
    m = _ar(True)
    h = torch.nn.functional.layer_norm(torch.randn(1, 8, 64), (64,))
    assert 0.5 < float(m.logits(h).std()) < 2.0
    # the old initialisation: positions ~35x louder than phones
    old = _ar(False)
    assert float((old.text_emb(text) * old.in_scale).pow(2).mean().sqrt() / pos_rms) < 0.05


def test_configs_saved_before_the_field_keep_the_old_behaviour():
    new = ModelConfig(n_text_tokens=10, ar=PRESETS["debug"], nar=PRESETS["debug"])
    assert new.embed_scale is True
    assert ModelConfig.from_dict(new.to_dict()).embed_scale is True
    legacy = new.to_dict()
    del legacy["embed_scale"]
    assert ModelConfig.from_dict(legacy).embed_scale is False
