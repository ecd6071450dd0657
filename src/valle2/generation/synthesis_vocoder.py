"""A model's own vocoder for synthesis: the codec's vocoder fine-tuned on what this model's decoding feeds it.

A valle2-mel codec has one vocoder, which serves resynthesis (codes of real speech) and synthesis (codebook 0
from the AR + the residual that ``SamplingConfig`` blends). Those inputs differ: the synthesised log-mels are
smoother. A vocoder fine-tuned on ground-truth-aligned synthesis log-mels (``recipes/vocoder_gta.py``) turns
them into more intelligible audio, but fine-tuning the codec's own vocoder costs resynthesis quality on voices
it has not seen (benchmarks/RESULTS.md, session 14). So the fine-tuned copy lives in the *model* folder, beside
the weights whose decoding it learnt, as ``synthesis_vocoder.safetensors``, and synthesis uses it when
``SamplingConfig.vocoder == "synthesis"``; the codec, and so resynthesis, keep the original.

File: the vocoder's weights (``mel.Vocoder`` state dict, any float dtype; loading casts to float32) and, in the
metadata, its architecture, the codec it was trained for (``codebooks_sha256``: the codes whose log-mels it
learnt) and where it came from. Checked at load. ``recipes/synthesis_vocoder.py`` writes one from a codec folder
that ``mel_train vocoder`` + ``export`` made (``recipes/train_synthesis_vocoder.sh`` runs the whole round).
"""

from __future__ import annotations

import json
from pathlib import Path

import torch

from valle2.errors import ModelFileError

FILE = "synthesis_vocoder.safetensors"
FORMAT = "valle2-synthesis-vocoder"
# The log-mel and vocoder settings the weights depend on, recorded and checked against the codec at load.
ARCH_FIELDS = ("sample_rate", "n_fft", "hop_length", "n_mels", "f_min", "f_max", "log_floor",
               "vocoder_dim", "vocoder_intermediate", "vocoder_layers")


def _arch(codec) -> dict:
    cfg = getattr(codec, "config", None)
    if cfg is None or getattr(codec, "vocoder", None) is None or not all(hasattr(cfg, f) for f in ARCH_FIELDS):
        raise ValueError("a synthesis vocoder needs a codec that decodes log-mels with a vocoder (valle2-mel); "
                         f"this model's codec ({codec.identity().get('type')}) does not")
    return {f: getattr(cfg, f) for f in ARCH_FIELDS}


def build_like(codec):
    """A fresh vocoder with ``codec``'s architecture (its weights are overwritten by a load)."""
    from valle2.codec.mel import build_vocoder

    _arch(codec)  # a codec with a vocoder, or a clear refusal
    return build_vocoder(codec.config)


def check_architecture(vocoder: torch.nn.Module, codec) -> None:
    """Refuse a vocoder whose tensors (names or shapes) are not those of ``codec``'s own vocoder."""
    _arch(codec)
    expected, state = codec.vocoder.state_dict(), vocoder.state_dict()
    if set(state) != set(expected) or any(state[k].shape != expected[k].shape for k in expected):
        raise ValueError("the vocoder's architecture is not the codec's (its tensors or their shapes differ)")


def save_vocoder(folder: Path, vocoder: torch.nn.Module, codec, *, source: str = "",
                 dtype: torch.dtype | None = torch.float16) -> Path:
    """Write ``vocoder`` (trained for ``codec``'s codes) as ``folder/synthesis_vocoder.safetensors``."""
    from safetensors.torch import save_file

    check_architecture(vocoder, codec)
    arch = _arch(codec)
    cast = lambda v: v.to(dtype) if dtype is not None and v.is_floating_point() else v  # noqa: E731
    tensors = {k: cast(v.detach()).cpu().contiguous() for k, v in vocoder.state_dict().items()}
    path = Path(folder) / FILE
    save_file(tensors, str(path), metadata={
        "format": FORMAT, "architecture": json.dumps(arch, sort_keys=True),
        "codec_codebooks_sha256": str(codec.identity().get("codebooks_sha256", "")), "source": source})
    return path


def load_vocoder(path: Path, codec):
    """The vocoder of ``path`` (float32, eval mode) and where it came from (``source``), checked against
    ``codec``: its architecture and the codes it was trained for."""
    from safetensors import safe_open

    try:
        with safe_open(str(path), "pt") as f:
            meta = f.metadata() or {}
            state = {k: f.get_tensor(k).float() for k in f.keys()}
    except Exception as e:  # safetensors raises its own error types for truncated/corrupt files
        raise ModelFileError(f"{path} is not a readable synthesis vocoder: {e}") from None
    if meta.get("format") != FORMAT:
        raise ModelFileError(f"{path} is format {meta.get('format')!r}, not {FORMAT!r}")
    try:
        arch = _arch(codec)
    except ValueError as e:
        raise ModelFileError(f"{path}: {e}") from None
    try:
        recorded = json.loads(meta.get("architecture", ""))
    except json.JSONDecodeError:
        raise ModelFileError(f"{path} has no readable architecture in its metadata") from None
    if recorded != json.loads(json.dumps(arch, sort_keys=True)):
        diff = sorted(k for k in set(arch) | set(recorded) if recorded.get(k) != arch.get(k))
        raise ModelFileError(f"{path} is for another log-mel or vocoder shape than this model's codec "
                             f"({', '.join(diff)})")
    trained_for, have = meta.get("codec_codebooks_sha256"), str(codec.identity().get("codebooks_sha256", ""))
    if trained_for != have:
        raise ModelFileError(f"{path} was trained for the codec with codebooks_sha256 {trained_for!r}; this model's "
                             f"codec has {have!r}: train it again (recipes/train_synthesis_vocoder.sh)")
    vocoder = build_like(codec)
    try:
        vocoder.load_state_dict(state)
    except RuntimeError as e:
        raise ModelFileError(f"{path} does not match its recorded architecture: {e}") from None
    if not all(torch.isfinite(v).all() for v in state.values()):
        raise ModelFileError(f"{path} holds non-finite weights")
    return vocoder.eval(), meta.get("source", "")
