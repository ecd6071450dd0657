import json
import logging

import numpy as np
import pytest
import soundfile as sf
import torch

from valle2.config import CodecConfig, TextConfig, TokenizeConfig, build_codec
from valle2.data.recipes import prepare_generic_folder
from valle2.data.shards import DataFileError, ShardReader, write_shard
from valle2.data.tokenize import open_tokenized, tokenize

CODEC = CodecConfig()  # the tiny random EnCodec, 4 x 64
TEXT = TextConfig()


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def _corpus(folder, texts, seconds=None, sr=16000):
    for i, text in enumerate(texts):
        dur = (seconds or {}).get(i, 1.0)
        t = np.arange(int(dur * sr)) / sr
        wav = 0.3 * np.sin(2 * np.pi * (150 + 20 * i) * t) if (seconds or {}).get(("silent", i)) is None else 0 * t
        path = folder / f"u{i}.wav"
        folder.mkdir(parents=True, exist_ok=True)
        sf.write(path, wav.astype(np.float32), sr)
        path.with_suffix(".txt").write_text(text)
    prepared = prepare_generic_folder(folder, folder.parent / f"{folder.name}-manifests", name=folder.name)
    return prepared.cuts[folder.name]


class CountingCodec:
    """The real codec, counting the clips it encodes; raises once ``fail_after`` clips are done (a kill)."""

    def __init__(self, fail_after=None):
        self.inner = build_codec(CODEC)
        self.fail_after, self.encoded = fail_after, 0
        for name in ("sample_rate", "frame_rate", "n_codebooks", "codebook_size"):
            setattr(self, name, getattr(self.inner, name))

    def identity(self):
        return self.inner.identity()

    def encode_batch(self, wavs, sr, batch_size=16):
        if self.fail_after is not None and self.encoded + len(wavs) > self.fail_after:
            raise KeyboardInterrupt("killed")
        self.encoded += len(wavs)
        return self.inner.encode_batch(wavs, sr, batch_size)


def test_bad_utterances_are_skipped_with_a_logged_reason(tmp_path, caplog):
    texts = ["Good one.", "", "Much too long here.", "Short.", "!!!", "Unreadable one.", "Quiet please.", "Fine too."]
    seconds = {2: 4.0, 3: 0.2, ("silent", 6): True}
    manifest = _corpus(tmp_path / "c", texts, seconds)
    sf.write(tmp_path / "c" / "u5.wav", np.zeros(10, np.float32), 16000)  # header read at prepare, then damaged:
    (tmp_path / "c" / "u5.wav").write_bytes(b"RIFF" + b"\x00" * 40)  # the manifest still lists it
    caplog.set_level(logging.WARNING)
    result = tokenize([manifest], tmp_path / "tok", codec=CODEC, text=TEXT,
                      settings=TokenizeConfig(min_seconds=0.5, max_seconds=3.0))
    assert result.complete and (result.n_cuts, result.n_skipped) == (2, 6)
    lines = (tmp_path / "tok" / "skipped.jsonl").read_text().splitlines()
    skipped = {s["id"]: s["reason"] for s in map(json.loads, lines)}
    assert skipped == {"u1": "empty transcript", "u2": "too long", "u3": "too short", "u4": "bad transcript",
                       "u5": "unreadable audio", "u6": "silent audio"}
    for cut_id, reason in skipped.items():
        assert any(f"skipping {cut_id}: {reason}" in r.getMessage() for r in caplog.records)
    data = open_tokenized([tmp_path / "tok"])
    cuts = list(data.cuts)
    assert [c.id for c in cuts] == ["u0", "u7"] and data.n_codebooks == 4 and data.codebook_size == 64
    tokens = cuts[0].custom["tokens"]
    codes, phones = ShardReader().read(tmp_path / "tok" / tokens["shard"], tokens["key"])
    assert codes.shape == (4, cuts[0].custom["tokens"]["frames"]) and codes.dtype == torch.long
    assert 0 <= int(codes.min()) and int(codes.max()) < 64
    from valle2.text import SymbolTable, TextFrontend

    assert phones.tolist() == TextFrontend(SymbolTable.default(), "en-us").encode("Good one.")


