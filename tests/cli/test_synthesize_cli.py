"""`valle2 synthesize` end to end with the debug model, and a clear one-line error per bad input."""

import json
import os
import re
import subprocess
import sys

import numpy as np
import pytest
import soundfile as sf

from valle2_testlib import voiced_audio
from valle2.cli import main

BASE = ["synthesize", "--model", "debug", "--prompt-text", "This is my voice.", "--seed", "0"]


def run_cli(capsys, *args):
    code = main([*BASE, *args])
    out = capsys.readouterr()
    return code, out.out, out.err


def test_cli_writes_a_valid_wav(capsys, prompt_wav, tmp_path):
    out = tmp_path / "out.wav"
    code, stdout, _ = run_cli(capsys, "--text", "Hello world.", "--prompt", str(prompt_wav), "--out", str(out))
    assert code == 0
    info = sf.info(out)
    assert info.samplerate == 24000 and info.channels == 1 and info.frames > 0
    report = json.loads(stdout.strip().splitlines()[-1])
    assert report["out"] == str(out) and report["audio_seconds"] > 0


def test_cli_accepts_stereo_44k_prompt_and_options(capsys, tmp_path):
    stereo = np.stack([voiced_audio(sr=44100), voiced_audio(sr=44100, seed=1)], axis=1)
    prompt = tmp_path / "stereo.wav"
    sf.write(prompt, stereo, 44100)
    out = tmp_path / "o.wav"
    code, _, err = run_cli(capsys, "--text", "Two samples.", "--prompt", str(prompt), "--out", str(out),
                           "--candidates", "2", "--top-p", "0.9", "--language", "en-us")
    assert code == 0, err
    assert sf.info(out).frames > 0


def test_cli_nar_decoding_option(capsys, prompt_wav, tmp_path):
    outs = {}
    for mode in ("greedy", "min_distortion"):
        outs[mode] = tmp_path / f"{mode}.wav"
        code, _, err = run_cli(capsys, "--text", "Nearest entry.", "--prompt", str(prompt_wav), "--out",
                               str(outs[mode]), "--nar-decoding", mode)
        assert code == 0, err
    a, b = sf.read(outs["greedy"])[0], sf.read(outs["min_distortion"])[0]
    assert len(a) == len(b) and not np.array_equal(a, b)  # same seed and codebook 0, other later codes
    with pytest.raises(SystemExit):
        run_cli(capsys, "--text", "x", "--prompt", str(prompt_wav), "--out", str(tmp_path / "x.wav"),
                "--nar-decoding", "beam")
    sharp = tmp_path / "sharp.wav"
    code, _, err = run_cli(capsys, "--text", "Nearest entry.", "--prompt", str(prompt_wav), "--out", str(sharp),
                           "--nar-decoding", "min_distortion", "--nar-temperature", "0.05")
    assert code == 0, err
    c = sf.read(sharp)[0]
    assert len(c) == len(b) and not np.array_equal(c, b)  # sharpened: other codes than plain min-distortion
    code, _, err = run_cli(capsys, "--text", "x", "--prompt", str(prompt_wav), "--out", str(tmp_path / "y.wav"),
                           "--nar-decoding", "min_distortion", "--nar-temperature", "0")
    assert code != 0 and "nar_temperature is 0" in err and not (tmp_path / "y.wav").exists()
    code, _, err = run_cli(capsys, "--text", "x", "--prompt", str(prompt_wav), "--out", str(tmp_path / "y.wav"),
                           "--nar-decoding", "greedy", "--nar-temperature", "0.5")
    assert code != 0 and "applies to min_distortion" in err and not (tmp_path / "y.wav").exists()
    for flag, value in (("--nar-decoding", "expected"), ("--nar-weight", "0.5")):
        other = tmp_path / f"{value}.wav"
        code, _, err = run_cli(capsys, "--text", "Nearest entry.", "--prompt", str(prompt_wav), "--out", str(other),
                               "--nar-decoding", "min_distortion", flag, value)
        assert code == 0, err
        d = sf.read(other)[0]
        assert len(d) == len(b) and not np.array_equal(d, b)  # the same codes, decoded with another residual
    code, _, err = run_cli(capsys, "--text", "x", "--prompt", str(prompt_wav), "--out", str(tmp_path / "w.wav"),
                           "--nar-weight", "1.5")
    assert code != 0 and "nar_weight is 1.5; must be in [0, 1]" in err and not (tmp_path / "w.wav").exists()
    # a folder without the prior's table, a codec without a log-mel: refused before any work, nothing written
    code, _, err = run_cli(capsys, "--text", "x", "--prompt", str(prompt_wav), "--out", str(tmp_path / "p.wav"),
                           "--nar-weight", "0.5", "--residual-prior", "code0")
    assert code != 0 and "residual_prior='code0' needs the table" in err and not (tmp_path / "p.wav").exists()
    code, _, err = run_cli(capsys, "--text", "x", "--prompt", str(prompt_wav), "--out", str(tmp_path / "v.wav"),
                           "--vocoder", "synthesis")
    assert code != 0 and "vocoder='synthesis' needs a codec that vocodes a log-mel" in err
    assert not (tmp_path / "v.wav").exists()


def _write(tmp_path, name, wav, sr=16000):
    p = tmp_path / name
    sf.write(p, wav, sr)
    return p


