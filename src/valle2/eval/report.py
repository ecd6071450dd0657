"""Evaluation report: per-system statistics with 95 % confidence intervals, as tables and a plot.

From the rows of a run (:mod:`valle2.eval.run`, one JSON object per scored utterance) it
builds one group per (setting, system), in the order of the paper's Table 1::

    ground-truth        the original recording, scored like an output
    codec               the original encoded and decoded by the model's codec (upper bound
                        for the model: it cannot sound better than its codec)
    model               the model, one sample (sample 0 of every utterance)
    model-best-of-N     the model, best of N samples by the run's selection (N > 1 only)

For each group and metric: the mean over utterances and a 95 % confidence interval from
the **t-distribution**, ``mean +- t(0.975, n-1) * s / sqrt(n)`` (s: sample standard
deviation). That is the usual interval for a mean; per-utterance WER is skewed (many
zeros, a few large values), so for small n the interval is only approximate. The
corpus WER (all errors / all reference words, as the paper reports it) is given
beside the per-utterance mean, without an interval.

Outputs (:func:`write_report`): ``summary.json``, ``summary.md`` and ``summary.png``
(per-speaker mean WER and SIM of the ground truth and the model; matplotlib's Agg
canvas, no display needed). The plot is skipped with a warning when matplotlib is not
installed.
"""

from __future__ import annotations

import json
import logging
import math
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np

__all__ = ["Stat", "Group", "Summary", "mean_ci", "summarize", "markdown_table", "write_report", "plot_per_speaker"]

logger = logging.getLogger(__name__)

CONFIDENCE = 0.95
CI_METHOD = "t-distribution (mean +- t(0.975, n-1) * s / sqrt(n))"

# (row field, label in the markdown table, scale for display, decimals)
METRICS = (
    ("wer", "WER %", 100.0, 1),
    ("sim_prompt", "SIM", 1.0, 3),
    ("sim_reference", "SIM-ref", 1.0, 3),
    ("dnsmos_ovrl", "DNSMOS", 1.0, 2),
    ("duration_ratio", "dur. ratio", 1.0, 2),
    ("rtf", "RTF", 1.0, 3),
    ("synth_seconds", "synth s/utt", 1.0, 2),
    ("score_seconds", "score s/utt", 1.0, 2),
)
SYSTEM_ORDER = ("ground-truth", "codec", "model")
SYSTEM_LABELS = {"ground-truth": "Ground truth", "codec": "Codec resynthesis", "model": "model, 1 sample"}


@dataclass(frozen=True)
class Stat:
    """Mean of ``n`` values and its 95 % confidence interval (``None`` bounds when n < 2)."""

    n: int
    mean: float | None
    std: float | None
    ci_low: float | None
    ci_high: float | None

    @property
    def half_width(self) -> float | None:
        return None if self.ci_high is None or self.mean is None else self.ci_high - self.mean


def mean_ci(values: Iterable[float | None], confidence: float = CONFIDENCE) -> Stat:
    """Mean and t-distribution confidence interval of the finite values (``None``/NaN skipped)."""
    x = np.asarray([v for v in values if v is not None and math.isfinite(v)], dtype=np.float64)
    n = len(x)
    if n == 0:
        return Stat(0, None, None, None, None)
    mean = float(x.mean())
    if n == 1:
        return Stat(1, mean, None, None, None)
    from scipy.special import stdtrit  # the t quantile; scipy.stats takes seconds to import

    std = float(x.std(ddof=1))
    half = float(stdtrit(n - 1, 0.5 + confidence / 2)) * std / math.sqrt(n)
    return Stat(n, mean, std, mean - half, mean + half)


@dataclass
class Group:
    """The statistics of one system in one setting."""

    setting: str
    system: str  # ground-truth | codec | model | model-best-of-N
    label: str
    n: int
    n_failed: int
    corpus_wer: float | None
    stats: dict[str, Stat] = field(default_factory=dict)

    def to_dict(self) -> dict:
        d = asdict(self)
        d["stats"] = {k: asdict(v) for k, v in self.stats.items()}
        return d


@dataclass
class Summary:
    """Everything ``summary.json`` holds: the groups, the run's settings and where the files are."""

    groups: list[Group]
    meta: dict
    files: dict[str, str] = field(default_factory=dict)

    def group(self, setting: str, system: str) -> Group:
        for g in self.groups:
            if g.setting == setting and g.system == system:
                return g
        have = ", ".join(f"{g.setting}/{g.system}" for g in self.groups) or "none"
        raise KeyError(f"no group {setting}/{system} in the summary (have: {have})")

    def to_dict(self) -> dict:
        return {
            "confidence": CONFIDENCE,
            "ci_method": CI_METHOD,
            "meta": self.meta,
            "groups": [g.to_dict() for g in self.groups],
            "files": self.files,
        }


