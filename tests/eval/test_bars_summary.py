"""benchmarks/bars_summary.py: the demo bars over many seeds, and paired comparisons (on hand-made runs)."""

import importlib.util
import json
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "bars_summary.py"


@pytest.fixture(scope="module")
def bars():
    spec = importlib.util.spec_from_file_location("bars_summary", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def item(i, kind, text, hyp, wer, *, voice="v1", rank=True, seconds=1.0, ratio=1.0, limit=False, sim=0.8):
    """A row as demo_bars.py writes it (its ground-truth fields: the text read back exactly)."""
    return {"i": i, "set": kind, "voice": voice, "text": text, "hyp": hyp, "wer": wer, "sim": sim,
            "rank_correct": rank, "nearest_prompt": voice if rank else "other", "seconds": seconds,
            "synth_s": 0.1 * seconds, "duration_ratio": ratio, "hit_limit": [limit],
            "gt_hyp": text, "gt_sim": 0.9, "gt_rank_correct": True}


def write_run(folder: Path, seed, items) -> Path:
    folder.mkdir(parents=True)
    (folder / "items.jsonl").write_text("".join(json.dumps(x) + "\n" for x in items))
    (folder / "summary.json").write_text(json.dumps({"seed": seed}))
    return folder


def test_a_run_row_and_the_mean_over_runs(bars, tmp_path):
    a = write_run(tmp_path / "a", 0, [
        item(0, "natural", "one two", "one two", 0.0),
        item(1, "natural", "three four five six", "a b c d e f g h", 2.0, ratio=2.5, limit=True),  # capped to 1
        item(2, "corpus", "seven eight", "seven", 0.5, rank=False, sim=0.6),
        item(3, "reserved", "nine", "", 1.0, rank=False, seconds=0.0),  # not a held-out output
    ])
    b = write_run(tmp_path / "b", 1, [
        item(0, "natural", "one two", "one too", 0.5),
        item(1, "natural", "three four five six", "three four five six", 0.0),
        item(2, "corpus", "seven eight", "seven eight", 0.0),
    ])
    rows = [bars.run_row(bars.load_run(p)) for p in (a, b)]
    ra, rb = rows
    assert ra["seed"] == 0 and ra["natural_capped"] == pytest.approx(0.5)     # (0 + min(2, 1)) / 2
    assert ra["natural_wer"] == pytest.approx(8 / 6)                          # 4 substitutions + 4 insertions, 6 words
    assert ra["corpus_capped"] == pytest.approx(0.5)
    assert ra["rank_correct"] == pytest.approx(2 / 3) and ra["outputs"] == 3
    assert ra["sim"] == pytest.approx((0.8 + 0.8 + 0.6) / 3)
    assert (ra["runaway"], ra["empty"], ra["at_limit"]) == (1, 0, 1)
    assert rb["natural_capped"] == pytest.approx(0.25) and rb["rank_correct"] == 1.0

    agg = bars.aggregate(rows)
    assert agg["runs"] == 2
    assert agg["natural_capped"] == pytest.approx(0.375)
    assert agg["natural_capped_se"] == pytest.approx(0.125)                   # stdev(0.5, 0.25) / sqrt(2)
    assert agg["runs_meeting_wer_bar"] == 1                                  # 0.25 meets the 25 % bar, 0.5 does not
    assert agg["rank_correct_pooled"] == pytest.approx(5 / 6)
    assert agg["runs_under_rank_bar"] == 1 and agg["runaway"] == 1


def test_paired_counts_sentences_and_refuses_other_items(bars, tmp_path):
    base = [bars.load_run(write_run(tmp_path / "base", 0, [
        item(0, "natural", "x", "y", 1.0), item(1, "natural", "p q", "p q", 0.0), item(2, "natural", "r", "s", 3.0),
        item(3, "corpus", "c", "d", 1.0)]))]
    # a natural-only candidate (--sets natural): item 2 stays capped at 1 on both sides, a tie
    cand = [bars.load_run(write_run(tmp_path / "cand", 0, [
        item(0, "natural", "x", "x", 0.0), item(1, "natural", "p q", "p", 0.5), item(2, "natural", "r", "t", 1.5)]))]
    out = bars.paired(base, cand)
    assert set(out) == {"natural"}
    nat = out["natural"]
    assert (nat["n"], nat["better"], nat["worse"]) == (3, 1, 1)
    assert nat["base_capped"] == pytest.approx(2 / 3) and nat["cand_capped"] == pytest.approx(1.5 / 3)
    assert nat["p"] == 1.0

    other = [bars.load_run(write_run(tmp_path / "other", 1, [item(0, "natural", "not x", "x", 1.0)]))]
    with pytest.raises(SystemExit, match="is not the item of"):
        bars.paired(base, other)
    with pytest.raises(SystemExit, match="pair them run by run"):
        bars.paired(base, cand + cand)


def test_sign_test(bars):
    assert bars.sign_test(0, 0) == 1.0
    assert bars.sign_test(5, 5) == 1.0
    assert bars.sign_test(10, 0) == pytest.approx(2 / 2 ** 10)
    assert bars.sign_test(169, 116) < 0.01 < bars.sign_test(68, 67)


def test_not_a_run_is_a_clear_error(bars, tmp_path):
    with pytest.raises(SystemExit, match="no items.jsonl"):
        bars.load_run(tmp_path)
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "items.jsonl").write_text('{"i": 0}\nnot json\n')
    with pytest.raises(SystemExit, match="items.jsonl:2: not JSON"):
        bars.load_run(bad)


def test_the_command_line_prints_the_bars(bars, tmp_path, capsys):
    run = write_run(tmp_path / "r", 3, [item(0, "natural", "a b", "a b", 0.0), item(1, "corpus", "c", "c", 0.0)])
    bars.main([str(run), "--base", str(run), "--json", str(tmp_path / "out.json")])
    text = capsys.readouterr().out
    assert "1 runs: everyday WER capped 0.0 %" in text and "1 of 1 runs <= 25 %" in text
    assert "rank-correct pooled 100.0 %" in text
    assert "paired natural  (1 sentences): capped 0.0 -> 0.0 %, 0 better, 0 worse" in text
    saved = json.loads((tmp_path / "out.json").read_text())
    assert saved["aggregate"]["runs"] == 1 and saved["paired"]["corpus"]["n"] == 1


def test_run_document_keeps_the_runs_settings_beside_the_per_voice_summaries(bars):
    rows = [item(0, "natural", "one two", "one two", 0.0, voice="v1"),
            item(1, "natural", "three four", "three", 0.5, voice="v2", rank=False),
            item(2, "corpus", "five six", "five six", 0.0, voice="v2"),
            item(3, "reserved", "seven", "", 1.0, voice="r1", rank=False)]
    doc = bars.run_document({"seed": 3, "utterances_per_voice": 6}, ["v1", "v2"], rows)
    assert doc["seed"] == 3 and doc["utterances_per_voice"] == 6  # the count is no longer overwritten
    assert set(doc["per_voice"]) == {"v1", "v2"}
    assert doc["per_voice"]["v1"]["natural"]["n"] == 1 and doc["per_voice"]["v1"]["corpus"] == {}
    assert doc["per_voice"]["v2"]["natural"]["wer"] == pytest.approx(0.5)
    assert doc["natural"]["n"] == 2 and doc["both"]["n"] == 3 and doc["reserved"]["n"] == 1
    assert doc["all_rtf"] == pytest.approx(0.1)
    with pytest.raises(ValueError, match="per_voice"):
        bars.run_document({"per_voice": 6}, ["v1"], rows)
