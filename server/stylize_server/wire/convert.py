"""Protocol buffers <-> the server's own types, derived from the schema.

Every StylizeRequest option maps by name onto a field of `JobOptions` (engine
scope) or `DeliveryOptions` (delivery scope); enums map by value name; the
`ResolvedOptions` frame is filled the same way. So an option added to the proto
and to its dataclass needs no line here. Nothing here decodes images, knows
gRPC calls or the engine's internals.
"""

from __future__ import annotations

import dataclasses
import enum
import math
import typing
from collections.abc import Mapping, Sequence

import numpy as np

from stylize_api import schema
from stylize_api.schema import Kind, OptionField, Scope
from stylize_api.v1 import stylize_pb2 as pb
from stylize_server.job.delivery import DeliveryOptions
from stylize_server.job.errors import InvalidArgument
from stylize_server.job.options import JobOptions, Layers, TermValue
from stylize_server.job.types import Estimate, Losses, Progress

# What an option of the request holds once read (`read_option`): a number, a
# flag, a string, layers, or the member of its field's enum (a term's enum
# option, which has no field, is held by its name).
OptionValue = TermValue | enum.Enum

_HINTS: dict[Scope, dict[str, object]] = {
    Scope.ENGINE: typing.get_type_hints(JobOptions),
    Scope.DELIVERY: typing.get_type_hints(DeliveryOptions),
}


def _enum_class(hint: object) -> type[enum.Enum]:
    for candidate in (hint, *typing.get_args(hint)):
        if isinstance(candidate, type) and issubclass(candidate, enum.Enum):
            return candidate
    raise TypeError(f"no enum type in {hint!r}")


def _check_schema() -> None:
    """Every delivery option of the proto has its dataclass field. An engine
    option without a JobOptions field belongs to a loss term, which declares
    it (JobOptions.term_options; the engine checks at load that a term owns it)."""
    for option in schema.OPTIONS:
        if option.scope is Scope.DELIVERY and option.name not in _HINTS[option.scope]:
            raise RuntimeError(f"StylizeRequest.{option.name} has no field in the {option.scope.value} options")


def term_option_names() -> tuple[str, ...]:
    """The request's engine options that loss terms own."""
    return tuple(o.name for o in schema.OPTIONS if o.scope is Scope.ENGINE and o.name not in _HINTS[Scope.ENGINE])


_check_schema()


def _layers(values: Sequence[pb.LayerWeight]) -> Layers | None:
    if not values:
        return None
    return tuple((lw.layer, float(lw.weight) if lw.HasField("weight") else 1.0) for lw in values)


def read_option(request: pb.StylizeRequest, option: OptionField) -> OptionValue | None:
    """The value of `option` in `request` as the dataclass holds it, or None
    when the request leaves it unset (the default applies)."""
    value = getattr(request, option.name)
    if option.kind is Kind.LAYERS:
        return _layers(value)
    if option.kind is Kind.ENUM:
        if value == 0:
            return None
        if value not in option.choices.values():
            enum_type = request.DESCRIPTOR.fields_by_name[option.name].enum_type
            assert enum_type is not None
            names = ", ".join(enum_type.values_by_number[n].name for n in option.choices.values())
            raise InvalidArgument(option.name, f"unknown value {value}; use one of {names}")
        hint = _HINTS[option.scope].get(option.name)
        return option.enum_name(value) if hint is None else _enum_class(hint)(option.enum_name(value))
    if option.has_presence and not request.HasField(option.name):
        return None
    if option.kind is Kind.STRING and not option.has_presence and not value:
        return None
    if option.kind is Kind.FLOAT:
        number = float(value)
        if not math.isfinite(number):
            raise InvalidArgument(option.name, f"must be a finite number, got {number!r}")
        return number
    if not isinstance(value, (bool, int, float, str)):  # an image or styles field is not an option value
        raise TypeError(f"StylizeRequest.{option.name} ({option.kind.value}) is not an option value")
    return value


