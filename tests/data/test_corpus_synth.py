import shutil
from pathlib import Path

import pytest
import soundfile as sf

from valle2.data import corpus_synth
from valle2.data.voices import Voice

pytestmark = pytest.mark.skipif(
    shutil.which("espeak-ng") is None or shutil.which("sox") is None,
    reason="espeak-ng and sox are needed to render a corpus",
)
lhotse = pytest.importorskip("lhotse", reason="lhotse is needed for the manifests")

VOICES = [Voice("espeak", "en-us+adam"), Voice("espeak", "en-us+f1")]


def test_tiny_corpus(tmp_path: Path):
    rec_path, sup_path = corpus_synth.synth_corpus(
        tmp_path, VOICES, split="train", sentences_per_voice=2, jobs=2, seed=0, min_duration=0.5, max_duration=20
    )
    recs = lhotse.load_manifest(rec_path)
    sups = lhotse.load_manifest(sup_path)
    assert len(recs) == 4 and len(sups) == 4
    assert {s.speaker for s in sups} == {v.id for v in VOICES}
    for rec in recs:
        assert rec.sampling_rate == 24000 and rec.num_channels == 1
    for sup in sups:
        assert sup.text and sup.duration > 0.5
    wavs = sorted(tmp_path.glob("wavs/*/*.wav"))
    assert len(wavs) == 4
    info = sf.info(str(wavs[0]))
    assert info.samplerate == 24000 and info.channels == 1 and info.subtype == "PCM_16"

    # Resumable and reproducible: a second run renders nothing and writes the same manifests.
    mtimes = {p: p.stat().st_mtime_ns for p in wavs}
    utts = corpus_synth.plan_utterances(tmp_path, VOICES, 2, seed=0)
    assert corpus_synth.render_all(utts, jobs=2) == 0
    assert {p: p.stat().st_mtime_ns for p in wavs} == mtimes
    corpus_synth.write_manifests(tmp_path, utts, "again", 0.5, 20)
    again = lhotse.load_manifest(tmp_path / "synth_supervisions_again.jsonl.gz")
    assert [s.text for s in again] == [s.text for s in sups]


def test_render_is_bit_exact(tmp_path: Path):
    a = corpus_synth.render(VOICES[0], "The boy enjoyed the noisy toy.", tmp_path / "a.wav")
    b = corpus_synth.render(VOICES[0], "The boy enjoyed the noisy toy.", tmp_path / "b.wav")
    assert a.read_bytes() == b.read_bytes()  # sox -D: no random dither


@pytest.mark.skipif(shutil.which("flite") is None, reason="flite is needed for the warped voice")
def test_a_warped_voice_keeps_the_duration_and_changes_the_timbre(tmp_path: Path):
    import numpy as np

    plain = corpus_synth.render(Voice("flite", "slt"), "The weather is nice today.", tmp_path / "a.wav")
    warped = corpus_synth.render(Voice("flite", "slt", 1.18), "The weather is nice today.", tmp_path / "b.wav")
    a, sr = sf.read(str(plain))
    b, sr_b = sf.read(str(warped))
    assert sr == sr_b == 24000 and abs(len(a) - len(b)) / len(a) < 0.02  # tempo compensates the speed change

    def centroid(x):  # spectral centroid: formants and pitch moved up by the warp
        spec = np.abs(np.fft.rfft(x))
        return float((spec * np.fft.rfftfreq(len(x), 1 / sr)).sum() / spec.sum())

    assert centroid(b) > 1.08 * centroid(a)


def test_a_voice_the_engine_lacks_is_a_clear_error(tmp_path: Path):
    """festival answers an unknown voice with exit status 0 and no file: name the voice and the package."""
    from valle2.data.corpus_synth import check_engine_output, render
    from valle2.errors import MissingDependencyError

    with pytest.raises(MissingDependencyError, match=r"festival:ked_diphone.*apt-get install festvox-kdlpc16k"):
        check_engine_output(Voice("festival", "ked_diphone"), tmp_path / "missing.wav", "SIOD ERROR: unbound variable")
    if shutil.which("text2wave") is None:
        pytest.skip("festival is not installed: the end-to-end half needs it")
    with pytest.raises(MissingDependencyError, match=r"festival wrote no audio for voice 'festival:no_such_voice'"):
        render(Voice("festival", "no_such_voice"), "Hello there.", tmp_path / "x.wav")
    assert not (tmp_path / "x.wav").exists()
