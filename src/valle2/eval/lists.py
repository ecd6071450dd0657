"""Evaluation lists: which utterances to synthesise, with which prompt, in which setting.

The paper (§5 of SPEC.md) evaluates on LibriSpeech test-clean utterances of 4-10 s in
two settings:

- **continuation**: the first 3 s of the utterance is the acoustic prompt and the
  transcript of those 3 s the prompt text; the model speaks the rest of the
  transcript (``EvalItem.text``). The ground truth for the output is the rest of the
  same recording (:meth:`EvalItem.load_target`).
- **cross-sentence**: another utterance of the same speaker (drawn with the seed) is
  the prompt, its transcript the prompt text; the model speaks the whole transcript.

Sources, each returning a list of :class:`Utterance`:

- :func:`from_librispeech` — a local LibriSpeech folder (``<spk>/<chapter>/<spk>-<chapter>.trans.txt``);
- :func:`from_lhotse` — a Lhotse CutSet, or a RecordingSet + SupervisionSet pair;
- :func:`from_folder` — your own voices: audio files with a ``.txt`` beside each, or a
  ``path,text,speaker`` CSV/TSV.

:func:`build_list` turns utterances into :class:`EvalItem` s deterministically from a
seed; :func:`save_list` writes them as JSONL (a header line, then one item per line)
with audio paths relative to a root folder, so a list made on one machine can be
shared and used on another with ``load_list(path, root=<your copy of the corpus>)``.

**Prompt-text approximation (continuation).** The transcript prefix spoken in the
first 3 s is exact only when the utterance carries word alignments (a Lhotse
supervision with ``alignment["word"]``, or LibriSpeech alignment files
``<spk>-<chapter>.alignment.txt``): a word belongs to the prompt when its midpoint is
before 3 s. Without alignments the split is estimated by assuming a constant
speaking rate over the characters of the transcript (a word belongs to the prompt
when its middle character falls in the first 3 s' share of all characters). That is
typically off by a word at the boundary, because of leading silence and pauses;
items built that way carry ``prompt_text_estimated=True``, and their continuation
WER carries that error (the ground-truth row, scored against the full transcript,
does not).
"""

from __future__ import annotations

import csv
import json
import logging
import os
import random
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Iterable, NamedTuple, Sequence

import numpy as np

from valle2.errors import AudioError, MissingDependencyError, Valle2Error

__all__ = [
    "Utterance",
    "EvalItem",
    "SETTINGS",
    "LIST_FORMAT",
    "LIST_VERSION",
    "build_list",
    "split_transcript",
    "from_librispeech",
    "from_lhotse",
    "from_folder",
    "save_list",
    "load_list",
    "read_list_header",
]

logger = logging.getLogger(__name__)

SETTINGS = ("continuation", "cross-sentence")
LIST_FORMAT = "valle2-eval-list"
LIST_VERSION = 1
AUDIO_SUFFIXES = (".wav", ".flac", ".ogg", ".mp3", ".opus")
MIN_PROMPT_SECONDS = 1.0  # the synthesiser refuses shorter prompts
MAX_PROMPT_SECONDS = 30.0  # ... and longer ones

Word = tuple[str, float, float]  # (word, start, end) in seconds from the utterance start


class Utterance(NamedTuple):
    """One transcribed utterance: ``audio[start : start + duration]`` says ``text``.

    A plain 5-tuple ``(id, speaker, audio, text, duration)`` is accepted wherever an
    Utterance is. ``words`` are optional word alignments ``(word, start, end)`` in
    seconds from the utterance start.
    """

    id: str
    speaker: str
    audio: str
    text: str
    duration: float
    start: float = 0.0
    words: tuple[Word, ...] | None = None


