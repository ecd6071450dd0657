"""Learning-rate schedule: linear warm-up, then linear or cosine decay (a pure function of the step).

::

    lr
    peak ┤    ╱‾‾‾‾╲___                  linear:  peak -> min over [warmup, total]
         │   ╱         ‾‾‾╲___           cosine:  peak -> min along half a cosine
     min ┤  ╱                  ‾‾‾       constant: peak after warm-up
         └──┴──────────────────────▶ step
            warmup               total

Being a function of the step alone, the schedule has no state to save: a resumed run
recomputes the same value (SPEC.md §4: warm-up over 32 k updates, then linear decay).
"""

from __future__ import annotations

import math


def lr_at(step: int, *, peak: float, warmup: int, total: int, schedule: str = "linear",
          min_ratio: float = 0.0) -> float:
    """The learning rate for optimizer step ``step`` (0-based: the first update uses step 0)."""
    if schedule not in ("linear", "cosine", "constant"):
        raise ValueError(f"unknown lr schedule {schedule!r}; use linear, cosine or constant")
    if warmup > 0 and step < warmup:
        return peak * (step + 1) / warmup
    if schedule == "constant" or total <= warmup:
        return peak
    progress = min(1.0, (step - warmup) / max(1, total - warmup))
    floor = peak * min_ratio
    if schedule == "linear":
        return floor + (peak - floor) * (1.0 - progress)
    return floor + (peak - floor) * 0.5 * (1.0 + math.cos(math.pi * progress))
