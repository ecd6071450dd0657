"""How many words of the robustness sentences does a training corpus's text contain?
(RESULTS.md, "The bundled demo model": corpora 1-3 know 311 words, corpus 4 19,227.)

    python benchmarks/scratch/vocab_coverage.py /work/data/corpus /work/data/corpus2 /work/data/corpus3 -- /work/data/corpus4
"""

import gzip
import json
import sys
from collections import Counter
from pathlib import Path

from valle2.eval.normalize import normalize_for_wer

ROBUST = Path(__file__).resolve().parents[1] / "data" / "robustness_sentences.txt"


def corpus_words(folders) -> Counter:
    words = Counter()
    for folder in folders:
        for f in Path(folder).glob("synth_supervisions_train*.jsonl.gz"):
            for line in gzip.open(f, "rt"):
                words.update(normalize_for_wer(json.loads(line)["text"]).split())
    return words


def main() -> None:
    groups = [g.split() for g in " ".join(sys.argv[1:]).split(" -- ")]
    test = Counter(w for line in ROBUST.read_text().splitlines() if line.strip() and not line.startswith("#")
                   for w in normalize_for_wer(line).split())
    for group in groups:
        seen = corpus_words(group)
        unseen = [w for w in test if w not in seen]
        print(f"{' + '.join(Path(g).name for g in group)}: {len(seen)} distinct words; robustness words unseen "
              f"{len(unseen)}/{len(test)} ({len(unseen) / len(test):.0%}), running words unseen "
              f"{sum(test[w] for w in unseen) / sum(test.values()):.0%}")


if __name__ == "__main__":
    main()
