"""The value types of the server's flags and environment variables: sizes,
byte counts with units, booleans and optional paths, each refusing what it
cannot read with a message that shows an example."""

from __future__ import annotations

import argparse
import re

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