def test_killed_run_resumes_without_redoing_finished_shards(tmp_path):
    manifest = _corpus(tmp_path / "c", [f"Sentence number {w}." for w in "one two three four five six".split()])
    settings = TokenizeConfig(shard_size=2)
    with pytest.raises(KeyboardInterrupt):
        tokenize([manifest], tmp_path / "tok", codec=CODEC, text=TEXT, settings=settings,
                 codec_obj=CountingCodec(fail_after=3))  # dies inside the second shard
    shards = tmp_path / "tok" / "shards"
    assert (shards / "shard-000000.json").is_file() and not (shards / "shard-000001.json").exists()
    assert not (tmp_path / "tok" / "index.json").exists()
    with pytest.raises(DataFileError, match=r"not a complete tokenized folder \(1 shard\(s\) done"):
        open_tokenized([tmp_path / "tok"])
    first = {p.name: p.stat().st_mtime_ns for p in shards.glob("shard-000000*")}

    codec = CountingCodec()
    result = tokenize([manifest], tmp_path / "tok", codec=CODEC, text=TEXT, settings=settings, codec_obj=codec)
    assert (result.already_done, result.done_now, codec.encoded) == (1, 2, 4)
    assert {p.name: p.stat().st_mtime_ns for p in shards.glob("shard-000000*")} == first
    assert result.complete and result.n_cuts == 6
    assert [c.id for c in open_tokenized([tmp_path / "tok"]).cuts] == [f"u{i}" for i in range(6)]
    assert not list(shards.glob(".*"))  # partial files of the killed run are gone

    again = tokenize([manifest], tmp_path / "tok", codec=CODEC, text=TEXT, settings=settings, codec_obj=CountingCodec())
    assert (again.done_now, again.already_done, again.complete) == (0, 3, True)


def test_ranks_encode_their_own_shards_and_the_last_one_merges(tmp_path):
    manifest = _corpus(tmp_path / "c", [f"Line {w}." for w in "one two three four five".split()])
    settings = TokenizeConfig(shard_size=2)
    c1 = CountingCodec()
    r1 = tokenize([manifest], tmp_path / "tok", codec=CODEC, text=TEXT, settings=settings, rank=1, world_size=2,
                  codec_obj=c1)
    assert (r1.n_shards, r1.done_now, r1.complete, c1.encoded) == (3, 1, False, 2)  # shard 1 only
    c0 = CountingCodec()
    r0 = tokenize([manifest], tmp_path / "tok", codec=CODEC, text=TEXT, settings=settings, rank=0, world_size=2,
                  codec_obj=c0)
    assert (r0.done_now, r0.complete, c0.encoded, r0.n_cuts) == (2, True, 3, 5)  # shards 0 and 2, then merged
    assert [c.id for c in open_tokenized([tmp_path / "tok"]).cuts] == [f"u{i}" for i in range(5)]


def test_other_settings_and_unknown_versions_are_refused(tmp_path):
    manifest = _corpus(tmp_path / "c", ["One line."])
    tokenize([manifest], tmp_path / "tok", codec=CODEC, text=TEXT, settings=TokenizeConfig())
    with pytest.raises(DataFileError, match="other settings .*max_seconds"):
        tokenize([manifest], tmp_path / "tok", codec=CODEC, text=TEXT, settings=TokenizeConfig(max_seconds=9.0))

    index = tmp_path / "tok" / "index.json"
    index.write_text(json.dumps({**json.loads(index.read_text()), "version": 7}))
    with pytest.raises(DataFileError, match="valle2-tokens version 7; this valle2 reads version 1 only"):
        open_tokenized([tmp_path / "tok"])

    from safetensors.torch import save_file

    path = tmp_path / "future.safetensors"
    save_file({"0.codes": torch.zeros(2, 3, dtype=torch.int16), "0.phones": torch.zeros(2, dtype=torch.int16)},
              str(path), metadata={"format": "valle2-token-shard", "version": "2"})
    with pytest.raises(DataFileError, match="version 2; this valle2 reads version 1 only"):
        ShardReader().read(path, "0")
    write_shard(tmp_path / "ok.safetensors", [("0", torch.tensor([[1, 2]]), torch.tensor([5]))], {"codec": {"x": 1}})
    codes, phones = ShardReader().read(tmp_path / "ok.safetensors", "0")
    assert codes.tolist() == [[1, 2]] and phones.tolist() == [5]


@pytest.mark.slow  # two spawned workers import torch and transformers: ~20 s on a shared 2-core CPU
def test_parallel_jobs_give_the_same_tokens(tmp_path):
    manifest = _corpus(tmp_path / "c", [f"Number {w}." for w in "one two three four".split()])
    tokenize([manifest], tmp_path / "one", codec=CODEC, text=TEXT, settings=TokenizeConfig(shard_size=2))
    result = tokenize([manifest], tmp_path / "two", codec=CODEC, text=TEXT,
                      settings=TokenizeConfig(shard_size=2, jobs=2))
    assert result.complete and result.done_now == 2
    reader = ShardReader()
    for a, b in zip(open_tokenized([tmp_path / "one"]).cuts, open_tokenized([tmp_path / "two"]).cuts):
        ta, tb = a.custom["tokens"], b.custom["tokens"]
        assert a.id == b.id
        one = reader.read(tmp_path / "one" / ta["shard"], ta["key"])
        two = reader.read(tmp_path / "two" / tb["shard"], tb["key"])
        assert all(torch.equal(x, y) for x, y in zip(one, two))
