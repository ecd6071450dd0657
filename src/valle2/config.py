"""Training recipes: frozen dataclasses, YAML load, ``key=value`` overrides.

A recipe (``configs/debug.yaml``, ``small.yaml``, ``paper.yaml``) is a YAML mapping with
the sections below; every key has a default, so a recipe only names what it changes::

    codec:    which codec turns audio into codes (tokenize) and back (samples, export)
    text:     language and symbol table of the phone ids
    model:    size preset (debug / small / paper) and group size G
    tokenize: shard size, parallel jobs, duration limits of ``valle2 tokenize``
    data:     tokenized folders, batch duration budget, bucketing, NAR prompt split and crop
    optim:    AdamW, warm-up then decay, clipping, gradient accumulation
    train:    which models, steps, precision, DDP/FSDP, intervals, output folder
    export:   the ``save_pretrained`` folder written at the end

Overrides use dotted keys and YAML values: ``train.steps=200 data.train=[tok/a,tok/b]``.
Unknown keys and values of the wrong type raise :class:`ConfigError` naming the key, the
value and what was expected.
"""

from __future__ import annotations

import dataclasses
import difflib
import types
import typing
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, Literal, Optional, Union

import yaml

from valle2.errors import Valle2Error

__all__ = [
    "ConfigError", "CodecConfig", "TextConfig", "ModelSection", "TokenizeConfig", "DataConfig",
    "OptimConfig", "TrainLoopConfig", "ExportConfig", "Config",
    "load_config", "apply_overrides", "config_to_dict", "config_from_dict", "dump_config", "resolve_config_path",
    "build_codec",
]

CONFIGS_DIR = Path(__file__).resolve().parents[2] / "configs"  # the recipes of a source checkout
BUNDLED_CODECS = Path(__file__).resolve().parent / "assets" / "codec"


class ConfigError(Valle2Error):
    """A recipe or override that names an unknown key or gives a value of the wrong type."""


# ----------------------------------------------------------------------------- sections


@dataclass(frozen=True)
class CodecConfig:
    """The codec: ``encodec-tiny-random`` (tests, plumbing), ``encodec`` (hub name or local
    folder in ``name_or_path``) or ``valle2-mel`` (the project's own codec, folder in ``path``)."""

    type: Literal["encodec-tiny-random", "encodec", "valle2-mel"] = "encodec-tiny-random"
    name_or_path: Optional[str] = None  # encodec: e.g. facebook/encodec_24khz or a local folder
    path: Optional[str] = None  # valle2-mel: folder with config.json + model.safetensors, or a bundled name
    bandwidth: float = 6.0  # encodec: kbps; 6.0 gives K = 8 codebooks
    seed: int = 0  # encodec-tiny-random
    n_codebooks: int = 4  # encodec-tiny-random: K
    codebook_size: int = 64  # encodec-tiny-random: V


@dataclass(frozen=True)
class TextConfig:
    language: str = "en-us"  # espeak-ng language code
    symbols: Optional[str] = None  # symbols.json to use; default: the built-in table of the language


@dataclass(frozen=True)
class ModelSection:
    size: Literal["debug", "small", "paper"] = "debug"  # preset of models/config.py, for AR and NAR
    group_size: int = 2  # G
    prefix_lm: bool = True
    dropout: Optional[float] = None  # replaces the preset's dropout when set
    nar_prompt_cond: bool = False  # NAR: add a vector pooled from the prompt to its AdaLN condition
    nar_progress: bool = False  # NAR: progress-through-segment encodings on text and frames (models/nar.py)


@dataclass(frozen=True)
class TokenizeConfig:
    shard_size: int = 1000  # cuts per shard: the unit of parallel work and of resumption
    jobs: int = 1  # worker processes per machine (per rank under torchrun)
    batch_size: int = 16  # utterances per codec call
    min_seconds: float = 0.5  # shorter utterances are skipped ("too short")
    max_seconds: float = 30.0  # longer utterances are skipped ("too long")


