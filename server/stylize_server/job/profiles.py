"""How each kind of device runs VGG-19, as measured: the figures the cost
model (cost.py) turns into seconds and bytes. Fitted to measurements on the
CPU (`make bench`, cost table: process RSS in its own process, seconds per
iteration); the GPU figures are documented estimates (README, Benchmarks).

A measured profile file (JSON, written by `make gpu-check` on the machine it
describes) replaces the built-in figures of the kinds and precisions it holds:
`stylize-server --device-profile PATH` (load_file, in_force). The built-in
figures stay the fallback for everything it does not hold.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import math
import pathlib
from dataclasses import dataclass

log = logging.getLogger(__name__)

MIB = 1 << 20
GIB = 1 << 30


@dataclass(frozen=True)
class Profile:
    """How one kind of device runs the network, as measured."""

    kind: str = "CPU"
    precision: str = "float32"
    gmacs_per_second: float = 200.0  # multiply-adds per second (convolutions, forward or backward)
    gvalues_per_second: float = 20.0  # activation values written per second (the wide early layers)
    keep: float = 2.0  # bytes held per activation value, in units of the value's own size
    base_bytes: int = 96 * MIB  # per job, whatever its size (buffers, compiled scratch)
    tile_seconds: float = 0.01  # fixed cost of one tile call (dispatch, slicing)
    # Tracing a loss specification not yet in the compiled-step cache (its
    # objective and first optimizer), and each further optimizer or tile
    # layout of a cached one: a job pays these once, in its first iteration.
    compile_seconds: float = 4.0
    step_compile_seconds: float = 1.0
    source: str = "built in: defaults for an unknown device"  # where the figures come from, for the log

    @property
    def value_bytes(self) -> int:
        return 2 if self.precision == "bfloat16" else 4


# CPU figures fitted to measurement on the build machine (AMD EPYC, 2 shared
# cores, avx512_bf16, no AMX; `make bench`, tiling and cost tables):
# * time: whole-image evaluations take 7.75 µs/px in float32 and 4.1 µs/px in
#   bfloat16 (0.25-2.2 MP, quiet machine); tiled against whole side by side
#   fix the cost of an activation value written at 360 (float32) and 1800
#   (bfloat16) multiply-adds: the wide early layers are bound by memory
#   traffic, which bfloat16 does not speed up (its convolutions run 4.7x
#   faster). Fit within 1-2% on 6 tiled/whole ratios per precision.
# * memory: peak RSS above the loaded engine fits 0.74 x value bytes per
#   counted activation value and 0.83 x the image-sized vectors (13 runs,
#   1-16 MP, whole and tiled); `keep` is rounded up to 0.8 and the vectors
#   left at 1.0, so that admission errs on the safe side.
# * compiling: a new loss specification's first 128 px job took 4.0 s more
#   than the same job compiled (default layers and L-BFGS; 2.5 s with two
#   style layers), a new optimizer on a compiled specification 0.5 s more
#   (adam); so 4.0 s and 1.0 s. Tracing is host work: the GPU profiles use the
#   same figures until measured there.
# GPU figures are estimates for a mid-range data-centre GPU (not measured
# here: no GPU on the build machine); `make gpu-check` measures them there and
# writes a profile file (below) that replaces them.
_CPU_SOURCE = "built in: measured on the build machine's CPU (make bench)"
_GPU_SOURCE = "built in: an estimate, not measured (make gpu-check measures it)"
PROFILES: dict[tuple[str, str], Profile] = {
    ("CPU", "float32"): Profile(
        "CPU",
        "float32",
        gmacs_per_second=150.0,
        gvalues_per_second=0.42,
        keep=0.8,
        base_bytes=64 * MIB,
        tile_seconds=0.003,
        source=_CPU_SOURCE,
    ),
    ("CPU", "bfloat16"): Profile(
        "CPU",
        "bfloat16",
        gmacs_per_second=710.0,
        gvalues_per_second=0.40,
        keep=0.8,
        base_bytes=64 * MIB,
        tile_seconds=0.003,
        source=_CPU_SOURCE,
    ),
    ("GPU", "float32"): Profile(
        "GPU",
        "float32",
        gmacs_per_second=20_000.0,
        gvalues_per_second=100.0,
        keep=1.0,
        tile_seconds=0.002,
        source=_GPU_SOURCE,
    ),
    ("GPU", "bfloat16"): Profile(
        "GPU",
        "bfloat16",
        gmacs_per_second=40_000.0,
        gvalues_per_second=150.0,
        keep=1.0,
        tile_seconds=0.002,
        source=_GPU_SOURCE,
    ),
}


def profile_for(kind: str, precision: str) -> Profile:
    return PROFILES.get((kind, precision), Profile(kind, precision))


# ------------------------------------------------------- measured profile file
# {"format": FILE_FORMAT, "device": {"kind": "GPU", "name": ..., ...},
#  "written_by": ..., "written_at": ..., "profiles": {PRECISION: {FIELD: number}}}
# Every figure is checked against a range: the file is an operator's input,
# and a zero rate or a negative `keep` would price every job at nothing and
# let admission overcommit the device.
FILE_FORMAT = "stylize-device-profile/1"
MAX_FILE_BYTES = 64 * 1024
KINDS = ("CPU", "GPU")
PRECISIONS = ("float32", "bfloat16")
FIGURES: dict[str, tuple[float, float]] = {  # field: [low, high]
    "gmacs_per_second": (1e-3, 1e7),
    "gvalues_per_second": (1e-4, 1e6),
    "keep": (0.1, 64.0),
    "base_bytes": (0, 1 << 40),
    "tile_seconds": (0.0, 10.0),
}


class ProfileFileError(ValueError):
    """A profile file that cannot be used; the message names the file and the field."""


def profile_document(device: dict[str, object], profiles: list[Profile], **provenance: object) -> dict[str, object]:
    """The file's content for `profiles` (all of one device kind)."""
    kinds = {p.kind for p in profiles}
    if len(kinds) != 1 or device.get("kind") not in kinds:
        raise ValueError(f"profiles of one kind, the device's ({device.get('kind')}), expected: {sorted(kinds)}")
    return {
        "format": FILE_FORMAT,
        "device": device,
        **provenance,
        "profiles": {p.precision: {name: getattr(p, name) for name in FIGURES} for p in profiles},
    }


