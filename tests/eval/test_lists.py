"""Evaluation lists: sources (LibriSpeech layout, folder, CSV, Lhotse), seeded selection in
both settings, prompt-text splitting, and the shareable list file."""

import json
import random
import shutil

import numpy as np
import pytest
import soundfile as sf

from valle2.errors import Valle2Error
from valle2.eval.lists import (
    EvalItem,
    Utterance,
    build_list,
    from_folder,
    from_lhotse,
    from_librispeech,
    load_list,
    read_list_header,
    save_list,
    spaced_subset,
    split_transcript,
)

SR = 8000
WORDS = "alpha bravo charlie delta echo foxtrot golf hotel india juliet kilo lima mike november".split()


def write_audio(path, seconds):
    path.parent.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(int(seconds * 100))
    sf.write(path, (0.1 * rng.standard_normal(int(seconds * SR))).astype(np.float32), SR)


def sentence(n_words, start=0):
    return " ".join(WORDS[(start + i) % len(WORDS)] for i in range(n_words)).upper()


# Durations per speaker: 3 s and 12 s are out of the 4-10 s range.
LAYOUT = {"1089": [5.0, 7.0, 3.0, 12.0], "121": [4.5, 9.5], "237": [6.0]}


@pytest.fixture
def librispeech(tmp_path):
    """A tiny LibriSpeech-shaped tree: root/LibriSpeech/test-clean/<spk>/<chapter>/..."""
    part = tmp_path / "LibriSpeech" / "test-clean"
    for spk, durations in LAYOUT.items():
        chapter = part / spk / "100"
        lines = []
        for i, d in enumerate(durations):
            utt = f"{spk}-100-{i:04d}"
            write_audio(chapter / f"{utt}.flac", d)
            lines.append(f"{utt} {sentence(int(d * 2), i)}")
        (chapter / f"{spk}-100.trans.txt").write_text("\n".join(lines) + "\n")
    return tmp_path


def test_from_librispeech_reads_the_layout(librispeech):
    utts = from_librispeech(librispeech)  # finds LibriSpeech/test-clean below the root
    assert len(utts) == 7
    u = {u.id: u for u in utts}["1089-100-0001"]
    assert u.speaker == "1089" and u.duration == pytest.approx(7.0) and u.text == sentence(14, 1)
    assert u.words is None
    with pytest.raises(Valle2Error, match="no LibriSpeech part 'dev-clean'.*found test-clean"):
        from_librispeech(librispeech / "LibriSpeech", part="dev-clean")
    assert len(from_librispeech(librispeech / "LibriSpeech" / "test-clean" / "121", part=None)) == 2
    (librispeech / "empty").mkdir()
    with pytest.raises(Valle2Error, match="no LibriSpeech transcripts"):
        from_librispeech(librispeech / "empty")
    with pytest.raises(Valle2Error, match="does not exist"):
        from_librispeech(librispeech / "nope")


def test_from_librispeech_uses_alignment_files(librispeech):
    chapter = librispeech / "LibriSpeech" / "test-clean" / "121" / "100"
    (chapter / "121-100.alignment.txt").write_text('121-100-0000 ",ALPHA,,BRAVO," "0.300,1.000,1.500,2.500,4.500"\n')
    u = {u.id: u for u in from_librispeech(librispeech)}["121-100-0000"]
    assert u.words == (("ALPHA", 0.3, 1.0), ("BRAVO", 1.5, 2.5))


def test_continuation_items(librispeech):
    items = build_list(from_librispeech(librispeech), "continuation")
    assert [i.id for i in items] == ["1089-100-0000", "1089-100-0001", "121-100-0000", "121-100-0001", "237-100-0000"]
    for it in items:
        assert it.setting == "continuation" and it.prompt_id == it.id
        assert (it.prompt_start, it.prompt_end) == (0.0, 3.0)
        assert it.prompt_audio == it.reference_audio
        assert f"{it.prompt_text} {it.text}" == it.reference_text
        assert it.prompt_text_estimated
        assert it.target_span == (3.0, it.reference_end)
    prompt, sr = items[0].load_prompt()
    assert sr == SR and len(prompt) == 3 * SR
    target, _ = items[0].load_target()
    assert len(target) == 2 * SR  # the 5 s utterance after its 3 s prompt
    assert items[0].expected_seconds == pytest.approx(2.0)


