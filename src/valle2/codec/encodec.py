"""EnCodec (Défossez et al., 2022) as a valle2 :class:`~valle2.codec.base.Codec`.

Wraps ``transformers.EncodecModel``. The paper setup is ``facebook/encodec_24khz`` at
6 kbps: 24 kHz mono, hop 320 samples (75 frames/s), K = 8 codebooks of V = 1024.

Lengths, for hop = prod(upsampling_ratios) (320 at 24 kHz)::

    wav [N] --zero-pad to T*hop--> encoder --> codes [K, T],  T = ceil(N / hop)
    codes [K, T] --> decoder --> wav [T * hop]

Zero-padding to a whole number of frames before encoding (rather than letting the
convolutions reflect-pad the ragged end) makes the codes of a clip independent of
what follows it; with EnCodec's causal convolutions and LSTM this is what lets
``encode_batch``/``decode_batch`` pad a batch and still return the codes and samples
of one-by-one calls. Batched and single runs differ only by float rounding (~1e-7),
which can flip a rare near-tie code in a fine codebook.

``EncodecCodec.tiny_random()`` is a seeded random model of the same shape family
(about 0.17 M parameters) for tests and the ``debug`` model: it runs in milliseconds
on CPU and needs no download.

transformers is imported inside functions only, so ``import valle2.codec`` stays cheap
(importing ``EncodecModel`` takes about 2 s).
"""

from __future__ import annotations

import contextlib
import copy
import inspect
import logging
import math
import os
import re
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch

from valle2.errors import AudioError, MissingDependencyError, ModelFileError

log = logging.getLogger(__name__)

DEFAULT_NAME = "facebook/encodec_24khz"
SUBFOLDER = "encodec"  # where save() puts weights inside a model folder, beside the LM's own files
_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*(/[\w.-]+)?$")  # "name" or "namespace/name"

# The tiny random model: 24 kHz and hop 8*5*4*2 = 320 like the real one (75 frames/s), but
# 4 base filters instead of 32, a 16-d latent instead of 128 and one LSTM layer instead of two.
TINY_CONFIG: dict[str, Any] = {
    "sampling_rate": 24_000,
    "audio_channels": 1,
    "upsampling_ratios": [8, 5, 4, 2],
    "num_filters": 4,
    "hidden_size": 16,
    "num_residual_layers": 1,
    "num_lstm_layers": 1,
    "normalize": False,
    "use_causal_conv": True,
}


_TINY_CACHE: dict[tuple[int, int, int], Any] = {}  # (seed, K, V) -> built model, see tiny_random
_TINY_CACHE_SIZE = 4


def _import_transformers():
    try:
        from transformers import EncodecConfig, EncodecModel
    except ImportError as exc:  # pragma: no cover - transformers is a core dependency
        raise MissingDependencyError(
            f"EnCodec needs the 'transformers' package ({exc}); install it with: pip install 'transformers>=4.40'"
        ) from None
    return EncodecConfig, EncodecModel


