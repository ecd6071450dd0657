"""The demo bars over many seeds: one row per demo_bars.py run, their mean, and paired comparisons.

One seed of ``demo_bars.py`` draws 50 everyday sentences once each; its capped everyday WER moves by
±5 points from seed to seed (benchmarks/RESULTS.md, sessions 16 and 17). A decoding or a model is judged
on many seeds, and against a baseline on the *same* items (the same seeds give the same prompts, sentences
and per-item seeds), sentence by sentence::

    python benchmarks/bars_summary.py RUNS/bars_s{0,1,2,3,4}              # the bars over five seeds
    python benchmarks/bars_summary.py NEW_s{0,1,2} --base OLD_s{0,1,2}    # and paired, run by run

Per run: everyday ("natural") WER capped per sentence at 100 % and over all words, corpus WER capped, SIM
and rank-correct over the held-out outputs (natural + corpus), runaways (> 2x the expected length), empty
outputs and sentences that reached their length limit. Then the mean of the runs with its standard error,
the median, how many runs meet the WER bar, and rank-correct pooled over every output. ``--base`` adds a
two-sided sign test over the sentences whose capped WER differs (ties left out).
"""

from __future__ import annotations

import argparse
import json
import statistics
from collections import Counter
from math import comb
from pathlib import Path

WER_BAR = 0.25
RANK_BAR = 0.90
SETS = ("natural", "corpus")


def load_run(folder: Path) -> dict:
    """A demo_bars.py output folder -> {"name", "seed", "items": [item rows]}; a clear error if it is not one."""
    folder = Path(folder)
    items_path, summary_path = folder / "items.jsonl", folder / "summary.json"
    if not items_path.is_file():
        raise SystemExit(f"{folder}: no items.jsonl (not a finished demo_bars.py run)")
    items = []
    for n, line in enumerate(items_path.read_text().splitlines(), 1):
        if not line.strip():
            continue
        try:
            items.append(json.loads(line))
        except json.JSONDecodeError as e:
            raise SystemExit(f"{items_path}:{n}: not JSON ({e.msg})") from None
    seed = json.loads(summary_path.read_text()).get("seed") if summary_path.is_file() else None
    return {"name": folder.name, "seed": seed, "items": items}


def _capped(item) -> float:
    return min(float(item["wer"]), 1.0)


def summarise(sub: list[dict]) -> dict:
    """The figures of one set of demo_bars.py item rows (what its summary.json holds per set); {} for none."""
    from valle2.eval.wer import char_error_rate, wer_details

    if not sub:
        return {}
    refs, hyps = [r["text"] for r in sub], [r["hyp"] for r in sub]
    sims = [r["sim"] for r in sub if r["sim"] is not None]
    out = {
        "n": len(sub),
        "wer": wer_details(refs, hyps).wer,
        "wer_capped_mean": statistics.mean(map(_capped, sub)),
        "cer": char_error_rate(refs, hyps),
        "sim_mean": statistics.mean(sims) if sims else None,
        "sim_min": min(sims) if sims else None,
        "rank_correct": sum(r["rank_correct"] for r in sub) / len(sub),
        "nearest_prompt": dict(Counter(r["nearest_prompt"] for r in sub if r["nearest_prompt"])),
        "empty": sum(r["seconds"] == 0 for r in sub),
        "runaway_gt_2x": sum((r["duration_ratio"] or 0) > 2.0 for r in sub),
        "hit_limit_sentences": sum(sum(r["hit_limit"]) for r in sub),
        "sentences": sum(len(r["hit_limit"]) for r in sub),
        "duration_ratio_median": statistics.median(r["duration_ratio"] or 0 for r in sub),
        "duration_ratio_max": max(r["duration_ratio"] or 0 for r in sub),
        "rtf": sum(r["synth_s"] for r in sub) / max(sum(r["seconds"] for r in sub), 1e-9),
        "audio_s": sum(r["seconds"] for r in sub),
    }
    out["ground_truth_wer"] = wer_details(refs, [r["gt_hyp"] for r in sub]).wer
    out["ground_truth_cer"] = char_error_rate(refs, [r["gt_hyp"] for r in sub])
    gt_sims = [r["gt_sim"] for r in sub if r.get("gt_sim") is not None]
    out["ground_truth_sim_mean"] = statistics.mean(gt_sims) if gt_sims else None
    out["ground_truth_rank_correct"] = sum(r.get("gt_rank_correct", False) for r in sub) / len(sub)
    return out