def _corpus_wer(rows: Sequence[dict]) -> float | None:
    words = sum(r.get("wer_words") or 0 for r in rows)
    errors = sum(r.get("wer_errors") or 0 for r in rows)
    return errors / words if words else None


def _group(setting: str, system: str, label: str, rows: list[dict]) -> Group:
    ok = [r for r in rows if not r.get("error")]
    return Group(
        setting=setting,
        system=system,
        label=label,
        n=len(ok),
        n_failed=len(rows) - len(ok),
        corpus_wer=_corpus_wer(ok),
        stats={m: mean_ci(r.get(m) for r in ok) for m, *_ in METRICS if any(r.get(m) is not None for r in ok)},
    )


def summarize(rows: Sequence[dict], meta: dict | None = None) -> Summary:
    """Group ``rows`` by setting and system and compute every metric's mean and 95 % CI.

    Model rows of sample 0 form the single-sample group; rows marked ``selected`` with
    ``n_samples > 1`` form the best-of-N group.
    """
    meta = dict(meta or {})
    groups = []
    for setting in sorted({r["setting"] for r in rows}):
        in_setting = [r for r in rows if r["setting"] == setting]
        for system in SYSTEM_ORDER:
            sys_rows = [r for r in in_setting if r["system"] == system]
            if system == "model":
                single = [r for r in sys_rows if r.get("sample", 0) == 0]
                if single:
                    groups.append(_group(setting, "model", SYSTEM_LABELS["model"], single))
                for n in sorted({r.get("n_samples", 1) for r in sys_rows} - {1}):
                    best = [r for r in sys_rows if r.get("n_samples") == n and r.get("selected")]
                    # An utterance whose generation failed has no selected row; count its failure here too.
                    failed = {r["id"] for r in sys_rows if r.get("n_samples") == n and r.get("error")}
                    failed -= {r["id"] for r in best}
                    best += [{"error": "failed", "id": i} for i in sorted(failed)]
                    select = meta.get("select", "selection")
                    groups.append(_group(setting, f"model-best-of-{n}", f"model, best of {n} by {select}", best))
            elif sys_rows:
                groups.append(_group(setting, system, SYSTEM_LABELS[system], sys_rows))
    return Summary(groups=groups, meta=meta)


# ----------------------------------------------------------------------------- markdown


def _fmt(stat: Stat | None, scale: float, decimals: int) -> str:
    if stat is None or stat.mean is None:
        return "–"
    text = f"{stat.mean * scale:.{decimals}f}"
    if stat.half_width is not None:
        text += f" ± {stat.half_width * scale:.{decimals}f}"
    return text


def markdown_table(summary: Summary) -> str:
    """The summary as a markdown table: one line per (setting, system), mean ± 95 % CI half-width."""
    shown = [m for m in METRICS if any(m[0] in g.stats for g in summary.groups)]
    head = ["setting", "system", "n"]
    for name, label, *_ in shown:
        head.append(label)
        if name == "wer":
            head.append("corpus WER %")
    lines = ["| " + " | ".join(head) + " |", "|" + "|".join(["---", "---"] + ["---:"] * (len(head) - 2)) + "|"]
    for g in summary.groups:
        n = f"{g.n}" + (f" ({g.n_failed} failed)" if g.n_failed else "")
        cells = [g.setting, g.label, n]
        for name, _, scale, dec in shown:
            cells.append(_fmt(g.stats.get(name), scale, dec))
            if name == "wer":
                cells.append("–" if g.corpus_wer is None else f"{100 * g.corpus_wer:.1f}")
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _markdown(summary: Summary) -> str:
    m = summary.meta
    parts = [f"# Evaluation of {m.get('model', 'the model')}", ""]
    described = [
        ("list", "list"),
        ("asr", "ASR"),
        ("speaker", "speaker encoder"),
        ("quality", "quality"),
        ("samples", "samples per utterance"),
        ("select", "best-of-N selection"),
        ("seed", "seed"),
    ]
    for key, label in described:
        if m.get(key) is not None:
            parts.append(f"- {label}: `{m[key]}`")
    parts += [
        "",
        markdown_table(summary),
        "",
        f"Mean ± half-width of the {CONFIDENCE:.0%} confidence interval, {CI_METHOD}. "
        "WER % is the mean of per-utterance WERs; corpus WER % is all errors over all reference words. "
        "SIM: speaker similarity of the output to the prompt; SIM-ref: to the original utterance. "
        "Ground truth and codec rows are the whole original utterance against its full transcript; "
        "model rows are the generated speech against the text it was asked to say "
        "(continuation: the transcript after the prompt). "
        "Compare the model with the ground truth of the same backends, not with the paper's numbers.",
        "",
    ]
    return "\n".join(parts)


