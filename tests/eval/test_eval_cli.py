"""`valle2 eval-list` and `valle2 eval` end to end with the debug model and fake backends (injected
into the backend caches under the default names); missing backends and bad input give one line
and exit 2; `valle2 synthesize --candidates N --select sim,wer` keeps the best of N."""

import json
import logging
import sys

import pytest
import soundfile as sf

from test_asr import espeak_say
from test_run import FakeASR, FakeSpeaker, make_corpus, one_thread  # noqa: F401 (one_thread: autouse fixture)
from valle2.cli import main
from valle2.eval import asr as asr_mod
from valle2.eval import speaker as speaker_mod


@pytest.fixture
def fakes(monkeypatch):
    """`--asr faster-whisper` and `--speaker resemblyzer` (the defaults) resolve to fakes."""
    asr, speaker = FakeASR(), FakeSpeaker()
    monkeypatch.setitem(asr_mod._CACHE, ("faster-whisper", ()), asr)
    monkeypatch.setitem(speaker_mod._CACHE, ("resemblyzer", ()), speaker)
    return asr, speaker


@pytest.fixture(scope="module")
def eval_list(tmp_path_factory):
    folder = tmp_path_factory.mktemp("cli")
    corpus = make_corpus(folder / "corpus")
    code = main(["eval-list", "--from", "folder", str(corpus), "--setting", "both", "--out",
                 str(folder / "list.jsonl"), "--seed", "0", "--min-s", "3.5"])
    assert code == 0
    return folder / "list.jsonl"


def one_error_line(err: str, command: str) -> str:
    lines = [ln for ln in err.strip().splitlines() if ln.startswith(f"valle2 {command}: error:")]
    assert len(lines) == 1 and "Traceback" not in err, err
    return lines[0]


EVAL = ["eval", "--model", "debug", "--threads", "1", "--no-progress"]


def test_eval_list_then_eval_writes_everything_and_resumes(eval_list, fakes, tmp_path, capsys, caplog):
    caplog.set_level(logging.INFO, logger="valle2.eval.run")
    header = json.loads(eval_list.read_text().splitlines()[0])
    assert header["count"] == 8 and header["settings"] == ["continuation", "cross-sentence"]
    out = tmp_path / "run"
    args = [*EVAL, "--list", str(eval_list), "--out", str(out), "--setting", "cross-sentence", "--samples", "2"]
    assert main([*args, "--max-items", "1"]) == 0
    stdout = capsys.readouterr().out
    assert "| cross-sentence | model, best of 2 by sim,wer | 1 |" in stdout
    rows = (out / "rows.jsonl").read_text().splitlines()
    assert len(rows) == 4  # ground truth, codec, 2 samples
    assert all(json.loads(r)["setting"] == "cross-sentence" for r in rows)
    assert (out / "summary.png").exists() and (out / "summary.json").exists() and (out / "summary.md").exists()
    assert len(list((out / "audio").rglob("*.wav"))) == 3
    assert json.loads((out / "run.json").read_text())["asr"] == "fake-asr"

    calls = fakes[0].calls
    caplog.clear()
    assert main([*args, "--max-items", "1"]) == 0
    assert "1 of 1 items already scored" in caplog.text
    assert fakes[0].calls == calls  # nothing transcribed again
    assert (out / "rows.jsonl").read_text().splitlines() == rows

    # More items later: the first is kept, the new one added.
    assert main([*args, "--max-items", "2"]) == 0
    assert "1 of 2 items already scored" in caplog.text
    assert (out / "rows.jsonl").read_text().splitlines()[:4] == rows
    assert len((out / "rows.jsonl").read_text().splitlines()) == 2 * 4


@pytest.mark.parametrize("hidden, asr_fake, needle", [
    ("faster_whisper", False, "faster-whisper"),
    ("resemblyzer", True, "resemblyzer"),
])
def test_missing_backend_is_one_line_naming_the_install(eval_list, tmp_path, capsys, monkeypatch, hidden,
                                                        asr_fake, needle):
    monkeypatch.setattr(asr_mod, "_CACHE", {("faster-whisper", ()): FakeASR()} if asr_fake else {})
    monkeypatch.setattr(speaker_mod, "_CACHE", {})
    monkeypatch.setitem(sys.modules, hidden, None)
    code = main([*EVAL, "--list", str(eval_list), "--out", str(tmp_path / "run")])
    assert code == 2
    line = one_error_line(capsys.readouterr().err, "eval")
    assert "pip install" in line and needle in line
    assert not (tmp_path / "run").exists()  # failed before any work


@pytest.mark.parametrize("extra, match", [
    (["--samples", "0"], "--samples is 0"),
    (["--setting", "sideways"], "unknown setting 'sideways'"),
    (["--max-items", "0"], "--max-items is 0"),
    (["--select", "loudness"], "unknown scorer 'loudness'"),
    (["--quality", "/nonexistent/dnsmos"], "does not exist"),
    (["--post-filter", "prompt_match"], "needs a codec that decodes through a log-mel"),  # the debug model's codec
])
def test_bad_eval_options(eval_list, fakes, tmp_path, capsys, extra, match):
    code = main([*EVAL, "--list", str(eval_list), "--out", str(tmp_path / "run"), *extra])
    assert code == 2
    assert match in one_error_line(capsys.readouterr().err, "eval")


def test_missing_list_and_empty_folder(tmp_path, capsys):
    assert main([*EVAL, "--list", str(tmp_path / "nope.jsonl"), "--out", str(tmp_path / "run")]) == 2
    assert "does not exist" in one_error_line(capsys.readouterr().err, "eval")
    (tmp_path / "empty").mkdir()
    assert main(["eval-list", "--from", "folder", str(tmp_path / "empty"), "--out", str(tmp_path / "l.jsonl")]) == 2
    one_error_line(capsys.readouterr().err, "eval-list")


def test_synthesize_best_of_n_by_sim_and_wer(fakes, tmp_path, capsys):
    wav, sr = espeak_say("This is my voice, recorded for a short test of the system.")
    sf.write(tmp_path / "prompt.wav", wav, sr)
    out = tmp_path / "out.wav"
    code = main(["synthesize", "--model", "debug", "--threads", "1", "--prompt", str(tmp_path / "prompt.wav"),
                 "--prompt-text", "This is my voice, recorded for a short test of the system.",
                 "--text", "Hello world.", "--out", str(out), "--seed", "0", "--candidates", "3",
                 "--select", "sim,wer"])
    assert code == 0, capsys.readouterr().err
    assert sf.info(out).frames > 0
    assert fakes[0].calls == 3  # every candidate was transcribed to rank it


def test_consent_refusal_says_how_to_evaluate_a_public_dataset(eval_list, fakes, debug_model, tmp_path, capsys,
                                                               monkeypatch):
    from valle2 import VallE2

    monkeypatch.setattr(debug_model, "requires_consent", True)  # as a trained model would
    monkeypatch.setattr(VallE2, "from_pretrained", classmethod(lambda cls, *a, **k: debug_model))
    code = main([*EVAL, "--list", str(eval_list), "--out", str(tmp_path / "run"), "--max-items", "1"])
    assert code == 2
    line = one_error_line(capsys.readouterr().err, "eval")
    assert "consent" in line and "--unsafe-no-consent" in line