def request_options(request: pb.StylizeRequest) -> tuple[JobOptions, DeliveryOptions]:
    """The request's options; unset ones keep the dataclasses' defaults."""
    values: dict[Scope, dict[str, OptionValue]] = {Scope.ENGINE: {}, Scope.DELIVERY: {}}
    owned: list[tuple[str, TermValue]] = []
    for option in schema.OPTIONS:
        if option.scope in values:
            value = read_option(request, option)
            if value is None:
                continue
            if option.scope is Scope.ENGINE and option.name not in _HINTS[Scope.ENGINE]:
                assert not isinstance(value, enum.Enum)  # no field, so held by its name (read_option)
                owned.append((option.name, value))
            else:
                values[option.scope][option.name] = value
    # replace, not the constructor: the values are typed per option, not per field.
    engine = JobOptions().replace(**values[Scope.ENGINE], term_options=tuple(sorted(owned)))
    return engine, DeliveryOptions().replace(**values[Scope.DELIVERY])


def _proto_value(name: str, value: object) -> object:
    """`value` as ResolvedOptions' field `name` holds it."""
    if isinstance(value, enum.Enum):
        return schema.BY_NAME[name].enum_number(str(value.value))
    if isinstance(value, str) and name in schema.BY_NAME and schema.BY_NAME[name].kind is Kind.ENUM:
        return schema.BY_NAME[name].enum_number(value)  # a term's enum option, held by its name
    if name.endswith("_layers") and isinstance(value, (tuple, list)):
        return [pb.LayerWeight(layer=n, weight=w) for n, w in value]
    return value


def resolved_to_proto(
    options: JobOptions,
    delivery: DeliveryOptions,
    *,
    scales: list[tuple[int, int]] | None = None,
    blend_weights: list[float] | None = None,
    regions: int = 1,
    precision: str = "float32",
) -> pb.ResolvedOptions:
    """The options a job runs with (or the server's defaults), as the API
    shows them; `scales` are (size, iterations) pairs."""
    frame = pb.ResolvedOptions()
    sources: list[Mapping[str, object]] = [
        {f.name: getattr(options, f.name) for f in dataclasses.fields(options)},
        {f.name: getattr(delivery, f.name) for f in dataclasses.fields(delivery)},
        dict(options.term_options),
    ]
    for fd in pb.ResolvedOptions.DESCRIPTOR.fields:
        for source in sources:
            value = source.get(fd.name)
            if value is None:
                continue
            converted = _proto_value(fd.name, value)
            if fd.is_repeated:
                getattr(frame, fd.name).extend(converted)
            else:
                setattr(frame, fd.name, converted)
    for size, iterations in scales or []:
        frame.scale_sizes.append(size)
        frame.scale_iterations.append(iterations)
    frame.style_blend_weights.extend(blend_weights or [])
    frame.regions = regions
    frame.precision = precision
    return frame


def losses_to_proto(losses: Losses) -> pb.Losses:
    return losses.to_proto()


def estimate_to_proto(estimate: Estimate) -> pb.Estimate:
    return pb.Estimate(
        device_memory_bytes=estimate.device_memory_bytes,
        seconds=estimate.seconds,
        flops=estimate.flops,
        input_pixels=estimate.input_pixels,
        scales=[
            pb.ScaleEstimate(
                width=s.width,
                height=s.height,
                iterations=s.iterations,
                style_pixels=s.style_pixels,
                device_memory_bytes=s.device_memory_bytes,
                seconds_per_iteration=s.seconds_per_iteration,
                tile_size=s.tile_size,
                tiles=s.tiles,
                lbfgs_history=s.lbfgs_history,
            )
            for s in estimate.scales
        ],
    )


def progress_to_proto(
    progress: Progress, eta_seconds: float, preview: np.ndarray | None, preview_png: bytes | None
) -> pb.Progress:
    """A progress frame; the preview (if any) is rendered and encoded by the
    caller on its own thread, never on the engine's."""
    frame = pb.Progress(
        iteration=progress.iteration,
        total_iterations=progress.total_iterations,
        losses=losses_to_proto(progress.losses),
        elapsed_seconds=progress.elapsed_seconds,
        eta_seconds=eta_seconds,
        scale_index=progress.scale_index,
    )
    if preview is not None and preview_png is not None:
        frame.preview.data = preview_png
        frame.preview_height, frame.preview_width = int(preview.shape[0]), int(preview.shape[1])
    return frame
