"""Keys of the safety layer: the watermark key and the consent store's Ed25519 signing key.

Watermark key
    :func:`watermark_key` reads ``VALLE2_WATERMARK_KEY`` (hex, at least 16 bytes) and falls
    back to :data:`DEFAULT_WATERMARK_KEY`. The default key is **public** (it is in this
    file): with it anyone can detect valle2's mark, and anyone determined can also try to
    remove it. It protects against accidental or naive removal only. A deployment that
    wants a mark only it can check sets its own secret key (and keeps it secret).

Signing key
    Each consent store holds its own Ed25519 key, created on first use with file mode 0600
    (:func:`load_or_create_signing_key`). Records are signed with it and checked against its
    public half, so editing a record on disk is detected. Whoever can read the private key
    can forge records: protect the store like any credential.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from valle2.errors import Valle2Error

__all__ = [
    "DEFAULT_WATERMARK_KEY",
    "KeyFileError",
    "WATERMARK_KEY_ENV",
    "load_or_create_signing_key",
    "parse_hex_key",
    "public_key_hex",
    "watermark_key",
]

WATERMARK_KEY_ENV = "VALLE2_WATERMARK_KEY"
# Public by design (see the module docstring). Changing it orphans every mark made before.
DEFAULT_WATERMARK_KEY = bytes.fromhex("7079380583dc277fbe827a9ec06ea95e55823ba86c03105e5dfc0e0d7328d872")
MIN_KEY_BYTES = 16


class KeyFileError(Valle2Error):
    """A key that cannot be used: malformed hex, too short, unreadable or wrongly protected file."""


def parse_hex_key(text: str, *, what: str = "watermark key") -> bytes:
    """Bytes of a hex key (spaces and a leading ``0x`` allowed); at least 16 bytes."""
    cleaned = "".join(str(text).split()).lower().removeprefix("0x")
    try:
        key = bytes.fromhex(cleaned)
    except ValueError:
        raise KeyFileError(f"{what} is not valid hex: {text[:12]!r}...") from None
    if len(key) < MIN_KEY_BYTES:
        raise KeyFileError(f"{what} is {len(key)} bytes; need at least {MIN_KEY_BYTES} (32 hex digits)")
    return key


def watermark_key(env: dict | None = None) -> bytes:
    """The watermark key: ``$VALLE2_WATERMARK_KEY`` (hex) if set, else the public default."""
    value = (os.environ if env is None else env).get(WATERMARK_KEY_ENV, "").strip()
    return parse_hex_key(value, what=WATERMARK_KEY_ENV) if value else DEFAULT_WATERMARK_KEY


def load_or_create_signing_key(path: Path) -> Ed25519PrivateKey:
    """The Ed25519 key at ``path`` (PEM, PKCS#8), created with mode 0600 if missing.

    Creation uses ``O_CREAT | O_EXCL`` so two processes starting at once end up with the
    same key. An existing key file readable by group or others is refused: anyone who can
    read it can forge consent records.
    """
    path = Path(path)
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        key = Ed25519PrivateKey.generate()
        pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                serialization.NoEncryption())
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:
            pass  # another process created it first; load theirs below
        else:
            with os.fdopen(fd, "wb") as f:
                f.write(pem)
                f.flush()
                os.fsync(f.fileno())
            return key
    mode = path.stat().st_mode
    if os.name == "posix" and mode & (stat.S_IRWXG | stat.S_IRWXO):
        raise KeyFileError(f"signing key {str(path)!r} has mode {stat.S_IMODE(mode):04o}; "
                           f"it must be private to its owner: chmod 600 {path}")
    try:
        key = serialization.load_pem_private_key(path.read_bytes(), password=None)
    except (OSError, ValueError, TypeError) as exc:
        raise KeyFileError(f"cannot read signing key {str(path)!r}: {exc}") from exc
    if not isinstance(key, Ed25519PrivateKey):
        raise KeyFileError(f"signing key {str(path)!r} is not an Ed25519 key")
    return key


def public_key_hex(key: Ed25519PrivateKey | Ed25519PublicKey) -> str:
    public = key.public_key() if isinstance(key, Ed25519PrivateKey) else key
    return public.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw).hex()
