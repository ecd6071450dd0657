"""VALL-E 2 models: grouped-code AR (codebook 0) and NAR (codebooks 1..K-1), and the VallE2 container."""
