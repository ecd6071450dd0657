"""Generic transformer pieces (attention, KV cache, blocks, positions); plain int/float arguments only."""

from valle2.modules.kv_cache import KVCache
from valle2.modules.transformer import AdaLayerNorm, Block, SelfAttention, Transformer, attention_mask, sinusoids

__all__ = ["AdaLayerNorm", "Block", "KVCache", "SelfAttention", "Transformer", "attention_mask", "sinusoids"]
