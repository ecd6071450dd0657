"""``VallE2``: the AR and NAR models with their text front end and codec, as one object.

Model folder (``save_pretrained`` / ``from_pretrained``), pickle-free::

    config.json        {"format": "valle2-model", "format_version": 1, "model": ModelConfig,
                        "codec": codec identity, "language", "requires_consent", ...}
    model.safetensors  AR and NAR weights ("ar.*", "nar.*")
    symbols.json       the phone symbol table the text ids refer to
    codec/             codec weights, when the codec is not a hub model
    residual_prior.safetensors     optional: the "code0" residual prior (valle2.generation.residual_prior)
    synthesis_vocoder.safetensors  optional: a vocoder for synthesis (valle2.generation.synthesis_vocoder)
"""

from __future__ import annotations

import json
import logging
import os
import random
import shutil
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import torch
from torch import nn

from valle2.errors import ModelFileError, TextError
from valle2.generation.pipeline import (
    AR_PRECISIONS, NAR_PRECISIONS, LengthPolicy, Prompt, Row, RowResult, encode_prompt, generate_rows, quantize_ar,
)
from valle2.generation.sampling import SamplingConfig
from valle2.models.builders import build_ar, build_nar
from valle2.models.config import PRESETS, ModelConfig

logger = logging.getLogger(__name__)

FORMAT = "valle2-model"
FORMAT_VERSION = 1
BUNDLED_MODELS = Path(__file__).resolve().parent.parent / "assets" / "models"
DEFAULT_MODEL = "default"
# Long text is synthesised a piece at a time; a piece of one or two words ("Hello!") joins its
# neighbour: it is shorter than any training utterance, and the AR ran to its length limit after it.
MIN_PIECE_WORDS = 3


def decoding_problem(codec, sampling: SamplingConfig) -> str | None:
    """Why ``codec`` cannot decode as ``sampling`` asks (post-filter, NAR decoding); None when it can.

    Synthesis asks this on every call, so the codec's ``identity()`` (a hash of its weights, about 5 ms for
    valle2-mel) is only taken to name it in a refusal."""
    if sampling.post_filter != "none" and not getattr(codec, "supports_prompt_match", False):
        return (f"post_filter={sampling.post_filter!r} needs a codec that decodes through a log-mel (valle2-mel); "
                f"this model's codec ({codec.identity().get('type')}) does not: use post_filter='none'")
    setting = ("nar_decoding='expected'" if sampling.nar_decoding == "expected"
               else f"nar_weight={sampling.nar_weight}" if sampling.nar_weight < 1 else None)
    if setting and not (getattr(codec, "supports_residual", False) and hasattr(codec, "code_entries")):
        return (f"{setting} needs a codec that decodes a codebook-0 entry plus a continuous residual (valle2-mel, "
                f"EnCodec); this model's codec ({codec.identity().get('type')}) does not: "
                "use nar_decoding='min_distortion' and nar_weight=1")
    if sampling.vocoder != "codec" and not getattr(codec, "supports_vocoder", False):
        return (f"vocoder={sampling.vocoder!r} needs a codec that vocodes a log-mel (valle2-mel); this model's codec "
                f"({codec.identity().get('type')}) does not: use vocoder='codec'")
    return None