@dataclass(frozen=True)
class DataConfig:
    train: tuple[str, ...] = ()  # folders written by `valle2 tokenize`
    valid: tuple[str, ...] = ()
    max_batch_seconds: float = 60.0  # duration budget of one batch on one device (sum of utterances)
    num_buckets: int = 10
    buffer_size: int = 20000  # cuts held by the bucketing sampler (its shuffle window)
    min_seconds: float = 0.5
    max_seconds: float = 20.0  # longer utterances are left out: the AR cannot be cropped without alignments
    nar_crop_seconds: Optional[float] = None  # the NAR sees a random window of at most this length
    nar_prompt_min: float = 0.1  # NAR prompt/target split point, as a fraction of the utterance (SPEC.md §2)
    nar_prompt_max: float = 0.5
    # Prompt pairs: the probability that a training row is another utterance of the same speaker
    # followed by the utterance (text: a + separator + b; codes: a ++ b), the layout inference
    # uses; the NAR's prompt is then that other utterance. 0 trains on single utterances
    # (benchmarks/RESULTS.md, "Prompt pairs", for why the demo recipe uses them).
    pair_prob: float = 0.0
    pair_max_seconds: float = 20.0  # longest pair (both utterances)
    num_workers: int = 0  # DataLoader worker processes per rank


@dataclass(frozen=True)
class OptimConfig:
    lr: float = 5e-4  # peak learning rate
    betas: tuple[float, float] = (0.9, 0.95)
    eps: float = 1e-8
    weight_decay: float = 0.01  # on matrices only; biases, norms and scales are not decayed
    warmup_steps: int = 100  # linear warm-up from 0 to lr
    schedule: Literal["linear", "cosine", "constant"] = "linear"  # decay after warm-up, to min_lr_ratio * lr
    min_lr_ratio: float = 0.0
    clip_norm: Optional[float] = 1.0  # global gradient-norm clipping; null disables it
    accum_steps: int = 1  # micro-batches per optimizer step


@dataclass(frozen=True)
class TrainLoopConfig:
    models: Literal["ar", "nar", "both"] = "both"
    steps: int = 100  # optimizer steps in total
    seed: int = 0
    precision: Literal["auto", "fp32", "bf16"] = "auto"  # auto: bf16 autocast on GPU, fp32 on CPU
    strategy: Literal["ddp", "fsdp"] = "ddp"  # fsdp: FSDP2 fully_shard, for models that do not fit one GPU
    out_dir: str = "runs/debug"
    log_every: int = 10
    valid_every: int = 500  # 0: validate only at the end
    sample_every: int = 0  # 0: audio samples only at the end (when n_samples > 0)
    n_samples: int = 2  # validation prompts rendered to audio
    checkpoint_every: int = 500  # 0: only at the end
    keep_last: int = 3
    init_from: Optional[str] = None  # a save_pretrained folder to start from (e.g. its AR when training the NAR)


@dataclass(frozen=True)
class ExportConfig:
    dir: Optional[str] = None  # default: <out_dir>/model
    name: str = "custom"
    requires_consent: bool = True  # a trained model clones voices: the policy asks for the speaker's consent
    nar_precision: Literal["fp32", "bf16"] = "fp32"  # bf16: NAR passes under autocast (2.3x faster on AMX CPUs)
    ar_precision: Literal["fp32", "int8"] = "fp32"  # int8: synthesis on the CPU decodes with int8 AR weights
    # the model's default NAR decoding; min_distortion suits codecs with large codebooks (RESULTS.md, codec v3)
    nar_decoding: Literal["greedy", "min_distortion", "expected"] = "greedy"
    top_p: float = 0.8  # the model's default AR sampling (valle2.generation.sampling.SamplingConfig)
    temperature: float = 1.0
    nar_temperature: float = 1.0  # sharpening of min_distortion decoding (< 1: nearer greedy; SamplingConfig)
    # before the vocoder: match the prompt's log-mel mean and spread (valle2-mel codecs; SamplingConfig)
    post_filter: Literal["none", "prompt_match"] = "none"
    post_filter_strength: float = 1.0  # how far prompt_match moves the log-mel (SamplingConfig)
    nar_weight: float = 1.0  # how much of the NAR's codebooks 1..K-1 the codec decodes (SamplingConfig)
    # what nar_weight < 1 blends in: "mean" entries, or "code0", each codebook-0 code's mean residual over the
    # training codes (fitted at export and saved with the model: valle2.generation.residual_prior)
    residual_prior: Literal["mean", "code0"] = "mean"
    prompt_residual: float = 0.0  # share of the residual from the prompt's nearest frames (SamplingConfig)