def test_cross_sentence_items_are_seeded_and_order_free(librispeech):
    utts = from_librispeech(librispeech)
    items = build_list(utts, "cross-sentence", seed=3)
    # Speaker 237 has one utterance only: no other prompt, skipped.
    assert [i.id for i in items] == ["1089-100-0000", "1089-100-0001", "121-100-0000", "121-100-0001"]
    by_id = {u.id: u for u in utts}
    for it in items:
        p = by_id[it.prompt_id]
        assert p.speaker == it.speaker and p.id != it.id
        assert it.prompt_text == p.text and not it.prompt_text_estimated
        assert it.text == it.reference_text
        assert 4.0 <= p.duration <= 10.0  # in-range prompts are preferred when there are any
    shuffled = utts[:]
    random.Random(0).shuffle(shuffled)
    assert build_list(shuffled, "cross-sentence", seed=3) == items
    cropped = build_list(utts, "cross-sentence", seed=3, cross_prompt_seconds=3.0)
    assert all(c.prompt_seconds == pytest.approx(3.0) and c.prompt_text_estimated for c in cropped)


def test_max_items_is_a_seeded_subset_with_stable_prompts(librispeech):
    utts = from_librispeech(librispeech)
    full = {i.id: i for i in build_list(utts, "cross-sentence", seed=0)}
    sub = build_list(utts, "cross-sentence", seed=0, max_items=3)
    assert len(sub) <= 3 and sub == build_list(utts, "cross-sentence", seed=0, max_items=3)
    for it in sub:
        assert it == full[it.id]  # a prompt does not depend on which others were selected


def test_both_settings_and_validation(librispeech):
    items = build_list(from_librispeech(librispeech), "both")
    assert {i.setting for i in items} == {"continuation", "cross-sentence"}
    assert len({i.key for i in items}) == len(items)
    with pytest.raises(ValueError, match="unknown setting"):
        build_list([], "zero-shot")
    with pytest.raises(Valle2Error, match="appears more than once"):
        build_list([("a", "s", "x.wav", "one two", 5.0)] * 2, "continuation")


def test_plain_tuples_are_accepted():
    utts = [("u1", "s", "/x/u1.wav", "one two three four five six", 6.0), ("u2", "s", "/x/u2.wav", "seven eight", 5.0)]
    items = build_list(utts, "both")
    assert [(i.setting, i.id, i.prompt_id) for i in items] == [
        ("continuation", "u1", "u1"), ("continuation", "u2", "u2"),
        ("cross-sentence", "u1", "u2"), ("cross-sentence", "u2", "u1"),
    ]


def test_spaced_subset_is_even_and_order_free():
    utts = [Utterance(f"u{i:02d}", "s", "a.wav", "t", 1.0) for i in range(20)]
    picked = spaced_subset(list(reversed(utts)), 5)
    assert [u.id for u in picked] == ["u00", "u04", "u08", "u12", "u16"]
    assert spaced_subset(utts, 50) == utts  # asking for more than there are gives all, sorted
    with pytest.raises(ValueError, match="n is 0"):
        spaced_subset(utts, 0)


def test_split_transcript():
    # 6 s, 3 s cut, equal-length words: the first half of the words.
    assert split_transcript("aa bb cc dd ee ff", 6.0, 3.0) == ("aa bb cc", "dd ee ff", True)
    # Character-proportional: long words take more time.
    assert split_transcript("a b c extraordinarily", 4.0, 3.0)[0] == "a b c"
    # Alignments decide by word midpoints; the transcript's spelling is kept.
    words = (("HELLO", 0.2, 1.0), ("THERE", 1.1, 2.9), ("FRIEND", 2.95, 4.0))
    assert split_transcript("Hello there, friend!", 4.0, 3.0, words) == ("Hello there,", "friend!", False)
    # Both sides get a word even when the estimate puts everything on one side.
    assert split_transcript("one two", 10.0, 9.9) == ("one", "two", True)


def test_save_and_load_roundtrip_shareable(librispeech, tmp_path):
    items = build_list(from_librispeech(librispeech), "both", seed=7)
    path = save_list(items, tmp_path / "lists" / "eval.jsonl", seed=7, min_s=4, max_s=10, source="librispeech")
    header = read_list_header(path)
    assert header["format"] == "valle2-eval-list" and header["version"] == 1
    assert header["seed"] == 7 and header["count"] == len(items) and header["min_s"] == 4
    rows = [json.loads(line) for line in path.read_text().splitlines()[1:]]
    assert all(not r["prompt_audio"].startswith("/") for r in rows)  # relative to the root
    assert load_list(path) == items
    # Another machine: the corpus lives elsewhere.
    moved = tmp_path / "elsewhere"
    shutil.copytree(header["root"], moved)
    again = load_list(path, root=moved)
    assert [i.id for i in again] == [i.id for i in items]
    assert again[0].prompt_audio.startswith(str(moved))
    assert len(again[0].load_prompt()[0]) == 3 * SR


