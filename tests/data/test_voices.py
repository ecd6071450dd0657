from pathlib import Path

import pytest

from valle2.data import corpus_synth
from valle2.data.voices import HELD_OUT, RESERVED, TRAIN, TRAIN_WARPED, Voice, assert_not_reserved, select
from valle2.errors import Valle2Error


def test_reserved_voices_are_exactly_rms_and_ked():
    assert set(RESERVED) == {Voice("flite", "rms"), Voice("festival", "ked_diphone")}


def test_lists_disjoint_and_never_reserved():
    assert not set(TRAIN) & set(RESERVED)
    assert not set(HELD_OUT) & set(RESERVED)
    assert not set(TRAIN) & set(HELD_OUT)
    for which in ("train", "train-warped", "held-out", "all"):
        assert not set(select(which)) & set(RESERVED)
    bases = {v.base for v in TRAIN_WARPED}
    assert bases <= set(TRAIN) and not bases & (set(HELD_OUT) | set(RESERVED))


def test_inventory_size_and_engines():
    assert len(TRAIN) >= 30
    assert 4 <= len(HELD_OUT) <= 6
    assert {v.engine for v in TRAIN} == {"espeak", "flite", "festival"}
    assert len({v.id for v in TRAIN}) == len(TRAIN)
    # espeak variant names are case-sensitive file names; a wrong case silently falls back.
    for v in TRAIN + HELD_OUT:
        if v.engine == "espeak":
            assert "+" in v.name and not v.name.endswith("+")


def test_voice_id_roundtrip_and_slug():
    v = Voice("espeak", "en-us+adam")
    assert Voice.parse(v.id) == v
    assert v.slug == "espeak_en-us_adam"
    with pytest.raises(ValueError):
        Voice("mbrola", "us1")
    with pytest.raises(ValueError):
        Voice.parse("no-engine")


def test_warped_voice_ids():
    w = Voice("flite", "slt", 1.18)
    assert w.id == "flite:slt@1.18" and w.slug == "flite_slt_w1.18" and Voice.parse(w.id) == w
    assert w.base == Voice("flite", "slt") and w != w.base and Voice.parse("flite:slt").warp == 1.0
    for bad in ("flite:slt@fast", "flite:slt@3"):
        with pytest.raises(ValueError, match="warp"):
            Voice.parse(bad)


# A warp makes a new timbre of the same engine voice: it must not launder a reserved one.
@pytest.mark.parametrize("voice", [*RESERVED, Voice("flite", "rms", 0.84), Voice("festival", "ked_diphone", 1.18)],
                         ids=lambda v: v.id)
def test_builder_refuses_reserved_voices(voice, tmp_path: Path):
    with pytest.raises(ValueError, match="reserved"):
        assert_not_reserved(voice)
    with pytest.raises(Valle2Error, match="reserved"):
        corpus_synth.synth_corpus(tmp_path, [TRAIN[0], voice], split="train", sentences_per_voice=1)
    with pytest.raises(ValueError, match="reserved"):
        corpus_synth.plan_utterances(tmp_path, [voice], 1, seed=0)
    with pytest.raises(ValueError, match="reserved"):
        corpus_synth.render(voice, "hello", tmp_path / "x.wav")
    assert not any(tmp_path.iterdir())