@dataclass(frozen=True)
class EvalItem:
    """One synthesis to score.

    The model is asked to say ``text`` in the voice of ``prompt_audio[prompt_start:prompt_end]``,
    whose transcript is ``prompt_text``. ``reference_audio[reference_start:reference_end]``
    is the original utterance (transcript ``reference_text``), used for ground-truth rows.
    Times are seconds within the audio files.
    """

    id: str
    setting: str
    speaker: str
    text: str
    prompt_audio: str
    prompt_text: str
    prompt_start: float
    prompt_end: float
    reference_audio: str
    reference_text: str
    reference_start: float
    reference_end: float
    prompt_id: str
    prompt_text_estimated: bool = False

    @property
    def key(self) -> str:
        """Unique within a list holding both settings: ``"<setting>/<id>"``."""
        return f"{self.setting}/{self.id}"

    @property
    def prompt_seconds(self) -> float:
        return self.prompt_end - self.prompt_start

    @property
    def target_span(self) -> tuple[float, float]:
        """Where in ``reference_audio`` the ground truth of ``text`` is: after the prompt for continuation."""
        if self.setting == "continuation":
            return self.prompt_end, self.reference_end
        return self.reference_start, self.reference_end

    @property
    def expected_seconds(self) -> float:
        """Duration of the ground truth of ``text`` — what a good output should last, roughly."""
        start, end = self.target_span
        return end - start

    def load_prompt(self, sr: int | None = None) -> tuple[np.ndarray, int]:
        """The prompt audio, mono float32, at ``sr`` (or the file's rate)."""
        return _load_span(self.prompt_audio, self.prompt_start, self.prompt_end, sr, "prompt audio")

    def load_reference(self, sr: int | None = None) -> tuple[np.ndarray, int]:
        """The whole original utterance (continuation: prompt included)."""
        return _load_span(self.reference_audio, self.reference_start, self.reference_end, sr, "reference audio")

    def load_target(self, sr: int | None = None) -> tuple[np.ndarray, int]:
        """The original audio of ``text`` only: the ground truth for a generated output."""
        start, end = self.target_span
        return _load_span(self.reference_audio, start, end, sr, "reference audio")


def _load_span(path: str, start: float, end: float, sr: int | None, what: str) -> tuple[np.ndarray, int]:
    from valle2.audio import load_audio

    wav, file_sr = load_audio(path, sr, what=what)
    a, b = int(round(start * file_sr)), int(round(end * file_sr))
    if b <= a or a >= len(wav):
        raise AudioError(
            f"{what} {path!r} has no audio in {start:.2f}-{end:.2f} s (the file lasts {len(wav) / file_sr:.2f} s)"
        )
    return wav[a:b], file_sr


# ----------------------------------------------------------------------------- building


def _canonical_setting(setting: str) -> tuple[str, ...]:
    s = setting.strip().lower().replace("_", "-")
    if s in {"continuation", "cont"}:
        return ("continuation",)
    if s in {"cross-sentence", "cross", "crosssentence"}:
        return ("cross-sentence",)
    if s in {"both", "all"}:
        return SETTINGS
    raise ValueError(f"unknown setting {setting!r}; use continuation, cross-sentence or both")


def split_transcript(
    text: str, duration: float, cut_seconds: float, words: Sequence[Word] | None = None
) -> tuple[str, str, bool]:
    """Split ``text`` into (what is said before ``cut_seconds``, the rest, estimated?).

    With ``words`` (alignments) a word goes to the prefix when its midpoint is before
    the cut. Without, the speaking rate is taken as constant over characters. Both
    parts get at least one word when the transcript has two or more.
    """
    if words:
        tokens = [w for w, _, _ in words]
        n_prefix = sum(1 for _, s, e in words if 0.5 * (s + e) < cut_seconds)
        estimated = False
        # Alignments may spell words differently from the transcript ("don't" vs "do n't");
        # keep the transcript's words when the counts agree.
        if len(text.split()) == len(tokens):
            tokens = text.split()
    else:
        tokens = text.split()
        total = len(" ".join(tokens))
        pos, n_prefix = 0, 0
        for tok in tokens:
            middle = pos + len(tok) / 2
            if total and middle / total * duration < cut_seconds:
                n_prefix += 1
            pos += len(tok) + 1
        estimated = True
    if len(tokens) >= 2:
        n_prefix = min(max(n_prefix, 1), len(tokens) - 1)
    return " ".join(tokens[:n_prefix]), " ".join(tokens[n_prefix:]), estimated


