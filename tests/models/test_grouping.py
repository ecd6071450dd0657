import pytest
import torch

from valle2.models.grouping import clip_to_groups, group_codes, n_groups, ungroup_codes


@pytest.mark.parametrize("G", [1, 2, 4, 8])
@pytest.mark.parametrize("T", [1, 5, 8, 13, 16])
def test_group_then_ungroup_is_identity(G, T):
    codes = torch.randint(0, 1024, (3, T))
    groups = group_codes(codes, G, pad=1024)
    assert groups.shape == (3, n_groups(T, G), G)
    assert torch.equal(ungroup_codes(groups, T), codes)


def test_tail_is_padded_with_pad_value():
    codes = torch.arange(5)
    groups = group_codes(codes, 4, pad=-7)
    assert groups.tolist() == [[0, 1, 2, 3], [4, -7, -7, -7]]


def test_clip_drops_leading_frames():
    codes = torch.arange(10)[None]  # (1, 10)
    assert clip_to_groups(codes, 4).tolist() == [[2, 3, 4, 5, 6, 7, 8, 9]]
    assert clip_to_groups(codes, 1).shape[-1] == 10
