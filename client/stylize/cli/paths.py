"""Local paths of a `run`: which images a batch reads, and whether every
output can be written, checked before any job is sent (a job that ran for
minutes must not fail at the end because its output directory is a file).
"""

from __future__ import annotations

import glob
import os
from pathlib import Path

from ..images import IMAGE_SUFFIXES
from .exits import UsageError


def is_glob(text: str) -> bool:
    return any(ch in text for ch in "*?[")


def batch_inputs(content: str) -> list[Path] | None:
    """The images of a batch, or None when CONTENT is a single file."""
    path = Path(content)
    if path.is_dir():
        files = sorted(p for p in path.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
        if not files:
            raise UsageError(f"CONTENT: no images ({', '.join(sorted(IMAGE_SUFFIXES))}) in directory {content}")
        return files
    if not path.exists() and is_glob(content):
        files = sorted(Path(p) for p in glob.glob(content) if Path(p).is_file())
        if not files:
            raise UsageError(f"CONTENT: no files match {content}")
        return files
    return None


def _nearest_existing(path: Path) -> Path:
    for candidate in (path, *path.parents):
        if candidate.exists():
            return candidate
    return Path(os.getcwd())


def _check_creatable(directory: Path, flag: str, target: Path) -> None:
    """`directory` exists as a writable directory, or can be made (its nearest existing ancestor is one)."""
    base = _nearest_existing(directory.absolute())
    if not base.is_dir():
        raise UsageError(f"{flag}: cannot write {target}: {base} is a file, not a directory")
    if not os.access(base, os.W_OK | os.X_OK):
        raise UsageError(f"{flag}: cannot write {target}: {base} is not writable")


def check_output_file(path: Path, flag: str) -> None:
    """A file can be written at `path` (its directory is made when missing)."""
    if path.is_dir():
        raise UsageError(f"{flag}: {path} is a directory; give a file name")
    if path.exists() and not os.access(path, os.W_OK):
        raise UsageError(f"{flag}: cannot overwrite {path}: it is not writable")
    _check_creatable(path.parent, flag, path)


def check_output_dir(path: Path, flag: str) -> None:
    """`path` is, or can be made, a writable directory."""
    if path.exists() and not path.is_dir():
        raise UsageError(f"{flag}: {path} is a file; a directory is needed here")
    _check_creatable(path, flag, path)


def single_output(output: str, content: Path, ext: str) -> Path:
    """Where one job's image goes: -o FILE, or -o DIR (existing, or written with a
    trailing slash) for DIR/<content stem>.<ext>."""
    out = Path(output)
    if out.is_dir() or output.endswith(("/", os.sep)):
        out = out / f"{content.stem}.{ext}"
    check_output_file(out, "-o")
    return out


def batch_output_dir(output: str, count: int) -> Path:
    """The directory a batch writes into: -o must be (or become) a directory."""
    out = Path(output)
    if out.exists() and not out.is_dir():
        raise UsageError(f"-o: {out} is a file; CONTENT is a batch of {count} images, so -o must be a directory")
    if not out.exists() and out.suffix.lower() in IMAGE_SUFFIXES:
        raise UsageError(
            f"-o: CONTENT is a batch of {count} images, so -o must be a directory, and {out} looks like an"
            f" image file name; use e.g. -o {out.with_suffix('')}/"
        )
    check_output_dir(out, "-o")
    return out


def refuse_overwriting_inputs(outputs: list[Path], inputs: list[Path]) -> None:
    """No output may replace an input image (-o photo.png for photo.png)."""
    sources = {p.resolve() for p in inputs if p.exists()}
    for out in outputs:
        if out.resolve() in sources:
            raise UsageError(f"-o: {out} is one of the input images; writing the result there would destroy it")
