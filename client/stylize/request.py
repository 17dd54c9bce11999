"""Client-side options -> `StylizeRequest`, derived from the proto's descriptor.

Every StylizeRequest field is an option of the same name (`stylize.schema.OPTIONS`):
scalars as plain Python values, enums by name (`optimizer="adam"`, any case) or
number, layer lists as `{"relu4_2": 1.0}`, `["relu4_2", ("relu3_1", 0.5)]` or
`"relu4_2:1,relu3_1:0.5"`, images as a path, encoded bytes, a PIL image or an
array. A new field in the proto is a new keyword here with no edit.

Styles are one image, a `Style(image, weight, mask)`, an `(image, mask)` pair, or
a list of any of these. Two conveniences are not fields: `style_weights=[...]`
(the blend weight of each style) and an image given for an enum whose
`<name>_image` field exists (`init=photo` means init=image, init_image=photo).

Ranges are not checked here: the server is the one authority on its limits and
answers INVALID_ARGUMENT naming the field and the limit.
"""

from __future__ import annotations

import enum
import os
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from stylize_api.schema import BY_NAME, OPTIONS, Kind, OptionField
from stylize_api.v1 import stylize_pb2

from .images import ImageInput, image_bytes

LayersInput = Mapping[str, float] | Iterable[str | tuple[str, float]] | str

# Spellings people type for an enum choice (any enum): --format jpg.
ALIASES = {"jpg": "jpeg"}

# Fields given positionally (content, styles), not as keyword options.
POSITIONAL = frozenset(o.name for o in OPTIONS if o.kind is Kind.STYLES or o.name == "content")
CONVENIENCES = frozenset({"style_weights"})
OPTION_NAMES = frozenset(o.name for o in OPTIONS if o.name not in POSITIONAL) | CONVENIENCES


@dataclass(frozen=True)
class Style:
    """A style image with its blend weight (None: 1.0) and its mask (None: see
    `unmasked_region`). Masks are grayscale images of any size, stretched to
    the output: white = this style, black = not."""

    image: ImageInput
    weight: float | None = None
    mask: ImageInput | None = None


StyleInput = Style | tuple[ImageInput, ImageInput] | ImageInput


def as_styles(styles: StyleInput | Sequence[StyleInput]) -> list[Style]:
    """`styles` as a list of Style. A list or tuple is a sequence of styles;
    within it, a 2-tuple is an (image, mask) pair."""
    items = list(styles) if isinstance(styles, (list, tuple)) else [styles]
    out = []
    for item in items:
        if isinstance(item, Style):
            out.append(item)
        elif isinstance(item, tuple) and len(item) == 2:
            out.append(Style(item[0], mask=item[1]))
        elif isinstance(item, tuple):
            raise TypeError(f"styles: a tuple is an (image, mask) pair, got {len(item)} items")
        else:
            out.append(Style(item))
    if not out:
        raise ValueError("styles: give at least one style image")
    return out


def enum_value(option: OptionField, value: Any) -> int:
    """The number of an enum option's value: a name (any case, ALIASES), a number or an Enum member."""
    if isinstance(value, enum.Enum):
        value = value.value
    if isinstance(value, bool):
        raise TypeError(f"{option.name}: expected one of {', '.join(option.choices)}, got {value!r}")
    if isinstance(value, int):
        return value
    key = str(value).lower()
    return option.enum_number(ALIASES.get(key, key) if key not in option.choices else key)


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
            if not layer.strip():
                raise ValueError(f"{name}: empty layer name in {item!r}")
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


def _image_enum(option: OptionField) -> OptionField | None:
    """The enum that an IMAGE option `<name>_image` selects with its "image" choice (init_image -> init)."""
    partner = BY_NAME.get(option.name.removesuffix("_image"))
    if option.name.endswith("_image") and partner is not None and "image" in partner.choices:
        return partner
    return None


def _is_choice(option: OptionField, value: Any) -> bool:
    if isinstance(value, enum.Enum) or (isinstance(value, int) and not isinstance(value, bool)):
        return True
    return isinstance(value, str) and (value.lower() in option.choices or value.lower() in ALIASES)


