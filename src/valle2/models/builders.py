"""Builders: a ModelConfig -> the AR and NAR modules (configs never reach inside modules)."""

from __future__ import annotations

from valle2.models.ar import ARModel
from valle2.models.config import ModelConfig
from valle2.models.nar import NARModel


def build_ar(c: ModelConfig) -> ARModel:
    return ARModel(
        n_text_tokens=c.n_text_tokens, codebook_size=c.codebook_size, group_size=c.group_size,
        dim=c.ar.dim, n_layers=c.ar.n_layers, n_heads=c.ar.n_heads, ffn_dim=c.ar.ffn_dim,
        dropout=c.ar.dropout, prefix_lm=c.prefix_lm, embed_scale=c.embed_scale,
    )


def build_nar(c: ModelConfig) -> NARModel:
    return NARModel(
        n_text_tokens=c.n_text_tokens, n_codebooks=c.n_codebooks, codebook_size=c.codebook_size,
        dim=c.nar.dim, n_layers=c.nar.n_layers, n_heads=c.nar.n_heads, ffn_dim=c.nar.ffn_dim,
        dropout=c.nar.dropout, embed_scale=c.embed_scale, prompt_cond=c.nar_prompt_cond,
        progress=c.nar_progress,
    )