class EncodecCodec:
    """EnCodec at a fixed bandwidth; see the module docstring for shapes and lengths.

    Build it with :meth:`from_pretrained` or :meth:`tiny_random`, or rebuild it from
    :meth:`identity` with :func:`valle2.codec.registry.load_codec`.
    """

    def __init__(self, model, bandwidth: float, identity: dict, device: str | torch.device = "cpu"):
        cfg = model.config
        label = identity.get("name_or_path", "tiny random EnCodec")
        if cfg.audio_channels != 1 or cfg.chunk_length_s is not None or cfg.normalize:
            # Chunked/normalised models (encodec_48khz) need per-chunk scales to decode,
            # which codes [K, T] alone cannot carry.
            raise ModelFileError(
                f"EnCodec '{label}' is a stereo, chunked or normalised model (audio_channels="
                f"{cfg.audio_channels}, chunk_length_s={cfg.chunk_length_s}, normalize={cfg.normalize}); "
                f"valle2 supports mono unchunked EnCodec such as '{DEFAULT_NAME}'"
            )
        bandwidths = [float(b) for b in cfg.target_bandwidths]
        if float(bandwidth) not in bandwidths:
            raise ValueError(f"EnCodec '{label}' has no bandwidth {bandwidth} kbps; choose one of {bandwidths}")
        self.model = model.to(device).eval()
        self.device = torch.device(device)
        self.bandwidth = float(bandwidth)
        self.sample_rate: int = int(cfg.sampling_rate)
        self.hop_length: int = int(np.prod(cfg.upsampling_ratios))
        self.frame_rate: float = self.sample_rate / self.hop_length
        self.codebook_size: int = int(cfg.codebook_size)
        self.n_codebooks: int = int(model.quantizer.get_num_quantizers_for_bandwidth(self.bandwidth))
        self._identity = {"type": "encodec", **identity, "bandwidth": self.bandwidth}
        # Padding a batch is exact only when no output depends on later input. Causal EnCodec
        # is, except that its first frame-rate convolutions reflect-pad their left edge, so
        # the first kernel_size - 1 frames see a few frames ahead: clips shorter than
        # kernel_size frames would see the batch's padding and so are run alone.
        self._causal = bool(cfg.use_causal_conv) and float(cfg.trim_right_ratio) == 1.0
        self._min_batch_frames = max(int(cfg.kernel_size), int(cfg.last_kernel_size))

    def code_entries(self) -> torch.Tensor:
        """``(K, V, D)``: each code's latent vector (the quantised latent is their sum)."""
        layers = self.model.quantizer.layers[: self.n_codebooks]
        return torch.stack([layer.codebook.embed.detach().float().cpu() for layer in layers])

    def __repr__(self) -> str:
        return (
            f"EncodecCodec({self._identity.get('name_or_path', 'tiny_random')}, {self.bandwidth:g} kbps, "
            f"K={self.n_codebooks}, V={self.codebook_size}, {self.sample_rate} Hz, {self.frame_rate:g} frames/s)"
        )

    # ------------------------------------------------------------------ construction

    @classmethod
    def from_pretrained(
        cls, name_or_path: str = DEFAULT_NAME, bandwidth: float = 6.0, device: str | torch.device = "cpu"
    ) -> "EncodecCodec":
        """Load EnCodec from a local folder (``save_pretrained`` layout) or a hub name.

        Hub names go through the Hugging Face cache; with ``HF_HUB_OFFLINE=1`` (read at
        call time, so setting it after import works) only the cache is consulted.
        Anything that cannot be found raises :class:`ModelFileError` with one line
        saying what was looked for and how to fix it.
        """
        name = str(name_or_path)
        path = Path(name).expanduser()
        if path.is_dir():
            model = _load_folder(path)
            identity = {"name_or_path": str(path.resolve()), "subfolder": SUBFOLDER}
        elif path.exists():
            raise ModelFileError(
                f"EnCodec path '{name}' is a file; pass a folder holding config.json and model.safetensors "
                f"(as written by save_pretrained) or a hub name such as '{DEFAULT_NAME}'"
            )
        elif not _HUB_ID.match(name) or name.count("/") > 1:
            raise ModelFileError(
                f"EnCodec folder '{name}' does not exist; pass an existing folder saved with "
                f"save_pretrained or a Hugging Face hub name such as '{DEFAULT_NAME}'"
            )
        else:
            model = _load_hub(name)
            identity = {"name_or_path": name}
        return cls(model, bandwidth, identity, device)

    @classmethod
    def tiny_random(
        cls, seed: int = 0, n_codebooks: int = 4, codebook_size: int = 64, device: str | torch.device = "cpu"
    ) -> "EncodecCodec":
        """A small seeded random EnCodec: 24 kHz, 75 frames/s, ``n_codebooks`` x ``codebook_size``.

        Its single target bandwidth is ``n_codebooks * log2(codebook_size) * 75 / 1000`` kbps
        (1.8 for the defaults), so encoding yields exactly ``n_codebooks`` codebooks.
        The same arguments always give the same weights, whatever the thread count (the global
        RNG and the thread count are left as they were).
        Codebooks are initialised from statistics of the encoder's own outputs on seeded
        noise, so codes spread over the codebook instead of collapsing onto one entry.
        Building takes about 0.5 s of CPU; the last few models built are kept, and later
        calls with the same arguments return a copy (about 20 ms), since tests and the
        ``debug`` model ask for the same tiny codec many times.
        """
        if n_codebooks < 1:
            raise ValueError(f"n_codebooks must be >= 1, got {n_codebooks}")
        if codebook_size < 2 or codebook_size & (codebook_size - 1):
            raise ValueError(f"codebook_size must be a power of 2 (EnCodec packs codes in bits), got {codebook_size}")
        kwargs = _tiny_config_kwargs(n_codebooks, codebook_size)
        key = (int(seed), int(n_codebooks), int(codebook_size))
        if key not in _TINY_CACHE:
            EncodecConfig, EncodecModel = _import_transformers()
            # One thread while building: the codebooks come from the encoder's outputs, whose float
            # rounding (and so a few entries) would otherwise depend on the caller's thread count.
            threads = torch.get_num_threads()
            torch.set_num_threads(1)
            try:
                with torch.random.fork_rng(devices=[]):
                    torch.manual_seed(seed)
                    model = EncodecModel(EncodecConfig(**kwargs)).eval()
                _init_codebooks_from_data(model, seed)
            finally:
                torch.set_num_threads(threads)
            while len(_TINY_CACHE) >= _TINY_CACHE_SIZE:
                _TINY_CACHE.pop(next(iter(_TINY_CACHE)))
            _TINY_CACHE[key] = model
        model = copy.deepcopy(_TINY_CACHE[key])  # callers may train or move their copy
        bandwidth = float(kwargs["target_bandwidths"][0])
        identity = {
            "tiny_random": True,
            "seed": int(seed),
            "n_codebooks": int(n_codebooks),
            "codebook_size": int(codebook_size),
            "config": copy.deepcopy(kwargs),
            "subfolder": SUBFOLDER,
        }
        codec = cls(model, bandwidth, identity, device)
        assert codec.n_codebooks == n_codebooks, (codec.n_codebooks, n_codebooks)
        return codec

    # ------------------------------------------------------------------ Codec protocol

    def encode(self, wav: np.ndarray | torch.Tensor, sr: int) -> torch.Tensor:
        """Mono ``[N]`` (or ``[1, N]``) waveform at ``sr`` Hz -> codes ``[K, T]`` int64 on CPU.

        Resamples to :attr:`sample_rate` first; ``T = ceil(N' / hop)`` with ``N'`` the
        resampled length.
        """
        return self.encode_batch([wav], sr)[0]

    # decode(codes, residual=r): codebook 0's latent + r (the NAR's expected entries, nar_decode.py)
    supports_residual = True

    def decode(self, codes: torch.Tensor | np.ndarray, residual: torch.Tensor | None = None) -> np.ndarray:
        """Codes ``[K, T]`` -> float32 mono waveform ``[T * hop]`` at :attr:`sample_rate`.

        Fewer than :attr:`n_codebooks` rows decode the coarser codebooks only. ``residual``
        ``[D, T]`` (a latent): decode codebook 0's latent plus it instead of the sum over all rows.
        """
        if residual is None:
            return self.decode_batch([codes])[0]
        c = self._check_codes(codes, 0)
        n = c.shape[1]
        dim = int(self.model.quantizer.layers[0].codebook.embed.shape[-1])
        if tuple(residual.shape) != (dim, n):
            raise ValueError(f"residual must be [D, T] = [{dim}, {n}], got {list(residual.shape)}")
        if n == 0:
            return np.zeros(0, dtype=np.float32)
        with torch.inference_mode():
            latent = self.model.quantizer.decode(c[:1, None].to(self.device))  # (1, D, T)
            latent = latent + residual[None].to(self.device, latent.dtype)
            audio = self.model.decoder(latent)[0, 0].float().cpu().numpy()
        return np.ascontiguousarray(audio[: n * self.hop_length], dtype=np.float32)

    def identity(self) -> dict:
        """``{"type": "encodec", "name_or_path": ..., "bandwidth": ...}`` for hub/local models,
        ``{"type": "encodec", "tiny_random": True, "seed", "config", ...}`` for the tiny one."""
        return copy.deepcopy(self._identity)

    def save(self, folder: Path) -> None:
        """Write weights to ``folder/encodec/`` for tiny and local models; nothing for hub names.

        Hub models are found again through the Hugging Face cache by name; a tiny or
        local model's weights are copied so the model folder is self-contained.
        """
        if "subfolder" not in self._identity:
            return
        target = Path(folder) / self._identity["subfolder"]
        target.mkdir(parents=True, exist_ok=True)
        with _no_progress_bars():
            self.model.save_pretrained(target, **_safetensors_kwargs(self.model))

    # ------------------------------------------------------------------ batched helpers

    def encode_batch(
        self, wavs: Sequence[np.ndarray | torch.Tensor], sr: int, batch_size: int = 16
    ) -> list[torch.Tensor]:
        """Encode several mono waveforms (all at ``sr`` Hz) -> list of codes ``[K, T_i]``.

        Clips are sorted by length and run ``batch_size`` at a time, zero-padded; the
        result equals calling :meth:`encode` on each up to float rounding (see the
        module docstring).
        """
        from valle2.audio import resample

        clips = []
        for i, wav in enumerate(wavs):
            x = _as_mono(wav, f"audio {i} to encode")
            if sr != self.sample_rate:
                x = resample(x, sr, self.sample_rate)
            if x.shape[0] == 0:
                raise AudioError(f"cannot encode empty audio (clip {i} has 0 samples)")
            clips.append(x)
        n_frames = [math.ceil(len(x) / self.hop_length) for x in clips]
        out: list[torch.Tensor | None] = [None] * len(clips)
        for idx in self._batches(n_frames, batch_size):
            t_max = max(n_frames[i] for i in idx)
            batch = np.zeros((len(idx), 1, t_max * self.hop_length), dtype=np.float32)  # (B, 1, T*hop)
            for row, i in enumerate(idx):
                batch[row, 0, : len(clips[i])] = clips[i]
            with torch.inference_mode():
                x = torch.from_numpy(batch).to(self.device)
                codes = self.model.encode(x, bandwidth=self.bandwidth, return_dict=True).audio_codes[0]  # (B, K, T)
                codes = codes.to("cpu", torch.int64)
            for row, i in enumerate(idx):
                out[i] = codes[row, :, : n_frames[i]].clone()
        return out  # type: ignore[return-value]

    def decode_batch(self, codes_list: Sequence[torch.Tensor | np.ndarray], batch_size: int = 16) -> list[np.ndarray]:
        """Decode several codes ``[K, T_i]`` -> list of float32 waveforms ``[T_i * hop]``.

        All items must have the same K. Padded batches equal one-by-one decoding.
        """
        items = [self._check_codes(c, i) for i, c in enumerate(codes_list)]
        if len({c.shape[0] for c in items}) > 1:
            raise ValueError(f"decode_batch needs the same number of codebooks in every item, got {[c.shape[0] for c in items]}")
        n_frames = [c.shape[1] for c in items]
        out: list[np.ndarray | None] = [None] * len(items)
        for i, t in enumerate(n_frames):
            if t == 0:
                out[i] = np.zeros(0, dtype=np.float32)
        todo = [i for i, t in enumerate(n_frames) if t > 0]
        order = self._batches([n_frames[i] for i in todo], batch_size)
        for local in order:
            idx = [todo[j] for j in local]
            t_max = max(n_frames[i] for i in idx)
            k = items[idx[0]].shape[0]
            batch = torch.zeros((len(idx), k, t_max), dtype=torch.int64)  # (B, K, T)
            for row, i in enumerate(idx):
                batch[row, :, : n_frames[i]] = items[i]
            with torch.inference_mode():
                audio = self.model.decode(batch[None].to(self.device), [None], return_dict=True).audio_values
                audio = audio[:, 0].float().cpu().numpy()  # (B, T*hop)
            for row, i in enumerate(idx):
                out[i] = np.ascontiguousarray(audio[row, : n_frames[i] * self.hop_length], dtype=np.float32)
        return out  # type: ignore[return-value]

    def _batches(self, lengths: list[int], batch_size: int) -> list[list[int]]:
        """Indices grouped into batches of similar length; alone where padding would not be exact."""
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        order = sorted(range(len(lengths)), key=lambda i: lengths[i])
        if not self._causal:
            return [[i] for i in order]
        alone = [[i] for i in order if lengths[i] < self._min_batch_frames]
        rest = [i for i in order if lengths[i] >= self._min_batch_frames]
        return alone + [rest[i : i + batch_size] for i in range(0, len(rest), batch_size)]

    def _check_codes(self, codes, i: int) -> torch.Tensor:
        c = torch.as_tensor(codes)
        if c.ndim != 2:
            raise ValueError(f"codes must be [K, T]; item {i} has shape {tuple(c.shape)}")
        if c.dtype.is_floating_point or c.dtype == torch.bool:
            raise ValueError(f"codes must be integers; item {i} has dtype {c.dtype}")
        if not 1 <= c.shape[0] <= self.n_codebooks:
            raise ValueError(f"codes have {c.shape[0]} codebooks; this EnCodec decodes 1-{self.n_codebooks}")
        c = c.to("cpu", torch.int64)
        if c.numel() and (int(c.min()) < 0 or int(c.max()) >= self.codebook_size):
            raise ValueError(
                f"codes must be in [0, {self.codebook_size}); item {i} has values in [{int(c.min())}, {int(c.max())}]"
            )
        return c


