"""Model configuration: frozen dataclasses and the size presets (debug, small, paper)."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, replace

GROUP_SIZES = (1, 2, 4, 8)


@dataclass(frozen=True)
class TransformerConfig:
    dim: int
    n_layers: int
    n_heads: int
    ffn_dim: int
    dropout: float = 0.1


@dataclass(frozen=True)
class ModelConfig:
    n_text_tokens: int
    n_codebooks: int = 8  # K
    codebook_size: int = 1024  # V
    group_size: int = 2  # G
    prefix_lm: bool = True  # text attends bidirectionally within itself in the AR
    # Token embeddings: initialised N(0, 1/D) and multiplied by sqrt(D) on the way in (Vaswani et al.),
    # so token identity and the unit-scale sinusoidal positions start on an equal footing. Without
    # it (std 0.02, unscaled: configs written before this field) the positions were ~13x louder than
    # the phones after 2,000 steps of the demo recipe and neither model had begun to use the text.
    embed_scale: bool = True
    # NAR speaker conditioning: the mean of the prompt frames' summed code embeddings, through a
    # linear map, is added to the stage embedding that conditions every layer
    # (AdaLN). A lookup of (speaker, codebook 0) predicts codebook 1 far better than the NAR
    # learned to from attention alone (benchmarks/RESULTS.md, "NAR ceiling").
    nar_prompt_cond: bool = False
    # NAR progress encodings (models/nar.py): where each phone and frame sits within its segment
    # (prompt or target), so frames can find their phones; not in the paper.
    nar_progress: bool = False
    ar: TransformerConfig = field(default_factory=lambda: PRESETS["paper"])
    nar: TransformerConfig = field(default_factory=lambda: PRESETS["paper"])

    def __post_init__(self):
        if self.group_size not in GROUP_SIZES:
            raise ValueError(f"group_size is {self.group_size}; must be one of {GROUP_SIZES}")
        if self.n_codebooks < 2:
            raise ValueError(f"n_codebooks is {self.n_codebooks}; the NAR needs at least 2")

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "ModelConfig":
        d = dict(d)
        d.setdefault("embed_scale", False)  # configs saved before the field existed: the old behaviour
        d["ar"] = TransformerConfig(**d["ar"])
        d["nar"] = TransformerConfig(**d["nar"])
        return cls(**d)

    def with_preset(self, name: str) -> "ModelConfig":
        p = preset(name)
        return replace(self, ar=p, nar=p)


# Paper size "follows VALL-E": 12 layers, 16 heads, D = 1024, FFN 4096, dropout 0.1 (SPEC.md §2).
PRESETS: dict[str, TransformerConfig] = {
    "debug": TransformerConfig(dim=64, n_layers=2, n_heads=4, ffn_dim=128, dropout=0.0),
    "small": TransformerConfig(dim=256, n_layers=6, n_heads=4, ffn_dim=1024, dropout=0.1),
    "paper": TransformerConfig(dim=1024, n_layers=12, n_heads=16, ffn_dim=4096, dropout=0.1),
}


def preset(name: str) -> TransformerConfig:
    if name not in PRESETS:
        raise ValueError(f"unknown model size {name!r}; known: {', '.join(PRESETS)}")
    return PRESETS[name]
