"""``valle2 prepare``: a corpus on disk -> Lhotse manifests (thin layer over ``valle2.data.recipes``)."""

from __future__ import annotations

import argparse
from pathlib import Path


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("prepare", help="write Lhotse manifests for a local corpus (nothing is downloaded)")
    sub = parser.add_subparsers(dest="recipe", required=True, metavar="RECIPE")

    folder = sub.add_parser("folder",
                            help="a folder of audio files with a .txt beside each, or a CSV/TSV of transcripts")
    folder.add_argument("folder", type=Path)
    folder.add_argument("--out", type=Path, required=True, help="output folder for the manifests")
    folder.add_argument("--name", default="corpus", help="manifest name prefix (default: corpus)")
    folder.add_argument("--transcripts", type=Path, help="CSV/TSV with path,text[,speaker] instead of .txt files")
    folder.add_argument("--language", default="English", help="language recorded in the supervisions")
    folder.add_argument("--speaker", choices=("parent", "none"), default="parent",
                        help="speaker id: the audio file's folder name (default) or none")
    folder.set_defaults(func=run_folder)

    libritts = sub.add_parser("libritts", help="LibriTTS or LibriTTS-R from a local copy (Lhotse's recipe)")
    libritts.add_argument("corpus_dir", type=Path, help="folder holding dev-clean/, train-clean-100/, ...")
    libritts.add_argument("--out", type=Path, required=True)
    libritts.add_argument("--parts", nargs="+", help="parts to prepare (default: every part present)")
    libritts.add_argument("--name", default="libritts", help="cut manifest prefix, e.g. libritts-r")
    libritts.add_argument("--jobs", type=int, default=1)
    libritts.set_defaults(func=run_libritts)

    heavy = sub.add_parser("libriheavy", help="Libriheavy cut manifests re-rooted at a local LibriLight copy")
    heavy.add_argument("manifest_dir", type=Path, help="folder with libriheavy_cuts_<subset>.jsonl.gz")
    heavy.add_argument("--audio-root", type=Path, required=True,
                       help="LibriLight folder (holding small/, medium/, ...)")
    heavy.add_argument("--out", type=Path, required=True)
    heavy.add_argument("--subsets", nargs="+", default=["small"])
    heavy.add_argument("--text", choices=("original", "normalized"), default="original",
                       help="cased and punctuated (default) or upper-case normalized transcripts")
    heavy.add_argument("--no-check-audio", action="store_true", help="do not check that the audio files exist")
    heavy.set_defaults(func=run_libriheavy)

    lh = sub.add_parser("lhotse", help="cuts from the recordings + supervisions of any Lhotse recipe "
                                       "(or of valle2 corpus synth)")
    lh.add_argument("--recordings", type=Path, required=True)
    lh.add_argument("--supervisions", type=Path, required=True)
    lh.add_argument("--out", type=Path, required=True)
    lh.add_argument("--name", default="corpus", help="cut manifest prefix")
    lh.set_defaults(func=run_lhotse)


def _report(result) -> int:
    for path in result.cuts.values():
        print(path)
    return 0


def run_folder(args: argparse.Namespace) -> int:
    from valle2.data.recipes import prepare_generic_folder

    return _report(prepare_generic_folder(args.folder, args.out, name=args.name, transcripts=args.transcripts,
                                          language=args.language, speaker=args.speaker))


def run_libritts(args: argparse.Namespace) -> int:
    from valle2.data.recipes import prepare_libritts

    return _report(prepare_libritts(args.corpus_dir, args.out, parts=args.parts, name=args.name, jobs=args.jobs))


def run_libriheavy(args: argparse.Namespace) -> int:
    from valle2.data.recipes import prepare_libriheavy

    return _report(prepare_libriheavy(args.manifest_dir, args.audio_root, args.out, subsets=args.subsets,
                                      text=args.text, check_audio=not args.no_check_audio))


def run_lhotse(args: argparse.Namespace) -> int:
    from valle2.data.recipes import prepare_lhotse_manifests

    return _report(prepare_lhotse_manifests(args.recordings, args.supervisions, args.out, name=args.name))