@dataclass(frozen=True)
class Config:
    codec: CodecConfig = field(default_factory=CodecConfig)
    text: TextConfig = field(default_factory=TextConfig)
    model: ModelSection = field(default_factory=ModelSection)
    tokenize: TokenizeConfig = field(default_factory=TokenizeConfig)
    data: DataConfig = field(default_factory=DataConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    train: TrainLoopConfig = field(default_factory=TrainLoopConfig)
    export: ExportConfig = field(default_factory=ExportConfig)

    def __post_init__(self):
        checks = [
            (self.model.group_size in (1, 2, 4, 8), "model.group_size", self.model.group_size, "one of 1, 2, 4, 8"),
            (self.tokenize.shard_size >= 1, "tokenize.shard_size", self.tokenize.shard_size, ">= 1"),
            (self.tokenize.jobs >= 1, "tokenize.jobs", self.tokenize.jobs, ">= 1"),
            (self.data.max_batch_seconds >= self.data.max_seconds > 0, "data.max_batch_seconds",
             self.data.max_batch_seconds, f">= data.max_seconds ({self.data.max_seconds:g}), or the longest "
             "utterances fit in no batch"),
            (0 < self.data.nar_prompt_min <= self.data.nar_prompt_max < 1, "data.nar_prompt_min/max",
             (self.data.nar_prompt_min, self.data.nar_prompt_max), "0 < min <= max < 1"),
            (0 <= self.data.pair_prob <= 1, "data.pair_prob", self.data.pair_prob, "between 0 and 1"),
            (not (self.model.nar_progress and self.data.nar_crop_seconds), "data.nar_crop_seconds",
             self.data.nar_crop_seconds, "null with model.nar_progress (a crop cuts the segments)"),
            (self.data.pair_max_seconds > 0, "data.pair_max_seconds", self.data.pair_max_seconds, "positive"),
            (self.optim.accum_steps >= 1, "optim.accum_steps", self.optim.accum_steps, ">= 1"),
            (self.optim.lr > 0, "optim.lr", self.optim.lr, "> 0"),
            (self.optim.warmup_steps >= 0, "optim.warmup_steps", self.optim.warmup_steps, ">= 0"),
            (0 <= self.optim.min_lr_ratio <= 1, "optim.min_lr_ratio", self.optim.min_lr_ratio, "in [0, 1]"),
            (self.train.steps >= 1, "train.steps", self.train.steps, ">= 1"),
            (self.train.keep_last >= 1, "train.keep_last", self.train.keep_last, ">= 1"),
            (self.train.log_every >= 1, "train.log_every", self.train.log_every, ">= 1"),
            (0 < self.export.top_p <= 1, "export.top_p", self.export.top_p, "in (0, 1]"),
            (self.export.temperature > 0, "export.temperature", self.export.temperature, "> 0"),
            (self.export.nar_temperature > 0, "export.nar_temperature", self.export.nar_temperature, "> 0"),
            (0 <= self.export.nar_weight <= 1, "export.nar_weight", self.export.nar_weight, "in [0, 1]"),
            (0 <= self.export.prompt_residual <= 1 - self.export.nar_weight + 1e-9, "export.prompt_residual",
             self.export.prompt_residual, "in [0, 1 - export.nar_weight]"),
            (0 <= self.export.post_filter_strength <= 1, "export.post_filter_strength",
             self.export.post_filter_strength, "in [0, 1]"),
            (self.export.post_filter == "none" or self.codec.type == "valle2-mel", "export.post_filter",
             self.export.post_filter, "'none' with an EnCodec codec (prompt_match works on valle2-mel's log-mel)"),
        ]
        for ok, key, value, need in checks:
            if not ok:
                raise ConfigError(f"{key} is {value!r}; must be {need}")


# ----------------------------------------------------------------------------- dict <-> dataclass


def config_to_dict(cfg) -> dict:
    """Plain nested dict (tuples as lists), ready for YAML or JSON."""
    def plain(v):
        if dataclasses.is_dataclass(v):
            return {f.name: plain(getattr(v, f.name)) for f in fields(v)}
        if isinstance(v, (tuple, list)):
            return [plain(x) for x in v]
        return v

    return plain(cfg)


def config_from_dict(d: dict | None, cls=Config, where: str = "") -> Any:
    """Build ``cls`` from a nested dict, checking every key and value type."""
    d = {} if d is None else d
    if not isinstance(d, dict):
        raise ConfigError(f"{where or 'config'} must be a mapping, got {type(d).__name__} {d!r}")
    hints = typing.get_type_hints(cls)
    known = {f.name for f in fields(cls)}
    kwargs = {}
    for key, value in d.items():
        path = f"{where}.{key}" if where else str(key)
        if key not in known:
            raise ConfigError(_unknown_key_message(path, key, known))
        tp = hints[key]
        if dataclasses.is_dataclass(tp):
            kwargs[key] = config_from_dict(value, tp, path)
        else:
            kwargs[key] = _coerce(value, tp, path)
    try:
        return cls(**kwargs)
    except ConfigError:
        raise
    except (TypeError, ValueError) as e:
        raise ConfigError(f"invalid {where or 'config'}: {e}") from None


def _unknown_key_message(path: str, key: str, known) -> str:
    close = difflib.get_close_matches(str(key), sorted(known), n=1)
    hint = f"; did you mean {close[0]!r}?" if close else ""
    return f"unknown config key {path!r}{hint} (known here: {', '.join(sorted(known))})"


def _type_name(tp) -> str:
    origin = typing.get_origin(tp)
    if origin is Literal:
        return "one of " + ", ".join(repr(a) for a in typing.get_args(tp))
    if origin in (Union, types.UnionType):
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        return " or ".join(_type_name(a) for a in args) + " or null"
    if origin is tuple:
        args = typing.get_args(tp)
        if len(args) == 2 and args[1] is Ellipsis:
            return f"a list of {_type_name(args[0])}"
        return f"a list of {len(args)} numbers"
    return getattr(tp, "__name__", str(tp))


def _coerce(value, tp, path: str):
    """Check ``value`` against the annotation ``tp``; ints are accepted for floats."""
    origin = typing.get_origin(tp)
    bad = ConfigError(f"{path} is {value!r}; expected {_type_name(tp)}")
    if origin in (Union, types.UnionType):
        args = typing.get_args(tp)
        if value is None and type(None) in args:
            return None
        for a in args:
            if a is type(None):
                continue
            try:
                return _coerce(value, a, path)
            except ConfigError:
                pass
        raise bad
    if origin is Literal:
        if value in typing.get_args(tp):
            return value
        raise bad
    if origin is tuple:
        args = typing.get_args(tp)
        if isinstance(value, str) and len(args) == 2 and args[1] is Ellipsis:
            value = [value]  # a single folder for a list of folders
        if not isinstance(value, (list, tuple)):
            raise bad
        if len(args) == 2 and args[1] is Ellipsis:
            return tuple(_coerce(v, args[0], f"{path}[{i}]") for i, v in enumerate(value))
        if len(value) != len(args):
            raise bad
        return tuple(_coerce(v, a, f"{path}[{i}]") for i, (v, a) in enumerate(zip(value, args)))
    if tp is bool:
        if isinstance(value, bool):
            return value
        raise bad
    if tp is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        raise bad
    if tp is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        raise bad
    if tp is str:
        if isinstance(value, str):
            return value
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return str(value)  # e.g. a language code or a path that YAML read as a number
        raise bad
    raise ConfigError(f"{path}: unsupported config type {tp!r}")  # pragma: no cover - a bug in the dataclasses


# ----------------------------------------------------------------------------- files and overrides


def resolve_config_path(name_or_path: str | Path) -> Path:
    """A YAML path, or a recipe name (``debug``, ``small``, ``paper``) of the ``configs/`` folder."""
    path = Path(name_or_path)
    if path.is_file():
        return path
    named = CONFIGS_DIR / f"{name_or_path}.yaml"
    if path.suffix == "" and named.is_file():
        return named
    known = sorted(p.stem for p in CONFIGS_DIR.glob("*.yaml")) if CONFIGS_DIR.is_dir() else []
    raise ConfigError(f"config {str(name_or_path)!r} not found (a YAML file, or one of: {', '.join(known) or 'none'})")


def parse_override(text: str) -> tuple[list[str], Any]:
    """``"optim.lr=3e-4"`` -> (["optim", "lr"], 0.0003). Values are read as YAML."""
    if "=" not in text:
        raise ConfigError(f"override {text!r} is not key=value (e.g. train.steps=200)")
    key, raw = text.split("=", 1)
    key = key.strip()
    if not key or any(not part for part in key.split(".")):
        raise ConfigError(f"override {text!r} has an empty key")
    try:
        value = yaml.safe_load(raw) if raw.strip() else ""
    except yaml.YAMLError as e:
        raise ConfigError(f"override {text!r}: value is not valid YAML ({e})") from None
    if isinstance(value, str) and _looks_like_float(value):
        value = float(value)  # YAML 1.1 reads "3e-4" as a string
    return key.split("."), value


def _looks_like_float(s: str) -> bool:
    try:
        float(s)
    except ValueError:
        return False
    return s.strip().lower() not in ("nan", "inf", "-inf", "+inf", "infinity", "-infinity")


def apply_overrides(d: dict, overrides: list[str]) -> dict:
    """Apply ``key=value`` strings to a nested dict (a copy); keys are checked later."""
    import copy

    d = copy.deepcopy(d)
    sections = {f.name for f in fields(Config)}
    for text in overrides:
        keys, value = parse_override(text)
        if keys[0] not in sections:
            raise ConfigError(_unknown_key_message(".".join(keys), keys[0], sections))
        node = d
        for k in keys[:-1]:
            nxt = node.setdefault(k, {})
            if not isinstance(nxt, dict):
                raise ConfigError(f"override {text!r}: {k!r} is not a section")
            node = nxt
        node[keys[-1]] = value
    return d


def load_config(path: str | Path | None = None, overrides: list[str] | None = None) -> Config:
    """Read a recipe (or start from the defaults when ``path`` is None) and apply overrides."""
    d: dict = {}
    if path is not None:
        p = resolve_config_path(path)
        try:
            d = yaml.safe_load(p.read_text()) or {}
        except yaml.YAMLError as e:
            raise ConfigError(f"{p} is not valid YAML: {e}") from None
        if not isinstance(d, dict):
            raise ConfigError(f"{p} must hold a mapping of sections, got {type(d).__name__}")
    d = _float_strings(d)
    return config_from_dict(apply_overrides(d, overrides or []))


def _float_strings(d):
    """YAML 1.1 reads ``5e-4`` (no dot) as a string; turn such strings back into floats."""
    if isinstance(d, dict):
        return {k: _float_strings(v) for k, v in d.items()}
    if isinstance(d, list):
        return [_float_strings(v) for v in d]
    if isinstance(d, str) and _looks_like_float(d) and any(c in d.lower() for c in "e."):
        return float(d)
    return d


def dump_config(cfg: Config) -> str:
    return yaml.safe_dump(config_to_dict(cfg), sort_keys=False)


# ----------------------------------------------------------------------------- codec


def build_codec(cfg: CodecConfig, device=None):
    """The codec a recipe names, through the codec registry (``valle2.codec.load_codec``)."""
    from valle2.codec import EncodecCodec, load_codec

    dev = None if device is None or str(device) == "cpu" else device
    if cfg.type == "encodec-tiny-random":
        return EncodecCodec.tiny_random(seed=cfg.seed, n_codebooks=cfg.n_codebooks, codebook_size=cfg.codebook_size,
                                        device=device or "cpu")
    if cfg.type == "encodec":
        if not cfg.name_or_path:
            raise ConfigError("codec.type is 'encodec' but codec.name_or_path is not set (e.g. facebook/encodec_24khz)")
        return EncodecCodec.from_pretrained(cfg.name_or_path, bandwidth=cfg.bandwidth, device=device or "cpu")
    if cfg.type == "valle2-mel":
        if not cfg.path:
            raise ConfigError("codec.type is 'valle2-mel' but codec.path (the codec folder) is not set")
        folder = Path(cfg.path)
        if not folder.is_dir() and (BUNDLED_CODECS / cfg.path).is_dir():
            folder = BUNDLED_CODECS / cfg.path  # a codec shipped with valle2, by name
        if not folder.is_dir():
            raise ConfigError(f"codec.path {cfg.path!r} is neither a folder nor a bundled codec "
                              f"({', '.join(sorted(p.name for p in BUNDLED_CODECS.glob('*'))) or 'none bundled'})")
        kwargs = {} if dev is None else {"device": dev}
        return load_codec({"type": "valle2-mel"}, folder, **kwargs)
    raise ConfigError(f"unknown codec.type {cfg.type!r}")  # pragma: no cover - Literal checked earlier
