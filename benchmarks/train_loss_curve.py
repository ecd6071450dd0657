"""Plot the loss curve of a training run from its ``metrics.jsonl``.

    PYTHONPATH=src python benchmarks/train_loss_curve.py runs/small --out docs/train_loss_small.png

Draws the AR and NAR training losses (per logging window) and their validation losses;
``--also RUN LABEL`` adds the validation losses of another run (e.g. the same training,
validated on another set). Prints a JSON summary (first and last values) as its last line.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("run", type=Path, help="train.out_dir of the run")
    ap.add_argument("--out", type=Path, required=True, help="PNG to write")
    ap.add_argument("--title", default=None)
    ap.add_argument("--label", default="valid", help="label of the run's own validation set")
    ap.add_argument("--also", nargs=2, action="append", default=[], metavar=("RUN", "LABEL"),
                    help="plot the validation losses of another run too")
    args = ap.parse_args()

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    def read(run: Path) -> list[dict]:
        return [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines() if line.strip()]

    rows = read(args.run)
    train = [r for r in rows if r["split"] == "train"]
    valid = [r for r in rows if r["split"] == "valid"]
    others = [([r for r in read(Path(run)) if r["split"] == "valid"], label) for run, label in args.also]
    fig, ax = plt.subplots(figsize=(10, 4.5))
    for key, color in (("ar_loss", "tab:blue"), ("nar_loss", "tab:orange")):
        name = key.split("_")[0].upper()
        if any(key in r for r in train):
            ax.plot([r["step"] for r in train if key in r], [r[key] for r in train if key in r], color=color,
                    alpha=0.5, label=f"train {name}")
        for rs, label, style in [(valid, args.label, "o-"), *[(o, lab, "s--") for o, lab in others]]:
            if any(key in r for r in rs):
                ax.plot([r["step"] for r in rs if key in r], [r[key] for r in rs if key in r], style, color=color,
                        label=f"{label} {name}")
    ax.set_xlabel("optimizer step")
    ax.set_ylabel("cross-entropy (nats)")
    ax.set_title(args.title or f"valle2 training loss: {args.run}")
    ax.grid(alpha=0.3)
    ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=8)
    fig.tight_layout()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(args.out, dpi=120)

    def ends(rs, key):
        vals = [r[key] for r in rs if key in r]
        return [round(vals[0], 3), round(vals[-1], 3)] if vals else None

    print(json.dumps({"out": str(args.out), "steps": train[-1]["step"] if train else 0,
                      "train_ar_loss": ends(train, "ar_loss"), "train_nar_loss": ends(train, "nar_loss"),
                      "valid_ar_loss": ends(valid, "ar_loss"), "valid_nar_loss": ends(valid, "nar_loss"),
                      "valid_acc_cb0": ends(valid, "acc/cb0"), "valid_acc_cb1": ends(valid, "acc/cb1"),
                      **{f"{label}_{k}": ends(o, k) for o, label in others
                         for k in ("ar_loss", "nar_loss", "acc/cb0", "acc/cb1")}}))


if __name__ == "__main__":
    main()
