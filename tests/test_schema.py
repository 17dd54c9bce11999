"""The API's vocabulary comes from the proto: the Python reason enums equal the
proto's, every request option has a scope, help and a dataclass field, and the
request <-> options mapping round-trips every option by name."""

from __future__ import annotations

import typing

import pytest

from stylize_api import schema
from stylize_api.schema import ErrorReason, Kind, Scope, StopReason
from stylize_api.v1 import stylize_pb2 as pb


def test_reason_enums_equal_the_protos() -> None:
    proto_reasons = {v.name.removeprefix("ERROR_REASON_") for v in pb.ErrorReason.DESCRIPTOR.values if v.number}
    assert {r.value for r in ErrorReason} == proto_reasons
    proto_stops = {v.name.removeprefix("STOP_REASON_") for v in pb.StopReason.DESCRIPTOR.values}
    assert {r.name for r in StopReason} == proto_stops
    for reason in StopReason:
        assert StopReason.from_number(reason.number) is reason


def test_every_request_field_is_an_option_with_help_and_scope() -> None:
    names = [f.name for f in pb.StylizeRequest.DESCRIPTOR.fields]
    assert [o.name for o in schema.OPTIONS] == names
    for option in schema.OPTIONS:
        assert option.help, option.name
        assert option.scope in Scope, option.name
    assert schema.BY_NAME["output_format"].choices == {"png": 1, "jpeg": 2, "webp": 3}
    assert schema.BY_NAME["style_layers"].kind is Kind.LAYERS
    assert schema.BY_NAME["styles"].kind is Kind.STYLES and schema.BY_NAME["styles"].scope is Scope.INPUT
    assert schema.BY_NAME["color_control"].choices == {"none": 1, "luminance": 2, "histogram": 3}


def test_every_engine_and_delivery_option_has_its_dataclass_field() -> None:
    from stylize_server.engine import terms
    from stylize_server.job.delivery import DeliveryOptions
    from stylize_server.job.options import JobOptions

    fields = {Scope.ENGINE: typing.get_type_hints(JobOptions), Scope.DELIVERY: typing.get_type_hints(DeliveryOptions)}
    owned = set(terms.option_defaults())  # a loss term's own option (style_loss) has no JobOptions field
    for option in schema.OPTIONS:
        if option.scope in fields:
            assert option.name in fields[option.scope] or (option.scope is Scope.ENGINE and option.name in owned), (
                option.name
            )


def _example(option: schema.OptionField) -> object:
    if option.kind is Kind.ENUM:
        return list(option.choices.values())[-1]
    return {
        Kind.INT: 48,
        Kind.UINT64: 7,
        Kind.FLOAT: 0.5,
        Kind.BOOL: True,
        Kind.STRING: "#102030",
    }[option.kind]


@pytest.mark.parametrize("option", [o for o in schema.OPTIONS if o.scope is not Scope.INPUT], ids=lambda o: o.name)
def test_each_option_maps_by_name_onto_its_dataclass(option: schema.OptionField) -> None:
    from stylize_server.wire import convert

    request = pb.StylizeRequest()
    if option.kind is Kind.LAYERS:
        getattr(request, option.name).add(layer="relu3_1", weight=0.5)
        expected: object = (("relu3_1", 0.5),)
    else:
        value = _example(option)
        if option.name == "request_id":
            value = "job-1"
        setattr(request, option.name, value)
        expected = value
    engine, delivery = convert.request_options(request)
    # engine.value: a JobOptions field, or a loss term's option (an enum held by its name)
    got = engine.value(option.name) if option.scope is Scope.ENGINE else getattr(delivery, option.name)
    if option.kind is Kind.ENUM:
        assert option.enum_number(got if isinstance(got, str) else got.value) == expected
    else:
        assert got == expected


def test_engine_options_take_an_enum_by_its_value_and_refuse_an_unknown_one():
    from stylize_server.job.errors import InvalidArgument
    from stylize_server.job.options import ColorControl, JobOptions, Optimizer, Pooling

    options = JobOptions(color_control="luminance", pooling="max", optimizer="adam")  # type: ignore[arg-type]
    assert options.color_control is ColorControl.LUMINANCE
    assert options.pooling is Pooling.MAX and options.optimizer is Optimizer.ADAM
    with pytest.raises(InvalidArgument) as caught:
        JobOptions(optimizer="sgd")  # type: ignore[arg-type]
    assert caught.value.field == "optimizer" and "lbfgs, adam" in str(caught.value)
