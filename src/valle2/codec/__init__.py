"""Speech codecs: waveform <-> discrete codes ``[K, T]``.

``Codec`` is the protocol (see ``base.py``); ``EncodecCodec`` wraps Meta's EnCodec via
transformers; ``load_codec`` rebuilds a codec from the ``identity()`` a model file
recorded, and ``register_codec`` plugs in other codec types. Importing this package
does not import transformers.
"""

from valle2.codec.base import Codec
from valle2.codec.encodec import EncodecCodec
from valle2.codec.registry import known_codec_types, load_codec, register_codec

__all__ = ["Codec", "EncodecCodec", "known_codec_types", "load_codec", "register_codec"]
