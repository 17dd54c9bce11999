"""How a job is reported and returned, apart from what it optimizes: the
`DeliveryOptions` (progress interval, previews, output format, quality, bit
depth, the background that alpha is flattened onto, the request id) and their
checks."""

from __future__ import annotations

import dataclasses
import enum
import re
from dataclasses import dataclass

from stylize_server.job.checks import check_range
from stylize_server.job.errors import InvalidArgument
from stylize_server.job.options import Limits


class OutputFormat(str, enum.Enum):
    PNG = "png"
    JPEG = "jpeg"
    WEBP = "webp"


@dataclass(frozen=True)
class DeliveryOptions:
    """How the service reports a job and returns its result."""

    progress_interval: int = 10
    preview_max_side: int = 0
    output_format: OutputFormat = OutputFormat.PNG
    quality: int = 92
    request_id: str = ""
    background: str = "#ffffff"
    output_bit_depth: int = 8
    # Run a job estimated over --max-job-seconds until the limit (its best
    # image so far) instead of refusing it (timing.check_time).
    accept_partial: bool = False

    def replace(self, **changes: object) -> DeliveryOptions:
        return dataclasses.replace(self, **changes)  # type: ignore[arg-type]


_REQUEST_ID = re.compile(r"^[\x20-\x7e]{0,128}$")
_HEX_COLOR = re.compile(r"^#?([0-9a-f]{6})$")
NAMED_COLORS = {"white": (255, 255, 255), "black": (0, 0, 0), "gray": (128, 128, 128), "grey": (128, 128, 128)}


def parse_color(text: str) -> tuple[int, int, int]:
    """ "#rrggbb", "rrggbb" or a name -> (r, g, b); InvalidArgument otherwise."""
    key = text.strip().lower()
    if key in NAMED_COLORS:
        return NAMED_COLORS[key]
    match = _HEX_COLOR.match(key)
    if not match:
        raise InvalidArgument(
            "background", f"must be #rrggbb or one of {', '.join(sorted(NAMED_COLORS))}, got {text!r}"
        )
    value = match.group(1)
    return int(value[0:2], 16), int(value[2:4], 16), int(value[4:6], 16)


def color_hex(rgb: tuple[int, int, int]) -> str:
    return "#{:02x}{:02x}{:02x}".format(*rgb)


def validate_delivery(delivery: DeliveryOptions, limits: Limits) -> None:
    check_range("progress_interval", delivery.progress_interval, 1, max(1, limits.max_iterations))
    check_range("preview_max_side", delivery.preview_max_side, 0, min(limits.max_preview_side, limits.max_side))
    check_range("quality", delivery.quality, 1, 100)
    if not _REQUEST_ID.match(delivery.request_id):
        raise InvalidArgument("request_id", "must be at most 128 printable ASCII characters")
    parse_color(delivery.background)
    if delivery.output_bit_depth not in (8, 16):
        raise InvalidArgument("output_bit_depth", f"must be 8 or 16, got {delivery.output_bit_depth}")
    if delivery.output_bit_depth == 16 and delivery.output_format is not OutputFormat.PNG:
        raise InvalidArgument(
            "output_bit_depth", f"16 bits per channel needs output_format png, not {delivery.output_format.value}"
        )