def run_document(meta: dict, voices: list[str], rows: list[dict]) -> dict:
    """What demo_bars.py writes to summary.json: the run's settings (``meta``), then the summary of each set,
    of both held-out sets together, and of each voice's everyday and corpus sets, and the RTF over all items."""
    doc = dict(meta)
    for key in ("natural", "corpus", "reserved", "both", "per_voice", "all_rtf"):
        if key in doc:
            raise ValueError(f"the run's settings may not use the key {key!r}: the summary writes it")
    doc.update({
        "natural": summarise([r for r in rows if r["set"] == "natural"]),
        "corpus": summarise([r for r in rows if r["set"] == "corpus"]),
        "reserved": summarise([r for r in rows if r["set"] == "reserved"]),
        "both": summarise([r for r in rows if r["set"] in SETS]),
        "per_voice": {v: {k: summarise([r for r in rows if r["set"] == k and r["voice"] == v])
                          for k in SETS} for v in voices},
        "all_rtf": sum(r["synth_s"] for r in rows) / max(sum(r["seconds"] for r in rows), 1e-9),
    })
    return doc


def run_row(run: dict) -> dict:
    """One run's bars: the everyday and corpus sets, and the held-out outputs (both sets) for the voice."""
    doc = run_document({}, [], run["items"])  # the summaries demo_bars.py writes to summary.json
    nat, cor, held = doc["natural"], doc["corpus"], doc["both"]
    return {
        "name": run["name"], "seed": run["seed"],
        "natural_capped": nat.get("wer_capped_mean"),
        "natural_wer": nat.get("wer"),
        "corpus_capped": cor.get("wer_capped_mean"),
        "sim": held.get("sim_mean"),
        "rank_correct": held.get("rank_correct"),
        "outputs": held.get("n", 0),
        "runaway": held.get("runaway_gt_2x", 0),
        "empty": held.get("empty", 0),
        "at_limit": held.get("hit_limit_sentences", 0),
    }


def _mean(rows, key):
    vals = [r[key] for r in rows if r[key] is not None]
    return statistics.mean(vals) if vals else None


def aggregate(rows: list[dict]) -> dict:
    """Means over runs, the standard error and median of the everyday capped WER, pooled rank-correct."""
    caps = [r["natural_capped"] for r in rows if r["natural_capped"] is not None]
    outputs = sum(r["outputs"] for r in rows)
    return {
        "runs": len(rows),
        "natural_capped": statistics.mean(caps) if caps else None,
        "natural_capped_se": statistics.stdev(caps) / len(caps) ** 0.5 if len(caps) > 1 else None,
        "natural_capped_median": statistics.median(caps) if caps else None,
        "runs_meeting_wer_bar": sum(c <= WER_BAR for c in caps),
        "natural_wer": _mean(rows, "natural_wer"),
        "corpus_capped": _mean(rows, "corpus_capped"),
        "sim": _mean(rows, "sim"),
        "rank_correct_pooled": (sum(r["rank_correct"] * r["outputs"] for r in rows if r["outputs"]) / outputs
                                if outputs else None),
        "rank_correct_min": min((r["rank_correct"] for r in rows if r["rank_correct"] is not None), default=None),
        "runs_under_rank_bar": sum(r["rank_correct"] is not None and r["rank_correct"] < RANK_BAR for r in rows),
        "runaway": sum(r["runaway"] for r in rows),
        "empty": sum(r["empty"] for r in rows),
        "at_limit": sum(r["at_limit"] for r in rows),
    }


def sign_test(better: int, worse: int) -> float:
    """Two-sided exact sign test: the chance of a split at least this uneven if both were equally likely."""
    n = better + worse
    if n == 0:
        return 1.0
    tail = sum(comb(n, i) for i in range(min(better, worse) + 1)) / 2 ** n
    return min(1.0, 2 * tail)


