"""The `run` command's option flags, generated from `stylize.schema.OPTIONS`:
one flag per StylizeRequest field (name, type, choices, help and metavar from
the proto), so a field added to the proto is a flag here with no edit.

  int / uint64 / float / string   --name VALUE
  bool                            --name / --no-name
  enum                            --name CHOICE (any case); an enum with a
                                  `<name>_image` partner also takes an image
                                  file (--init photo.jpg)
  layers                          --name relu4_2:1,relu3_1:0.5
  image                           --name PATH (checked to be an image)

Two CLI spellings are added to generated flags: --format (--output-format)
and --preview-size (--preview-max-side), and `jpg` is a choice of every enum
that has `jpeg`. Styles and masks are positional: STYLE or STYLE@MASK.
"""

from __future__ import annotations

import argparse
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

from stylize_api.schema import BY_NAME, OPTIONS, Kind, OptionField, Scope

from ..request import ALIASES, POSITIONAL, parse_layers
from .exits import UsageError

# Extra spellings of generated flags (CLI conveniences; the generated name works too).
FLAG_ALIASES: dict[str, tuple[str, ...]] = {"output_format": ("--format",), "preview_max_side": ("--preview-size",)}

GROUP_TITLES = {
    Scope.ENGINE: "style transfer options (unset: the server's default, see `stylize info`)",
    Scope.DELIVERY: "delivery options",
    Scope.INPUT: "input images",
}


def flag_options() -> tuple[OptionField, ...]:
    """The request options that are flags: all but the positional images."""
    return tuple(o for o in OPTIONS if o.name not in POSITIONAL)


def _int(nonnegative: bool) -> Callable[[str], int]:
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
        if nonnegative and value < 0:
            raise argparse.ArgumentTypeError(f"must be >= 0, got {value}")
        return value

    return parse


def _float(text: str) -> float:
    try:
        return float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None


def _choices(option: OptionField) -> list[str]:
    extra = [alias for alias, target in ALIASES.items() if target in option.choices]
    return [*option.choices, *extra]


def _enum(option: OptionField) -> Callable[[str], str]:
    takes_image = BY_NAME.get(option.name + "_image") is not None

    def parse(text: str) -> str:
        key = text.lower()
        if key in _choices(option):
            return key
        if takes_image and os.path.exists(text):
            return text  # an image to start from; checked with the other inputs
        expected = ", ".join(_choices(option)) + (" or an image file" if takes_image else "")
        raise argparse.ArgumentTypeError(f"expected {expected}; got {text!r}")

    return parse


def _layers(option: OptionField) -> Callable[[str], str]:
    def parse(text: str) -> str:
        try:
            parse_layers(option.name, text)
        except ValueError as exc:
            raise argparse.ArgumentTypeError(str(exc)) from None
        return text

    return parse


def _metavar(option: OptionField) -> str | None:
    if option.kind is Kind.ENUM:
        choices = "|".join(option.choices)
        return choices + ("|PATH" if BY_NAME.get(option.name + "_image") else "")
    if option.kind is Kind.IMAGE:
        return option.metavar or "PATH"
    return option.metavar or None


def add_option_flags(parser: argparse.ArgumentParser) -> None:
    """One flag per request option, in groups by scope."""
    groups = {scope: parser.add_argument_group(title) for scope, title in GROUP_TITLES.items()}
    for option in flag_options():
        names = (option.flag, *FLAG_ALIASES.get(option.name, ()))
        kwargs: dict[str, Any] = {"dest": option.name, "default": None, "help": option.help}
        if option.kind is Kind.BOOL:
            kwargs["action"] = argparse.BooleanOptionalAction
        else:
            kwargs["metavar"] = _metavar(option)
            kwargs["type"] = {
                Kind.INT: _int(False),
                Kind.UINT64: _int(True),
                Kind.FLOAT: _float,
                Kind.STRING: str,
                Kind.ENUM: _enum(option),
                Kind.LAYERS: _layers(option),
                Kind.IMAGE: str,
            }[option.kind]
        groups[option.scope].add_argument(*names, **kwargs)


def option_values(args: argparse.Namespace) -> dict[str, Any]:
    """The options the user set, by field name (unset ones are left to the server)."""
    values = {}
    for option in flag_options():
        value = getattr(args, option.name, None)
        if value is None:
            continue
        if option.kind is Kind.IMAGE or (option.kind is Kind.ENUM and value not in _choices(option)):
            value = Path(value)  # an image file (checked by the caller)
        values[option.name] = value
    return values


def image_options(values: dict[str, Any]) -> list[tuple[str, Path]]:
    """(flag, path) of every image file among the option values."""
    return [(BY_NAME[name].flag, value) for name, value in values.items() if isinstance(value, Path)]


class StyleSpec:
    """A positional STYLE: an image file, and its mask after an `@` (STYLE@MASK)."""

    def __init__(self, text: str) -> None:
        self.text = text
        self.mask: Path | None
        # A file whose name has an @ (photo@2x.png) is a file, not a pair.
        if "@" in text and not os.path.exists(text):
            image, _, mask = text.rpartition("@")
            if not image or not mask:
                raise UsageError(f"STYLE {text!r}: write a style with its mask as STYLE@MASK, e.g. starry.jpg@sky.png")
            self.image, self.mask = Path(image), Path(mask)
        else:
            self.image, self.mask = Path(text), None


class _MaskFlag(argparse.Action):
    """--mask / --style: the pairs are written STYLE@MASK; say so instead of 'unrecognized argument'."""

    def __call__(self, parser: argparse.ArgumentParser, namespace: Any, values: Any, option: str | None = None) -> None:
        raise UsageError(
            f"{option}: there is no {option} flag; give each style with its mask as STYLE@MASK,"
            " e.g. `stylize run photo.jpg starry.jpg@sky.png scream.jpg@ground.png -o out.png`"
        )


def add_mask_redirects(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--mask", "--style", action=_MaskFlag, help=argparse.SUPPRESS)