# ---------------------------------------------------------------------- loading helpers


def load_from_identity(identity: dict, folder: Path | None = None, device: str | torch.device = "cpu") -> EncodecCodec:
    """Rebuild the codec described by ``identity`` (the ``load_codec`` factory for "encodec").

    Weights saved by :meth:`EncodecCodec.save` in ``folder`` take precedence; otherwise a
    tiny model is rebuilt from its seed and a pretrained one is loaded by name or path.
    """
    bandwidth = float(identity.get("bandwidth", 6.0))
    sub = identity.get("subfolder")
    saved = Path(folder) / sub if folder is not None and sub else None
    if saved is not None and (saved / "config.json").is_file():
        return EncodecCodec(_load_folder(saved), bandwidth, _strip(identity), device)
    if identity.get("tiny_random"):
        return EncodecCodec.tiny_random(
            seed=int(identity.get("seed", 0)),
            n_codebooks=int(identity.get("n_codebooks", 4)),
            codebook_size=int(identity.get("codebook_size", 64)),
            device=device,
        )
    name = identity.get("name_or_path")
    if not name:
        raise ModelFileError(f"EnCodec identity has neither 'name_or_path' nor 'tiny_random': {identity}")
    if saved is not None and not Path(name).expanduser().is_dir():
        raise ModelFileError(
            f"model folder '{folder}' lacks its EnCodec weights ('{sub}/config.json') and the original "
            f"folder '{name}' is gone; copy the whole model folder, including '{sub}/'"
        )
    return EncodecCodec.from_pretrained(name, bandwidth=bandwidth, device=device)


