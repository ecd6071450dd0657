"""Data recipes: a corpus on disk -> Lhotse manifests. Pure functions; nothing is downloaded.

Each recipe writes, into ``out_dir``, gzipped JSON-lines manifests::

    <name>_recordings.jsonl.gz    one Recording per audio file (header read, samples not)
    <name>_supervisions.jsonl.gz  transcript, speaker, language of each utterance
    <name>_cuts.jsonl.gz          the cuts `valle2 tokenize` reads (one per utterance)
    <name>_skipped.jsonl          what was left out and why (unreadable audio, no transcript)

and returns the cut manifest paths. Recipes:

- :func:`prepare_generic_folder`: a folder of audio files with a ``.txt`` transcript beside
  each, or one CSV/TSV (``path, text[, speaker]``; LJSpeech's ``metadata.csv`` works).
- :func:`prepare_libritts`: LibriTTS or LibriTTS-R from a local copy, through Lhotse's recipe.
- :func:`prepare_libriheavy`: Libriheavy's own cut manifests plus a local LibriLight copy.
- :func:`prepare_lhotse_manifests`: recordings + supervisions of any Lhotse recipe (or of
  ``valle2 corpus synth``) -> cuts.

Transcripts are kept as written: empty or unreadable text is left for the tokenizer,
which skips it with a reason, as it does for audio it cannot decode.
"""

from __future__ import annotations

import csv
import dataclasses
import json
import logging
from pathlib import Path

logger = logging.getLogger(__name__)

AUDIO_EXTENSIONS = (".wav", ".flac", ".mp3", ".ogg", ".opus", ".m4a")
LIBRITTS_PARTS = ("dev-clean", "dev-other", "test-clean", "test-other", "train-clean-100", "train-clean-360",
                  "train-other-500")
LIBRIHEAVY_SUBSETS = ("small", "medium", "large", "dev", "test_clean", "test_other", "test_clean_large",
                      "test_other_large")
_PATH_COLUMNS = ("path", "file", "filename", "file_name", "audio", "audio_path", "wav", "id")
_TEXT_COLUMNS = ("text", "transcript", "transcription", "sentence", "normalized_text")
_SPEAKER_COLUMNS = ("speaker", "speaker_id", "spk")


@dataclasses.dataclass
class Prepared:
    """What a recipe wrote: cut manifests (one per part) and counts."""

    cuts: dict[str, Path]
    n_utterances: int = 0
    n_skipped: int = 0
    hours: float = 0.0
    skipped: Path | None = None


def _write_skipped(path: Path, rows: list[dict]) -> Path:
    with open(path, "w", encoding="utf-8") as f:
        for r in rows:
            f.write(json.dumps(r, ensure_ascii=False) + "\n")
    return path


def _skip(rows: list[dict], item: str, reason: str, detail: str = "") -> None:
    logger.warning("skipping %s: %s%s", item, reason, f" ({detail})" if detail else "")
    rows.append({"id": item, "reason": reason, "detail": detail})


# ----------------------------------------------------------------------------- generic folder


