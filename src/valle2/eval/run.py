"""The evaluation runner: synthesise every item of a list, score it, write rows, a summary and a plot.

For every :class:`~valle2.eval.lists.EvalItem` it writes one row per scored clip (JSONL,
appended as soon as the item is done) for three systems, as in the paper's Table 1:

- ``ground-truth``: the original utterance (whole, against its full transcript);
- ``codec``: the same utterance encoded and decoded by the model's codec;
- ``model``: ``samples`` outputs of the model (N candidates of one batched decode, each
  seeded from ``(seed, item key)``), all scored; the one the ``select`` scorers rank best
  is marked ``selected``. Sample 0 alone is the paper's single-sampling result, the
  selected one its "N samples, sorted" result — one run gives both.

Every clip the model or its codec produces goes through the safety policy (consent check,
watermark, audit) like any other synthesis, and is saved under ``out_dir/audio/`` so the
results can be listened to.

Layout of ``out_dir``::

    run.json        the run's settings; resuming with different ones is refused
    rows.jsonl      one JSON object per clip, keyed "<system>/<setting>/<id>[/<sample>]"
    audio/<system>/<setting>/<id>[_s<sample>].wav
    summary.json, summary.md, summary.png      (valle2.eval.report)

**Resuming.** A second run with the same ``out_dir`` skips every key already in
``rows.jsonl`` (a row cut short by a crash is dropped and redone) and recomputes the
summary from all rows in the file (also those of items not in this run's list, e.g. of
another setting evaluated into the same folder). Outputs are seeded per item, so a resumed run writes the rows an
uninterrupted one would have.

Row fields: ``key, system, setting, id, speaker, sample, n_samples, selected, text`` (the
words the clip is scored against), ``hyp`` (ASR transcript), ``wer, wer_errors,
wer_words``, ``sim_prompt`` (speaker similarity to the prompt), ``sim_reference`` (to the
original utterance; model rows only), ``duration_s, expected_s, duration_ratio,
silence_ratio, clipping_ratio, peak, rms_db`` (signal checks), ``dnsmos_ovrl, dnsmos_sig,
dnsmos_bak, dnsmos_p808`` (with a DNSMOS model), ``select_score`` (best-of-N), ``seed,
synth_seconds`` (per clip: the item's batched decode divided by N), ``rtf, score_seconds,
audio`` (path relative to ``out_dir``) and ``error`` (for an item whose audio or text
could not be used; such rows are counted, not averaged).
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import os
import re
import time
from pathlib import Path
from typing import Sequence

import numpy as np

from valle2.errors import AudioError, TextError, Valle2Error
from valle2.eval.lists import EvalItem
from valle2.eval.report import Summary, summarize, write_report

__all__ = ["run_eval", "load_backends", "read_rows", "item_seed", "model_fingerprint", "RUN_FORMAT"]

logger = logging.getLogger(__name__)

RUN_FORMAT = "valle2-eval-run"
RUN_VERSION = 1
# Settings that change the numbers: a resumed run must use the same ones.
_FIXED = ("model", "model_fingerprint", "samples", "select", "asr", "speaker", "quality", "seed", "sampling", "reference_rows")


# ----------------------------------------------------------------------------- backends


def _digest(wav: np.ndarray, sr: int) -> bytes:
    return hashlib.blake2b(np.ascontiguousarray(wav, dtype=np.float32).tobytes() + int(sr).to_bytes(4, "little"),
                           digest_size=16).digest()


class _MemoASR:
    """An ASR that remembers its transcripts by clip content.

    The best-of-N scorers and the metrics then share one ASR pass per clip.
    """

    def __init__(self, asr) -> None:
        self.asr, self.name, self._memo = asr, asr.name, {}

    def transcribe(self, wav, sr) -> str:
        return self.transcribe_batch([(wav, sr)])[0]

    def transcribe_batch(self, items) -> list[str]:
        keys = [_digest(w, s) for w, s in items]
        todo = [i for i, k in enumerate(keys) if k not in self._memo]
        if todo:
            for i, text in zip(todo, self.asr.transcribe_batch([items[i] for i in todo])):
                self._memo[keys[i]] = text
        return [self._memo[k] for k in keys]

    def clear(self) -> None:
        self._memo.clear()


class _MemoSpeaker:
    """A speaker encoder that remembers its embeddings by clip content (see :class:`_MemoASR`)."""

    def __init__(self, encoder) -> None:
        self.encoder, self.name, self._memo = encoder, encoder.name, {}

    def embed(self, wav, sr) -> np.ndarray:
        key = _digest(wav, sr)
        if key not in self._memo:
            self._memo[key] = self.encoder.embed(wav, sr)
        return self._memo[key]

    def similarity(self, wav_a, sr_a, wav_b, sr_b) -> float:
        from valle2.eval.speaker import cosine

        return cosine(self.embed(wav_a, sr_a), self.embed(wav_b, sr_b))

    def clear(self) -> None:
        self._memo.clear()


def load_backends(asr, speaker, quality):
    """Load (or accept) the backends before any synthesis, so a missing package fails first."""
    from valle2.eval.asr import get_asr
    from valle2.eval.quality import SignalQuality, get_quality
    from valle2.eval.speaker import get_speaker_encoder
    from valle2.eval.wer import wer_details

    wer_details("a", "a")  # raises MissingDependencyError now rather than after the first synthesis
    asr = get_asr(asr) if isinstance(asr, str) else asr
    speaker = get_speaker_encoder(speaker) if isinstance(speaker, str) else speaker
    if quality is None or (isinstance(quality, str) and quality == "signal"):
        quality = None  # signal checks always run; no extra meter
    elif isinstance(quality, (str, os.PathLike)):
        quality = get_quality(quality)
    if isinstance(quality, SignalQuality):
        quality = None
    return asr, speaker, quality


# ----------------------------------------------------------------------------- rows file


def read_rows(path: str | os.PathLike, *, repair: bool = False) -> list[dict]:
    """The rows of a ``rows.jsonl``; later rows replace earlier ones with the same key.

    A last line cut short (a crash while writing) is skipped, and with ``repair`` cut off
    the file so the next append starts on a fresh line.
    """
    path = Path(path)
    if not path.exists():
        return []
    data = path.read_bytes()
    rows: dict[str, dict] = {}
    good_end = 0
    pos = 0
    for line in data.splitlines(keepends=True):
        pos += len(line)
        if not line.strip():
            good_end = pos
            continue
        try:
            row = json.loads(line)
            key = row["key"]
        except (json.JSONDecodeError, UnicodeDecodeError, KeyError, TypeError):
            if pos == len(data):
                logger.warning("%s: the last row is incomplete (interrupted run?); it will be redone", path)
                break
            raise Valle2Error(f"{str(path)!r} has a corrupt row at byte {pos - len(line)}: {line[:80]!r}") from None
        if not line.endswith(b"\n"):  # complete JSON but no newline: keep it, add the newline on repair
            rows[key] = row
            if repair:
                with path.open("ab") as f:
                    f.write(b"\n")
            good_end = pos + 1
            break
        rows[key] = row
        good_end = pos
    if repair and good_end < len(data):
        with path.open("r+b") as f:
            f.truncate(good_end)
    return list(rows.values())


def _append_rows(path: Path, rows: list[dict]) -> None:
    text = "".join(json.dumps(_jsonable(r), ensure_ascii=False, allow_nan=False) + "\n" for r in rows)
    with path.open("a", encoding="utf-8") as f:
        f.write(text)  # one write per item: an item's rows land together
        f.flush()
        os.fsync(f.fileno())


def _jsonable(row: dict) -> dict:
    out = {}
    for k, v in row.items():
        if isinstance(v, (np.floating, np.integer)):
            v = v.item()
        if isinstance(v, float) and not math.isfinite(v):
            v = None
        out[k] = v
    return out


def _check_run_file(out_dir: Path, settings: dict) -> None:
    path = out_dir / "run.json"
    if path.exists():
        try:
            old = json.loads(path.read_text(encoding="utf-8"))
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise Valle2Error(
                f"{str(path)!r} is not valid JSON ({exc}); remove it or use another output folder"
            ) from None
        if old.get("format") != RUN_FORMAT or old.get("version") != RUN_VERSION:
            raise Valle2Error(f"{str(path)!r} is not a valle2 evaluation run of version {RUN_VERSION}")
        diff = [k for k in _FIXED if old.get(k) != settings.get(k)]
        if diff:
            what = "; ".join(f"{k} was {old.get(k)!r}, now {settings.get(k)!r}" for k in diff)
            raise Valle2Error(
                f"{str(out_dir)!r} holds a run with other settings ({what}); "
                "resume with the same settings or choose another output folder"
            )
        return
    out_dir.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name("run.json.tmp")
    tmp.write_text(json.dumps({"format": RUN_FORMAT, "version": RUN_VERSION, **settings}, indent=2) + "\n")
    os.replace(tmp, path)


# ----------------------------------------------------------------------------- scoring


def model_fingerprint(model) -> str:
    """A short hash of the model's weights, config and codec: a resumed run must use the same model."""
    import torch

    h = hashlib.blake2b(digest_size=8)
    h.update(json.dumps(model.config.to_dict(), sort_keys=True).encode())
    h.update(json.dumps(model.codec.identity(), sort_keys=True, default=str).encode())
    for name, tensor in sorted(model.state_dict().items()):
        h.update(name.encode())
        h.update(tensor.detach().to("cpu", torch.float32).contiguous().numpy().tobytes())
    return h.hexdigest()