def _strip(identity: dict) -> dict:
    return {k: v for k, v in identity.items() if k not in ("type", "bandwidth")}


def _load_folder(path: Path):
    _, EncodecModel = _import_transformers()
    if not (path / "config.json").is_file():
        raise ModelFileError(
            f"EnCodec folder '{path}' has no config.json; it should hold a model written by "
            f"save_pretrained (config.json + model.safetensors)"
        )
    try:
        with _no_progress_bars():  # a bar for loading a few local tensors is noise on the CLI
            model = EncodecModel.from_pretrained(str(path), local_files_only=True)
    except (OSError, ValueError, KeyError, RuntimeError) as exc:
        raise ModelFileError(f"could not load EnCodec from folder '{path}': {_first_line(exc)}") from None
    return model.eval()


def _load_hub(name: str):
    _, EncodecModel = _import_transformers()
    offline_var = _offline_variable()
    cache_dir = _hub_cache_dir()
    try:
        model = EncodecModel.from_pretrained(name, local_files_only=offline_var is not None, cache_dir=cache_dir)
    except (OSError, ValueError, KeyError, RuntimeError) as exc:
        where = cache_dir or _default_hub_cache()
        if offline_var is not None:
            raise ModelFileError(
                f"EnCodec '{name}' is not in the local Hugging Face cache ({where}) and the hub is offline "
                f"({offline_var}=1); download it once with network access or pass a local folder"
            ) from None
        raise ModelFileError(
            f"could not get EnCodec '{name}' from the Hugging Face hub or the local cache ({where}): "
            f"{_first_line(exc)}; check the name and the network, or pass a local folder"
        ) from None
    return model.eval()