def paired(base_runs: list[dict], cand_runs: list[dict]) -> dict:
    """Per set: sentences whose capped WER is lower / higher in the candidate, run i against base run i.

    Items are matched by their index ``i``; a candidate run may hold fewer sets than its base (``--sets``).
    The two must agree on each matched item's text and voice, or the comparison is refused.
    """
    if len(base_runs) != len(cand_runs):
        raise SystemExit(f"--base has {len(base_runs)} runs and the candidate {len(cand_runs)}: pair them run by run")
    out = {}
    for kind in SETS:
        better = worse = n = 0
        base_sum = cand_sum = 0.0
        for b, c in zip(base_runs, cand_runs):
            by_i = {x["i"]: x for x in b["items"] if x["set"] == kind}
            for y in (x for x in c["items"] if x["set"] == kind):
                x = by_i.get(y["i"])
                if x is None:
                    raise SystemExit(f"{c['name']} item {y['i']} has no partner in {b['name']}")
                if (x["text"], x["voice"]) != (y["text"], y["voice"]):
                    raise SystemExit(f"{c['name']} item {y['i']} is not the item of {b['name']} "
                                     f"({y['voice']} {y['text']!r} against {x['voice']} {x['text']!r}): "
                                     "were both run with the same --seed and sentences?")
                wa, wb = _capped(x), _capped(y)
                better += wb < wa
                worse += wb > wa
                n += 1
                base_sum += wa
                cand_sum += wb
        if n:
            out[kind] = {"n": n, "base_capped": base_sum / n, "cand_capped": cand_sum / n,
                         "better": better, "worse": worse, "p": sign_test(better, worse)}
    return out


def _pct(x) -> str:
    return "  -  " if x is None else f"{100 * x:5.1f}"


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("runs", nargs="+", type=Path, help="demo_bars.py output folders (one per seed)")
    ap.add_argument("--base", nargs="+", type=Path, default=None, help="baseline folders, in the same order")
    ap.add_argument("--json", type=Path, default=None, help="also write everything here")
    args = ap.parse_args(argv)

    runs = [load_run(p) for p in args.runs]
    rows = [run_row(r) for r in runs]
    agg = aggregate(rows)
    print("run                     seed  everyday capped  everyday words  corpus capped    SIM  rank  runaway empty at-limit")
    for r in rows:
        print(f"{r['name'][:22]:22s} {str(r['seed']):>5s}  {_pct(r['natural_capped']):>15s}  {_pct(r['natural_wer']):>14s}  "
              f"{_pct(r['corpus_capped']):>13s}  {r['sim'] or float('nan'):.3f} {_pct(r['rank_correct'])}  "
              f"{r['runaway']:7d} {r['empty']:5d} {r['at_limit']:8d}")
    se = f" ± {100 * agg['natural_capped_se']:.1f} (s.e.)" if agg["natural_capped_se"] is not None else ""
    print(f"\n{agg['runs']} runs: everyday WER capped {_pct(agg['natural_capped']).strip()} %{se}, median "
          f"{_pct(agg['natural_capped_median']).strip()} %, {agg['runs_meeting_wer_bar']} of {agg['runs']} runs "
          f"<= {100 * WER_BAR:.0f} %; over all words {_pct(agg['natural_wer']).strip()} %; corpus capped "
          f"{_pct(agg['corpus_capped']).strip()} %")
    print(f"SIM {agg['sim'] or float('nan'):.3f}; rank-correct pooled {_pct(agg['rank_correct_pooled']).strip()} % "
          f"(lowest run {_pct(agg['rank_correct_min']).strip()} %, {agg['runs_under_rank_bar']} runs under "
          f"{100 * RANK_BAR:.0f} %); runaway {agg['runaway']}, empty {agg['empty']}, at the length limit {agg['at_limit']}")
    result = {"rows": rows, "aggregate": agg}
    if args.base:
        cmp = paired([load_run(p) for p in args.base], runs)
        result["paired"] = cmp
        for kind, c in cmp.items():
            print(f"paired {kind:8s} ({c['n']} sentences): capped {100 * c['base_capped']:.1f} -> {100 * c['cand_capped']:.1f} %, "
                  f"{c['better']} better, {c['worse']} worse, sign test p {c['p']:.2g}")
    if args.json:
        args.json.write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
