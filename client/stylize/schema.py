"""The API's vocabulary, read from the proto's descriptor: the request options
(name, kind, scope, help, enum choices), the error reasons and the stop reasons.

`stylize.v1.StylizeRequest`'s descriptor is the one list of options. The
client's request builder, the CLI's flags, the server's mapping and the fuzzer
iterate `OPTIONS`; nothing else lists them. An option's help and scope come from
the `(stylize.v1.option)` field option in proto/stylize/v1/stylize.proto.

The two reason enums are written out here so that code can name their members;
tests/test_schema.py proves they equal the proto's enums.
"""

from __future__ import annotations

import enum
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import cast

from google.protobuf.descriptor import EnumDescriptor, FieldDescriptor

from stylize.v1 import stylize_pb2

DOMAIN = "stylize.v1"  # google.rpc.ErrorInfo.domain of every error this API raises


class ErrorReason(str, enum.Enum):
    """google.rpc.ErrorInfo.reason values (proto enum ErrorReason without its prefix)."""

    INVALID_OPTION = "INVALID_OPTION"
    DECODE_FAILED = "DECODE_FAILED"
    TOO_LARGE = "TOO_LARGE"
    QUEUE_FULL = "QUEUE_FULL"
    CLIENT_QUOTA = "CLIENT_QUOTA"
    CALL_LIMIT = "CALL_LIMIT"
    LOADING = "LOADING"
    DRAINING = "DRAINING"
    UNAUTHENTICATED = "UNAUTHENTICATED"
    RECEIVE_TIMEOUT = "RECEIVE_TIMEOUT"
    DEADLINE = "DEADLINE"
    CANCELLED = "CANCELLED"
    NUMERICAL = "NUMERICAL"
    INTERNAL = "INTERNAL"
    REQUEST_ID_IN_USE = "REQUEST_ID_IN_USE"
    NOT_FOUND = "NOT_FOUND"
    CLIENT_CALL_LIMIT = "CLIENT_CALL_LIMIT"
    JOB_STREAM_LIMIT = "JOB_STREAM_LIMIT"


class StopReason(str, enum.Enum):
    """Why a job ended before its last iteration (proto enum StopReason); the
    values are also the `reason` label of stylize_jobs_stopped_total and the
    `stop_reason` of log lines."""

    NONE = "none"
    CLIENT = "client"
    DEADLINE = "deadline"
    TIME_LIMIT = "time_limit"
    SHUTDOWN = "shutdown"

    @property
    def number(self) -> int:
        return stylize_pb2.StopReason.Value("STOP_REASON_" + self.name)

    @classmethod
    def from_number(cls, number: int) -> StopReason:
        return cls[stylize_pb2.StopReason.Name(number).removeprefix("STOP_REASON_")]


class Kind(str, enum.Enum):
    INT = "int"
    UINT64 = "uint64"
    FLOAT = "float"
    BOOL = "bool"
    STRING = "string"
    ENUM = "enum"
    LAYERS = "layers"  # repeated LayerWeight
    IMAGE = "image"  # Image
    STYLES = "styles"  # repeated StyleImage


class Scope(str, enum.Enum):
    ENGINE = "engine"
    DELIVERY = "delivery"
    INPUT = "input"


_SCALAR_KINDS = {
    FieldDescriptor.TYPE_INT32: Kind.INT,
    FieldDescriptor.TYPE_INT64: Kind.INT,
    FieldDescriptor.TYPE_UINT64: Kind.UINT64,
    FieldDescriptor.TYPE_FLOAT: Kind.FLOAT,
    FieldDescriptor.TYPE_DOUBLE: Kind.FLOAT,
    FieldDescriptor.TYPE_BOOL: Kind.BOOL,
    FieldDescriptor.TYPE_STRING: Kind.STRING,
    FieldDescriptor.TYPE_ENUM: Kind.ENUM,
}
_MESSAGE_KINDS = {
    "stylize.v1.LayerWeight": Kind.LAYERS,
    "stylize.v1.Image": Kind.IMAGE,
    "stylize.v1.StyleImage": Kind.STYLES,
}