@contextlib.contextmanager
def _no_progress_bars():
    """Silence transformers' progress bars for the duration, then restore the caller's setting."""
    from transformers.utils import logging as hf_logging

    was_enabled = hf_logging.is_progress_bar_enabled()
    if was_enabled:
        hf_logging.disable_progress_bar()
    try:
        yield
    finally:
        if was_enabled:
            hf_logging.enable_progress_bar()


def _offline_variable() -> str | None:
    """The environment variable that makes the hub offline, read now (not at import time)."""
    for var in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE"):
        if os.environ.get(var, "").strip().upper() in ("1", "ON", "YES", "TRUE"):
            return var
    try:
        from huggingface_hub import constants

        if getattr(constants, "HF_HUB_OFFLINE", False):
            return "HF_HUB_OFFLINE"
    except ImportError:  # pragma: no cover
        pass
    return None


def _hub_cache_dir() -> str | None:
    """HF_HUB_CACHE or HF_HOME/hub as set now; None lets huggingface_hub use its default."""
    if os.environ.get("HF_HUB_CACHE"):
        return os.environ["HF_HUB_CACHE"]
    if os.environ.get("HF_HOME"):
        return os.path.join(os.environ["HF_HOME"], "hub")
    return None


def _default_hub_cache() -> str:
    try:
        from huggingface_hub import constants

        return str(constants.HF_HUB_CACHE)
    except ImportError:  # pragma: no cover
        return "~/.cache/huggingface/hub"


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip() or type(exc).__name__
    return text.splitlines()[0].rstrip(".")