class VallE2(nn.Module):
    def __init__(self, config: ModelConfig, symbols, codec, *, language: str = "en-us",
                 requires_consent: bool = True, name: str = "custom", sampling: SamplingConfig | None = None,
                 length: LengthPolicy | None = None, nar_precision: str = "fp32", ar_precision: str = "fp32"):
        super().__init__()
        from valle2.text import TextFrontend

        if config.n_text_tokens != len(symbols):
            raise ModelFileError(f"model expects {config.n_text_tokens} text symbols but the table has {len(symbols)}")
        if (config.n_codebooks, config.codebook_size) != (codec.n_codebooks, codec.codebook_size):
            raise ModelFileError(
                f"model is for {config.n_codebooks}x{config.codebook_size} codes but the codec gives "
                f"{codec.n_codebooks}x{codec.codebook_size}"
            )
        self.config = config
        self.symbols = symbols
        self.codec = codec
        self.residual_prior: torch.Tensor | None = None  # (V, D) for sampling.residual_prior="code0"
        self.residual_prior_counts: torch.Tensor | None = None
        # for sampling.vocoder="synthesis"; like the codec, not a submodule (state_dict and model.safetensors unchanged)
        self.synthesis_vocoder: nn.Module | None = None
        self.synthesis_vocoder_source = ""
        self.language = language
        self.requires_consent = requires_consent
        self.name = name
        self.sampling = sampling or SamplingConfig()
        self.length = length or LengthPolicy()
        if nar_precision not in NAR_PRECISIONS:
            raise ModelFileError(f"nar_precision is {nar_precision!r}; must be one of {NAR_PRECISIONS}")
        self.nar_precision = nar_precision
        if ar_precision not in AR_PRECISIONS:
            raise ModelFileError(f"ar_precision is {ar_precision!r}; must be one of {AR_PRECISIONS}")
        self.ar_precision = ar_precision
        self._ar_int8: tuple[tuple, nn.Module] | None = None  # (weights' identity, quantised copy); not a submodule
        self.ar = build_ar(config)
        self.nar = build_nar(config)
        self._frontends: dict[str, TextFrontend] = {}
        self.eval()

    # -- construction ------------------------------------------------------------------
    @classmethod
    def debug(cls, group_size: int = 2, seed: int = 0, *, n_codebooks: int = 4, codebook_size: int = 64) -> "VallE2":
        """A tiny *random* model (it speaks noise) for tests and for trying the API on CPU.

        Random weights cannot reproduce anyone's voice, so this model does not ask for
        consent; its output is still watermarked and audited like any other.
        """
        from valle2.codec import EncodecCodec
        from valle2.text import SymbolTable

        symbols = SymbolTable.default("en-us")
        codec = EncodecCodec.tiny_random(seed=seed, n_codebooks=n_codebooks, codebook_size=codebook_size)
        config = ModelConfig(n_text_tokens=len(symbols), n_codebooks=n_codebooks, codebook_size=codebook_size,
                             group_size=group_size, ar=PRESETS["debug"], nar=PRESETS["debug"])
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            return cls(config, symbols, codec, requires_consent=False, name="debug")

    @classmethod
    def from_pretrained(cls, name_or_path: str | os.PathLike | None = None, *, device: str = "cpu") -> "VallE2":
        """Load ``"debug"``, ``"default"`` (the bundled model) or a folder written by ``save_pretrained``."""
        name = str(name_or_path) if name_or_path is not None else DEFAULT_MODEL
        if name == "debug":
            return cls.debug().to(device)
        folder = Path(name)
        if not folder.exists() and (BUNDLED_MODELS / name).is_dir():
            folder = BUNDLED_MODELS / name
        if name == DEFAULT_MODEL and not folder.is_dir():
            raise ModelFileError(f"the bundled default model is missing from this installation ({BUNDLED_MODELS / name} "
                                 "has no model): reinstall valle2, or give --model a model folder (or 'debug')")
        return cls._load(folder).to(device)

    @classmethod
    def _load(cls, folder: Path) -> "VallE2":
        from safetensors.torch import load_file

        from valle2.codec import load_codec
        from valle2.text import SymbolTable

        if not folder.is_dir():
            raise ModelFileError(f"model {str(folder)!r} not found: give 'debug', 'default' or a folder made by save_pretrained")
        cfg_path = folder / "config.json"
        try:
            meta = json.loads(cfg_path.read_text())
        except FileNotFoundError:
            raise ModelFileError(f"{folder} has no config.json; it is not a valle2 model folder") from None
        except (json.JSONDecodeError, UnicodeDecodeError) as e:
            raise ModelFileError(f"{cfg_path} is not valid JSON ({e})") from None
        if meta.get("format") != FORMAT:
            raise ModelFileError(f"{cfg_path} is not a valle2 model (format {meta.get('format')!r})")
        version = meta.get("format_version")
        if version != FORMAT_VERSION:
            raise ModelFileError(
                f"{cfg_path} has format version {version!r}; this valle2 reads version {FORMAT_VERSION} only"
                + (" (upgrade valle2)" if isinstance(version, int) and version > FORMAT_VERSION else "")
            )
        try:
            config = ModelConfig.from_dict(meta["model"])
            sampling = SamplingConfig(**meta.get("sampling", {}))
            length = LengthPolicy(**meta.get("length", {}))
        except (KeyError, TypeError, ValueError) as e:
            raise ModelFileError(f"{cfg_path} has an invalid model config: {e}") from None
        symbols = SymbolTable.load(folder / "symbols.json")
        codec_dir = folder / "codec"
        codec = load_codec(meta["codec"], codec_dir if codec_dir.is_dir() else None)
        problem = decoding_problem(codec, sampling)
        if problem:
            raise ModelFileError(f"{cfg_path}: {problem}")
        model = cls(config, symbols, codec, language=meta.get("language", "en-us"),
                    requires_consent=bool(meta.get("requires_consent", True)), name=meta.get("name", folder.name),
                    sampling=sampling, length=length, nar_precision=meta.get("nar_precision", "fp32"),
                    ar_precision=meta.get("ar_precision", "fp32"))
        weights = folder / "model.safetensors"
        if not weights.is_file():
            raise ModelFileError(f"{folder} has no model.safetensors")
        try:
            state = load_file(str(weights))
        except Exception as e:  # safetensors raises its own error types for truncated/corrupt files
            raise ModelFileError(f"{weights} is corrupt: {e}") from None
        missing, unexpected = model.load_state_dict(state, strict=False)
        if missing or unexpected:
            raise ModelFileError(f"{weights} does not match its config: missing {missing[:3]}, unexpected {unexpected[:3]}")
        from valle2.generation import residual_prior as rp

        if (folder / rp.FILE).is_file():
            model.set_residual_prior(*rp.load_prior(folder / rp.FILE, codec))
        elif sampling.residual_prior == "code0":
            raise ModelFileError(f"{cfg_path} asks for residual_prior 'code0' but {folder} has no {rp.FILE}")
        from valle2.generation import synthesis_vocoder as sv

        if (folder / sv.FILE).is_file():
            model.set_synthesis_vocoder(*sv.load_vocoder(folder / sv.FILE, codec))
        elif sampling.vocoder == "synthesis":
            raise ModelFileError(f"{cfg_path} asks for vocoder 'synthesis' but {folder} has no {sv.FILE}")
        return model.eval()

    def save_pretrained(self, path: str | os.PathLike, *, dtype: torch.dtype | None = None) -> Path:
        """Write the model folder; files are written to a temporary folder first, then renamed into place.

        ``dtype`` (e.g. ``torch.float16``) stores the floating-point weights at that precision to
        halve the files; loading casts them back to the model's dtype (float32 by default).
        """
        from safetensors.torch import save_file

        folder = Path(path)
        tmp = folder.with_name(folder.name + ".tmp-save")
        if tmp.exists():
            shutil.rmtree(tmp)
        tmp.mkdir(parents=True)
        meta = {
            "format": FORMAT, "format_version": FORMAT_VERSION, "name": self.name, "model": self.config.to_dict(),
            "codec": self.codec.identity(), "language": self.language, "requires_consent": self.requires_consent,
            "sampling": self.sampling.to_dict(), "length": self.length.__dict__,
            "nar_precision": self.nar_precision, "ar_precision": self.ar_precision,
        }
        (tmp / "config.json").write_text(json.dumps(meta, indent=2))
        state = {k: v.detach().cpu().contiguous() for k, v in self.state_dict().items() if not k.startswith("codec.")}
        if dtype is not None:
            state = {k: v.to(dtype) if v.is_floating_point() else v for k, v in state.items()}
        save_file(state, str(tmp / "model.safetensors"))
        self.symbols.save(tmp / "symbols.json")
        (tmp / "codec").mkdir()
        self.codec.save(tmp / "codec")
        if self.residual_prior is not None:
            from valle2.generation import residual_prior as rp

            rp.save_prior(tmp, self.residual_prior, self.residual_prior_counts, self.codec)
        if self.synthesis_vocoder is not None:
            from valle2.generation import synthesis_vocoder as sv

            sv.save_vocoder(tmp, self.synthesis_vocoder, self.codec, source=self.synthesis_vocoder_source)
        if folder.exists():
            old = folder.with_name(folder.name + ".tmp-old")
            if old.exists():
                shutil.rmtree(old)
            folder.rename(old)
            tmp.rename(folder)
            shutil.rmtree(old)
        else:
            tmp.rename(folder)
        return folder

    # -- properties ----------------------------------------------------------------------
    @property
    def sample_rate(self) -> int:
        return self.codec.sample_rate

    @property
    def frame_rate(self) -> float:
        return self.codec.frame_rate

    @property
    def device(self) -> torch.device:
        return next(self.parameters()).device

    def frontend(self, language: str | None = None):
        from valle2.text import TextFrontend

        language = language or self.language
        if language not in self._frontends:
            self._frontends[language] = TextFrontend(self.symbols, language)
        return self._frontends[language]

    # -- synthesis -----------------------------------------------------------------------
    def prepare_prompt(self, prompt_audio, prompt_text: str, *, language: str | None = None) -> Prompt:
        """Load, check and encode a voice prompt once; reuse it for many syntheses."""
        from valle2.audio import load_prompt

        wav = load_prompt(prompt_audio, self.sample_rate)
        if not prompt_text or not prompt_text.strip():
            raise TextError("prompt text is empty: give the transcript of the prompt audio")
        ids = self.frontend(language).encode(prompt_text)
        return encode_prompt(self.codec, wav, self.sample_rate, prompt_text, ids, self.config.group_size)

    def make_rows(self, text: str, prompt: Prompt, *, language: str | None = None, candidates: int = 1) -> list[Row]:
        from valle2.text import split_sentences

        frontend = self.frontend(language)
        if not text or not text.strip():
            raise TextError("text is empty")
        if len(text) > frontend.max_chars:
            raise TextError(f"text is {len(text)} characters; the limit is {frontend.max_chars}")
        rows = []
        for sentence in split_sentences(text, min_words=MIN_PIECE_WORDS):
            ids = frontend.encode(sentence)
            expected, max_frames, min_frames = self.length.limits(
                prompt.n_frames, len(prompt.phone_ids), len(ids), self.frame_rate)
            rows += [Row(prompt, ids, sentence, expected, max_frames, min_frames) for _ in range(candidates)]
        return rows

    def generate(self, rows: list[Row], *, seed: int | None = None, sampling: SamplingConfig | None = None,
                 max_batch: int = 16) -> list[RowResult]:
        """Codes for every row (batched AR + NAR)."""
        gen = torch.Generator(device=self.device)
        gen.manual_seed(seed if seed is not None else random.randrange(2**63))
        sep = self.symbols.separator_ids()
        sampling = sampling or self.sampling
        entries = None
        if sampling.nar_decoding in ("min_distortion", "expected") and hasattr(self.codec, "code_entries"):
            entries = self.codec.code_entries()
        return generate_rows(self.decoding_ar(), self.nar, rows, sep_ids=sep, eos_id=self.symbols.id("<eos>"),
                             sampling=sampling, generator=gen, max_batch=max_batch,
                             nar_precision=self.nar_precision, code_entries=entries)

    def decoding_ar(self) -> nn.Module:
        """The AR that synthesis runs: ``self.ar``, or with ``ar_precision="int8"`` on the CPU an
        int8 copy of it, made at first use and remade whenever the AR's weights change."""
        if self.ar_precision not in AR_PRECISIONS:  # the attribute may be set after loading (CLI, benchmarks)
            raise ValueError(f"ar_precision is {self.ar_precision!r}; must be one of {AR_PRECISIONS}")
        if self.ar_precision == "fp32" or self.device.type != "cpu" or self.ar.training:
            return self.ar
        key = tuple((p.data_ptr(), p._version) for p in self.ar.parameters())
        if self._ar_int8 is None or self._ar_int8[0] != key:
            self._ar_int8 = (key, quantize_ar(self.ar))
        return self._ar_int8[1]

    def sampling_config(self, **overrides) -> SamplingConfig:
        overrides = {k: v for k, v in overrides.items() if v is not None}
        unknown = set(overrides) - set(SamplingConfig.__dataclass_fields__)
        if unknown:
            raise TypeError(f"unknown sampling option(s): {', '.join(sorted(unknown))}")
        chosen = replace(self.sampling, **overrides)
        self._check_decoding(chosen)
        return chosen

    def synthesize(self, text: str, prompt_audio, prompt_text: str, seed: int | None = None, *,
                   candidates: int = 1, select=None, language: str | None = None, policy=None,
                   unsafe_no_consent: bool = False, crossfade_ms: float = 30.0, speed: float = 1.0,
                   **sampling) -> tuple[np.ndarray, int]:
        """Speak ``text`` in the voice of ``prompt_audio`` (a path, bytes, ``(array, sample_rate)`` or a Prompt).

        Long text is split into sentences, each continued from the same prompt, all in one
        batched decode, and joined with short crossfades. ``candidates`` > 1 draws N samples
        per sentence and keeps the best by ``select`` (a scorer object or a name such as
        "sim,wer"; default "duration"). The consent policy is checked first and the output is
        watermarked and audited (``valle2.safety.policy``). Returns mono float32 audio and its
        sample rate.
        """
        sampling_cfg = self.sampling_config(**sampling)
        prompt = prompt_audio if isinstance(prompt_audio, Prompt) else self.prepare_prompt(prompt_audio, prompt_text, language=language)
        job = SynthesisJob(text, prompt, candidates=candidates, select=select, language=language,
                           unsafe_no_consent=unsafe_no_consent, speed=speed)
        [wav] = self.synthesize_batch([job], seed=seed, policy=policy, sampling=sampling_cfg, crossfade_ms=crossfade_ms)
        return wav, self.sample_rate

    def synthesize_batch(self, jobs: list["SynthesisJob"], *, seed: int | None = None, policy=None,
                         sampling: SamplingConfig | None = None, crossfade_ms: float = 30.0,
                         max_batch: int = 16, details: list | None = None) -> list[np.ndarray]:
        """Several requests in one batched decode (what the server's dynamic batching calls).

        Every job is authorised by the safety policy before any decoding, and every output is
        watermarked and audited. Returns one waveform per job, at ``sample_rate``.

        ``details``, when a list, receives one dict per job describing its sentences (rows):
        ``frames`` generated, ``expected_frames`` from the prompt's speaking rate and
        ``hit_limit`` (the AR never chose to stop and was cut at its length limit).
        """
        from valle2.audio import crossfade_concat, time_stretch
        from valle2.safety.policy import resolve_policy

        for j in jobs:
            if j.candidates < 1:
                raise ValueError(f"candidates is {j.candidates}; must be >= 1")
            if not 0.25 <= j.speed <= 4.0:
                raise ValueError(f"speed is {j.speed}; must be in 0.25-4.0")
        policy = resolve_policy(policy)
        auths = [policy.authorize(j.prompt.wav, j.prompt.sr, unsafe_no_consent=j.unsafe_no_consent,
                                  model_requires_consent=self.requires_consent) for j in jobs]
        job_rows = [j.rows if j.rows is not None else self.make_rows(j.text, j.prompt, language=j.language, candidates=j.candidates)
                    for j in jobs]
        flat = [r for rows in job_rows for r in rows]
        sampling = sampling or self.sampling
        self._check_decoding(sampling)
        results = self.generate(flat, seed=seed, sampling=sampling, max_batch=max_batch)
        # One codec call for every row of every job: the server sends one sentence per job.
        all_waves = self.decode_rows(flat, results, sampling)
        outputs, at = [], 0
        for job, rows, auth in zip(jobs, job_rows, auths):
            job_waves = all_waves[at : at + len(rows)]
            job_results = results[at : at + len(rows)]
            at += len(rows)
            if details is not None:
                details.append({"frames": [int(r.codes.shape[1]) for r in job_results],
                                "expected_frames": [float(r.expected_frames) for r in job_results],
                                "hit_limit": [bool(r.hit_limit) for r in job_results]})
            pieces = []
            for s in range(0, len(rows), job.candidates):
                waves = job_waves[s : s + job.candidates]
                best = self._select(waves, rows[s], job.select, job.prompt) if job.candidates > 1 else 0
                pieces.append(waves[best])
            wav = crossfade_concat(pieces, self.sample_rate, crossfade_ms=crossfade_ms)
            # Tempo changes before the watermark: stretching afterwards would erase it.
            wav = time_stretch(wav, self.sample_rate, job.speed)
            outputs.append(policy.finalize(wav, self.sample_rate, auth, job.text))
        return outputs

    def _check_decoding(self, sampling: SamplingConfig) -> None:
        problem = decoding_problem(self.codec, sampling)
        if problem:
            raise ValueError(problem)
        if sampling.residual_prior == "code0" and self.residual_prior is None:
            raise ValueError("residual_prior='code0' needs the table that a model folder carries as "
                             "residual_prior.safetensors (recipes/fit_residual_prior.py); this model has none: "
                             "use residual_prior='mean'")
        if sampling.vocoder == "synthesis" and self.synthesis_vocoder is None:
            raise ValueError("vocoder='synthesis' needs the vocoder that a model folder carries as "
                             "synthesis_vocoder.safetensors (recipes/synthesis_vocoder.py); this model has none: "
                             "use vocoder='codec'")

    def set_synthesis_vocoder(self, vocoder: nn.Module | None, source: str = "") -> None:
        """Attach (or with None, drop) the vocoder that ``sampling.vocoder == "synthesis"`` decodes with; saved
        with the model (``valle2.generation.synthesis_vocoder``). It must have the codec's vocoder's shape."""
        if vocoder is not None:
            from valle2.generation.synthesis_vocoder import check_architecture

            check_architecture(vocoder, self.codec)
            vocoder = vocoder.float().cpu().eval()
        # through __dict__: nn.Module would register a module attribute as a submodule (into state_dict)
        self.__dict__["synthesis_vocoder"] = vocoder
        self.synthesis_vocoder_source = source

    def set_residual_prior(self, prior: torch.Tensor | None, counts: torch.Tensor | None = None) -> None:
        """Attach (or with None, drop) the ``"code0"`` residual prior (V, D): saved with the model, used when
        ``sampling.residual_prior == "code0"`` (``valle2.generation.residual_prior.fit_code0_prior``)."""
        if prior is not None:
            entries = self.codec.code_entries() if hasattr(self.codec, "code_entries") else None
            if entries is None or tuple(prior.shape) != (entries.shape[1], entries.shape[2]):
                raise ValueError(f"a residual prior for this codec is (V, D) = "
                                 f"{None if entries is None else (entries.shape[1], entries.shape[2])}, "
                                 f"got {tuple(prior.shape)}")
            prior = prior.detach().float().cpu()
            counts = torch.zeros(prior.shape[0]) if counts is None else counts.detach().float().cpu()
        self.residual_prior, self.residual_prior_counts = prior, counts

    def decode_rows(self, rows: list[Row], results: list[RowResult],
                    sampling: SamplingConfig | None = None) -> list[np.ndarray]:
        """Waveforms of ``generate``'s results, decoded as synthesis decodes them (before the watermark): the
        NAR's residual at ``sampling.nar_weight`` (or its expected entries), then the post-filter against each
        row's prompt. Empty codes give empty audio."""
        sampling = sampling or self.sampling
        self._check_decoding(sampling)
        refs = [r.prompt.codes for r in rows] if sampling.post_filter == "prompt_match" else None
        return self._decode([r.codes for r in results], refs, strength=sampling.post_filter_strength,
                            residuals=self.residuals(results, sampling, prompts=[r.prompt.codes for r in rows]),
                            vocoder=self.synthesis_vocoder if sampling.vocoder == "synthesis" else None)

    def _decode(self, codes: list[torch.Tensor], refs: list[torch.Tensor] | None = None,
                strength: float = 1.0, residuals: list[torch.Tensor] | None = None,
                vocoder: nn.Module | None = None) -> list[np.ndarray]:
        """Codes -> waveforms, batched when the codec can; empty codes give empty audio.
        ``refs``: one prompt's codes per row, for the prompt-matched post-filter (``strength`` of the way).
        ``residuals``: per row, what to decode on top of codebook 0's entry instead of the entries of the
        later codes (``residuals``). ``vocoder``: the synthesis vocoder instead of the codec's."""
        waves: list[np.ndarray] = [np.zeros(0, np.float32)] * len(codes)
        todo = [i for i, c in enumerate(codes) if c.shape[1]]
        extra = {} if vocoder is None else {"vocoder": vocoder}
        if refs is not None:
            decoded = [self.codec.decode(codes[i], reference=refs[i], strength=strength,
                                         residual=None if residuals is None else residuals[i], **extra) for i in todo]
        elif residuals is not None or vocoder is not None:
            decoded = [self.codec.decode(codes[i], residual=None if residuals is None else residuals[i], **extra)
                       for i in todo]
        elif hasattr(self.codec, "decode_batch"):
            decoded = self.codec.decode_batch([codes[i] for i in todo])
        else:
            decoded = [self.codec.decode(codes[i]) for i in todo]
        for i, w in zip(todo, decoded):
            waves[i] = w
        return waves

    def residuals(self, results: list[RowResult], sampling: SamplingConfig | None = None,
                  prompts: list[torch.Tensor] | None = None) -> list[torch.Tensor] | None:
        """What the codec decodes on top of codebook 0 for ``generate``'s results under ``sampling`` (default: the
        model's), one ``(D, T)`` tensor per row; None when the codes decode as they are.

        ``nar_decoding="expected"``: the NAR's expected entries (``RowResult.residual``); with ``nar_weight`` w < 1,
        that residual (or the entries of the NAR's codes, for a result without one) scaled by w plus (1 - w) times
        the mean entry of each codebook 1..K-1 (``residual_prior="mean"``) or the table's row for each frame's
        codebook-0 code (``"code0"``); with ``prompt_residual`` b > 0, b of it comes from the row's prompt
        (``prompts``: each row's prompt codes; ``residual_prior.prompt_knn_residual``). ``decode_rows`` decodes
        with these; recipes that decode log-mels themselves (``recipes/vocoder_gta.py``,
        ``benchmarks/nar_oracle.py``) call it to decode as synthesis does."""
        sampling = sampling or self.sampling
        self._check_decoding(sampling)
        if sampling.nar_decoding != "expected" and sampling.nar_weight >= 1:
            return None
        w = sampling.nar_weight
        if w >= 1:
            return [r.residual for r in results]
        from valle2.codec.mel import rvq_decode  # a frame is the sum of its codes' entries, for any codec
        from valle2.generation.residual_prior import knn_keys, mean_residual, prompt_knn_residual

        entries = self.codec.code_entries().float()
        if sampling.residual_prior == "code0":
            fallback = lambda r: self.residual_prior.to(r.codes.device)[r.codes[0]].T  # noqa: E731  (D, T)
        else:
            mean = mean_residual(entries)[:, None]  # (D, 1)
            fallback = lambda r: mean  # noqa: E731
        b = sampling.prompt_residual
        if b > 0:
            if prompts is None or len(prompts) != len(results):
                raise ValueError("prompt_residual > 0 needs each row's prompt codes (prompts=...)")
            keys = knn_keys(self.codec)
        out = []
        for i, r in enumerate(results):
            res = w * (r.residual if r.residual is not None else rvq_decode(r.codes[1:], entries[1:]).T)
            res = res + (1 - w - b) * fallback(r).to(res.device)
            if b > 0:
                knn = prompt_knn_residual(r.codes[0], prompts[i], keys, entries, sampling.prompt_residual_k)
                res = res + b * knn.to(res.device)
            out.append(res)
        return out

    def _select(self, waves, row: Row, select, prompt: Prompt) -> int:
        from valle2.eval.scorers import get_scorer

        scorer = get_scorer(select or "duration") if select is None or isinstance(select, str) else select
        scores = scorer.score(waves, self.sample_rate, prompt_wav=prompt.wav, prompt_sr=prompt.sr, text=row.text,
                              prompt_text=prompt.text)
        scores = [s if len(w) else float("-inf") for s, w in zip(scores, waves)]
        return int(np.argmax(scores))


@dataclass
class SynthesisJob:
    """One request for ``VallE2.synthesize_batch``: a text in the voice of an encoded prompt."""

    text: str
    prompt: Prompt
    candidates: int = 1
    select: object = None  # scorer or scorer name for candidates > 1
    language: str | None = None
    unsafe_no_consent: bool = False
    rows: list[Row] | None = None
    speed: float = 1.0  # tempo (0.25-4.0), applied without changing pitch  # pre-built with VallE2.make_rows (validates the text early)
