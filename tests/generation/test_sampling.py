"""Repetition-aware sampling (SPEC.md §3) and the filters under it."""

import pytest
import torch

from valle2.generation.sampling import (
    SamplingConfig, filter_logits, nucleus_sample, repetition_aware_sample, repetition_ratio,
)

V = 8
# A peaked distribution: code 0 has 0.9 of the mass; the nucleus at top_p=0.8 is {0}.
PROBS = torch.tensor([0.90, 0.04, 0.02, 0.01, 0.01, 0.01, 0.005, 0.005])
LOGITS = PROBS.log()


def draws(history_row, n=4000, **kw):
    logits = LOGITS.expand(n, V)
    history = torch.tensor(history_row).expand(n, -1)
    return repetition_aware_sample(logits, history, generator=torch.Generator().manual_seed(0), **kw)


def test_no_repetition_behaves_like_nucleus():
    out = draws([3, 4, 5, 6, 7, 1, 2, 3, 4, 5], top_p=0.8)
    assert (out == 0).all(), "with code 0 absent from the window, RAS is nucleus sampling: only code 0"
    nucleus = nucleus_sample(LOGITS.expand(4000, V), top_p=0.8, generator=torch.Generator().manual_seed(0))
    assert torch.equal(out, nucleus)


def test_window_full_of_nucleus_token_samples_full_distribution():
    out = draws([0] * 10, top_p=0.8)
    freq = torch.bincount(out, minlength=V).float() / len(out)
    # The fallback is plain sampling from the full distribution: frequencies follow PROBS.
    torch.testing.assert_close(freq, PROBS, atol=0.015, rtol=0)
    assert (freq[1:] > 0).sum() >= 5, "codes outside the nucleus must appear"


def test_threshold_is_strict_and_uses_the_window():
    # One occurrence in a window of 10 gives r = 0.1, not > 0.1: nucleus result kept.
    out = draws([0] + [5] * 9, top_p=0.8)
    assert (out == 0).all()
    # Two occurrences: r = 0.2 > 0.1: fallback, so other codes appear.
    out = draws([0, 0] + [5] * 8, top_p=0.8)
    assert (out != 0).any()
    # Occurrences older than the window do not count.
    out = draws([0] * 5 + [5] * 10, top_p=0.8, window=10)
    assert (out == 0).all()


def test_repetition_ratio_values():
    codes = torch.tensor([1, 2])
    history = torch.tensor([[1, 1, 3, -1], [2, 2, 2, 2]])
    assert repetition_ratio(codes, history, 4).tolist() == [0.5, 1.0]


def test_filters():
    logits = torch.tensor([[3.0, 2.0, 1.0, 0.0]])
    assert torch.isinf(filter_logits(logits, top_k=2)).tolist() == [[False, False, True, True]]
    # softmax([3,2,1,0]) = [.64, .24, .09, .03]: top_p=0.7 keeps the first two.
    assert torch.isinf(filter_logits(logits, top_p=0.7)).tolist() == [[False, False, True, True]]
    assert not torch.isinf(filter_logits(logits, top_p=1.0)).any()


def test_seeded_sampling_is_reproducible():
    logits = torch.randn(16, 100)
    history = torch.randint(0, 100, (16, 10))
    a = repetition_aware_sample(logits, history, top_p=0.9, generator=torch.Generator().manual_seed(7))
    b = repetition_aware_sample(logits, history, top_p=0.9, generator=torch.Generator().manual_seed(7))
    assert torch.equal(a, b)


@pytest.mark.parametrize("bad", [dict(top_p=0.0), dict(top_p=1.5), dict(temperature=0), dict(top_k=0)])
def test_bad_sampling_config_is_refused(bad):
    with pytest.raises(ValueError):
        SamplingConfig(**bad)
