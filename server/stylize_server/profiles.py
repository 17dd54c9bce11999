"""How each kind of device runs VGG-19, as measured: the figures the cost
model (cost.py) turns into seconds and bytes. Fitted to measurements on the
CPU (`make bench`, cost table: process RSS in its own process, seconds per
iteration); the GPU figures are documented estimates (README, Benchmarks).
"""

from __future__ import annotations

from dataclasses import dataclass

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
# here: no GPU on the build machine); calibrate them with `make bench` there.
PROFILES: dict[tuple[str, str], Profile] = {
    ("CPU", "float32"): Profile(
        "CPU",
        "float32",
        gmacs_per_second=150.0,
        gvalues_per_second=0.42,
        keep=0.8,
        base_bytes=64 * MIB,
        tile_seconds=0.003,
    ),
    ("CPU", "bfloat16"): Profile(
        "CPU",
        "bfloat16",
        gmacs_per_second=710.0,
        gvalues_per_second=0.40,
        keep=0.8,
        base_bytes=64 * MIB,
        tile_seconds=0.003,
    ),
    ("GPU", "float32"): Profile(
        "GPU", "float32", gmacs_per_second=20_000.0, gvalues_per_second=100.0, keep=1.0, tile_seconds=0.002
    ),
    ("GPU", "bfloat16"): Profile(
        "GPU", "bfloat16", gmacs_per_second=40_000.0, gvalues_per_second=150.0, keep=1.0, tile_seconds=0.002
    ),
}


def profile_for(kind: str, precision: str) -> Profile:
    return PROFILES.get((kind, precision), Profile(kind, precision))
