import json

import numpy as np
import pytest
import soundfile as sf
from lhotse import CutSet

from valle2.data.recipes import (
    prepare_generic_folder, prepare_lhotse_manifests, prepare_libriheavy, prepare_libritts,
)


def _wav(path, seconds=1.0, sr=16000, f=220.0):
    path.parent.mkdir(parents=True, exist_ok=True)
    t = np.arange(int(seconds * sr)) / sr
    sf.write(path, (0.3 * np.sin(2 * np.pi * f * t)).astype(np.float32), sr)
    return path


def _skips(path):
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_folder_with_sidecar_transcripts(tmp_path):
    corpus = tmp_path / "corpus"
    _wav(corpus / "alice" / "a1.wav").with_suffix(".txt").write_text("Hello there.\n")
    _wav(corpus / "bob" / "b1.flac", seconds=1.5).with_suffix(".txt").write_text("  General Kenobi!  ")
    _wav(corpus / "bob" / "b2.wav")  # no transcript
    (corpus / "bob" / "bad.wav").write_bytes(b"not audio at all")
    (corpus / "bob" / "bad.txt").write_text("words")
    result = prepare_generic_folder(corpus, tmp_path / "out", name="mine")
    cuts = CutSet.from_file(result.cuts["mine"])
    assert sorted(c.id for c in cuts) == ["alice/a1", "bob/b1"]
    by_id = {c.id: c for c in cuts}
    assert by_id["bob/b1"].supervisions[0].text == "General Kenobi!"
    assert by_id["bob/b1"].supervisions[0].speaker == "bob"
    assert by_id["bob/b1"].duration == pytest.approx(1.5)
    reasons = {s["id"].split("/")[-1]: s["reason"] for s in _skips(result.skipped)}
    assert reasons == {"b2.wav": "no transcript", "bad.wav": "unreadable audio"}
    assert (tmp_path / "out" / "mine_recordings.jsonl.gz").is_file()
    assert (result.n_utterances, result.n_skipped) == (2, 2)


def test_folder_with_csv_tsv_and_ljspeech_tables(tmp_path):
    corpus = tmp_path / "c"
    _wav(corpus / "x" / "one.wav")
    _wav(corpus / "two.wav")
    (corpus / "list.csv").write_text(
        'file,transcript,speaker\nx/one.wav,"Hi, you.",s1\ntwo.wav,Bye.,s2\nmissing.wav,Nope.,s3\n')
    result = prepare_generic_folder(corpus, tmp_path / "o1", name="csv", transcripts=corpus / "list.csv")
    cuts = {c.id: c for c in CutSet.from_file(result.cuts["csv"])}
    assert cuts["x/one"].supervisions[0].text == "Hi, you." and cuts["x/one"].supervisions[0].speaker == "s1"
    assert [s["reason"] for s in _skips(result.skipped)] == ["missing audio"]

    (corpus / "list.tsv").write_text("x/one.wav\tFirst one.\tspk\ntwo.wav\tSecond.\tspk\n")
    result = prepare_generic_folder(corpus, tmp_path / "o2", name="tsv", transcripts=corpus / "list.tsv")
    assert sorted(c.supervisions[0].text for c in CutSet.from_file(result.cuts["tsv"])) == ["First one.", "Second."]

    lj = tmp_path / "lj"
    _wav(lj / "wavs" / "LJ001-0001.wav")
    (lj / "metadata.csv").write_text("LJ001-0001|Printing, in the only sense.|Printing, in the only sense.\n")
    result = prepare_generic_folder(lj, tmp_path / "o3", name="lj", transcripts=lj / "metadata.csv", speaker="none")
    [cut] = CutSet.from_file(result.cuts["lj"])
    assert cut.id == "wavs/LJ001-0001" and cut.supervisions[0].text == "Printing, in the only sense."
    assert cut.supervisions[0].speaker is None