def prepare_generic_folder(
    folder: str | Path,
    out_dir: str | Path,
    *,
    name: str = "corpus",
    transcripts: str | Path | None = None,
    language: str = "English",
    speaker: str = "parent",
) -> Prepared:
    """Manifests for a folder of audio files.

    Transcripts come from ``<file>.txt`` (or ``.lab``) beside each audio file, or, when
    ``transcripts`` names a CSV/TSV, from its rows: ``path, text[, speaker]`` with or
    without a header (columns named path/file/audio and text/transcript, optionally
    speaker). Paths are relative to the table's folder; a path without extension (an
    LJSpeech id) is looked up with the usual audio extensions, also under ``wavs/``.

    The speaker is the CSV's speaker column, else ``speaker="parent"``: the audio file's
    folder name, or ``"none"``: no speaker. Utterance ids are the file paths relative to
    ``folder`` without extension.
    """
    from lhotse import Recording, RecordingSet, SupervisionSegment, SupervisionSet

    folder, out_dir = Path(folder), Path(out_dir)
    if not folder.is_dir():
        raise FileNotFoundError(f"corpus folder {folder} does not exist")
    if speaker not in ("parent", "none"):
        raise ValueError(f"speaker must be 'parent' or 'none', got {speaker!r}")
    out_dir.mkdir(parents=True, exist_ok=True)
    skipped: list[dict] = []
    items = _table_items(Path(transcripts), folder, skipped) if transcripts else _sidecar_items(folder, skipped)

    recordings, supervisions, seen = [], [], set()
    for audio, text, spk in items:
        try:
            rel = audio.resolve().relative_to(folder.resolve())
        except ValueError:
            rel = Path(audio.name)
        utt_id = rel.with_suffix("").as_posix()
        if utt_id in seen:
            _skip(skipped, str(audio), "duplicate id", utt_id)
            continue
        try:
            rec = Recording.from_file(audio, recording_id=utt_id)
        except Exception as e:  # any decoder error: the file is not usable audio
            _skip(skipped, str(audio), "unreadable audio", _first_line(e))
            continue
        if rec.num_samples == 0:
            _skip(skipped, str(audio), "empty audio", "0 samples")
            continue
        seen.add(utt_id)
        if spk is None and speaker == "parent":
            spk = audio.parent.name
        recordings.append(rec)
        supervisions.append(SupervisionSegment(
            id=utt_id, recording_id=utt_id, start=0.0, duration=rec.duration,
            channel=rec.channel_ids[0] if len(rec.channel_ids) == 1 else rec.channel_ids,
            text=text, language=language, speaker=spk,
        ))
    if not recordings:
        raise ValueError(f"no usable audio with transcripts in {folder} ({len(skipped)} skipped)")
    recs = RecordingSet.from_recordings(recordings)
    sups = SupervisionSet.from_segments(supervisions)
    cuts_path = _write_parts(out_dir, name, recs, sups)
    skipped_path = _write_skipped(out_dir / f"{name}_skipped.jsonl", skipped)
    hours = sum(r.duration for r in recordings) / 3600
    logger.info("%s: %d utterances (%.2f h), %d skipped -> %s", name, len(recordings), hours, len(skipped), cuts_path)
    return Prepared(cuts={name: cuts_path}, n_utterances=len(recordings), n_skipped=len(skipped), hours=hours,
                    skipped=skipped_path)


def _sidecar_items(folder: Path, skipped: list[dict]):
    for audio in sorted(p for p in folder.rglob("*") if p.suffix.lower() in AUDIO_EXTENSIONS and p.is_file()):
        for ext in (".txt", ".lab"):
            side = audio.with_suffix(ext)
            if side.is_file():
                try:
                    text = side.read_text(encoding="utf-8").strip()
                except (OSError, UnicodeDecodeError) as e:
                    _skip(skipped, str(audio), "unreadable transcript", _first_line(e))
                    break
                yield audio, text, None
                break
        else:
            _skip(skipped, str(audio), "no transcript", f"no {audio.with_suffix('.txt').name} beside it")


def _table_items(table: Path, folder: Path, skipped: list[dict]):
    if not table.is_file():
        raise FileNotFoundError(f"transcript table {table} does not exist")
    sample = table.read_text(encoding="utf-8")
    head_lines = [line for line in sample.splitlines()[:20] if line.strip()]
    if table.suffix.lower() == ".tsv":
        delimiter = "\t"
    elif head_lines and all("|" in line for line in head_lines):
        delimiter = "|"  # LJSpeech style; its text has commas, which would fool the sniffer
    else:
        try:
            delimiter = csv.Sniffer().sniff("\n".join(head_lines), delimiters=",\t;").delimiter
        except csv.Error:
            delimiter = ","
    rows = list(csv.reader(sample.splitlines(), delimiter=delimiter, quoting=csv.QUOTE_MINIMAL))
    rows = [r for r in rows if r and any(c.strip() for c in r)]
    if not rows:
        raise ValueError(f"transcript table {table} is empty")
    head = [c.strip().lower() for c in rows[0]]
    if any(h in _PATH_COLUMNS for h in head) and any(h in _TEXT_COLUMNS for h in head):
        pi = next(i for i, h in enumerate(head) if h in _PATH_COLUMNS)
        ti = next(i for i, h in enumerate(head) if h in _TEXT_COLUMNS)
        si = next((i for i, h in enumerate(head) if h in _SPEAKER_COLUMNS), None)
        rows = rows[1:]
    else:
        # No header: path, text[, speaker]. LJSpeech's "id|text|normalized text" has no speaker.
        pi, ti, si = 0, 1, (2 if len(rows[0]) > 2 and delimiter != "|" else None)
    base = table.parent
    for n, row in enumerate(rows, start=1):
        if len(row) <= max(pi, ti):
            _skip(skipped, f"{table.name} row {n}", "malformed row", delimiter.join(row)[:80])
            continue
        audio = _find_audio(row[pi].strip(), base, folder)
        if audio is None:
            _skip(skipped, row[pi].strip(), "missing audio", f"listed in {table.name} but not found")
            continue
        spk = row[si].strip() if si is not None and len(row) > si and row[si].strip() else None
        yield audio, row[ti].strip(), spk