def _as_utterance(u) -> Utterance:
    if isinstance(u, Utterance):
        return u
    u = Utterance(*u)
    return u._replace(id=str(u.id), speaker=str(u.speaker), audio=str(u.audio), duration=float(u.duration))


def build_list(
    utterances: Iterable[Utterance | tuple],
    setting: str,
    *,
    seed: int = 0,
    min_s: float = 4.0,
    max_s: float = 10.0,
    prompt_seconds: float = 3.0,
    max_items: int | None = None,
    cross_prompt_seconds: float | None = None,
) -> list[EvalItem]:
    """Select utterances of ``min_s``-``max_s`` seconds and give each a prompt.

    Args:
        utterances: :class:`Utterance` s or ``(id, speaker, audio_path, text, duration)`` tuples.
        setting: ``"continuation"``, ``"cross-sentence"`` or ``"both"`` (each selected
            utterance once per setting; tell them apart by ``EvalItem.setting``).
        seed: makes the selection (``max_items``) and the cross-sentence prompts reproducible.
        prompt_seconds: continuation prompt length (the paper: 3 s).
        max_items: keep a seeded random subset of this many utterances (``None``: all).
        cross_prompt_seconds: crop cross-sentence prompts to their first N seconds
            (``None``: the whole prompt utterance, its transcript exact).

    The result is sorted by (setting, id) and depends only on the arguments, not on
    the order of ``utterances``. The cross-sentence prompt of an utterance is drawn
    from the other utterances of its speaker that are also ``min_s``-``max_s`` s long
    (or, if there are none, any other of 1-30 s), with a generator seeded by
    ``(seed, id)``, so it does not change when ``max_items`` does. Utterances that
    cannot be used (continuation: shorter than the prompt + 1 s or a single word;
    cross-sentence: no other utterance of the speaker) are skipped and counted in
    the log.
    """
    settings = _canonical_setting(setting)
    if not 0 < min_s <= max_s:
        raise ValueError(f"duration range is {min_s}-{max_s} s; need 0 < min_s <= max_s")
    if prompt_seconds < MIN_PROMPT_SECONDS:
        raise ValueError(f"prompt_seconds is {prompt_seconds}; need at least {MIN_PROMPT_SECONDS} s")
    if cross_prompt_seconds is not None and cross_prompt_seconds < MIN_PROMPT_SECONDS:
        raise ValueError(f"cross_prompt_seconds is {cross_prompt_seconds}; need at least {MIN_PROMPT_SECONDS} s")
    if max_items is not None and max_items < 1:
        raise ValueError(f"max_items is {max_items}; need a positive number or None")

    utts = sorted((_as_utterance(u) for u in utterances), key=lambda u: u.id)
    ids = [u.id for u in utts]
    if len(set(ids)) != len(ids):
        dup = next(i for i in ids if ids.count(i) > 1)
        raise Valle2Error(f"utterance id {dup!r} appears more than once; ids must be unique")
    eligible = [u for u in utts if min_s <= u.duration <= max_s and u.text.strip()]
    if max_items is not None and len(eligible) > max_items:
        eligible = sorted(random.Random(seed).sample(eligible, max_items), key=lambda u: u.id)

    by_speaker: dict[str, list[Utterance]] = {}
    for u in utts:
        by_speaker.setdefault(u.speaker, []).append(u)

    items: list[EvalItem] = []
    skipped = {s: 0 for s in settings}
    for s in settings:
        for u in eligible:
            item = (
                _continuation_item(u, prompt_seconds)
                if s == "continuation"
                else _cross_item(u, by_speaker[u.speaker], seed, min_s, max_s, cross_prompt_seconds)
            )
            if item is None:
                skipped[s] += 1
            else:
                items.append(item)
    for s, n in skipped.items():
        if n:
            logger.warning("%s: skipped %d of %d utterances that cannot be used", s, n, len(eligible))
    return items