def load_file(path: str | pathlib.Path) -> dict[tuple[str, str], Profile]:
    """The profiles in a measured profile file, keyed like PROFILES; raises
    ProfileFileError for anything but a well-formed file with figures in range."""
    where = str(path)
    try:
        with open(path, "rb") as f:
            raw = f.read(MAX_FILE_BYTES + 1)
    except OSError as exc:
        raise ProfileFileError(f"{where}: cannot read it ({exc.strerror or exc})") from None
    if len(raw) > MAX_FILE_BYTES:
        raise ProfileFileError(f"{where}: larger than {MAX_FILE_BYTES} bytes; not a profile file")
    try:
        doc = json.loads(raw)
    except (ValueError, UnicodeDecodeError) as exc:
        raise ProfileFileError(f"{where}: not JSON ({exc})") from None
    if not isinstance(doc, dict) or doc.get("format") != FILE_FORMAT:
        raise ProfileFileError(f"{where}: format must be {FILE_FORMAT!r}")
    device = doc.get("device")
    if not isinstance(device, dict):
        device = {}
    kind = device.get("kind")
    if kind not in KINDS:
        raise ProfileFileError(f"{where}: device.kind must be one of {', '.join(KINDS)}, got {kind!r}")
    entries = doc.get("profiles")
    if not isinstance(entries, dict) or not entries:
        raise ProfileFileError(f"{where}: profiles must map a precision to its figures")
    said = f"{device.get('name', '?')} ({doc.get('written_by', '?')}, {doc.get('written_at', '?')})"[:200]
    # Printable only: it goes into log lines, which a newline could forge.
    source = "measured on " + "".join(c if c.isprintable() else "?" for c in said) + f": {where}"
    out: dict[tuple[str, str], Profile] = {}
    for precision, figures in entries.items():
        if precision not in PRECISIONS:
            raise ProfileFileError(f"{where}: profiles.{precision}: precision must be float32 or bfloat16")
        if not isinstance(figures, dict):
            raise ProfileFileError(f"{where}: profiles.{precision}: must be an object of figures")
        value = {field: _figure(where, f"profiles.{precision}.{field}", figures.get(field)) for field in FIGURES}
        out[(kind, precision)] = Profile(
            kind,
            precision,
            gmacs_per_second=value["gmacs_per_second"],
            gvalues_per_second=value["gvalues_per_second"],
            keep=value["keep"],
            base_bytes=int(value["base_bytes"]),
            tile_seconds=value["tile_seconds"],
            source=source,
        )
    return out


def _figure(where: str, field: str, value: object) -> float:
    low, high = FIGURES[field.rsplit(".", 1)[1]]
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise ProfileFileError(f"{where}: {field}: must be a number, got {value!r}")
    if not low <= value <= high:
        raise ProfileFileError(f"{where}: {field}: must be in [{low:g}, {high:g}], got {value:g}")
    return float(value)


def in_force(path: str | pathlib.Path | None, built_in: Profile) -> Profile:
    """The profile the cost model uses for `built_in`'s kind and precision:
    the file's figures where it holds them, else `built_in`. Logs which."""
    chosen = built_in
    if path:
        measured = load_file(path).get((built_in.kind, built_in.precision))
        if measured is None:
            chosen = dataclasses.replace(
                built_in, source=f"{built_in.source}; {path} holds no {built_in.kind} {built_in.precision} figures"
            )
        else:
            chosen = measured
    log.info("cost model profile for %s %s: %s", chosen.kind, chosen.precision, chosen.source)
    return chosen
