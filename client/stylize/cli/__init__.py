"""The `stylize` command line: `run` (one image or a batch), `video`, `info`, `health`.

One module per concern: `exits` (the exit-code table), `common` (connection
and display flags, errors as one line), `flags` (option flags generated from
the proto's schema), `paths` (inputs and outputs checked before a job is
sent), `jobs` and `run` (the run command, single and batch), `info` (info and
health), `display` and `artifacts` (what a person sees, frames, GIF, plot).
Each command registers its own sub-parser.

Ctrl-C cancels the running call(s) (the server stops the job(s)) and exits
with 130. Only the client's own dependencies are imported (grpcio, protobuf,
Pillow, rich); matplotlib is loaded only for --loss-plot.
"""

from __future__ import annotations

import argparse
import difflib
import sys
from collections.abc import Callable, Sequence
from typing import NoReturn

from .. import DISTRIBUTION, version
from ..errors import StylizeError
from . import info, run, video
from .artifacts import MissingExtra
from .common import describe, say_error
from .exits import (
    EXIT_CODES,
    EXIT_CONNECT,
    EXIT_DEADLINE,
    EXIT_FAILED,
    EXIT_INTERRUPTED,
    EXIT_INVALID_ARGUMENT,
    EXIT_NOT_SERVING,
    EXIT_OK,
    EXIT_OVERLOADED,
    EXIT_PARTIAL,
    EXIT_SERVER_ERROR,
    EXIT_TOO_LARGE,
    EXIT_UNAUTHENTICATED,
    EXIT_USAGE,
    UsageError,
    exit_code_for,
)

__all__ = [
    "EXIT_CODES",
    "EXIT_CONNECT",
    "EXIT_DEADLINE",
    "EXIT_FAILED",
    "EXIT_INTERRUPTED",
    "EXIT_INVALID_ARGUMENT",
    "EXIT_NOT_SERVING",
    "EXIT_OK",
    "EXIT_OVERLOADED",
    "EXIT_PARTIAL",
    "EXIT_SERVER_ERROR",
    "EXIT_TOO_LARGE",
    "EXIT_UNAUTHENTICATED",
    "EXIT_USAGE",
    "build_parser",
    "exit_code_for",
    "main",
]

EXAMPLES = """examples:
  stylize run photo.jpg starry.jpg -o out.png --size 512 --iterations 300
  stylize run photo.jpg a.jpg b.jpg --style-weights 0.7,0.3 -o out.jpg
  stylize run photo.jpg starry.jpg@sky.png scream.jpg@ground.png -o out.png   # a style per region
  stylize run photo.jpg starry.jpg -o out.png --color-control luminance
  stylize run photo.jpg starry.jpg -o out.png --save-every 20 --frames-dir frames --timelapse out.gif
  stylize run 'photos/*.jpg' starry.jpg -o outdir/ --parallel 4
  stylize video clip.mp4 starry.jpg -o out.mp4 --size 256 --iterations 200
  stylize info --server stylize.example.com:443 --tls
"""


class _Version(argparse.Action):
    """--version, with the version looked up only when asked for."""

    def __call__(self, parser: argparse.ArgumentParser, *args: object, **kwargs: object) -> None:
        print(f"stylize {version()} ({DISTRIBUTION})")
        parser.exit()


class Parser(argparse.ArgumentParser):
    """argparse, with its errors as one line (`stylize: ...`, exit 2) like every other error."""

    def error(self, message: str) -> NoReturn:
        raise UsageError(f"{message} (see `{self.prog} --help`)")

    def parse_args(  # type: ignore[override]
        self, args: Sequence[str] | None = None, namespace: argparse.Namespace | None = None
    ) -> argparse.Namespace:
        # argparse reports a command's unknown flags from the top-level parser
        # ("see `stylize --help`"): point at the command's help, and at the flag meant.
        parsed, extras = self.parse_known_args(args, namespace)
        if extras:
            raise UsageError(self._unrecognized(getattr(parsed, "command", None), extras))
        return parsed

    def _unrecognized(self, command: str | None, extras: list[str]) -> str:
        parser: argparse.ArgumentParser = self
        for action in self._actions:
            if isinstance(action, argparse._SubParsersAction) and command in action.choices:
                parser = action.choices[command]
        flags = [flag for action in parser._actions for flag in action.option_strings]
        text = f"unrecognized arguments: {' '.join(extras)}"
        for extra in extras:
            close = difflib.get_close_matches(extra.split("=", 1)[0], flags, n=1) if extra.startswith("-") else []
            if close:
                text += f"; did you mean {close[0]}?"
                break
        return f"{text} (see `{parser.prog} --help`)"


def build_parser() -> argparse.ArgumentParser:
    codes = "\n".join(f"  {code:>3}  {text}" for code, text in EXIT_CODES.items())
    parser = Parser(
        prog="stylize",
        description="Neural style transfer (Gatys et al. 2015, 2017) on a stylize server.",
        epilog=f"{EXAMPLES}\nexit codes:\n{codes}",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action=_Version, nargs=0, help="show the version and exit")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    run.register(sub)
    video.register(sub)
    info.register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except UsageError as exc:  # a bad command line
        say_error(str(exc))
        return EXIT_USAGE
    func: Callable[[argparse.Namespace], int] | None = getattr(args, "func", None)
    if func is None:
        parser.print_help(sys.stderr)
        return EXIT_USAGE
    try:
        return func(args)
    except (UsageError, MissingExtra) as exc:
        say_error(str(exc))
        return EXIT_USAGE
    except KeyboardInterrupt:
        say_error("cancelled by Ctrl-C")
        return EXIT_INTERRUPTED
    except (StylizeError, OSError, ValueError) as exc:
        say_error(describe(exc, args))
        return exit_code_for(exc)
