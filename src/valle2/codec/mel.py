"""valle2-mel: the project's own small codec — log-mel frames, residual k-means, neural vocoder.

::

    wav 24 kHz ──STFT(n_fft 1280, hop 320)──▶ |X| ──mel(80)──▶ log ──▶ m_t ∈ R^80   (75 Hz)
    m_t ──RVQ (K stages of k-means, V entries each)──▶ codes c_{k,t}     (stage 0 coarsest)
    codes ──Σ_k codebook_k[c_{k,t}]──▶ m̂_t ──vocoder──▶ (log|S|, ∠S) ──iSTFT──▶ wav

Encoding is deterministic nearest-centroid search, stage by stage on the residual, so
codebook 0 carries the coarse spectral envelope and later stages refine it (the AR model
predicts stage 0, the NAR the rest). The vocoder is Vocos-style: ConvNeXt blocks over the
mel frames and a head that predicts STFT log-magnitude and phase at the *same* hop as the
codes, so one iSTFT turns frames into samples (no up-sampling convolutions: cheap on CPU).
It is trained on quantised mels, so it also learns to undo the quantisation error.
A codec without vocoder weights decodes by Griffin-Lim (baseline; phase is its weak part).

Files (``save``/``load``): ``config.json`` (format + version + hyper-parameters) and
``model.safetensors`` (``codebooks`` [K, V, n_mels] and ``vocoder.*`` weights). No pickle.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from valle2.errors import AudioError, ModelFileError

if TYPE_CHECKING:
    from valle2.codec.phonetic import PhoneEncoder

log = logging.getLogger(__name__)

CODEC_TYPE = "valle2-mel"
READ_VERSIONS = (1, 2)  # 1: mel first stage only; 2 adds the phonetic first stage
CONFIG_FILE = "config.json"
WEIGHTS_FILE = "model.safetensors"


@dataclass(frozen=True)
class MelCodecConfig:
    sample_rate: int = 24000
    n_fft: int = 1280
    hop_length: int = 320  # 24000 / 320 = 75 frames per second
    n_mels: int = 80
    f_min: float = 0.0
    f_max: float = 12000.0
    log_floor: float = 1e-5
    n_codebooks: int = 8  # K
    codebook_size: int = 256  # V
    # Vocoder (None dim = no vocoder: Griffin-Lim decoding).
    vocoder_dim: int | None = 256
    vocoder_intermediate: int = 768
    vocoder_layers: int = 6
    griffin_lim_iters: int = 64
    # Codebook 0: "mel" = k-means on log-mel frames (v1); "phonetic" = k-means on the features
    # of a small CTC phone recogniser (valle2.codec.phonetic; format version 2).
    first_stage: str = "mel"
    phonetic_dim: int = 192
    phonetic_intermediate: int = 576
    phonetic_layers: int = 6
    n_phones: int = 0
    name: str = "valle2-mel"
    extra: dict = field(default_factory=dict)  # training provenance, measured figures

    @property
    def frame_rate(self) -> float:
        return self.sample_rate / self.hop_length


# ---------------------------------------------------------------------------------------
# Mel front end


def mel_filterbank(sample_rate: int, n_fft: int, n_mels: int, f_min: float, f_max: float) -> torch.Tensor:
    """Slaney-style (HTK-free) triangular mel filters with area normalisation: [n_mels, n_fft//2+1]."""

    def hz_to_mel(f: np.ndarray) -> np.ndarray:
        # Slaney: linear below 1 kHz, logarithmic above.
        f = np.asarray(f, dtype=np.float64)
        mel = f / (200.0 / 3)
        log_region = f >= 1000.0
        mel = np.where(log_region, 15.0 + np.log(np.maximum(f, 1e-9) / 1000.0) / (np.log(6.4) / 27.0), mel)
        return mel

    def mel_to_hz(m: np.ndarray) -> np.ndarray:
        m = np.asarray(m, dtype=np.float64)
        f = m * (200.0 / 3)
        return np.where(m >= 15.0, 1000.0 * np.exp((np.log(6.4) / 27.0) * (m - 15.0)), f)

    freqs = np.linspace(0, sample_rate / 2, n_fft // 2 + 1)
    mel_points = mel_to_hz(np.linspace(hz_to_mel(f_min), hz_to_mel(f_max), n_mels + 2))
    fb = np.zeros((n_mels, len(freqs)))
    for i in range(n_mels):
        lo, center, hi = mel_points[i : i + 3]
        up = (freqs - lo) / max(center - lo, 1e-9)
        down = (hi - freqs) / max(hi - center, 1e-9)
        fb[i] = np.maximum(0.0, np.minimum(up, down)) * (2.0 / (hi - lo))
    return torch.from_numpy(fb).float()


class LogMel(nn.Module):
    """Waveform [B, N] (N a multiple of hop) -> log-mel [B, n_mels, N // hop]."""

    def __init__(self, cfg: MelCodecConfig):
        super().__init__()
        self.n_fft, self.hop, self.floor = cfg.n_fft, cfg.hop_length, cfg.log_floor
        self.register_buffer("window", torch.hann_window(cfg.n_fft), persistent=False)
        self.register_buffer(
            "fb", mel_filterbank(cfg.sample_rate, cfg.n_fft, cfg.n_mels, cfg.f_min, cfg.f_max), persistent=False
        )

    def magnitude(self, wav: torch.Tensor) -> torch.Tensor:
        spec = torch.stft(wav, self.n_fft, self.hop, window=self.window, center=True, return_complex=True)
        return spec.abs()[..., :-1]  # (B, F, T): drop the frame centred past the end

    def forward(self, wav: torch.Tensor) -> torch.Tensor:
        mel = torch.matmul(self.fb, self.magnitude(wav))  # (B, n_mels, T)
        return torch.log(torch.clamp(mel, min=self.floor))


# ---------------------------------------------------------------------------------------
# Residual k-means quantiser


def rvq_encode(x: torch.Tensor, codebooks: torch.Tensor) -> torch.Tensor:
    """Frames [T, D] -> codes [K, T] by greedy nearest-centroid search on the residual."""
    residual = x
    codes = []
    for cb in codebooks:  # cb: (V, D)
        # ||r - c||^2 = ||r||^2 - 2 r.c + ||c||^2; the first term does not change the argmin.
        dist = (cb * cb).sum(-1)[None, :] - 2.0 * residual @ cb.T  # (T, V)
        idx = dist.argmin(-1)
        codes.append(idx)
        residual = residual - cb[idx]
    return torch.stack(codes) if codes else torch.zeros(0, x.shape[0], dtype=torch.long)


def rvq_decode(codes: torch.Tensor, codebooks: torch.Tensor) -> torch.Tensor:
    """Codes [K', T] (K' <= K: the first K' stages) -> frames [T, D]."""
    out = torch.zeros(codes.shape[1], codebooks.shape[-1], dtype=codebooks.dtype, device=codebooks.device)
    for k in range(codes.shape[0]):
        out = out + codebooks[k][codes[k]]
    return out


# ---------------------------------------------------------------------------------------
# Prompt-matched post-filter


def speech_frame_mask(mel: torch.Tensor, quantile: float = 0.3) -> torch.Tensor:
    """Frames [n_mels, T] whose mean log-mel is at or above the utterance's ``quantile``: the
    voiced and loud frames, without the pauses that would drag the statistics toward silence."""
    energy = mel.mean(0)
    return energy >= torch.quantile(energy, quantile)


def match_prompt_statistics(mel: torch.Tensor, reference: torch.Tensor, *, quantile: float = 0.3,
                            max_gain: float = 2.0, min_frames: int = 8, strength: float = 1.0) -> torch.Tensor:
    """Give a generated log-mel [n_mels, T] the per-bin mean and standard deviation of its
    prompt's log-mel [n_mels, Tp], both measured over speech frames (``speech_frame_mask``).

    Each bin is ``mu_ref + (x - mu_out) * clamp(sd_ref / sd_out, 1 / max_gain, max_gain)``: the
    long-term spectral envelope of the voice (mean) and the global-variance post-filter of
    statistical parametric synthesis (Toda & Tokuda 2007), which undoes the over-smoothing of
    averaged code choices (min-distortion NAR decoding). Too short a sequence (fewer than
    ``min_frames`` speech frames on either side) is returned unchanged: its statistics would be noise.
    ``strength`` < 1 moves each value only that share of the way: ``x + strength * (matched - x)``.
    """
    if mel.dim() != 2 or reference.dim() != 2 or mel.shape[0] != reference.shape[0]:
        raise ValueError(f"expected log-mels [n_mels, T] with the same n_mels, got {tuple(mel.shape)} "
                         f"and {tuple(reference.shape)}")
    if mel.shape[1] == 0 or reference.shape[1] == 0:
        return mel
    out_m, ref_m = speech_frame_mask(mel, quantile), speech_frame_mask(reference, quantile)
    if int(out_m.sum()) < min_frames or int(ref_m.sum()) < min_frames:
        return mel
    x, r = mel[:, out_m].float(), reference[:, ref_m].float()
    mu_o, sd_o = x.mean(1, keepdim=True), x.std(1, keepdim=True)
    mu_r, sd_r = r.mean(1, keepdim=True), r.std(1, keepdim=True)
    gain = (sd_r / sd_o.clamp(min=1e-4)).clamp(1.0 / max_gain, max_gain)
    matched = mu_r + (mel.float() - mu_o) * gain
    return (mel.float() + strength * (matched - mel.float())).to(mel.dtype)


# ---------------------------------------------------------------------------------------
# Vocoder


class ConvNeXtBlock(nn.Module):
    def __init__(self, dim: int, intermediate: int, layer_scale: float):
        super().__init__()
        self.dwconv = nn.Conv1d(dim, dim, kernel_size=7, padding=3, groups=dim)
        self.norm = nn.LayerNorm(dim, eps=1e-6)
        self.pw1 = nn.Linear(dim, intermediate)
        self.pw2 = nn.Linear(intermediate, dim)
        self.gamma = nn.Parameter(torch.full((dim,), layer_scale))

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, D, T)
        h = self.dwconv(x).transpose(1, 2)  # (B, T, D)
        h = self.pw2(F.gelu(self.pw1(self.norm(h))))
        return x + (self.gamma * h).transpose(1, 2)


class Vocoder(nn.Module):
    """Log-mel [B, n_mels, T] -> waveform [B, T * hop] (Vocos-style, iSTFT head)."""

    def __init__(self, n_mels: int, dim: int, intermediate: int, n_layers: int, n_fft: int, hop: int):
        super().__init__()
        self.n_fft, self.hop = n_fft, hop
        self.embed = nn.Conv1d(n_mels, dim, kernel_size=7, padding=3)
        self.norm = nn.LayerNorm(dim, eps=1e-6)
        self.blocks = nn.ModuleList(ConvNeXtBlock(dim, intermediate, 1.0 / n_layers) for _ in range(n_layers))
        self.final_norm = nn.LayerNorm(dim, eps=1e-6)
        self.head = nn.Linear(dim, n_fft + 2)  # (n_fft//2+1) log-magnitudes + as many phases
        self.register_buffer("window", torch.hann_window(n_fft), persistent=False)

    def forward(self, mel: torch.Tensor) -> torch.Tensor:
        x = self.embed(mel)  # (B, D, T)
        x = self.norm(x.transpose(1, 2)).transpose(1, 2)
        for block in self.blocks:
            x = block(x)
        x = self.head(self.final_norm(x.transpose(1, 2)))  # (B, T, n_fft + 2)
        log_mag, phase = x.transpose(1, 2).chunk(2, dim=1)  # (B, F, T) each
        mag = torch.exp(log_mag.clamp(max=7.0))
        spec = torch.polar(mag, phase)
        # One extra (silent) frame so that center=True iSTFT yields exactly T * hop samples.
        spec = F.pad(spec, (0, 1))
        n = mel.shape[-1] * self.hop
        return torch.istft(spec, self.n_fft, self.hop, window=self.window, center=True, length=n)


def build_vocoder(cfg: MelCodecConfig) -> Vocoder | None:
    if cfg.vocoder_dim is None:
        return None
    return Vocoder(cfg.n_mels, cfg.vocoder_dim, cfg.vocoder_intermediate, cfg.vocoder_layers, cfg.n_fft, cfg.hop_length)


def build_phone_encoder(cfg: MelCodecConfig):
    """The phonetic first stage's recogniser (None for a mel first stage)."""
    if cfg.first_stage != "phonetic":
        return None
    from valle2.codec.phonetic import PhoneEncoder

    return PhoneEncoder(cfg.n_mels, cfg.phonetic_dim, cfg.phonetic_intermediate, cfg.phonetic_layers, cfg.n_phones)


# ---------------------------------------------------------------------------------------
# Griffin-Lim (baseline decoder)


def griffin_lim(mag: torch.Tensor, n_fft: int, hop: int, n_iter: int, momentum: float = 0.99) -> torch.Tensor:
    """Fast Griffin-Lim (Perraudin et al. 2013): magnitude [F, T] -> waveform [T * hop]."""
    window = torch.hann_window(n_fft)
    mag = F.pad(mag, (0, 1))
    n = (mag.shape[-1] - 1) * hop
    gen = torch.Generator().manual_seed(0)
    angles = torch.polar(torch.ones_like(mag), 2 * math.pi * torch.rand(mag.shape, generator=gen))
    prev = torch.zeros_like(angles)
    for _ in range(n_iter):
        wav = torch.istft(mag * angles, n_fft, hop, window=window, center=True, length=n)
        rebuilt = torch.stft(wav, n_fft, hop, window=window, center=True, return_complex=True)
        angles = rebuilt - (momentum / (1 + momentum)) * prev
        prev = rebuilt
        angles = angles / angles.abs().clamp(min=1e-8)
    return torch.istft(mag * angles, n_fft, hop, window=window, center=True, length=n)


# ---------------------------------------------------------------------------------------
# The codec


class MelCodec:
    """valle2's own codec (see the module docstring); implements ``valle2.codec.base.Codec``."""

    def __init__(
        self,
        config: MelCodecConfig,
        codebooks: torch.Tensor,
        vocoder: Vocoder | None = None,
        phonetic: "PhoneEncoder | None" = None,
        phone_centroids: torch.Tensor | None = None,
    ):
        k, v, d = codebooks.shape
        if (k, v, d) != (config.n_codebooks, config.codebook_size, config.n_mels):
            raise ModelFileError(
                f"codebooks have shape {(k, v, d)}; config says "
                f"{(config.n_codebooks, config.codebook_size, config.n_mels)}"
            )
        self.config = config
        self.sample_rate = config.sample_rate
        self.frame_rate = config.frame_rate
        self.n_codebooks = config.n_codebooks
        self.codebook_size = config.codebook_size
        self.codebooks = codebooks.float().contiguous()
        self.vocoder = vocoder.eval() if vocoder is not None else None
        if config.first_stage not in ("mel", "phonetic"):
            raise ModelFileError(f"unknown first_stage {config.first_stage!r} (expected 'mel' or 'phonetic')")
        if config.first_stage == "phonetic":
            if phonetic is None or phone_centroids is None:
                raise ModelFileError("a phonetic codec needs its phone encoder and centroids")
            if tuple(phone_centroids.shape) != (config.codebook_size, config.phonetic_dim):
                raise ModelFileError(
                    f"phone centroids have shape {tuple(phone_centroids.shape)}; config says "
                    f"{(config.codebook_size, config.phonetic_dim)}"
                )
        self.phonetic = phonetic.eval() if phonetic is not None else None
        self.phone_centroids = phone_centroids.float().contiguous() if phone_centroids is not None else None
        self.frontend = LogMel(config)
        self._pinv_fb: torch.Tensor | None = None

    @classmethod
    def debug(cls, n_codebooks: int = 4, codebook_size: int = 16, seed: int = 0) -> "MelCodec":
        """A tiny random codec (untrained codebooks and vocoder) for fast API tests."""
        gen = torch.Generator().manual_seed(seed)
        cfg = MelCodecConfig(n_codebooks=n_codebooks, codebook_size=codebook_size, vocoder_dim=16,
                             vocoder_intermediate=32, vocoder_layers=1, name="valle2-mel-debug")
        # Stage k spreads 2^-k as wide as stage 0, like a fitted residual quantiser.
        books = torch.randn(n_codebooks, codebook_size, cfg.n_mels, generator=gen)
        books = books * (0.5 ** torch.arange(n_codebooks, dtype=torch.float32))[:, None, None]
        books[0] += -5.0  # around a typical log-mel level
        with torch.random.fork_rng():
            torch.manual_seed(seed)
            vocoder = build_vocoder(cfg)
        return cls(cfg, books, vocoder)

    # -- analysis -------------------------------------------------------------------------
    def _prepare(self, wav: np.ndarray | torch.Tensor, sr: int) -> torch.Tensor:
        wav = wav.detach().cpu().float() if torch.is_tensor(wav) else torch.from_numpy(np.asarray(wav, dtype=np.float32))
        if wav.dim() == 2 and 1 in wav.shape:
            wav = wav.reshape(-1)
        if wav.dim() != 1:
            raise AudioError(f"expected a mono waveform [N], got shape {tuple(wav.shape)}")
        if wav.numel() == 0:
            raise AudioError("waveform is empty")
        if sr != self.sample_rate:
            import soxr

            wav = torch.from_numpy(soxr.resample(wav.numpy(), sr, self.sample_rate).astype(np.float32))
        hop = self.config.hop_length
        n = math.ceil(wav.numel() / hop) * hop
        return F.pad(wav, (0, n - wav.numel()))

    @torch.inference_mode()
    def mel(self, wav: np.ndarray | torch.Tensor, sr: int) -> torch.Tensor:
        """Unquantised log-mel [n_mels, T]."""
        return self.frontend(self._prepare(wav, sr)[None])[0]

    @torch.inference_mode()
    def encode(self, wav: np.ndarray | torch.Tensor, sr: int) -> torch.Tensor:
        """Mono waveform [N] at ``sr`` Hz -> codes [K, ceil(N' / hop)] (int64; N' after resampling)."""
        return self.encode_mel(self.mel(wav, sr))

    @torch.inference_mode()
    def encode_mel(self, mel: torch.Tensor) -> torch.Tensor:
        """Log-mel [n_mels, T] -> codes [K, T]."""
        if self.phonetic is None:
            return rvq_encode(mel.T, self.codebooks).long()
        from valle2.codec.phonetic import nearest

        first = nearest(self.phonetic.features(mel[None])[0], self.phone_centroids)
        rest = rvq_encode(mel.T - self.codebooks[0][first], self.codebooks[1:])
        return torch.cat([first[None], rest]).long()

    # -- synthesis ------------------------------------------------------------------------
    def _check_codes(self, codes: torch.Tensor) -> torch.Tensor:
        codes = torch.as_tensor(codes).long().cpu()
        if codes.dim() != 2 or not (1 <= codes.shape[0] <= self.n_codebooks):
            raise ValueError(f"codes must be [K<={self.n_codebooks}, T], got {tuple(codes.shape)}")
        if codes.numel() and (codes.min() < 0 or codes.max() >= self.codebook_size):
            raise ValueError(f"codes must be in [0, {self.codebook_size}), got [{codes.min()}, {codes.max()}]")
        return codes

    def dequantize(self, codes: torch.Tensor) -> torch.Tensor:
        """Codes [K', T] -> quantised log-mel [n_mels, T] (K' < K uses the first stages only)."""
        return rvq_decode(self._check_codes(codes), self.codebooks).T

    def code_entries(self) -> torch.Tensor:
        """``(K, V, n_mels)``: each code's log-mel vector (a frame decodes to their sum)."""
        return self.codebooks

    # decode(codes, reference=prompt_codes) gives the output the prompt's log-mel statistics
    supports_prompt_match = True
    # decode(codes, residual=r) decodes codebook 0's entry + r (the NAR's expected entries, nar_decode.py)
    supports_residual = True

    # decode(codes, vocoder=v) vocodes with v instead of the codec's own (valle2.generation.synthesis_vocoder)
    supports_vocoder = True

    @torch.inference_mode()
    def decode(self, codes: torch.Tensor, reference: torch.Tensor | None = None, strength: float = 1.0,
               residual: torch.Tensor | None = None, vocoder: nn.Module | None = None) -> np.ndarray:
        """Codes [K, T] -> float32 waveform [T * hop] at 24 kHz (vocoder, else Griffin-Lim).

        ``reference``: the prompt's codes [K', Tp]; when given, the decoded log-mel first takes
        the prompt's per-bin mean and spread (``match_prompt_statistics``), ``strength`` of the way.
        ``residual`` [n_mels, T]: decode codebook 0's entries plus this instead of all K codes' entries.
        ``vocoder``: another vocoder of the same log-mel (a model's synthesis vocoder) instead of the codec's."""
        mel = self.synthesis_mel(codes, reference, strength, residual)
        if mel.shape[-1] == 0:
            return np.zeros(0, dtype=np.float32)
        vocoder = vocoder if vocoder is not None else self.vocoder
        if vocoder is None:
            return self._griffin_lim(mel)
        wav = vocoder(mel[None])[0]
        return wav.clamp(-1.0, 1.0).numpy().astype(np.float32)

    def synthesis_mel(self, codes: torch.Tensor, reference: torch.Tensor | None = None,
                      strength: float = 1.0, residual: torch.Tensor | None = None) -> torch.Tensor:
        """The log-mel [n_mels, T] that ``decode`` gives its vocoder: the codes dequantised (with a
        ``residual``: codebook 0's entries + it) and, with a ``reference`` (the prompt's codes), moved
        ``strength`` of the way to its statistics."""
        if residual is None:
            mel = self.dequantize(codes)
        else:
            if residual.shape != (self.config.n_mels, codes.shape[-1]):
                raise ValueError(f"residual must be [n_mels, T] = [{self.config.n_mels}, {codes.shape[-1]}], "
                                 f"got {list(residual.shape)}")
            mel = self.dequantize(codes[:1]) + residual.to(self.codebooks.dtype)
        if reference is not None and mel.shape[-1]:
            mel = match_prompt_statistics(mel, self.dequantize(reference), strength=strength)
        return mel

    @torch.inference_mode()
    def decode_griffin_lim(self, codes: torch.Tensor, n_iter: int | None = None) -> np.ndarray:
        """Baseline decoder: mel pseudo-inverse to a linear magnitude, then fast Griffin-Lim."""
        return self._griffin_lim(self.dequantize(codes), n_iter)

    def _griffin_lim(self, mel: torch.Tensor, n_iter: int | None = None) -> np.ndarray:
        if self._pinv_fb is None:
            self._pinv_fb = torch.linalg.pinv(self.frontend.fb)
        mag = (self._pinv_fb @ torch.exp(mel)).clamp(min=0.0)
        wav = griffin_lim(mag, self.config.n_fft, self.config.hop_length, n_iter or self.config.griffin_lim_iters)
        return wav.clamp(-1.0, 1.0).numpy().astype(np.float32)

    # -- identity and files ---------------------------------------------------------------
    @property
    def format_version(self) -> int:
        """2 with a phonetic first stage, else 1 (so that v1 readers still read plain codecs)."""
        return 2 if self.phonetic is not None else 1

    def identity(self) -> dict:
        h = hashlib.sha256(self.codebooks.numpy().tobytes())
        if self.phonetic is not None:  # codes depend on the recogniser and its centroids too
            h.update(self.phone_centroids.numpy().tobytes())
            for value in self.phonetic.state_dict().values():
                h.update(value.detach().float().numpy().tobytes())
        digest = h.hexdigest()[:16]
        return {
            "type": CODEC_TYPE,
            "version": self.format_version,
            "name": self.config.name,
            "sample_rate": self.sample_rate,
            "frame_rate": self.frame_rate,
            "n_codebooks": self.n_codebooks,
            "codebook_size": self.codebook_size,
            "codebooks_sha256": digest,  # codes are only meaningful with these exact codebooks
        }

    def save(self, folder: Path, dtype: torch.dtype | None = None) -> None:
        """Write ``config.json`` + ``model.safetensors``. ``dtype`` (e.g. ``torch.float16``) stores
        the networks' weights smaller; codebooks and centroids stay float32. Loading casts back
        to float32, so the reloaded codec — not this one — is the reference for its codes."""
        from safetensors.torch import save_file

        def net(prefix: str, module: nn.Module) -> dict[str, torch.Tensor]:
            return {f"{prefix}.{k}": (v.detach().to(dtype) if dtype is not None and v.is_floating_point()
                                      else v.detach()).contiguous() for k, v in module.state_dict().items()}

        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        tensors = {"codebooks": self.codebooks.contiguous()}
        if self.vocoder is not None:
            tensors.update(net("vocoder", self.vocoder))
        if self.phonetic is not None:
            tensors["phone_centroids"] = self.phone_centroids
            tensors.update(net("phonetic", self.phonetic))
        save_file(tensors, str(folder / WEIGHTS_FILE))
        header = {"format": CODEC_TYPE, "version": self.format_version, "config": asdict(self.config)}
        (folder / CONFIG_FILE).write_text(json.dumps(header, indent=2) + "\n")

    @classmethod
    def load(cls, folder: Path) -> "MelCodec":
        from safetensors.torch import load_file

        folder = Path(folder)
        cfg_path, weights_path = folder / CONFIG_FILE, folder / WEIGHTS_FILE
        if not cfg_path.is_file() or not weights_path.is_file():
            raise ModelFileError(f"{folder} has no {CONFIG_FILE} + {WEIGHTS_FILE} of a valle2-mel codec")
        try:
            header = json.loads(cfg_path.read_text())
        except json.JSONDecodeError as exc:
            raise ModelFileError(f"{cfg_path} is not valid JSON: {exc}") from exc
        if header.get("format") != CODEC_TYPE:
            raise ModelFileError(f"{cfg_path} is format {header.get('format')!r}, not {CODEC_TYPE!r}")
        if header.get("version") not in READ_VERSIONS:
            raise ModelFileError(
                f"{cfg_path} is version {header.get('version')!r}; this valle2 reads versions {READ_VERSIONS}"
            )
        cfg = MelCodecConfig(**header["config"])
        tensors = load_file(str(weights_path))
        vocoder = build_vocoder(cfg)
        if vocoder is not None:
            state = {k[len("vocoder.") :]: v for k, v in tensors.items() if k.startswith("vocoder.")}
            vocoder.load_state_dict(state)
        phonetic = build_phone_encoder(cfg)
        if phonetic is not None:
            state = {k[len("phonetic.") :]: v for k, v in tensors.items() if k.startswith("phonetic.")}
            phonetic.load_state_dict(state)
        return cls(cfg, tensors["codebooks"], vocoder, phonetic, tensors.get("phone_centroids"))


def _bundled_with_codes(digest: str | None, bundled: Path) -> MelCodec | None:
    """The newest bundled codec (by name) whose codes hash to ``digest``: a later release of the same codes."""
    if not digest:
        return None
    for folder in sorted((p for p in bundled.glob("*") if (p / CONFIG_FILE).is_file()),
                         key=lambda p: (len(p.name), p.name), reverse=True):
        codec = MelCodec.load(folder)
        if codec.identity()["codebooks_sha256"] == digest:
            return codec
    return None


def load_from_identity(identity: dict, folder: Path | None) -> MelCodec:
    """The codec a model folder names: its own ``codec/`` copy, else the bundled codec of that name."""
    if folder is None:
        from valle2.config import BUNDLED_CODECS

        bundled = BUNDLED_CODECS / str(identity.get("name", ""))
        if identity.get("name") and (bundled / CONFIG_FILE).is_file():
            folder = bundled
        else:
            same = _bundled_with_codes(identity.get("codebooks_sha256"), BUNDLED_CODECS)
            if same is None:
                raise ModelFileError(
                    f"the valle2-mel codec {identity.get('name')!r} needs its weights folder (config.json + "
                    "model.safetensors): the model folder has no codec/ and no bundled codec has that name "
                    "or its codes"
                )
            log.warning("the bundled codec %r is not shipped any more; decoding with %r, which has the same codes "
                        "(only its vocoder differs)", identity.get("name"), same.config.name)
            return same
    codec = MelCodec.load(Path(folder))
    want = identity.get("codebooks_sha256")
    if want is not None and want != codec.identity()["codebooks_sha256"]:
        raise ModelFileError(
            f"codec in {folder} has codebooks {codec.identity()['codebooks_sha256']}, the model expects {want}"
        )
    return codec


try:  # The registry lands separately; the codec works without it.
    from valle2.codec.registry import register_codec
except ImportError:  # pragma: no cover - until registry.py exists
    register_codec = None
if register_codec is not None:
    register_codec(CODEC_TYPE, load_from_identity)