def _continuation_item(u: Utterance, prompt_seconds: float) -> EvalItem | None:
    if u.duration < prompt_seconds + 1.0 or len(u.text.split()) < 2:
        return None
    prefix, rest, estimated = split_transcript(u.text, u.duration, prompt_seconds, u.words)
    return EvalItem(
        id=u.id,
        setting="continuation",
        speaker=u.speaker,
        text=rest,
        prompt_audio=u.audio,
        prompt_text=prefix,
        prompt_start=u.start,
        prompt_end=u.start + prompt_seconds,
        reference_audio=u.audio,
        reference_text=u.text,
        reference_start=u.start,
        reference_end=u.start + u.duration,
        prompt_id=u.id,
        prompt_text_estimated=estimated,
    )


def _cross_item(
    u: Utterance,
    same_speaker: list[Utterance],
    seed: int,
    min_s: float,
    max_s: float,
    crop: float | None,
) -> EvalItem | None:
    others = [o for o in same_speaker if o.id != u.id and o.text.strip()]
    pool = [o for o in others if min_s <= o.duration <= max_s]
    if not pool:
        pool = [o for o in others if MIN_PROMPT_SECONDS <= o.duration <= MAX_PROMPT_SECONDS]
    if not pool:
        return None
    # A string seed is hashed deterministically (SHA-512) by random.Random.
    p = random.Random(f"{seed}/{u.id}").choice(pool)
    prompt_text, estimated, length = p.text, False, p.duration
    if crop is not None and crop < p.duration:
        prompt_text, _, estimated = split_transcript(p.text, p.duration, crop, p.words)
        length = crop
    return EvalItem(
        id=u.id,
        setting="cross-sentence",
        speaker=u.speaker,
        text=u.text,
        prompt_audio=p.audio,
        prompt_text=prompt_text,
        prompt_start=p.start,
        prompt_end=p.start + length,
        reference_audio=u.audio,
        reference_text=u.text,
        reference_start=u.start,
        reference_end=u.start + u.duration,
        prompt_id=p.id,
        prompt_text_estimated=estimated,
    )


# ----------------------------------------------------------------------------- sources


def _duration(path: Path) -> float:
    import soundfile as sf

    try:
        info = sf.info(str(path))
    except Exception as exc:  # libsndfile's errors carry no stable type
        raise AudioError(f"cannot read audio file {str(path)!r}: {exc}") from exc
    return info.frames / info.samplerate


_LIBRISPEECH_PARTS = (
    "test-clean", "test-other", "dev-clean", "dev-other",
    "train-clean-100", "train-clean-360", "train-other-500",
)


def _librispeech_part(root: Path, part: str | None) -> Path:
    """The folder of ``part`` under ``root``; ``root`` itself when it holds no part folders."""
    if not part:
        return root
    for base in (root, root / "LibriSpeech"):
        if (base / part).is_dir():
            return base / part
    found = sorted(
        p.name for base in (root, root / "LibriSpeech") for p in base.glob("*") if p.name in _LIBRISPEECH_PARTS
    )
    if found:
        raise Valle2Error(f"no LibriSpeech part {part!r} under {str(root)!r}; found {', '.join(found)}")
    return root  # the part's own folder, under any name


def _read_alignment_file(path: Path) -> dict[str, tuple[Word, ...]]:
    """Parse ``<spk>-<chapter>.alignment.txt`` (utt ``",W1,,W2,"`` ``"end1,end2,..."``; "" = silence)."""
    out = {}
    for line in path.read_text(encoding="utf-8").splitlines():
        parts = line.split()
        if len(parts) != 3:
            continue
        utt, words, ends = parts[0], parts[1].strip('"').split(","), parts[2].strip('"').split(",")
        if len(words) != len(ends):
            continue
        aligned, start = [], 0.0
        for w, e in zip(words, ends):
            end = float(e)
            if w:
                aligned.append((w, start, end))
            start = end
        out[utt] = tuple(aligned)
    return out