def test_load_list_refuses_other_files(tmp_path):
    bad = tmp_path / "x.jsonl"
    bad.write_text('{"format": "something-else", "version": 1}\n')
    with pytest.raises(Valle2Error, match="not an evaluation list"):
        load_list(bad)
    bad.write_text('{"format": "valle2-eval-list", "version": 99}\n')
    with pytest.raises(Valle2Error, match="version 99"):
        load_list(bad)
    with pytest.raises(Valle2Error, match="does not exist"):
        load_list(tmp_path / "missing.jsonl")
    bad.write_text('{"format": "valle2-eval-list", "version": 1, "count": 2, "root": null}\n')
    with pytest.raises(Valle2Error, match="holds 0 items but its header says 2"):
        load_list(bad)


def test_from_folder_txt_beside_audio(tmp_path):
    for spk in ("alice", "bob"):
        for i in range(2):
            write_audio(tmp_path / spk / f"{i}.wav", 5.0 + i)
            (tmp_path / spk / f"{i}.txt").write_text(f"  {sentence(10, i)}\n second line ")
    write_audio(tmp_path / "bob" / "untranscribed.wav", 5.0)
    utts = from_folder(tmp_path)
    assert [(u.id, u.speaker) for u in utts] == [("alice__0", "alice"), ("alice__1", "alice"), ("bob__0", "bob"), ("bob__1", "bob")]
    assert utts[0].text == f"{sentence(10, 0)} second line" and utts[1].duration == pytest.approx(6.0)
    items = build_list(utts, "cross-sentence")
    assert {i.prompt_id for i in items} == {"alice__0", "alice__1", "bob__0", "bob__1"}


def test_from_folder_csv_and_tsv(tmp_path):
    write_audio(tmp_path / "clips" / "a.wav", 5.0)
    write_audio(tmp_path / "clips" / "b.wav", 6.0)
    (tmp_path / "metadata.csv").write_text('path,speaker,text\nclips/a.wav,carol,"Hello, world"\nclips/b.wav,dave,Bye now\n')
    utts = from_folder(tmp_path)
    assert [(u.id, u.speaker, u.text) for u in utts] == [("clips__a", "carol", "Hello, world"), ("clips__b", "dave", "Bye now")]
    tsv = tmp_path / "list.tsv"
    tsv.write_text("clips/a.wav\tHello there\n")  # no header: path, text; speaker = folder name
    assert [(u.speaker, u.text) for u in from_folder(tsv)] == [("clips", "Hello there")]
    with pytest.raises(Valle2Error, match="no audio files"):
        from_folder(tmp_path / "clips")


def test_from_lhotse_recordings_supervisions_and_cuts(tmp_path):
    lhotse = pytest.importorskip("lhotse", reason="lhotse is not installed (pip install lhotse urllib3)")
    write_audio(tmp_path / "long.wav", 12.0)
    rec = lhotse.Recording.from_file(tmp_path / "long.wav", recording_id="rec1")
    align = {"word": [lhotse.supervision.AlignmentItem("ONE", 2.2, 0.5), lhotse.supervision.AlignmentItem("TWO", 5.5, 0.5)]}
    sups = [
        lhotse.SupervisionSegment("s1", "rec1", start=2.0, duration=5.0, text="ONE TWO", speaker="spk", alignment=align),
        lhotse.SupervisionSegment("s2", "rec1", start=7.0, duration=4.5, text="THREE FOUR", speaker="spk"),
    ]
    lhotse.RecordingSet.from_recordings([rec]).to_file(tmp_path / "recs.jsonl.gz")
    lhotse.SupervisionSet.from_segments(sups).to_file(tmp_path / "sups.jsonl.gz")
    utts = from_lhotse(tmp_path / "recs.jsonl.gz", tmp_path / "sups.jsonl.gz")
    assert [(u.id, u.speaker, u.start, u.duration) for u in utts] == [("s1", "spk", 2.0, 5.0), ("s2", "spk", 7.0, 4.5)]
    assert utts[0].words == (("ONE", pytest.approx(0.2), pytest.approx(0.7)), ("TWO", pytest.approx(3.5), pytest.approx(4.0)))
    cont = build_list(utts, "continuation")
    assert (cont[0].prompt_start, cont[0].prompt_end, cont[0].prompt_text, cont[0].text) == (2.0, 5.0, "ONE", "TWO")
    assert not cont[0].prompt_text_estimated
    assert len(cont[0].load_prompt()[0]) == 3 * SR

    cuts = lhotse.CutSet.from_manifests(
        recordings=lhotse.RecordingSet.from_recordings([rec]), supervisions=lhotse.SupervisionSet.from_segments(sups)
    ).trim_to_supervisions(keep_overlapping=False)
    cuts.to_file(tmp_path / "cuts.jsonl.gz")
    from_cuts = from_lhotse(tmp_path / "cuts.jsonl.gz")
    assert [(u.id, u.start, u.duration) for u in from_cuts] == [("s1", 2.0, 5.0), ("s2", 7.0, 4.5)]
    assert from_cuts[0].words == utts[0].words
