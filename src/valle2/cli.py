"""The ``valle2`` command line.

A thin layer: every sub-command lives in its own module under ``valle2.commands``
and exposes ``register(subparsers)``, which adds its parser and sets ``func``.
User errors (:class:`valle2.errors.Valle2Error`) print one line and exit 2.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import pkgutil
import sys

from valle2 import commands
from valle2.errors import Valle2Error


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="valle2", description="VALL-E 2 zero-shot text-to-speech")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for info in sorted(pkgutil.iter_modules(commands.__path__), key=lambda m: m.name):
        module = importlib.import_module(f"{commands.__name__}.{info.name}")
        module.register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    try:
        return int(args.func(args) or 0)
    except Valle2Error as exc:
        print(f"valle2 {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"valle2 {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
