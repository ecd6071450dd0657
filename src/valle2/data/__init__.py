"""Data: corpus building (sentences, voices, synthesis) and Lhotse recipes (pure functions)."""
