"""``valle2 consent``: enroll a voice with the speaker's recorded consent; list and revoke records.

    valle2 consent challenge --name "Alice"          # prints a sentence to read aloud
    valle2 consent enroll --challenge ID --prompt alice.wav --recording alice_consent.wav
    valle2 consent list
    valle2 consent revoke VOICE_ID --reason "asked to stop"
    valle2 consent verify --prompt alice.wav         # would synthesis with this prompt be allowed?
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path


def register(sub) -> None:
    p = sub.add_parser("consent", help="speaker consent: challenge, enroll, list, revoke, verify",
                       description="Manage consent records. A voice can be cloned only after its speaker "
                                   "has read a random challenge sentence (checked by ASR and speaker "
                                   "similarity against the prompt).")
    p.add_argument("--store", type=Path, default=None,
                   help="consent store folder (default: $VALLE2_HOME/consent, VALLE2_HOME=~/.local/share/valle2)")
    csub = p.add_subparsers(dest="consent_command", required=True, metavar="ACTION")

    c = csub.add_parser("challenge", help="issue a random sentence for the speaker to read")
    c.add_argument("--name", required=True, help="the speaker's name (spoken in the sentence)")
    c.add_argument("--ttl", type=float, default=600, help="seconds the challenge stays valid (default 600)")
    c.add_argument("--json", action="store_true", help="print JSON")

    e = csub.add_parser("enroll", help="check a consent recording and store a signed consent record")
    e.add_argument("--challenge", required=True, help="challenge id from `valle2 consent challenge`")
    e.add_argument("--prompt", required=True, help="the prompt recording to be cloned (1-60 s)")
    e.add_argument("--recording", required=True, help="the speaker reading the challenge sentence (1-60 s)")
    e.add_argument("--name", default=None, help="voice name (default: the challenge's)")
    e.add_argument("--self", dest="self_mode", action="store_true",
                   help="it is your own voice (still needs the consent recording)")
    e.add_argument("--days", type=float, default=365, help="validity in days (default 365)")
    e.add_argument("--scope", default="synthesis", choices=["synthesis"])
    e.add_argument("--json", action="store_true", help="print the record as JSON")

    ls = csub.add_parser("list", help="list consent records and their status")
    ls.add_argument("--json", action="store_true", help="print JSON lines")

    r = csub.add_parser("revoke", help="revoke a voice's consent (signed, permanent)")
    r.add_argument("voice_id")
    r.add_argument("--reason", default="", help="why (kept in the revocation record)")

    v = csub.add_parser("verify", help="say whether synthesis with a prompt is allowed, and why not")
    v.add_argument("--prompt", required=True)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from valle2.safety.consent import ConsentStore, valle2_home

    store = ConsentStore(args.store if args.store is not None else valle2_home() / "consent")
    return {"challenge": _challenge, "enroll": _enroll, "list": _list, "revoke": _revoke,
            "verify": _verify}[args.consent_command](store, args)


def _challenge(store, args) -> int:
    ch = store.issue_challenge(args.name, ttl_s=args.ttl)
    if args.json:
        print(json.dumps(ch.to_json()))
        return 0
    print(f"Challenge {ch.id} (valid until {ch.expires_at}). Have {ch.voice_name or 'the speaker'} read aloud:\n")
    print(f"    {ch.text}\n")
    print(f"then: valle2 consent enroll --challenge {ch.id} --prompt PROMPT.wav --recording RECORDING.wav")
    return 0


def _load(path: str, what: str):
    from valle2.audio import load_audio

    return load_audio(path, what=what, min_seconds=1.0, max_seconds=60.0)


def _enroll(store, args) -> int:
    prompt, psr = _load(args.prompt, "prompt audio")
    consent, csr = _load(args.recording, "consent recording")
    rec = store.enroll(args.challenge, prompt, psr, consent, csr, name=args.name,
                       kind="self" if args.self_mode else "person", scope=args.scope, valid_days=args.days)
    if args.json:
        print(json.dumps(rec.to_json()))
    else:
        print(f"enrolled voice {rec.voice_id} ({rec.name}): WER {rec.wer:.2f}, speaker similarity "
              f"{rec.speaker_cosine:.2f}; valid until {rec.expires_at}")
    return 0


def _list(store, args) -> int:
    rows = store.list()
    if args.json:
        for row in rows:
            print(json.dumps(row))
        return 0
    if not rows:
        print(f"no consent records in {store.root}")
        return 0
    for row in rows:
        extra = f"  engine: {row['engine']}" if row.get("engine") else ""
        print(f"{row['voice_id']:<34} {row.get('status', ''):<10} {row.get('kind', ''):<17} "
              f"{row.get('name', '')!s:<20} expires {row.get('expires_at') or 'never'}{extra}")
    return 0


def _revoke(store, args) -> int:
    rev = store.revoke(args.voice_id, args.reason)
    print(f"revoked voice {rev['voice_id']} at {rev['revoked_at']}")
    return 0


def _verify(store, args) -> int:
    wav, sr = _load(args.prompt, "prompt audio")
    rec = store.verify(wav, sr)  # raises ConsentError (printed as one line, exit 2) when not allowed
    print(f"allowed: voice {rec.voice_id} ({rec.name}, {rec.kind}), valid until {rec.expires_at or 'never'}")
    return 0
