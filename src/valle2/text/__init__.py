"""Text front end: normalisation, espeak-ng G2P, symbol table, sentence splitting.

``TextFrontend(SymbolTable.default(), "en-us").encode("Hello, Dr. Smith!")`` turns
text into the ids a model reads; :func:`split_sentences` cuts long text first.
"""

from valle2.text.frontend import TextFrontend
from valle2.text.g2p import Phonemizer
from valle2.text.normalize import normalize_text
from valle2.text.split import split_sentences
from valle2.text.symbols import SymbolTable

__all__ = ["normalize_text", "Phonemizer", "SymbolTable", "TextFrontend", "split_sentences"]
