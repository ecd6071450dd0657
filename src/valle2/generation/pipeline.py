"""From (prompt, text) rows to waveforms: AR over codebook 0, NAR over the rest, codec decode.

One *row* is one sentence spoken in one prompt's voice. Long texts, best-of-N candidates
and concurrent server requests all become rows of the same batched decode.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass, field

import numpy as np
import torch

from valle2.generation.ar_decode import ar_generate
from valle2.generation.nar_decode import nar_generate
from valle2.generation.sampling import SamplingConfig
from valle2.models.grouping import clip_to_groups

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class LengthPolicy:
    """How long a sentence may run, from the prompt's own speaking rate (frames per phone).

    expected = rate x target phones; the AR stops at ``max_ratio`` x expected (at most
    ``max_seconds``), and may not end before ``min_ratio`` x expected.
    """

    max_ratio: float = 1.8
    min_ratio: float = 0.3
    max_seconds: float = 30.0
    min_rate: float = 1.0  # frames per phone, clamps a prompt whose transcript does not match its audio
    max_rate: float = 20.0

    def limits(self, prompt_frames: int, prompt_phones: int, target_phones: int, frame_rate: float) -> tuple[float, int, int]:
        rate = prompt_frames / max(prompt_phones, 1)
        rate = min(max(rate, self.min_rate), self.max_rate)
        expected = rate * target_phones
        max_frames = max(1, min(math.ceil(self.max_ratio * expected), int(self.max_seconds * frame_rate)))
        min_frames = min(int(self.min_ratio * expected), max_frames - 1)
        return expected, max_frames, max(min_frames, 0)


@dataclass
class Prompt:
    """An encoded voice prompt: audio at the codec rate, its transcript's phone ids and its codes."""

    wav: np.ndarray
    sr: int
    text: str
    phone_ids: list[int]
    codes: torch.Tensor  # (K, Tp), Tp % G == 0 (leading frames clipped)

    @property
    def n_frames(self) -> int:
        return self.codes.shape[1]


@dataclass
class Row:
    prompt: Prompt
    target_ids: list[int]
    text: str = ""
    expected_frames: float = 0.0
    max_frames: int = 0
    min_frames: int = 0

    def text_ids(self, sep_ids: list[int], eos_id: int) -> tuple[list[int], int]:
        """The models' text: prompt transcript + separator + target + <eos>, and how many ids lead
        up to the target (the prompt segment, for the NAR's progress encodings)."""
        lead = self.prompt.phone_ids + sep_ids
        return lead + self.target_ids + [eos_id], len(lead)


@dataclass
class RowResult:
    codes: torch.Tensor  # (K, T) generated frames only
    hit_limit: bool
    expected_frames: float
    info: dict = field(default_factory=dict)
    # nar_decoding="expected": the NAR's expected entries of codebooks 1..K-1, summed, (D, T); the codec
    # decodes codebook 0's entry plus this instead of the entries of codes[1:]
    residual: torch.Tensor | None = None


def encode_prompt(codec, wav: np.ndarray, sr: int, text: str, phone_ids: list[int], group_size: int) -> Prompt:
    codes = codec.encode(wav, sr)  # (K, T)
    codes = clip_to_groups(codes, group_size)
    if codes.shape[1] == 0:
        raise ValueError("prompt audio is shorter than one code group")
    return Prompt(wav=wav, sr=sr, text=text, phone_ids=phone_ids, codes=codes)


NAR_PRECISIONS = ("fp32", "bf16")
AR_PRECISIONS = ("fp32", "int8")


def quantize_ar(ar: torch.nn.Module) -> torch.nn.Module:
    """A copy of ``ar`` whose Linear layers hold int8 weights (dynamic quantisation, CPU only).

    At batch 1 an AR step reads every weight once for a few multiply-adds each, so on hosts
    whose memory (not arithmetic) bounds it, a quarter of the bytes is most of the time saved
    (benchmarks/RESULTS.md, "An int8 AR"). Weights are quantised per output channel; the tied
    output head and the embeddings stay fp32. torch marks its eager quantisation API deprecated
    (its warning is silenced here); should a torch release drop it, the AR stays fp32, and a
    warning says so.
    """
    import copy
    import warnings

    from torch.ao import quantization as tq

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # its deprecation notices
            return tq.quantize_dynamic(copy.deepcopy(ar).eval(), {torch.nn.Linear: tq.per_channel_dynamic_qconfig},
                                       dtype=torch.qint8)
    except (AttributeError, RuntimeError, NotImplementedError) as e:
        logger.warning("int8 AR unavailable with torch %s (%s); decoding with fp32 weights", torch.__version__, e)
        return ar


def generate_rows(
    ar, nar, rows: list[Row], *, sep_ids: list[int], eos_id: int, sampling: SamplingConfig,
    generator: torch.Generator | None, max_batch: int = 16, nar_precision: str = "fp32",
    code_entries: torch.Tensor | None = None,
) -> list[RowResult]:
    """Batched AR + NAR over rows, ``max_batch`` rows at a time.

    ``nar_precision="bf16"`` runs the NAR passes under bf16 autocast: on CPUs with AMX/AVX512-BF16
    the NAR (two thirds of a small model's decode time) runs ~2.3x faster, and its greedy codes
    agreed with fp32 on 99.1 % of frames even for untrained weights. bf16 autocast does not
    speed up the AR's one-position steps; ``VallE2`` may pass an int8 copy of it (``quantize_ar``).

    ``sampling.nar_decoding`` "min_distortion" and "expected" need ``code_entries`` (K, V, D), the codec's
    code vectors; "expected" also fills each result's ``residual``.
    """
    if nar_precision not in NAR_PRECISIONS:
        raise ValueError(f"nar_precision is {nar_precision!r}; must be one of {NAR_PRECISIONS}")
    entries = None
    if sampling.nar_decoding in ("min_distortion", "expected"):
        if code_entries is None:
            raise ValueError(f"nar_decoding={sampling.nar_decoding!r} needs the codec's code entries, and this codec "
                             "exposes none (use nar_decoding='greedy')")
        entries = code_entries
    results: list[RowResult] = []
    for start in range(0, len(rows), max_batch):
        chunk = rows[start : start + max_batch]
        laid_out = [r.text_ids(sep_ids, eos_id) for r in chunk]
        texts = [torch.tensor(ids, dtype=torch.long) for ids, _ in laid_out]
        prompts0 = [r.prompt.codes[0] for r in chunk]
        ar_out = ar_generate(
            ar, texts, prompts0, [r.max_frames for r in chunk], sampling, generator,
            min_frames=[r.min_frames for r in chunk],
        )
        device_type = next(nar.parameters()).device.type
        with torch.autocast(device_type, dtype=torch.bfloat16, enabled=nar_precision == "bf16"):
            full = nar_generate(nar, texts, [r.prompt.codes for r in chunk], ar_out.codes, entries=entries,
                                text_splits=[lead for _, lead in laid_out], temperature=sampling.nar_temperature,
                                return_expected=sampling.nar_decoding == "expected")
        residuals = full.expected or [None] * len(chunk)
        for r, codes, hit, residual in zip(chunk, full.codes, ar_out.hit_limit, residuals):
            if hit:
                logger.warning(
                    "sentence stopped at its length limit (%d frames, expected ~%.0f): %r",
                    r.max_frames, r.expected_frames, r.text[:60],
                )
            results.append(RowResult(codes=codes, hit_limit=hit, expected_frames=r.expected_frames,
                                     info={"ar_steps": ar_out.steps}, residual=residual))
    return results