def _find_audio(name: str, *bases: Path) -> Path | None:
    for base in bases:
        p = (base / name) if not Path(name).is_absolute() else Path(name)
        if p.is_file():
            return p
        if p.suffix.lower() not in AUDIO_EXTENSIONS:
            for root in (p.parent, p.parent / "wavs"):
                for ext in AUDIO_EXTENSIONS:
                    q = root / (p.name + ext)
                    if q.is_file():
                        return q
    return None


def _write_parts(out_dir: Path, name: str, recs, sups) -> Path:
    from lhotse.qa import fix_manifests

    recs, sups = fix_manifests(recs, sups)
    recs.to_file(out_dir / f"{name}_recordings.jsonl.gz")
    sups.to_file(out_dir / f"{name}_supervisions.jsonl.gz")
    cuts_path = out_dir / f"{name}_cuts.jsonl.gz"
    _cuts_per_utterance(recs, sups).to_file(cuts_path)
    return cuts_path


def _cuts_per_utterance(recs, sups):
    """One cut per supervision, with the supervision's id (so ids in logs and skip lists are utterance ids)."""
    from lhotse import CutSet

    cuts = CutSet.from_manifests(recordings=recs, supervisions=sups)
    return cuts.trim_to_supervisions(keep_overlapping=False).to_eager()


def _first_line(e: BaseException) -> str:
    text = str(e).strip() or type(e).__name__
    return text.splitlines()[0][:200]


# ----------------------------------------------------------------------------- any Lhotse recipe's output


def prepare_lhotse_manifests(recordings: str | Path, supervisions: str | Path, out_dir: str | Path, *,
                             name: str = "corpus") -> Prepared:
    """Cuts (one per supervision) from a RecordingSet + SupervisionSet written by any Lhotse recipe
    (``lhotse prepare ...``) or by ``valle2 corpus synth``."""
    from lhotse import load_manifest

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    cuts = _cuts_per_utterance(load_manifest(recordings), load_manifest(supervisions))
    path = out_dir / f"{name}_cuts.jsonl.gz"
    cuts.to_file(path)
    hours = sum(c.duration for c in cuts) / 3600
    logger.info("%s: %d utterances (%.2f h) -> %s", name, len(cuts), hours, path)
    return Prepared(cuts={name: path}, n_utterances=len(cuts), hours=hours)


# ----------------------------------------------------------------------------- LibriTTS / LibriTTS-R


def prepare_libritts(
    corpus_dir: str | Path,
    out_dir: str | Path,
    *,
    parts: list[str] | tuple[str, ...] | None = None,
    name: str = "libritts",
    jobs: int = 1,
) -> Prepared:
    """LibriTTS or LibriTTS-R (same layout) from a local copy, through ``lhotse.recipes.prepare_libritts``.

    ``parts`` defaults to every part present in ``corpus_dir`` (``dev-clean``,
    ``train-clean-100``, ...). Lhotse writes ``libritts_{recordings,supervisions}_<part>``;
    cut manifests ``<name>_cuts_<part>.jsonl.gz`` are added beside them. Use separate
    ``out_dir`` for LibriTTS and LibriTTS-R (Lhotse names both "libritts").
    """
    from lhotse.recipes import prepare_libritts as lhotse_prepare_libritts

    corpus_dir, out_dir = Path(corpus_dir), Path(out_dir)
    if not corpus_dir.is_dir():
        raise FileNotFoundError(f"LibriTTS folder {corpus_dir} does not exist")
    present = [p for p in LIBRITTS_PARTS if (corpus_dir / p).is_dir()]
    parts = list(parts) if parts else present
    missing = [p for p in parts if p not in present]
    if missing or not parts:
        raise FileNotFoundError(
            f"LibriTTS parts {missing or list(LIBRITTS_PARTS)} not found in {corpus_dir} "
            f"(present: {present or 'none'})")
    out_dir.mkdir(parents=True, exist_ok=True)
    manifests = lhotse_prepare_libritts(corpus_dir, dataset_parts=parts, output_dir=out_dir, num_jobs=jobs)
    result = Prepared(cuts={})
    for part in parts:
        m = manifests.get(part)
        if m is None:  # already prepared by an earlier run: Lhotse returns nothing for it
            from lhotse import load_manifest

            m = {"recordings": load_manifest(out_dir / f"libritts_recordings_{part}.jsonl.gz"),
                 "supervisions": load_manifest(out_dir / f"libritts_supervisions_{part}.jsonl.gz")}
        cuts = _cuts_per_utterance(m["recordings"], m["supervisions"])
        path = out_dir / f"{name}_cuts_{part}.jsonl.gz"
        cuts.to_file(path)
        result.cuts[part] = path
        result.n_utterances += len(cuts)
        result.hours += sum(c.duration for c in cuts) / 3600
        logger.info("%s %s: %d utterances -> %s", name, part, len(cuts), path)
    return result


