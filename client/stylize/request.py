"""Client-side options -> `StylizeRequest`.

Images may be given as a path, encoded bytes, a PIL image or an H×W×3 array
(anything with `__array_interface__`); in-memory images are sent as PNG so
nothing is lost. Options use plain Python values (`optimizer="adam"`,
`content_layers={"relu4_2": 1.0}`); names match the protobuf fields. Ranges are
not checked here: the server is the one authority on its limits and answers
INVALID_ARGUMENT naming the field and the limit.
"""

from __future__ import annotations

import io
import os
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from stylize.v1 import stylize_pb2

ImageInput = str | os.PathLike[str] | bytes | bytearray | memoryview | Any
LayersInput = Mapping[str, float] | Iterable[str | tuple[str, float]] | str

OPTIMIZERS = {"lbfgs": stylize_pb2.OPTIMIZER_LBFGS, "adam": stylize_pb2.OPTIMIZER_ADAM}
POOLINGS = {"avg": stylize_pb2.POOLING_AVG, "max": stylize_pb2.POOLING_MAX}
INITS = {
    "content": stylize_pb2.INIT_CONTENT,
    "noise": stylize_pb2.INIT_NOISE,
    "style": stylize_pb2.INIT_STYLE,
    "image": stylize_pb2.INIT_IMAGE,
}
OUTPUT_FORMATS = {
    "png": stylize_pb2.OUTPUT_FORMAT_PNG,
    "jpeg": stylize_pb2.OUTPUT_FORMAT_JPEG,
    "jpg": stylize_pb2.OUTPUT_FORMAT_JPEG,
    "webp": stylize_pb2.OUTPUT_FORMAT_WEBP,
}

# Scalar options copied as they are onto the request's optional fields.
_SCALAR_OPTIONS = (
    "size",
    "iterations",
    "learning_rate",
    "content_weight",
    "style_weight",
    "tv_weight",
    "seed",
    "style_scale",
    "preserve_colors",
    "multiscale",
    "multiscale_min_size",
    "progress_interval",
    "preview_max_side",
    "quality",
    "request_id",
)
OPTION_NAMES = frozenset(
    _SCALAR_OPTIONS
    + ("optimizer", "pooling", "init", "init_image", "output_format", "content_layers", "style_layers", "style_weights")
)


def image_bytes(image: ImageInput, field: str) -> bytes:
    """Encoded bytes of `image`; raises FileNotFoundError / TypeError naming `field`."""
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
    try:
        from PIL import Image
    except ImportError as exc:  # pragma: no cover - Pillow is a dependency
        raise TypeError(f"{field}: in-memory images need Pillow") from exc
    if not isinstance(image, Image.Image):
        if hasattr(image, "__array_interface__"):
            image = Image.fromarray(image)
        else:
            raise TypeError(
                f"{field}: expected a path, encoded bytes, a PIL image or an array, got {type(image).__name__}"
            )
    buf = io.BytesIO()
    # PNG keeps every pixel; RGBA is fine (the server composites alpha onto white).
    if image.mode not in ("RGB", "RGBA", "L", "LA"):
        image = image.convert("RGB")
    image.save(buf, format="PNG")
    return buf.getvalue()


def _enum(name: str, value: Any, table: Mapping[str, int]) -> int:
    if isinstance(value, int):
        return value
    key = str(value).lower()
    if key not in table:
        raise ValueError(f"{name}: unknown value {value!r}; choose one of {', '.join(sorted(set(table)))}")
    return table[key]


def parse_layers(name: str, layers: LayersInput) -> list[stylize_pb2.LayerWeight]:
    """Layers as {"relu4_2": 1.0}, ["relu4_2", ("relu3_1", 0.5)] or "relu4_2:1,relu3_1:0.5"."""
    if isinstance(layers, str):
        items: list[Any] = [p.strip() for p in layers.split(",") if p.strip()]
    elif isinstance(layers, Mapping):
        items = list(layers.items())
    else:
        items = list(layers)
    out = []
    for item in items:
        if isinstance(item, str):
            layer, sep, weight = item.partition(":")
            if sep:
                try:
                    out.append(stylize_pb2.LayerWeight(layer=layer.strip(), weight=float(weight)))
                except ValueError:
                    raise ValueError(f"{name}: bad weight {weight!r} for layer {layer!r}") from None
            else:
                out.append(stylize_pb2.LayerWeight(layer=layer.strip()))
        else:
            layer, weight = item
            out.append(stylize_pb2.LayerWeight(layer=str(layer), weight=float(weight)))
    return out


def build_request(
    content: ImageInput,
    styles: ImageInput | Sequence[ImageInput],
    **options: Any,
) -> stylize_pb2.StylizeRequest:
    """The request for `content` in the style of `styles` with `options`.

    `styles` is one image or a list of them; `style_weights` gives their blend
    weights (same length). `init` is "content", "noise", "style", "image" (with
    `init_image`) or an image itself. Options left out or None take the server's
    defaults. Unknown option names raise TypeError.
    """
    unknown = sorted(set(options) - OPTION_NAMES)
    if unknown:
        raise TypeError(f"unknown option(s): {', '.join(unknown)}; valid: {', '.join(sorted(OPTION_NAMES))}")
    opts = {k: v for k, v in options.items() if v is not None}

    if isinstance(styles, (list, tuple)):
        style_list = list(styles)
    else:
        style_list = [styles]
    weights = opts.pop("style_weights", None)
    if weights is not None:
        weights = [float(w) for w in weights]
        if len(weights) != len(style_list):
            raise ValueError(f"style_weights: {len(weights)} weights given for {len(style_list)} style images")

    req = stylize_pb2.StylizeRequest(content=stylize_pb2.Image(data=image_bytes(content, "content")))
    for i, style in enumerate(style_list):
        entry = req.styles.add()
        entry.image.data = image_bytes(style, f"styles[{i}]")
        if weights is not None:
            entry.blend_weight = weights[i]

    for name in _SCALAR_OPTIONS:
        if name in opts:
            setattr(req, name, opts[name])
    if "optimizer" in opts:
        req.optimizer = _enum("optimizer", opts["optimizer"], OPTIMIZERS)  # type: ignore[assignment]
    if "pooling" in opts:
        req.pooling = _enum("pooling", opts["pooling"], POOLINGS)  # type: ignore[assignment]
    if "output_format" in opts:
        req.output_format = _enum("output_format", opts["output_format"], OUTPUT_FORMATS)  # type: ignore[assignment]
    if "init" in opts:
        init = opts["init"]
        if isinstance(init, str) and init.lower() in INITS:
            req.init = INITS[init.lower()]  # type: ignore[assignment]
        elif isinstance(init, int) and not isinstance(init, bool):
            req.init = init  # type: ignore[assignment]
        else:  # an image to start from
            req.init = stylize_pb2.INIT_IMAGE
            req.init_image.data = image_bytes(init, "init")
    if "init_image" in opts:
        req.init_image.data = image_bytes(opts["init_image"], "init_image")
        if "init" not in opts:
            req.init = stylize_pb2.INIT_IMAGE
    if "content_layers" in opts:
        req.content_layers.extend(parse_layers("content_layers", opts["content_layers"]))
    if "style_layers" in opts:
        req.style_layers.extend(parse_layers("style_layers", opts["style_layers"]))
    return req
