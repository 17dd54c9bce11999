"""Images on the client side: what a caller may pass (a path, encoded bytes, a
PIL image or an array) turned into the bytes a request carries, and the local
checks and decodes whose errors must read well.

The client never decodes an image it sends (the server does that, with its
limits); it only reads the header of a local file, so that a text file or a
truncated download named on the command line is refused before a call, with
the formats a stylize server accepts instead of a Python object's repr.
"""

from __future__ import annotations

import io
import os
import warnings
from pathlib import Path
from typing import Any

# The formats a stylize server decodes (proto: stylize.v1.Image; the server's
# images.ALLOWED_FORMATS, which tests/test_client_images.py compares this to).
# MPO is the multi-picture JPEG some cameras write.
ACCEPTED_FORMATS = frozenset({"PNG", "JPEG", "WEBP", "BMP", "GIF", "TIFF", "MPO"})
ACCEPTED = "PNG, JPEG, WebP, BMP, GIF or TIFF"
IMAGE_SUFFIXES = frozenset({".png", ".jpg", ".jpeg", ".webp", ".bmp", ".gif", ".tif", ".tiff", ".mpo"})

ImageInput = str | os.PathLike[str] | bytes | bytearray | memoryview | Any


class ImageError(ValueError):
    """A local image cannot be read or decoded; the message names it and the accepted formats."""


def image_bytes(image: ImageInput, field: str) -> bytes:
    """Encoded bytes of `image`; raises FileNotFoundError / TypeError / ValueError naming `field`."""
    if isinstance(image, (bytes, bytearray, memoryview)):
        data = bytes(image)
        if not data:
            raise ValueError(f"{field}: image bytes are empty")
        return data
    if isinstance(image, (str, os.PathLike)):
        path = Path(image)
        try:
            return path.read_bytes()
        except FileNotFoundError:
            raise FileNotFoundError(f"{field}: no such file: {path}") from None
        except IsADirectoryError:
            raise IsADirectoryError(f"{field}: is a directory, not an image: {path}") from None
    from PIL import Image

    if not isinstance(image, Image.Image):
        if hasattr(image, "__array_interface__"):
            try:
                image = Image.fromarray(image)
            except (TypeError, ValueError) as exc:
                raise TypeError(f"{field}: cannot make an image of this array: {exc}") from None
        else:
            raise TypeError(
                f"{field}: expected a path, encoded bytes, a PIL image or an array, got {type(image).__name__}"
            )
    buf = io.BytesIO()
    # PNG keeps every pixel, and the alpha channel (the server keeps the content's).
    if image.mode not in ("RGB", "RGBA", "L", "LA", "I;16"):
        image = image.convert("RGBA" if "A" in image.getbands() else "RGB")
    image.save(buf, format="PNG")
    return buf.getvalue()


def check_image_file(path: str | os.PathLike[str], label: str) -> None:
    """Refuse a local file that is no image a stylize server accepts, from its
    header alone. Sizes are left to the server, which knows its limits."""
    from PIL import Image, UnidentifiedImageError

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with Image.open(path) as img:
                fmt = img.format or "unknown"
    except FileNotFoundError:
        raise ImageError(f"{label}: no such file: {path}") from None
    except IsADirectoryError:
        raise ImageError(f"{label}: is a directory, not an image: {path}") from None
    except PermissionError:
        raise ImageError(f"{label}: cannot read {path}: permission denied") from None
    except Image.DecompressionBombError:
        return  # a header that parses; whether it is too large is the server's call
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError):
        raise ImageError(f"{label}: {path} is not an image this service reads (accepted: {ACCEPTED})") from None
    if fmt not in ACCEPTED_FORMATS:
        raise ImageError(f"{label}: {path} is a {fmt} image; a stylize server accepts {ACCEPTED}")


def decode(data: bytes, what: str) -> Any:
    """A PIL image of encoded bytes from the server (a result or a preview),
    with an ImageError that says what could not be decoded."""
    from PIL import Image, UnidentifiedImageError

    try:
        img = Image.open(io.BytesIO(data))
        img.load()
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError) as exc:
        reason = "not an image" if isinstance(exc, UnidentifiedImageError) else "truncated or corrupt"
        raise ImageError(f"{what}: cannot decode the {len(data)} bytes the server sent ({reason})") from None
    return img