# ----------------------------------------------------------------------------- Libriheavy


def prepare_libriheavy(
    manifest_dir: str | Path,
    audio_root: str | Path,
    out_dir: str | Path,
    *,
    subsets: list[str] | tuple[str, ...] = ("small",),
    text: str = "original",
    check_audio: bool = True,
) -> Prepared:
    """Libriheavy from its cut manifests (``libriheavy_cuts_<subset>.jsonl.gz``) and a local LibriLight copy.

    Libriheavy's cuts are segments of LibriLight's long recordings, whose paths read
    ``download/librilight/<subset>/...``; they are re-rooted at ``audio_root`` (the folder
    holding ``small/``, ``medium/``, ...; a root that keeps the ``download/librilight/``
    prefix works too). ``text="original"`` uses the cased, punctuated transcript
    (``custom["texts"][0]``), ``"normalized"`` the upper-case one (``texts[1]``); the
    punctuation is what the phone sequence needs to carry pauses. With ``check_audio``,
    cuts whose audio file is missing are skipped with a reason.
    """
    from lhotse import CutSet

    manifest_dir, audio_root, out_dir = Path(manifest_dir), Path(audio_root), Path(out_dir)
    if text not in ("original", "normalized"):
        raise ValueError(f"text must be 'original' or 'normalized', got {text!r}")
    unknown = [s for s in subsets if s not in LIBRIHEAVY_SUBSETS]
    if unknown:
        raise ValueError(f"unknown Libriheavy subsets {unknown}; known: {', '.join(LIBRIHEAVY_SUBSETS)}")
    out_dir.mkdir(parents=True, exist_ok=True)
    text_index = 0 if text == "original" else 1
    result = Prepared(cuts={})
    skipped: list[dict] = []
    exists: dict[str, Path | None] = {}
    for subset in subsets:
        src = manifest_dir / f"libriheavy_cuts_{subset}.jsonl.gz"
        if not src.is_file():
            raise FileNotFoundError(f"Libriheavy manifest {src} not found (download it separately; nothing is fetched)")
        path = out_dir / f"libriheavy_cuts_{subset}.jsonl.gz"
        n, seconds = 0, 0.0
        with CutSet.open_writer(path) as writer:
            for cut in CutSet.from_jsonl_lazy(src):
                rerooted = _reroot(cut, audio_root, exists, check_audio)
                if rerooted is None:
                    _skip(skipped, cut.id, "missing audio", f"not under {audio_root}")
                    continue
                cut = rerooted
                cut = _with_libriheavy_text(cut, text_index)
                writer.write(cut)
                n += 1
                seconds += cut.duration
        result.cuts[subset] = path
        result.n_utterances += n
        result.hours += seconds / 3600
        logger.info("libriheavy %s: %d cuts (%.1f h) -> %s", subset, n, seconds / 3600, path)
    result.n_skipped = len(skipped)
    result.skipped = _write_skipped(out_dir / "libriheavy_skipped.jsonl", skipped)
    return result


def _reroot(cut, audio_root: Path, exists: dict, check: bool):
    """The cut with its recording's file sources under ``audio_root``; None when a file is missing."""
    rec = cut.recording
    sources = []
    for s in rec.sources:
        if s.type != "file" or Path(s.source).is_absolute():
            sources.append(s)
            continue
        if s.source not in exists:
            rel = Path(s.source)
            cands = [audio_root / rel]
            parts = rel.parts
            for k in range(1, len(parts)):  # strip "download/", "download/librilight/", ...
                cands.append(audio_root / Path(*parts[k:]))
            found = next((c for c in cands if c.is_file()), None)
            exists[s.source] = found if found is not None else (None if check else cands[0])
        target = exists[s.source]
        if target is None:
            return None
        sources.append(dataclasses.replace(s, source=str(target)))
    rec = dataclasses.replace(rec, sources=sources)
    return dataclasses.replace(cut, recording=rec)


def _with_libriheavy_text(cut, index: int):
    sups = []
    for s in cut.supervisions:
        texts = (s.custom or {}).get("texts")
        if isinstance(texts, list) and len(texts) > index and texts[index] is not None:
            s = dataclasses.replace(s, text=texts[index])
        sups.append(s)
    return dataclasses.replace(cut, supervisions=sups)
