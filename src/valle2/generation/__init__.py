"""Decoding: sampling rules (nucleus, repetition-aware), KV-cached AR decoding, NAR passes, the pipeline."""
