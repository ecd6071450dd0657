"""Multi-voice synthetic corpus builder (pure functions behind ``valle2 corpus synth``).

Each (voice, sentence) pair is rendered by its engine (espeak-ng, flite or festival) to a
temporary file, converted by ``sox -D`` (no dither: reproducible bytes) to 24 kHz mono
16-bit WAV, and moved into place atomically, so an interrupted build resumes by skipping
the files that exist. The sentences of a voice are a deterministic function of
``(seed, voice id)``, so re-running with the same arguments rebuilds the same manifests.

Layout of ``out_dir``::

    wavs/<voice slug>/<voice slug>-0000.wav ...
    synth_recordings_<split>.jsonl.gz     Lhotse RecordingSet
    synth_supervisions_<split>.jsonl.gz   Lhotse SupervisionSet (speaker = voice id, text)

Reserved voices (flite rms, festival ked_diphone) are refused here, whatever the caller
asks: they exist only for independent evaluation.
"""

from __future__ import annotations

import logging
import os
import random
import shutil
import subprocess
import tempfile
import zlib
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import soundfile as sf

from valle2.data.sentences import generate_sentences
from valle2.data.voices import Voice, assert_not_reserved, is_reserved
from valle2.errors import MissingDependencyError, Valle2Error

log = logging.getLogger(__name__)

SAMPLE_RATE = 24000
_ENGINE_BINARIES = {"espeak": "espeak-ng", "flite": "flite", "festival": "text2wave"}


@dataclass(frozen=True)
class Utterance:
    id: str
    voice: Voice
    text: str
    path: Path


def check_engines(voices: list[Voice]) -> None:
    """Raise :class:`MissingDependencyError` naming the first missing binary."""
    needed = {_ENGINE_BINARIES[v.engine] for v in voices} | {"sox"}
    for binary in sorted(needed):
        if shutil.which(binary) is None:
            raise MissingDependencyError(
                f"'{binary}' is not on PATH; install it with "
                "`apt-get install espeak-ng flite festival festvox-kallpc16k festvox-us-slt-hts sox`"
            )


# Debian packages of the festival voices valle2 uses (flite and espeak-ng voices come with the engine)
FESTIVAL_PACKAGES = {"kal_diphone": "festvox-kallpc16k", "cmu_us_slt_arctic_hts": "festvox-us-slt-hts",
                     "ked_diphone": "festvox-kdlpc16k"}


def check_engine_output(voice: Voice, raw_path: str | os.PathLike, stderr: str = "") -> None:
    """Raise :class:`MissingDependencyError` when an engine wrote no audio for ``voice``.

    festival answers an uninstalled voice with "SIOD ERROR: unbound variable" and exit status 0,
    so the missing file is the first sign of it.
    """
    raw = Path(raw_path)
    if raw.is_file() and raw.stat().st_size > 44:
        return
    hint = (f"apt-get install {FESTIVAL_PACKAGES[voice.name]}" if voice.engine == "festival" and voice.name in FESTIVAL_PACKAGES
            else f"check the voice name with `{_ENGINE_BINARIES[voice.engine]}`")
    detail = " ".join(stderr.split())[:200]
    raise MissingDependencyError(f"{voice.engine} wrote no audio for voice {voice.id!r}: is the voice installed? ({hint})"
                                 + (f"; the engine said: {detail}" if detail else ""))


def voice_sentences(voice: Voice, n: int, seed: int, pool: list[str] | None = None) -> list[str]:
    """The ``n`` sentences read by ``voice``: deterministic, different for every voice.

    Without ``pool`` they come from the grammar of ``valle2.data.sentences``; with it, they are the
    first ``n`` of a seeded shuffle of the pool, a different order for every voice. Either way a
    larger ``n`` keeps the first sentences, so a resumed or enlarged build finds the files it
    rendered before still holding the right text.
    """
    voice_seed = seed * 1_000_003 + zlib.crc32(voice.id.encode())
    if pool is None:
        return generate_sentences(n, seed=voice_seed)
    if n > len(pool):
        raise Valle2Error(f"{n} sentences per voice asked for, but the sentence pool holds only {len(pool)}")
    order = list(pool)
    random.Random(voice_seed).shuffle(order)
    return order[:n]


def plan_utterances(out_dir: Path, voices: list[Voice], sentences_per_voice: int, seed: int,
                    pool: list[str] | None = None) -> list[Utterance]:
    utts = []
    for voice in voices:
        assert_not_reserved(voice)
        for i, text in enumerate(voice_sentences(voice, sentences_per_voice, seed, pool)):
            uid = f"{voice.slug}-{i:04d}"
            utts.append(Utterance(uid, voice, text, out_dir / "wavs" / voice.slug / f"{uid}.wav"))
    return utts