def enum_prefix(descriptor: EnumDescriptor) -> str:
    """ "OutputFormat" -> "OUTPUT_FORMAT_": the prefix of every value name."""
    return re.sub(r"(?<!^)(?=[A-Z])", "_", descriptor.name).upper() + "_"


def enum_choices(descriptor: EnumDescriptor) -> Mapping[str, int]:
    """{"png": 1, "jpeg": 2, ...}: lower-case names without the prefix, UNSPECIFIED left out."""
    prefix = enum_prefix(descriptor)
    return MappingProxyType({v.name.removeprefix(prefix).lower(): v.number for v in descriptor.values if v.number != 0})


@dataclass(frozen=True)
class OptionField:
    """One StylizeRequest field as an option."""

    name: str
    kind: Kind
    scope: Scope
    help: str
    metavar: str
    choices: Mapping[str, int] = field(default_factory=dict)  # ENUM: name -> number
    has_presence: bool = True  # unset means "the server's default"

    @property
    def flag(self) -> str:
        return "--" + self.name.replace("_", "-")

    def enum_number(self, name: str) -> int:
        """The number of choice `name` (case-insensitive); ValueError naming the choices."""
        key = name.lower()
        if key not in self.choices:
            raise ValueError(f"{self.name}: unknown value {name!r}; choose one of {', '.join(self.choices)}")
        return self.choices[key]

    def enum_name(self, number: int) -> str:
        for name, value in self.choices.items():
            if value == number:
                return name
        raise ValueError(f"{self.name}: unknown value {number}")


def _spec(fd: FieldDescriptor) -> stylize_pb2.OptionSpec:
    # The stubs type a generated extension as a plain FieldDescriptor.
    spec: stylize_pb2.OptionSpec = fd.GetOptions().Extensions[stylize_pb2.option]  # type: ignore[index]
    return spec


def _option(fd: FieldDescriptor) -> OptionField:
    spec = _spec(fd)
    if fd.type == FieldDescriptor.TYPE_MESSAGE:
        assert fd.message_type is not None
        kind = _MESSAGE_KINDS[fd.message_type.full_name]
    else:
        kind = _SCALAR_KINDS[fd.type]
    choices: Mapping[str, int] = MappingProxyType({})
    if kind is Kind.ENUM:
        assert fd.enum_type is not None
        choices = enum_choices(fd.enum_type)
    scope = Scope(stylize_pb2.OptionScope.Name(spec.scope).removeprefix("OPTION_SCOPE_").lower())
    return OptionField(
        name=fd.name,
        kind=kind,
        scope=scope,
        help=spec.help,
        metavar=spec.metavar,
        choices=choices,
        has_presence=fd.has_presence,
    )


def _options() -> tuple[OptionField, ...]:
    fields = [cast(FieldDescriptor, fd) for fd in stylize_pb2.StylizeRequest.DESCRIPTOR.fields]
    missing = [fd.name for fd in fields if not fd.GetOptions().HasExtension(stylize_pb2.option)]  # type: ignore[arg-type]
    if missing:  # a new field without (stylize.v1.option) would silently lack a flag
        raise RuntimeError(f"StylizeRequest fields without (stylize.v1.option): {missing}")
    return tuple(_option(fd) for fd in fields)


OPTIONS: tuple[OptionField, ...] = _options()
BY_NAME: Mapping[str, OptionField] = MappingProxyType({o.name: o for o in OPTIONS})


def scoped(scope: Scope) -> tuple[OptionField, ...]:
    return tuple(o for o in OPTIONS if o.scope is scope)


def reason_of(number: int) -> ErrorReason:
    return ErrorReason(stylize_pb2.ErrorReason.Name(number).removeprefix("ERROR_REASON_"))