def from_librispeech(
    root: str | os.PathLike, *, part: str | None = "test-clean", alignments_dir: str | os.PathLike | None = None
) -> list[Utterance]:
    """Utterances of a local LibriSpeech folder (nothing is downloaded).

    ``root`` is the part's folder (``.../LibriSpeech/test-clean``), or a folder holding
    it (``part`` names which). Transcripts come from ``<spk>-<chapter>.trans.txt``,
    durations from the FLAC headers, speakers from the folder names. Word alignments
    are used when ``<spk>-<chapter>.alignment.txt`` files (the "LibriSpeech
    alignments" release) are found beside the transcripts or under ``alignments_dir``.
    """
    root = Path(root).expanduser()
    if not root.is_dir():
        raise Valle2Error(f"LibriSpeech folder {str(root)!r} does not exist")
    base = _librispeech_part(root, part)
    trans_files = sorted(base.rglob("*.trans.txt"))
    if not trans_files:
        raise Valle2Error(f"no LibriSpeech transcripts (*.trans.txt) under {str(base)!r}")
    align_index: dict[str, Path] = {}
    if alignments_dir is not None:
        align_index = {p.name: p for p in Path(alignments_dir).expanduser().rglob("*.alignment.txt")}
    utts = []
    for trans in trans_files:
        chapter_id = trans.name[: -len(".trans.txt")]
        align_path = trans.with_name(f"{chapter_id}.alignment.txt")
        if not align_path.is_file():
            align_path = align_index.get(align_path.name)
        alignments = _read_alignment_file(align_path) if align_path else {}
        for line in trans.read_text(encoding="utf-8").splitlines():
            utt_id, _, text = line.strip().partition(" ")
            if not utt_id or not text.strip():
                continue
            audio = trans.parent / f"{utt_id}.flac"
            if not audio.is_file():
                logger.warning("LibriSpeech: %s has no audio file %s; skipped", utt_id, audio)
                continue
            utts.append(
                Utterance(
                    id=utt_id,
                    speaker=utt_id.split("-")[0],
                    audio=str(audio),
                    text=text.strip(),
                    duration=_duration(audio),
                    words=alignments.get(utt_id),
                )
            )
    return utts


def from_lhotse(manifest: str | os.PathLike, supervisions: str | os.PathLike | None = None) -> list[Utterance]:
    """Utterances of a Lhotse CutSet manifest, or of a RecordingSet + SupervisionSet pair.

    One utterance per supervision with text. The speaker is the supervision's
    ``speaker`` (the recording id when unset); word alignments
    (``supervision.alignment["word"]``) are kept. Only recordings stored as files
    are supported.
    """
    try:
        from lhotse import CutSet, RecordingSet, SupervisionSet, load_manifest
    except ImportError as exc:
        raise MissingDependencyError(
            'reading Lhotse manifests needs lhotse: pip install "valle2[train]" (or: pip install lhotse urllib3)'
        ) from exc
    first = load_manifest(manifest)
    second = load_manifest(supervisions) if supervisions is not None else None
    sets = [first] + ([second] if second is not None else [])
    cuts = next((m for m in sets if isinstance(m, CutSet)), None)
    recs = next((m for m in sets if isinstance(m, RecordingSet)), None)
    sups = next((m for m in sets if isinstance(m, SupervisionSet)), None)

    pairs = []  # (recording, where the supervision's time origin is in the recording, supervision)
    if cuts is not None:
        for cut in cuts:
            for sup in cut.supervisions:
                pairs.append((cut.recording, cut.start, sup))
    elif recs is not None and sups is not None:
        for sup in sups:
            pairs.append((recs[sup.recording_id], 0.0, sup))
    else:
        raise Valle2Error(
            f"{str(manifest)!r}: need a CutSet manifest, or a RecordingSet and a SupervisionSet manifest"
        )
    utts = []
    for rec, offset, sup in pairs:
        if not sup.text or not sup.text.strip():
            continue
        if rec is None or not rec.sources or rec.sources[0].type != "file":
            raise Valle2Error(f"recording of supervision {sup.id!r} is not a plain audio file; cannot evaluate on it")
        start = float(offset + sup.start)  # in the recording
        words = None
        if sup.alignment and sup.alignment.get("word"):
            # Lhotse keeps alignment times relative to the recording, also inside cuts.
            words = tuple((a.symbol, a.start - start, a.end - start) for a in sup.alignment["word"])
        utts.append(
            Utterance(
                id=sup.id,
                speaker=sup.speaker or rec.id,
                audio=str(rec.sources[0].source),
                text=sup.text.strip(),
                duration=float(sup.duration),
                start=start,
                words=words,
            )
        )
    return utts