@pytest.mark.parametrize(
    "case, match",
    [
        ("missing", "not found|does not exist|no such"),
        ("corrupt", "could not read"),
        ("empty", "empty"),
        ("silent", "silent"),
        ("short", r"0\.4 s"),
        ("long", r"31\.0 s"),
    ],
)
def test_bad_prompt_audio(capsys, tmp_path, case, match):
    if case == "missing":
        prompt = tmp_path / "nope.wav"
    elif case == "corrupt":
        prompt = tmp_path / "corrupt.wav"
        prompt.write_bytes(b"RIFF\x00\x00\x00\x00WAVEjunkjunkjunk")
    elif case == "empty":
        prompt = _write(tmp_path, "empty.wav", np.zeros(0, np.float32))
    elif case == "silent":
        prompt = _write(tmp_path, "silent.wav", np.zeros(32000, np.float32))
    elif case == "short":
        prompt = _write(tmp_path, "short.wav", voiced_audio(seconds=0.4))
    else:
        prompt = _write(tmp_path, "long.wav", voiced_audio(seconds=31.0, sr=8000), sr=8000)
    out = tmp_path / "out.wav"
    code, _, err = run_cli(capsys, "--text", "Hello.", "--prompt", str(prompt), "--out", str(out))
    assert code == 2
    lines = [ln for ln in err.strip().splitlines() if ln.startswith("valle2 synthesize: error:")]
    assert len(lines) == 1 and "Traceback" not in err
    assert re.search(match, lines[0], re.IGNORECASE), lines[0]
    assert not out.exists()


@pytest.mark.parametrize(
    "args, match",
    [
        (["--text", ""], "empty"),
        (["--text", "a" * 6000], "limit"),
        (["--text", "Hello.", "--language", "xx-nope"], "language"),
        (["--text", "Hello.", "--candidates", "0"], "candidates"),
        (["--text", "Hello.", "--top-p", "1.5"], "top_p"),
        (["--text", "Hello.", "--model", "/nonexistent/model"], "not found"),
    ],
)
def test_bad_text_and_options(capsys, prompt_wav, tmp_path, args, match):
    out = tmp_path / "out.wav"
    code, _, err = run_cli(capsys, "--prompt", str(prompt_wav), "--out", str(out), *args)
    assert code == 2, err
    assert match in err and "Traceback" not in err
    assert not out.exists()


def test_existing_output_survives_a_failed_run(capsys, tmp_path, prompt_wav):
    out = tmp_path / "keep.wav"
    sf.write(out, voiced_audio(), 16000)
    before = out.read_bytes()
    code, _, _ = run_cli(capsys, "--text", "", "--prompt", str(prompt_wav), "--out", str(out))
    assert code == 2 and out.read_bytes() == before


def test_cli_as_a_process_exit_codes(prompt_wav, tmp_path):
    """The installed entry point: exit 0 on success, non-zero and one line on bad input."""
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    ok = subprocess.run([sys.executable, "-m", "valle2", *BASE, "--text", "Hi.", "--prompt", str(prompt_wav),
                         "--out", str(tmp_path / "a.wav")], capture_output=True, text=True, env=env)
    assert ok.returncode == 0, ok.stderr
    bad = subprocess.run([sys.executable, "-m", "valle2", *BASE, "--text", "Hi.", "--prompt", str(tmp_path / "x.wav"),
                          "--out", str(tmp_path / "b.wav")], capture_output=True, text=True, env=env)
    assert bad.returncode == 2
    assert bad.stderr.strip().splitlines()[-1].startswith("valle2 synthesize: error:")


def test_cli_post_filter_option(capsys, prompt_wav, tmp_path):
    out = tmp_path / "pf.wav"
    code, _, err = run_cli(capsys, "--text", "x", "--prompt", str(prompt_wav), "--out", str(out),
                           "--post-filter", "none")
    assert code == 0, err
    # the debug model's codec is EnCodec-like: no log-mel to match, a one-line error, no file
    code, _, err = run_cli(capsys, "--text", "x", "--prompt", str(prompt_wav), "--out", str(tmp_path / "y.wav"),
                           "--post-filter", "prompt_match")
    assert code != 0 and "needs a codec that decodes through a log-mel" in err and not (tmp_path / "y.wav").exists()
    with pytest.raises(SystemExit):
        run_cli(capsys, "--text", "x", "--prompt", str(prompt_wav), "--out", str(tmp_path / "z.wav"),
                "--post-filter", "eq")
    code, _, err = run_cli(capsys, "--text", "x", "--prompt", str(prompt_wav), "--out", str(tmp_path / "s.wav"),
                           "--post-filter-strength", "2")
    assert code != 0 and "post_filter_strength is 2.0; must be in [0, 1]" in err and not (tmp_path / "s.wav").exists()


def test_cli_ar_precision_option(capsys, prompt_wav, tmp_path, monkeypatch):
    import valle2.models.valle2 as api

    made = []
    real = api.quantize_ar
    monkeypatch.setattr(api, "quantize_ar", lambda ar: made.append(ar) or real(ar))
    code, _, err = run_cli(capsys, "--text", "Eight bits.", "--prompt", str(prompt_wav), "--out", str(tmp_path / "q.wav"),
                           "--ar-precision", "int8")
    assert code == 0, err
    assert len(made) == 1 and sf.info(tmp_path / "q.wav").frames > 0
    code, _, err = run_cli(capsys, "--text", "Eight bits.", "--prompt", str(prompt_wav), "--out", str(tmp_path / "f.wav"),
                           "--ar-precision", "fp32")
    assert code == 0 and len(made) == 1  # no int8 copy this time
    with pytest.raises(SystemExit):
        run_cli(capsys, "--text", "x", "--prompt", str(prompt_wav), "--out", str(tmp_path / "z.wav"), "--ar-precision", "int4")