# ----------------------------------------------------------------------------- plot


def plot_per_speaker(rows: Sequence[dict], path: str | os.PathLike) -> Path | None:
    """Per-speaker mean WER and SIM (ground truth vs the model's kept output), one panel row per setting.

    The model bars use the selected sample (best of N; sample 0 when N = 1). Returns the
    path, or ``None`` when matplotlib is not installed or there is nothing to plot.
    """
    try:
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
    except ImportError:
        logger.warning('matplotlib is not installed, so no plot was drawn: pip install "valle2[eval]" '
                       "(or: pip install matplotlib)")
        return None
    ok = [r for r in rows if not r.get("error")]
    settings = sorted({r["setting"] for r in ok})
    if not settings:
        return None
    n_best = max((r.get("n_samples", 1) for r in ok if r["system"] == "model"), default=1)
    model_label = "model" if n_best == 1 else f"model, best of {n_best}"
    series = (("ground-truth", "ground truth", "#888888"), ("model", model_label, "#1f77b4"))
    n_speakers = max(len({r["speaker"] for r in ok if r["setting"] == s}) for s in settings)
    col_width = min(max(4.0, 0.3 * n_speakers + 1.5), 24.0)
    fig = Figure(figsize=(col_width * len(settings), 6.5), layout="constrained")
    FigureCanvasAgg(fig)
    axes = fig.subplots(2, len(settings), squeeze=False)  # rows: WER, SIM; columns: settings
    for col, setting in enumerate(settings):
        rs = [r for r in ok if r["setting"] == setting]
        speakers = sorted({r["speaker"] for r in rs})
        x = np.arange(len(speakers))
        for row_i, (metric, label, scale) in enumerate((("wer", "WER %", 100.0), ("sim_prompt", "SIM", 1.0))):
            ax = axes[row_i, col]
            for k, (system, name, color) in enumerate(series):
                chosen = [r for r in rs if r["system"] == system and (system != "model" or r.get("selected"))]
                means = []
                for spk in speakers:
                    v = [r[metric] for r in chosen if r["speaker"] == spk and r.get(metric) is not None]
                    means.append(scale * float(np.mean(v)) if v else np.nan)
                ax.bar(x + (k - 0.5) * 0.4, means, width=0.4, label=name, color=color)
            ax.set_xticks(x, speakers, rotation=90 if len(speakers) > 8 else 0, fontsize=8)
            ax.set_ylabel(label)
            ax.set_title(f"{setting}: mean {label} per speaker", fontsize=10)
            ax.grid(axis="y", alpha=0.3)
            if metric == "sim_prompt":
                ax.set_ylim(min(0.0, ax.get_ylim()[0]), 1.0)
    handles, labels = axes[0, 0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="outside upper center", ncols=len(series), fontsize=9)
    path = Path(path)
    fig.savefig(path, dpi=100)
    return path


# ----------------------------------------------------------------------------- files


def _atomic_write(path: Path, text: str) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)


def write_report(summary: Summary, rows: Sequence[dict], out_dir: str | os.PathLike, *, plot: bool = True) -> Summary:
    """Write ``summary.json``, ``summary.md`` and (``plot``) ``summary.png`` into ``out_dir``."""
    out_dir = Path(out_dir)
    files = {"rows": str(out_dir / "rows.jsonl"), "json": str(out_dir / "summary.json"),
             "markdown": str(out_dir / "summary.md")}
    if plot:
        png = plot_per_speaker(rows, out_dir / "summary.png")
        if png is not None:
            files["plot"] = str(png)
    summary.files = files
    _atomic_write(out_dir / "summary.md", _markdown(summary))
    _atomic_write(out_dir / "summary.json", json.dumps(summary.to_dict(), indent=2, ensure_ascii=False) + "\n")
    return summary
