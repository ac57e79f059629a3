"""The ``m2ugen`` command line: one entry point, one module per subcommand.

Each module in :data:`COMMANDS` exposes ``register(subparsers)``, which adds its parser and sets
``func`` (``args -> exit code``). Errors derived from :class:`~m2ugen.errors.M2UGenError` are
printed as one line and give exit code 2.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

from m2ugen.errors import M2UGenError

# Subcommand modules, in the order they appear in ``m2ugen --help``.
COMMANDS: tuple[str, ...] = (
    "m2ugen.commands.chat",
    "m2ugen.commands.generate",
    "m2ugen.commands.caption",
    "m2ugen.commands.edit",
    "m2ugen.commands.serve",
    "m2ugen.commands.transcribe",
    "m2ugen.commands.play",
    "m2ugen.commands.convert",
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="m2ugen", description="Any-to-music assistant.")
    subparsers = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for module_name in COMMANDS:
        importlib.import_module(module_name).register(subparsers)
    return parser


def run_command(func, args: argparse.Namespace) -> int:
    """Run ``func(args)``, turning library errors into one line on stderr and exit code 2."""
    try:
        return int(func(args) or 0)
    except M2UGenError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return run_command(args.func, args)


if __name__ == "__main__":
    sys.exit(main())
