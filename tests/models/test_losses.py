"""The AR/NAR training targets are right, and both losses can be driven down (the models learn)."""

import torch

from valle2.models.ar import IGNORE, ARModel
from valle2.models.nar import NARModel


def test_ar_training_inputs_shift_by_one_group_and_end_with_eos():
    m = ARModel(n_text_tokens=10, codebook_size=20, group_size=2, dim=16, n_layers=1, n_heads=2, ffn_dim=32)
    codes = torch.tensor([[1, 2, 3, 4, 5], [6, 7, 8, 0, 0]])
    tokens, valid, targets = m.training_inputs(codes, torch.tensor([5, 3]))
    E, B = m.eos, m.bos
    assert tokens[0].tolist() == [[B, B], [1, 2], [3, 4], [5, E]]
    assert targets[0].tolist() == [[1, 2], [3, 4], [5, E], [E, E]]
    assert valid[1].tolist() == [True, True, True, False]
    assert targets[1].tolist() == [[6, 7], [8, E], [E, E], [IGNORE, IGNORE]]


def _overfit(model, loss_fn, steps=60):
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3)
    first = None
    for _ in range(steps):
        loss, _ = loss_fn()
        first = first if first is not None else loss.item()
        opt.zero_grad()
        loss.backward()
        opt.step()
    return first, loss.item()


def test_ar_loss_decreases():
    torch.manual_seed(0)
    m = ARModel(n_text_tokens=10, codebook_size=32, group_size=2, dim=32, n_layers=2, n_heads=4, ffn_dim=64, dropout=0.0)
    text = torch.randint(4, 10, (2, 6))
    codes = torch.randint(0, 32, (2, 12))
    lens = torch.tensor([12, 9])
    first, last = _overfit(m, lambda: m.loss(text, torch.ones_like(text, dtype=torch.bool), codes, lens))
    assert last < 0.5 * first


def test_nar_loss_targets_only_the_target_region_and_decreases():
    torch.manual_seed(0)
    m = NARModel(n_text_tokens=10, n_codebooks=4, codebook_size=32, dim=32, n_layers=2, n_heads=4, ffn_dim=64, dropout=0.0)
    text = torch.randint(4, 10, (2, 6))
    tv = torch.ones_like(text, dtype=torch.bool)
    codes = torch.randint(0, 32, (2, 4, 15))
    lens = torch.tensor([15, 11])
    _, metrics = m.loss(text, tv, codes, lens, stage=torch.tensor([1, 3]), prompt_lens=torch.tensor([5, 4]))
    assert metrics["nar_tokens"].item() == (15 - 5) + (11 - 4)
    gen = torch.Generator().manual_seed(0)
    first, last = _overfit(m, lambda: m.loss(text, tv, codes, lens, generator=gen), steps=80)
    assert last < 0.6 * first


def test_nar_target_region_does_not_see_its_own_codebook():
    """Changing codebook j of the target must not change the stage-j logits (no leak of the answer)."""
    torch.manual_seed(0)
    m = NARModel(n_text_tokens=10, n_codebooks=4, codebook_size=32, dim=32, n_layers=1, n_heads=4, ffn_dim=64, dropout=0.0).eval()
    text = torch.randint(4, 10, (1, 5))
    tv = torch.ones_like(text, dtype=torch.bool)
    codes = torch.randint(0, 32, (1, 4, 10))
    args = (torch.tensor([4]), torch.tensor([10]), torch.tensor([2]))
    a = m(text, tv, codes, *args)
    changed = codes.clone()
    changed[0, 2:, 4:] = torch.randint(0, 32, (2, 6))  # codebooks >= j in the target
    b = m(text, tv, changed, *args)
    torch.testing.assert_close(a, b)
    changed[0, 1, 6] = (codes[0, 1, 6] + 1) % 32  # codebook j-1 is an input: logits must move
    assert not torch.allclose(a, m(text, tv, changed, *args))


def test_random_split_leaves_prompt_and_target():
    m = NARModel(n_text_tokens=10, n_codebooks=2, codebook_size=8, dim=16, n_layers=1, n_heads=2, ffn_dim=32)
    lens = torch.tensor([2, 10, 100, 1000])
    for seed in range(20):
        p = m.random_split(lens, torch.Generator().manual_seed(seed))
        assert (p >= 1).all() and (p < lens).all()
