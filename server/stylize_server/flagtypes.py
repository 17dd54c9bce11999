"""The value types of the server's flags and environment variables: sizes,
byte counts with units, booleans and optional paths, each refusing what it
cannot read with a message that shows an example; and `replace_checked`,
which holds a changed configuration to those types."""

from __future__ import annotations

import argparse
import dataclasses
import re
import types
import typing
from collections.abc import Mapping
from typing import TYPE_CHECKING, TypeVar

if TYPE_CHECKING:
    from _typeshed import DataclassInstance

D = TypeVar("D", bound="DataclassInstance")

_UNITS = {"": 1, "B": 1, "KB": 10**3, "MB": 10**6, "GB": 10**9, "KIB": 2**10, "MIB": 2**20, "GIB": 2**30, "TIB": 2**40}


def parse_sizes(text: str) -> tuple[int, ...]:
    """ "256,512" -> (256, 512); "" -> ()."""
    parts = [p.strip() for p in text.split(",") if p.strip()]
    try:
        return tuple(int(p) for p in parts)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a comma-separated list of sizes, got {text!r}") from None


def parse_bytes(text: str) -> int:
    """ "12GiB", "512MiB", "8e9", "0" -> bytes (binary and decimal units)."""
    match = re.fullmatch(r"\s*([0-9]+(?:\.[0-9]*)?(?:[eE][0-9]+)?)\s*([A-Za-z]*)\s*", str(text))
    unit = match.group(2).upper() if match else ""
    if not match or unit not in _UNITS:
        raise argparse.ArgumentTypeError(f"expected bytes such as 12GiB, 800MB or 4294967296, got {text!r}")
    return int(float(match.group(1)) * _UNITS[unit])


def optional_path(text: str) -> str | None:
    return text or None


def parse_bool(text: str) -> bool:
    value = str(text).strip().lower()
    if value in ("1", "true", "yes", "on"):
        return True
    if value in ("0", "false", "no", "off", ""):
        return False
    raise argparse.ArgumentTypeError(f"expected true or false, got {text!r}")


def fits(value: object, hint: object) -> bool:
    """Whether `value` is of the field type `hint`: a class, a union of them or
    `tuple[X, ...]`, as configuration fields are; an int is a float, a bool is
    not a number. Every other kind of hint fits nothing (so a new one is noticed)."""
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin in (typing.Union, types.UnionType):
        return any(fits(value, arg) for arg in args)
    if origin is tuple and len(args) == 2 and args[1] is Ellipsis:
        return isinstance(value, tuple) and all(fits(item, args[0]) for item in value)
    if hint in (int, float) and isinstance(value, bool):
        return False
    if hint is float:
        return isinstance(value, (int, float))
    return origin is None and isinstance(hint, type) and isinstance(value, hint)


def replace_checked(instance: D, changes: Mapping[str, object]) -> D:
    """`dataclasses.replace(instance, **changes)`, with each value checked
    against its field's type at run time, since the keywords are not checked
    statically: TypeError naming the field."""
    hints = typing.get_type_hints(type(instance))
    for name, value in changes.items():
        if name not in hints:
            raise TypeError(f"{type(instance).__name__} has no field {name!r}")
        hint = hints[name]
        if not fits(value, hint):
            shown = hint.__name__ if isinstance(hint, type) and typing.get_origin(hint) is None else str(hint)
            raise TypeError(f"{type(instance).__name__}.{name} is {shown}, not {value!r}")
    return dataclasses.replace(instance, **changes)
