"""``ServeConfig``: everything the server can be told, in one frozen dataclass.

Sources, later ones winning: the defaults below, a YAML/JSON file (``valle2 serve
--config serve.yaml``, keys named as the fields), then command-line flags. API keys
are the union of the file's ``api_keys`` and the comma-separated env var
``VALLE2_API_KEYS``; with none, the server refuses to start unless ``auth_disabled``
(``--no-auth``) says, explicitly, that it is for local use.
"""

from __future__ import annotations

import dataclasses
import json
import os
from dataclasses import dataclass, field
from pathlib import Path

from valle2.errors import Valle2Error

API_KEYS_ENV = "VALLE2_API_KEYS"

# Container types libsndfile decodes; the browser page converts its recordings to WAV.
DEFAULT_AUDIO_TYPES = ("wav", "flac", "ogg", "mp3")


def default_data_dir() -> Path:
    """``$VALLE2_HOME/server``, beside the safety layer's consent store and audit log."""
    from valle2.safety.consent import valle2_home

    return valle2_home() / "server"


@dataclass(frozen=True)
class ServeConfig:
    model: str = "default"
    device: str = "cpu"
    host: str = "127.0.0.1"
    port: int = 8000
    # Engine: sentences of all requests are decoded together, up to max_batch at a time;
    # the first waiting sentence waits at most max_wait_ms for others to join it.
    max_batch: int = 16
    max_wait_ms: float = 25.0
    queue_size: int = 64  # requests admitted at once (waiting or decoding); the next gets 429
    request_timeout_s: float = 300.0
    # Limits
    max_input_chars: int = 4096  # OpenAI's limit
    max_upload_bytes: int = 20 * 1024 * 1024  # whole request body of a voice upload
    allowed_audio_types: tuple[str, ...] = DEFAULT_AUDIO_TYPES
    # Auth
    api_keys: tuple[str, ...] = ()
    auth_disabled: bool = False
    # Storage and tools
    data_dir: Path = field(default_factory=default_data_dir)
    ffmpeg: str | None = "ffmpeg"  # for mp3/opus/aac; None turns those formats off
    torch_threads: int | None = None

    def __post_init__(self):
        checks = [
            (self.max_batch >= 1, f"max_batch is {self.max_batch}; must be >= 1"),
            (self.max_wait_ms >= 0, f"max_wait_ms is {self.max_wait_ms}; must be >= 0"),
            (self.queue_size >= 1, f"queue_size is {self.queue_size}; must be >= 1"),
            (self.request_timeout_s > 0, f"request_timeout_s is {self.request_timeout_s}; must be > 0"),
            (self.max_input_chars >= 1, f"max_input_chars is {self.max_input_chars}; must be >= 1"),
            (self.max_upload_bytes >= 1024, f"max_upload_bytes is {self.max_upload_bytes}; must be >= 1024"),
            (0 <= self.port <= 65535, f"port is {self.port}; must be 0-65535"),
        ]
        for ok, message in checks:
            if not ok:
                raise Valle2Error(message)
        unknown = set(self.allowed_audio_types) - set(DEFAULT_AUDIO_TYPES)
        if unknown:
            raise Valle2Error(f"allowed_audio_types has {sorted(unknown)}; choose from {list(DEFAULT_AUDIO_TYPES)}")
        object.__setattr__(self, "data_dir", Path(self.data_dir).expanduser())
        object.__setattr__(self, "api_keys", tuple(k for k in self.api_keys if k))
        object.__setattr__(self, "allowed_audio_types", tuple(self.allowed_audio_types))

    @classmethod
    def load(cls, path: str | os.PathLike | None = None, *, env: dict | None = None, **overrides) -> "ServeConfig":
        """Defaults <- file (YAML or JSON) <- ``overrides`` (None values ignored); keys from env added."""
        values: dict = {}
        if path is not None:
            values.update(_read_file(Path(path)))
        values.update({k: v for k, v in overrides.items() if v is not None})
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = set(values) - names
        if unknown:
            raise Valle2Error(f"unknown server setting(s) {sorted(unknown)}; known: {sorted(names)}")
        env = os.environ if env is None else env
        env_keys = [k.strip() for k in env.get(API_KEYS_ENV, "").split(",") if k.strip()]
        file_keys = values.get("api_keys") or []
        if isinstance(file_keys, str):
            file_keys = [file_keys]
        values["api_keys"] = tuple(dict.fromkeys([*file_keys, *env_keys]))
        for name in ("allowed_audio_types",):
            if name in values:
                values[name] = tuple(values[name])
        try:
            return cls(**values)
        except TypeError as e:
            raise Valle2Error(f"invalid server settings: {e}") from None

    def check_auth(self) -> None:
        """Refuse to run without keys unless auth was switched off on purpose."""
        if not self.api_keys and not self.auth_disabled:
            raise Valle2Error(
                f"no API keys: set {API_KEYS_ENV}=key1,key2, put api_keys in the --config file, "
                "or pass --no-auth to run without authentication (local use only)"
            )


def _read_file(path: Path) -> dict:
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as e:
        raise Valle2Error(f"cannot read server config {str(path)!r}: {e.strerror}") from None
    try:
        if path.suffix == ".json":
            data = json.loads(text)
        else:
            import yaml

            data = yaml.safe_load(text)
    except Exception as e:  # yaml and json raise different error types; both mean "not parseable"
        raise Valle2Error(f"server config {str(path)!r} is not valid {path.suffix.lstrip('.') or 'YAML'}: {e}") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise Valle2Error(f"server config {str(path)!r} must be a mapping of settings, got {type(data).__name__}")
    return data