def item_seed(seed: int, item: EvalItem) -> int:
    """The synthesis seed of one item: depends on the run's seed and the item's key only."""
    return int.from_bytes(hashlib.sha256(f"{seed}/{item.key}".encode()).digest()[:8], "little") >> 1


def _safe_name(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", text)


class _Scorer:
    """Scores clips of one item: ASR + WER, speaker similarity, signal checks, optional DNSMOS."""

    def __init__(self, asr: _MemoASR, speaker: _MemoSpeaker, quality) -> None:
        self.asr, self.speaker, self.quality = asr, speaker, quality

    def score(self, clips: Sequence[np.ndarray], sr: int, ref_text: str, *, prompt, reference=None,
              expected_s: float | None) -> list[dict]:
        from valle2.eval.quality import signal_checks
        from valle2.eval.speaker import cosine
        from valle2.eval.wer import wer_details

        t0 = time.perf_counter()
        hyps = self.asr.transcribe_batch([(c, sr) for c in clips])
        prompt_emb = self.speaker.embed(*prompt)
        ref_emb = self.speaker.embed(*reference) if reference is not None else None
        out = []
        for clip, hyp in zip(clips, hyps):
            wd = wer_details(ref_text, hyp)
            emb = self.speaker.embed(clip, sr)
            row = dict(
                text=ref_text,
                hyp=hyp,
                wer=wd.wer,
                wer_errors=wd.substitutions + wd.deletions + wd.insertions,
                wer_words=wd.reference_words,
                sim_prompt=cosine(emb, prompt_emb),
            )
            if ref_emb is not None:
                row["sim_reference"] = cosine(emb, ref_emb)
            checks = signal_checks(clip, sr, expected_s if expected_s and expected_s > 0 else None)
            row["expected_s"] = expected_s
            row.update(checks)
            if self.quality is not None and len(clip) >= 0.1 * sr:
                prefix = "dnsmos_" if str(getattr(self.quality, "name", "")).startswith("dnsmos") else "quality_"
                row.update({prefix + k: v for k, v in self.quality.score(clip, sr).items()})
            out.append(row)
        per_clip = (time.perf_counter() - t0) / max(len(clips), 1)
        for row in out:
            row["score_seconds"] = per_clip
        return out


# ----------------------------------------------------------------------------- the runner


def run_eval(
    model,
    items: Sequence[EvalItem],
    out_dir: str | os.PathLike,
    *,
    samples: int = 1,
    select: str = "sim,wer",
    asr="faster-whisper",
    speaker="resemblyzer",
    quality="signal",
    seed: int = 0,
    include_reference_rows: bool = True,
    unsafe_no_consent: bool = False,
    progress: bool = True,
    policy=None,
    sampling: dict | None = None,
    save_audio: bool = True,
    meta: dict | None = None,
) -> Summary:
    """Evaluate ``model`` (a :class:`~valle2.models.valle2.VallE2`) on ``items``; resumable.

    Args:
        samples: outputs per item (N). All are scored; the best by ``select`` is marked.
        select: best-of-N scorers, as for ``synthesize --select`` (``sim``, ``wer``,
            ``duration`` or a comma-separated rank-sum of them).
        asr, speaker, quality: backend names (see :func:`~valle2.eval.asr.get_asr`,
            :func:`~valle2.eval.speaker.get_speaker_encoder`,
            :func:`~valle2.eval.quality.get_quality`: ``"signal"`` or a DNSMOS folder) or
            backend objects. All are loaded before the first synthesis.
        seed: run seed; each item's outputs are seeded by ``(seed, item key)``.
        include_reference_rows: also score the ground truth and its codec resynthesis.
        unsafe_no_consent: skip the consent check (public datasets); outputs are still
            watermarked and audited.
        policy: the safety policy (default: ``resolve_policy(None)``).
        sampling: sampling overrides (``top_p``, ``temperature``, ...).
        meta: extra facts for ``summary.json`` (e.g. the list's path).

    Returns the :class:`~valle2.eval.report.Summary` of all rows in ``out_dir``.
    """
    from valle2.eval.scorers import get_scorer
    from valle2.safety.policy import resolve_policy

    if samples < 1:
        raise Valle2Error(f"samples is {samples}; must be >= 1")
    items = list(items)
    if not items:
        raise Valle2Error("the evaluation list has no items (check --setting and --max-items)")
    keys = [it.key for it in items]
    if len(set(keys)) != len(keys):
        dup = next(k for k in keys if keys.count(k) > 1)
        raise Valle2Error(f"item {dup!r} appears more than once in the list")

    asr_b, speaker_b, quality_b = load_backends(asr, speaker, quality)
    asr_m, speaker_m = _MemoASR(asr_b), _MemoSpeaker(speaker_b)
    try:
        selector = get_scorer(select, asr=asr_m, speaker=speaker_m)
    except ValueError as exc:
        raise Valle2Error(str(exc)) from None
    sampling_cfg = model.sampling_config(**(sampling or {}))
    policy = resolve_policy(policy)

    out_dir = Path(out_dir)
    settings = {
        "model": getattr(model, "name", type(model).__name__),
        "model_fingerprint": model_fingerprint(model),
        "samples": samples,
        "select": selector.name,
        "asr": asr_b.name,
        "speaker": speaker_b.name,
        "quality": quality_b.name if quality_b is not None else "signal",
        "seed": seed,
        "sampling": {k: v for k, v in sorted((sampling or {}).items()) if v is not None},
        "reference_rows": include_reference_rows,
    }
    _check_run_file(out_dir, settings)
    rows_path = out_dir / "rows.jsonl"
    done = {r["key"] for r in read_rows(rows_path, repair=True)}
    scorer = _Scorer(asr_m, speaker_m, quality_b)

    todo = [it for it in items if not _item_keys(it, samples, include_reference_rows) <= done]
    if len(todo) < len(items):
        logger.info("resuming: %d of %d items already scored in %s", len(items) - len(todo), len(items), rows_path)
    bar = _progress(todo, progress, total=len(items), initial=len(items) - len(todo))
    running = {"wer": [], "sim": []}
    for item in bar:
        new = _evaluate_item(model, item, out_dir, done, scorer=scorer, selector=selector, samples=samples,
                             seed=seed, include_reference_rows=include_reference_rows,
                             unsafe_no_consent=unsafe_no_consent, policy=policy, sampling=sampling_cfg,
                             save_audio=save_audio)
        _append_rows(rows_path, new)
        done.update(r["key"] for r in new)
        asr_m.clear()
        speaker_m.clear()
        for r in new:
            if r["system"] == "model" and r.get("selected") and not r.get("error"):
                running["wer"].append(r["wer"])
                running["sim"].append(r["sim_prompt"])
        if hasattr(bar, "set_postfix") and running["wer"]:
            bar.set_postfix(wer=f"{100 * np.mean(running['wer']):.1f}%", sim=f"{np.mean(running['sim']):.3f}")
    if hasattr(bar, "close"):
        bar.close()

    rows = read_rows(rows_path)
    summary = summarize(rows, {**settings, **(meta or {})})
    return write_report(summary, rows, out_dir)


def _item_keys(item: EvalItem, samples: int, refs: bool) -> set[str]:
    keys = {f"model/{item.key}/{i}" for i in range(samples)}
    if refs:
        keys |= {f"ground-truth/{item.key}", f"codec/{item.key}"}
    return keys


def _progress(items: list, enabled: bool, *, total: int, initial: int):
    if not enabled:
        return items
    try:
        from tqdm import tqdm
    except ImportError:
        return _LogProgress(items, total, initial)
    return tqdm(items, total=total, initial=initial, unit="utt", desc="eval", dynamic_ncols=True)


class _LogProgress:
    """A log line per item, for when tqdm is not installed."""

    def __init__(self, items: list, total: int, initial: int) -> None:
        self.items, self.total, self.initial = items, total, initial

    def __iter__(self):
        t0 = time.perf_counter()
        for i, item in enumerate(self.items, start=1):
            yield item
            done = self.initial + i
            eta = (time.perf_counter() - t0) / i * (self.total - done)
            logger.info("eval: %d/%d items (%s), about %.0f s left", done, self.total, item.key, eta)


def _base_row(system: str, item: EvalItem, key: str) -> dict:
    return dict(key=key, system=system, setting=item.setting, id=item.id, speaker=item.speaker,
                prompt_id=item.prompt_id, prompt_text_estimated=item.prompt_text_estimated)


def _error_rows(item: EvalItem, keys: list[str], exc: Exception) -> list[dict]:
    """Rows that record why ``item`` could not be scored; a resumed run does not retry them."""
    logger.warning("%s: %s", item.key, exc)
    return [dict(_base_row(k.split("/", 1)[0], item, k), error=str(exc)) for k in keys]


def _evaluate_item(model, item: EvalItem, out_dir: Path, done: set[str], *, scorer: _Scorer, selector, samples: int,
                   seed: int, include_reference_rows: bool, unsafe_no_consent: bool, policy, sampling,
                   save_audio: bool) -> list[dict]:
    rows: list[dict] = []
    try:
        prompt = item.load_prompt()
    except AudioError as exc:
        keys = sorted(_item_keys(item, samples, include_reference_rows) - done)
        return _error_rows(item, keys, exc)
    sr = model.sample_rate
    audio_dir = out_dir / "audio"
    name = _safe_name(item.id)
    try:
        reference = item.load_reference()
    except AudioError as exc:
        reference, reference_error = None, exc

    if include_reference_rows:
        gt_key, codec_key = f"ground-truth/{item.key}", f"codec/{item.key}"
        if reference is None:
            rows += _error_rows(item, [k for k in (gt_key, codec_key) if k not in done], reference_error)
        if reference is not None and gt_key not in done:
            [scores] = scorer.score([reference[0]], reference[1], item.reference_text, prompt=prompt,
                                    expected_s=item.reference_end - item.reference_start)
            rows.append({**_base_row("ground-truth", item, gt_key), **scores})
        if reference is not None and codec_key not in done:
            rows.append(_codec_row(model, item, codec_key, reference, prompt, scorer, policy, unsafe_no_consent,
                                   audio_dir / "codec" / item.setting / f"{name}.wav" if save_audio else None,
                                   out_dir))

    model_keys = [f"model/{item.key}/{i}" for i in range(samples)]
    if all(k in done for k in model_keys):
        return rows
    s = item_seed(seed, item)
    try:
        from valle2.models.valle2 import SynthesisJob

        p = model.prepare_prompt(prompt, item.prompt_text)
        # Rows sentence by sentence, N candidates each; sample j gets candidate j of every sentence.
        rows_n = model.make_rows(item.text, p, candidates=samples)
        jobs = [SynthesisJob(item.text, p, unsafe_no_consent=unsafe_no_consent, rows=rows_n[j::samples])
                for j in range(samples)]
        t0 = time.perf_counter()
        # N jobs of one batched decode: the samples differ by the generator's stream.
        wavs = model.synthesize_batch(jobs, seed=s, policy=policy, sampling=sampling)
        synth_seconds = (time.perf_counter() - t0) / samples
    except (AudioError, TextError) as exc:
        return rows + _error_rows(item, [k for k in model_keys if k not in done], exc)

    scores = scorer.score(wavs, sr, item.text, prompt=prompt, reference=reference,
                          expected_s=item.expected_seconds)
    best, select_scores = 0, [None] * samples
    if samples > 1:
        raw = selector.score(wavs, sr, prompt_wav=prompt[0], prompt_sr=prompt[1], text=item.text,
                             prompt_text=item.prompt_text)
        select_scores = [float(v) if len(w) else -math.inf for v, w in zip(raw, wavs)]
        best = int(np.argmax(np.where(np.isnan(select_scores), -np.inf, select_scores)))
    for i, (wav, sc) in enumerate(zip(wavs, scores)):
        key = model_keys[i]
        if key in done:
            continue
        path = None
        if save_audio and len(wav):
            path = _save(audio_dir / "model" / item.setting / f"{name}_s{i}.wav", wav, sr, out_dir)
        dur = len(wav) / sr
        rows.append({
            **_base_row("model", item, key), "sample": i, "n_samples": samples, "selected": i == best,
            **sc, "select_score": select_scores[i], "seed": s, "synth_seconds": synth_seconds,
            "rtf": synth_seconds / dur if dur else None, "audio": path,
        })
    return rows


def _codec_row(model, item: EvalItem, key: str, reference, prompt, scorer: _Scorer, policy, unsafe_no_consent: bool,
               path: Path | None, out_dir: Path) -> dict:
    """Encode and decode the original with the model's codec; watermarked and audited like any output."""
    ref_wav, ref_sr = reference
    auth = policy.authorize(ref_wav, ref_sr, unsafe_no_consent=unsafe_no_consent,
                            model_requires_consent=model.requires_consent)
    t0 = time.perf_counter()
    codes = model.codec.encode(ref_wav, ref_sr)  # (K, T); the codec resamples
    wav = model.codec.decode(codes)
    wav = policy.finalize(wav, model.sample_rate, auth, item.reference_text)
    seconds = time.perf_counter() - t0
    [scores] = scorer.score([wav], model.sample_rate, item.reference_text, prompt=prompt,
                            expected_s=item.reference_end - item.reference_start)
    dur = len(wav) / model.sample_rate
    saved = _save(path, wav, model.sample_rate, out_dir) if path is not None and len(wav) else None
    return {**_base_row("codec", item, key), **scores, "synth_seconds": seconds,
            "rtf": seconds / dur if dur else None, "audio": saved}


def _save(path: Path, wav: np.ndarray, sr: int, out_dir: Path) -> str:
    from valle2.audio import save_audio

    save_audio(path, wav, sr)
    return path.relative_to(out_dir).as_posix()