def test_libritts_through_lhotse_recipe(tmp_path):
    root = tmp_path / "LibriTTS"
    book = root / "dev-clean" / "84" / "121123"
    ids = ["84_121123_000007_000001", "84_121123_000008_000000"]
    for i, utt in enumerate(ids):
        _wav(book / f"{utt}.wav", seconds=1.0 + i, sr=24000)
    (book / "84_121123.trans.tsv").write_text(
        f"{ids[0]}\tMaximilian.\tMaximilian.\n{ids[1]}\tVillefort rose, half ashamed.\tVillefort rose, half ashamed.\n")
    (book / "84_121123.book.tsv").write_text(f"{ids[0]}\tMaximilian.\tx\t19.5\n{ids[1]}\tVillefort\tx\t17.0\n")
    result = prepare_libritts(root, tmp_path / "out", name="libritts-r")
    assert list(result.cuts) == ["dev-clean"]
    cuts = {c.id: c for c in CutSet.from_file(result.cuts["dev-clean"])}
    assert sorted(cuts) == ids
    assert cuts[ids[1]].supervisions[0].text == "Villefort rose, half ashamed."
    assert cuts[ids[1]].supervisions[0].speaker == "84" and cuts[ids[1]].duration == pytest.approx(2.0)
    with pytest.raises(FileNotFoundError, match="train-clean-100"):
        prepare_libritts(root, tmp_path / "out2", parts=["train-clean-100"])


def test_libriheavy_manifests_are_rerooted(tmp_path):
    from lhotse import MonoCut, Recording, SupervisionSegment
    from lhotse.audio import AudioSource

    audio_root = tmp_path / "librilight"
    flac = _wav(audio_root / "small" / "100" / "book" / "01.flac", seconds=6.0)

    def cut(cid, start, dur, rel, texts):
        rec = Recording(id=rel, sources=[AudioSource(type="file", channels=[0], source=rel)], sampling_rate=16000,
                        num_samples=96000, duration=6.0)
        sup = SupervisionSegment(id=cid, recording_id=rel, start=0.0, duration=dur, channel=0, speaker="100",
                                 language="English", custom={"texts": texts, "pre_texts": ["", ""]})
        return MonoCut(id=cid, start=start, duration=dur, channel=0, recording=rec, supervisions=[sup])

    manifests = tmp_path / "manifests"
    manifests.mkdir()
    CutSet.from_cuts([
        cut("small/100/book/01_0", 0.5, 2.0, "download/librilight/small/100/book/01.flac",
            ["Hello, world.", "HELLO WORLD"]),
        cut("small/100/book/01_1", 3.0, 2.5, "download/librilight/small/100/book/01.flac",
            ["Second one!", "SECOND ONE"]),
        cut("small/100/book/02_0", 0.0, 2.0, "download/librilight/small/100/book/02.flac", ["Gone.", "GONE"]),
    ]).to_file(manifests / "libriheavy_cuts_small.jsonl.gz")
    result = prepare_libriheavy(manifests, audio_root, tmp_path / "out")
    cuts = list(CutSet.from_file(result.cuts["small"]))
    assert [c.supervisions[0].text for c in cuts] == ["Hello, world.", "Second one!"]
    assert cuts[0].recording.sources[0].source == str(flac)
    assert cuts[1].load_audio().shape == (1, 40000)  # 2.5 s segment at 3.0 s of the 6 s file
    assert [(s["id"], s["reason"]) for s in _skips(result.skipped)] == [("small/100/book/02_0", "missing audio")]
    normalized = prepare_libriheavy(manifests, audio_root / ".." / "librilight", tmp_path / "out2", text="normalized")
    assert next(iter(CutSet.from_file(normalized.cuts["small"]))).supervisions[0].text == "HELLO WORLD"


def test_any_lhotse_recordings_and_supervisions(tmp_path):
    from lhotse import Recording, RecordingSet, SupervisionSegment, SupervisionSet

    rec = Recording.from_file(_wav(tmp_path / "a.wav", seconds=2.0), recording_id="a")
    sups = [SupervisionSegment(id="a-0", recording_id="a", start=0.0, duration=0.8, text="First."),
            SupervisionSegment(id="a-1", recording_id="a", start=1.0, duration=0.9, text="Second.")]
    RecordingSet.from_recordings([rec]).to_file(tmp_path / "r.jsonl.gz")
    SupervisionSet.from_segments(sups).to_file(tmp_path / "s.jsonl.gz")
    result = prepare_lhotse_manifests(tmp_path / "r.jsonl.gz", tmp_path / "s.jsonl.gz", tmp_path / "out", name="x")
    cuts = list(CutSet.from_file(result.cuts["x"]))
    assert [(c.id, round(c.start, 1), c.supervisions[0].text) for c in cuts] == [("a-0", 0.0, "First."),
                                                                                 ("a-1", 1.0, "Second.")]