def _safetensors_kwargs(model) -> dict:
    # transformers 4.x takes safe_serialization=True; 5.x always writes safetensors and dropped the flag.
    params = inspect.signature(model.save_pretrained).parameters
    return {"safe_serialization": True} if "safe_serialization" in params else {}


def _as_mono(wav, what: str) -> np.ndarray:
    if isinstance(wav, torch.Tensor):
        wav = wav.detach().to("cpu", torch.float32).numpy()
    x = np.asarray(wav, dtype=np.float32)
    if x.ndim == 2 and x.shape[0] == 1:
        x = x[0]
    if x.ndim != 1:
        raise ValueError(f"{what} must be mono [N] or [1, N], got shape {x.shape}")
    if not np.isfinite(x).all():
        raise AudioError(f"{what} contains NaN or infinite samples")
    return x


# ---------------------------------------------------------------------- the tiny random model


def _tiny_config_kwargs(n_codebooks: int, codebook_size: int) -> dict:
    kwargs = dict(TINY_CONFIG, codebook_size=codebook_size)
    hop = int(np.prod(kwargs["upsampling_ratios"]))
    frame_rate = math.ceil(kwargs["sampling_rate"] / hop)  # EncodecConfig.frame_rate
    bits = math.ceil(math.log2(codebook_size))
    bps = n_codebooks * bits * frame_rate  # an integer number of bits per second
    # transformers floors bandwidth*1000/(bits*frame_rate); nudge up if bps/1000 rounds below.
    for bandwidth in (bps / 1000, (bps + 0.5) / 1000):
        if math.floor(bandwidth * 1000 / (bits * frame_rate)) == n_codebooks and int(
            1000 * bandwidth // (frame_rate * bits)
        ) == n_codebooks:
            break
    kwargs["target_bandwidths"] = [bandwidth]
    return kwargs


@torch.no_grad()
def _init_codebooks_from_data(model, seed: int) -> None:
    """Fill each residual codebook with Gaussian samples matched to what it will quantise.

    transformers initialises codebooks to zeros, which maps every frame to code 0.
    Layer by layer, the encoder's residual on 4 s of seeded noise gives a per-dimension
    mean and std; entries drawn from that Gaussian cover the residuals (codes use the
    whole codebook) and, unlike entries copied from data, are never near-duplicates,
    so float rounding almost never changes which entry is nearest.
    """
    g = torch.Generator().manual_seed(seed)
    size = model.config.codebook_size
    # Noise in 40 ms segments of random loudness (-46..-6 dBFS), so the latent sees a range of levels.
    n_seg = 100
    gains = 10 ** (-(torch.rand(n_seg, generator=g) * 40 + 6) / 20)
    wav = torch.randn(n_seg * 960, generator=g) * gains.repeat_interleave(960)
    latent = model.encoder(wav.view(1, 1, -1))  # (1, D, T)
    residual = latent[0].T.contiguous()  # (T, D)
    for layer in model.quantizer.layers:
        mean, std = residual.mean(0), residual.std(0)
        embed = mean + std * torch.randn(size, residual.shape[1], generator=g)  # (V, D)
        book = layer.codebook
        book.embed.copy_(embed)
        book.embed_avg.copy_(embed)
        book.cluster_size.fill_(1.0)
        book.inited.fill_(1.0)
        quantized = layer.decode(layer.encode(residual.T[None]))  # (1, D, T)
        residual = residual - quantized[0].T