def _engine_command(voice: Voice, raw_path: str) -> tuple[list[str], bool]:
    """(argv, text-on-stdin) rendering ``voice`` to ``raw_path`` at the engine's own rate."""
    if voice.engine == "espeak":
        return ["espeak-ng", "-v", voice.name, "-w", raw_path, "--stdin"], True
    if voice.engine == "flite":
        return ["flite", "-voice", voice.name, "-f", "/dev/stdin", "-o", raw_path], True
    if voice.engine == "festival":
        return ["text2wave", "-eval", f"(voice_{voice.name})", "-o", raw_path], True
    raise Valle2Error(f"unknown engine {voice.engine!r} for voice {voice.id!r}")


def render(voice: Voice, text: str, out_path: Path) -> Path:
    """Render one sentence to a 24 kHz mono 16-bit WAV at ``out_path`` (atomic write)."""
    assert_not_reserved(voice)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="valle2-synth-") as tmp:
        raw = os.path.join(tmp, "raw.wav")
        argv, stdin_text = _engine_command(voice, raw)
        done = subprocess.run(argv, input=text if stdin_text else None, text=True, check=True,
                              stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        check_engine_output(voice, raw, done.stderr)
        converted = os.path.join(tmp, "out.wav")
        warp = [] if voice.warp == 1.0 else ["speed", f"{voice.warp:g}", "tempo", "-s", f"{1 / voice.warp:.6f}"]
        subprocess.run(["sox", "-D", raw, "-r", str(SAMPLE_RATE), "-c", "1", "-b", "16", converted, *warp],
                       check=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        # Same file system as out_path's folder is not guaranteed for /tmp: copy then rename.
        staged = out_path.with_suffix(".wav.part")
        shutil.copyfile(converted, staged)
        os.replace(staged, out_path)
    return out_path


def _render_if_missing(utt: Utterance) -> bool:
    if utt.path.exists():
        return False
    render(utt.voice, utt.text, utt.path)
    return True


def render_all(utts: list[Utterance], jobs: int = 1) -> int:
    """Render every utterance whose file is missing; return how many were rendered."""
    if jobs < 1:
        raise Valle2Error(f"--jobs must be >= 1, got {jobs}")
    done = 0
    with ThreadPoolExecutor(max_workers=jobs) as pool:
        for i, rendered in enumerate(pool.map(_render_if_missing, utts)):
            done += int(rendered)
            if (i + 1) % 200 == 0:
                log.info("%d/%d utterances ready (%d rendered now)", i + 1, len(utts), done)
    return done


def write_manifests(
    out_dir: Path,
    utts: list[Utterance],
    split: str,
    min_duration: float = 2.0,
    max_duration: float = 8.0,
) -> tuple[Path, Path]:
    """Write Lhotse manifests for the utterances whose duration is within [min, max] s."""
    from lhotse import Recording, RecordingSet, SupervisionSegment, SupervisionSet

    recordings, supervisions = [], []
    skipped = 0
    for utt in utts:
        info = sf.info(str(utt.path))
        duration = info.frames / info.samplerate
        if not (min_duration <= duration <= max_duration):
            skipped += 1
            continue
        rec = Recording.from_file(utt.path, recording_id=utt.id)
        recordings.append(rec)
        supervisions.append(
            SupervisionSegment(
                id=utt.id, recording_id=utt.id, start=0.0, duration=rec.duration, channel=0,
                text=utt.text, language="English", speaker=utt.voice.id,
                custom={"engine": utt.voice.engine},
            )
        )
    if skipped:
        log.info("%s: %d utterances outside %.1f-%.1f s left out of the manifests", split, skipped,
                 min_duration, max_duration)
    rec_path = out_dir / f"synth_recordings_{split}.jsonl.gz"
    sup_path = out_dir / f"synth_supervisions_{split}.jsonl.gz"
    RecordingSet.from_recordings(recordings).to_file(rec_path)
    SupervisionSet.from_segments(supervisions).to_file(sup_path)
    return rec_path, sup_path


def synth_corpus(
    out_dir: Path,
    voices: list[Voice],
    split: str,
    sentences_per_voice: int,
    jobs: int = 1,
    seed: int = 0,
    min_duration: float = 2.0,
    max_duration: float = 8.0,
    sentences: list[str] | None = None,
) -> tuple[Path, Path]:
    """Render (resumably) and write the manifests of one split; returns their paths.

    ``sentences``: a pool to draw each voice's sentences from (``valle2 corpus sentences``)
    instead of the grammar."""
    reserved = [v.id for v in voices if is_reserved(v)]
    if reserved:
        raise Valle2Error(f"reserved evaluation voices {reserved} must never be put in a corpus")
    if sentences_per_voice < 1:
        raise Valle2Error(f"--sentences-per-voice must be >= 1, got {sentences_per_voice}")
    check_engines(voices)
    out_dir.mkdir(parents=True, exist_ok=True)
    utts = plan_utterances(out_dir, voices, sentences_per_voice, seed, sentences)
    log.info("%s: %d voices x %d sentences -> %s", split, len(voices), sentences_per_voice, out_dir)
    rendered = render_all(utts, jobs=jobs)
    log.info("%s: rendered %d new files (%d already present)", split, rendered, len(utts) - rendered)
    return write_manifests(out_dir, utts, split, min_duration, max_duration)