def _set_option(req: stylize_pb2.StylizeRequest, option: OptionField, value: Any) -> None:
    name = option.name
    if option.kind is Kind.ENUM:
        image_field = BY_NAME.get(name + "_image")
        if image_field is not None and image_field.kind is Kind.IMAGE and not _is_choice(option, value):
            # An image where a choice was expected: start from that image.
            setattr(req, name, option.enum_number("image"))
            getattr(req, image_field.name).data = image_bytes(value, name)
            return
        setattr(req, name, enum_value(option, value))
    elif option.kind is Kind.LAYERS:
        getattr(req, name).extend(parse_layers(name, value))
    elif option.kind is Kind.IMAGE:
        getattr(req, name).data = image_bytes(value, name)
        partner = _image_enum(option)
        if partner is not None and getattr(req, partner.name) == 0:  # unset
            setattr(req, partner.name, partner.enum_number("image"))
    else:
        try:
            setattr(req, name, value)
        except (TypeError, ValueError) as exc:
            raise TypeError(f"{name}: expected a {option.kind.value}, got {value!r} ({exc})") from None


def build_request(
    content: ImageInput,
    styles: StyleInput | Sequence[StyleInput],
    **options: Any,
) -> stylize_pb2.StylizeRequest:
    """The request for `content` in the style of `styles` with `options`.

    Options left out or None take the server's defaults; unknown names raise
    TypeError listing the valid ones. `style_weights` sets each style's blend
    weight (same length as the styles; not together with Style.weight).
    """
    unknown = sorted(set(options) - OPTION_NAMES)
    if unknown:
        raise TypeError(f"unknown option(s): {', '.join(unknown)}; valid: {', '.join(sorted(OPTION_NAMES))}")
    opts = {k: v for k, v in options.items() if v is not None}
    style_list = as_styles(styles)
    weights = opts.pop("style_weights", None)
    if weights is not None:
        weights = [float(w) for w in weights]
        if len(weights) != len(style_list):
            raise ValueError(f"style_weights: {len(weights)} weights given for {len(style_list)} style images")
        if any(s.weight is not None for s in style_list):
            raise ValueError("style_weights: give the weights either there or in Style(weight=...), not both")

    req = stylize_pb2.StylizeRequest(content=stylize_pb2.Image(data=image_bytes(content, "content")))
    for i, style in enumerate(style_list):
        entry = req.styles.add()
        entry.image.data = image_bytes(style.image, f"styles[{i}]")
        weight = weights[i] if weights is not None else style.weight
        if weight is not None:
            entry.blend_weight = float(weight)
        if style.mask is not None:
            entry.mask.data = image_bytes(style.mask, f"styles[{i}].mask")

    # Enums before images, so that an explicit init=... wins over init_image's implied choice.
    ordered = sorted(opts, key=lambda n: BY_NAME[n].kind is Kind.IMAGE)
    for name in ordered:
        _set_option(req, BY_NAME[name], opts[name])
    return req


def format_for_path(path: str | os.PathLike[str]) -> str:
    """Output format for a file name: png (default), jpeg or webp."""
    suffix = os.path.splitext(os.fspath(path))[1].lower()
    return {".jpg": "jpeg", ".jpeg": "jpeg", ".webp": "webp"}.get(suffix, "png")


def output_format_for(path: str | os.PathLike[str], fmt: Any = None, bit_depth: Any = None) -> Any:
    """The output format for writing to `path`: `fmt` when given, else from
    the extension. More than 8 bits per channel exist in PNG only."""
    chosen = fmt if fmt is not None else format_for_path(path)
    option = BY_NAME["output_format"]
    if bit_depth is not None and int(bit_depth) > 8 and enum_value(option, chosen) != option.enum_number("png"):
        raise ValueError(f"output_bit_depth {bit_depth} needs PNG output, not {chosen} ({os.fspath(path)})")
    return chosen
