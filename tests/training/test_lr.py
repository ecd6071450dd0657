import math

import pytest

from valle2.training.lr import lr_at


def test_warmup_is_linear_from_zero_to_peak():
    lrs = [lr_at(s, peak=1.0, warmup=4, total=10) for s in range(4)]
    assert lrs == [0.25, 0.5, 0.75, 1.0]


@pytest.mark.parametrize("schedule", ["linear", "cosine"])
def test_decay_reaches_the_floor_at_the_end(schedule):
    kw = dict(peak=2.0, warmup=10, total=110, schedule=schedule, min_ratio=0.1)
    assert lr_at(10, **kw) == pytest.approx(2.0)
    assert lr_at(110, **kw) == pytest.approx(0.2)
    assert lr_at(60, **kw) == pytest.approx(1.1)  # half way: both are at the middle
    values = [lr_at(s, **kw) for s in range(10, 111)]
    assert all(a >= b for a, b in zip(values, values[1:]))


def test_constant_and_no_warmup():
    assert lr_at(0, peak=1.0, warmup=0, total=5, schedule="constant") == 1.0
    assert lr_at(4, peak=1.0, warmup=0, total=5, schedule="linear") == pytest.approx(0.2)
    assert math.isclose(lr_at(1000, peak=1.0, warmup=0, total=5), 0.0)


def test_unknown_schedule_is_refused():
    with pytest.raises(ValueError, match="unknown lr schedule 'step'"):
        lr_at(0, peak=1.0, warmup=0, total=5, schedule="step")