def spaced_subset(utts: Sequence[Utterance], n: int) -> list[Utterance]:
    """``n`` utterances spread evenly over ``utts`` sorted by id: the same ones every run, whatever the
    manifest's order (benchmarks that score a fixed sample of a split use it)."""
    if n < 1:
        raise ValueError(f"n is {n}; must be >= 1")
    ordered = sorted(utts, key=lambda u: u.id)
    return ordered[:: max(1, len(ordered) // n)][:n]


def _read_table(path: Path) -> list[Utterance]:
    delimiter = "\t" if path.suffix.lower() in {".tsv", ".tab"} else ","
    with path.open(newline="", encoding="utf-8") as f:
        rows = [r for r in csv.reader(f, delimiter=delimiter) if r and any(c.strip() for c in r)]
    if not rows:
        raise Valle2Error(f"{str(path)!r} is empty; expected rows of path,text[,speaker]")
    header = [c.strip().lower() for c in rows[0]]
    if "path" in header and "text" in header:
        cols = {name: header.index(name) for name in ("path", "text", "speaker") if name in header}
        rows = rows[1:]
    else:
        cols = {"path": 0, "text": 1, "speaker": 2}
    utts = []
    for n, row in enumerate(rows, start=2 if "path" in header else 1):
        if len(row) <= max(cols["path"], cols["text"]):
            raise Valle2Error(f"{str(path)!r} line {n}: expected path,text[,speaker], got {row!r}")
        audio = (path.parent / row[cols["path"]].strip()).resolve()
        speaker_col = cols.get("speaker")
        speaker = row[speaker_col].strip() if speaker_col is not None and speaker_col < len(row) else ""
        rel = Path(row[cols["path"]].strip()).with_suffix("")
        utts.append(
            Utterance(
                id="__".join(rel.parts),
                speaker=speaker or audio.parent.name,
                audio=str(audio),
                text=row[cols["text"]].strip(),
                duration=_duration(audio),
            )
        )
    return utts


def from_folder(path: str | os.PathLike) -> list[Utterance]:
    """Utterances of your own recordings.

    ``path`` is either

    - a CSV/TSV file with rows ``path,text[,speaker]`` (a header row naming the
      columns is optional; audio paths are relative to the file), or
    - a folder with a ``metadata.csv`` / ``metadata.tsv`` like that, or else audio
      files (wav, flac, ogg, mp3, opus) each with a same-named ``.txt`` transcript
      beside it; the speaker is the audio file's parent folder name.

    Ids are the audio paths relative to the folder, without suffix, ``/`` -> ``__``.
    """
    path = Path(path).expanduser()
    if path.is_file():
        return _read_table(path)
    if not path.is_dir():
        raise Valle2Error(f"evaluation folder {str(path)!r} does not exist")
    for name in ("metadata.csv", "metadata.tsv"):
        if (path / name).is_file():
            return _read_table(path / name)
    utts, missing = [], 0
    for audio in sorted(p for p in path.rglob("*") if p.suffix.lower() in AUDIO_SUFFIXES and p.is_file()):
        txt = audio.with_suffix(".txt")
        if not txt.is_file():
            missing += 1
            continue
        rel = audio.relative_to(path).with_suffix("")
        utts.append(
            Utterance(
                id="__".join(rel.parts),
                speaker=audio.parent.name,
                audio=str(audio),
                text=" ".join(txt.read_text(encoding="utf-8").split()),
                duration=_duration(audio),
            )
        )
    if missing:
        logger.warning("%s: %d audio files have no .txt transcript beside them; skipped", path, missing)
    if not utts:
        raise Valle2Error(f"no audio files with a .txt transcript beside them under {str(path)!r}")
    return utts


# ----------------------------------------------------------------------------- files


def save_list(
    items: Sequence[EvalItem],
    path: str | os.PathLike,
    *,
    seed: int | None = None,
    root: str | os.PathLike | None = None,
    **meta,
) -> Path:
    """Write ``items`` as JSONL: a header line, then one item per line.

    Audio paths under ``root`` (default: the deepest folder holding all of them) are
    written relative to it, and ``root`` goes into the header, so that another
    machine can read the list against its own copy: ``load_list(path, root=...)``.
    ``seed`` and ``meta`` (e.g. ``min_s=4``) are recorded in the header.
    """
    path = Path(path)
    paths = [p for it in items for p in (it.prompt_audio, it.reference_audio)]
    if root is None and paths:
        root = os.path.commonpath([os.path.dirname(os.path.abspath(p)) for p in paths])
    root = Path(os.path.abspath(root)) if root is not None else None

    def rel(p: str) -> str:
        if root is None:
            return p
        ap = Path(os.path.abspath(p))
        try:
            return ap.relative_to(root).as_posix()
        except ValueError:
            return str(ap)

    header = {
        "format": LIST_FORMAT,
        "version": LIST_VERSION,
        "seed": seed,
        "settings": sorted({it.setting for it in items}),
        "count": len(items),
        "root": str(root) if root is not None else None,
        **meta,
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    with tmp.open("w", encoding="utf-8") as f:
        f.write(json.dumps(header, ensure_ascii=False) + "\n")
        for it in items:
            row = asdict(it)
            row["prompt_audio"], row["reference_audio"] = rel(it.prompt_audio), rel(it.reference_audio)
            f.write(json.dumps(row, ensure_ascii=False) + "\n")
    os.replace(tmp, path)
    return path


def read_list_header(path: str | os.PathLike) -> dict:
    """The header of a list file; refuses files of another format or a newer version."""
    path = Path(path)
    try:
        with path.open(encoding="utf-8") as f:
            header = json.loads(f.readline())
    except FileNotFoundError:
        raise Valle2Error(f"evaluation list {str(path)!r} does not exist") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise Valle2Error(f"{str(path)!r} is not an evaluation list (bad header: {exc})") from None
    if not isinstance(header, dict) or header.get("format") != LIST_FORMAT:
        raise Valle2Error(f"{str(path)!r} is not an evaluation list (format is not {LIST_FORMAT!r})")
    if header.get("version") != LIST_VERSION:
        raise Valle2Error(
            f"evaluation list {str(path)!r} has version {header.get('version')!r}; "
            f"this valle2 reads version {LIST_VERSION}"
        )
    return header


def load_list(path: str | os.PathLike, *, root: str | os.PathLike | None = None) -> list[EvalItem]:
    """Read a list written by :func:`save_list`.

    Relative audio paths are resolved against ``root``, else the header's root, else
    the list file's folder.
    """
    path = Path(path)
    header = read_list_header(path)
    base = Path(root or header.get("root") or path.parent).expanduser()
    if not base.is_dir():
        logger.warning("audio root %s of %s does not exist here; pass root= to point at your copy", base, path)
    names = {f.name for f in fields(EvalItem)}
    items = []
    with path.open(encoding="utf-8") as f:
        next(f)
        for n, line in enumerate(f, start=2):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
                row = {k: v for k, v in row.items() if k in names}
                for k in ("prompt_audio", "reference_audio"):
                    if not os.path.isabs(row[k]):
                        row[k] = str(base / row[k])
                items.append(EvalItem(**row))
            except (json.JSONDecodeError, KeyError, TypeError) as exc:
                raise Valle2Error(f"{str(path)!r} line {n}: not a valid item ({exc})") from None
    if len(items) != header.get("count", len(items)):
        raise Valle2Error(f"{str(path)!r} holds {len(items)} items but its header says {header['count']}; truncated?")
    return items
