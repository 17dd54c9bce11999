"""Byte-level mutations for the fuzz scenario (issue 17, item 7): what a
generated stub never sends. Each case is a method and the raw bytes of its
request message: garbage, a message cut short, a length past the end, an
unterminated varint, a string field that is not UTF-8, and, from hypothesis,
bit flips, truncations, insertions and overwrites of a valid message's bytes.

`expected` says what the server must answer: bytes that protobuf cannot parse
as the method's request type are INVALID_ARGUMENT with reason
MALFORMED_REQUEST, on every method; bytes that parse are an ordinary request
(for Stylize, any clean status of the fuzz scenario).
"""

from __future__ import annotations

import random
from collections.abc import Callable

import grpc
from google.protobuf.message import DecodeError
from google.rpc import error_details_pb2
from grpc_status import rpc_status
from hypothesis import strategies as st

from stylize_api.v1 import stylize_pb2 as pb

from .malformed import base_request

SERVICE = "/stylize.v1.StyleTransfer/"
REQUEST_TYPES: dict[str, type] = {
    "Stylize": pb.StylizeRequest,
    "Cancel": pb.CancelRequest,
    "GetServerInfo": pb.GetServerInfoRequest,
}
BAD_UTF8 = b"\xff\xfe\xc3("


def field(number: int, payload: bytes) -> bytes:
    """A length-delimited field (wire type 2): tag, length, payload."""
    out = bytearray()
    for value in ((number << 3) | 2, len(payload)):
        while value >= 0x80:
            out.append((value & 0x7F) | 0x80)
            value >>= 7
        out.append(value)
    return bytes(out) + payload


def base_bytes(method: str) -> bytes:
    if method == "Stylize":
        return base_request().SerializeToString()
    if method == "Cancel":
        return pb.CancelRequest(request_id="fuzz-cancel").SerializeToString()
    return b""


def corpus() -> list[tuple[str, str, bytes]]:
    """(label, method, bytes): the fixed cases, every method."""
    rng = random.Random(17)
    cases: list[tuple[str, str, bytes]] = []
    for method in REQUEST_TYPES:
        cases += [
            (f"{method}: unterminated varint", method, b"\xff" * 7),
            (f"{method}: random bytes", method, bytes(rng.randrange(256) for _ in range(64))),
            (f"{method}: length past the end", method, base_bytes(method) + b"\x0a\x40abc"),
            (f"{method}: field number 0", method, b"\x02\x01x"),
        ]
    stylize = base_bytes("Stylize")
    cases += [
        ("Stylize: cut in half", "Stylize", stylize[: len(stylize) // 2]),
        ("Stylize: request_id not UTF-8", "Stylize", stylize + field(24, BAD_UTF8)),
        ("Stylize: background not UTF-8", "Stylize", stylize + field(27, BAD_UTF8)),
        ("Cancel: request_id not UTF-8", "Cancel", field(1, BAD_UTF8)),
    ]
    return cases


def _mutate(data: bytes, ops: list[tuple[str, int, bytes]]) -> bytes:
    out = bytearray(data)
    for kind, where, noise in ops:
        at = where % (len(out) + 1)
        if kind == "flip" and out:
            out[at % len(out)] ^= 1 << (noise[0] % 8)
        elif kind == "truncate":
            del out[at:]
        elif kind == "insert":
            out[at:at] = noise
        elif kind == "overwrite":
            out[at : at + len(noise)] = noise
        elif kind == "bad_string":  # a request_id / background that is not UTF-8
            out += field(24 if noise[0] % 2 else 27, b"\xff" + noise)
    return bytes(out)


@st.composite
def wire_cases(draw: Callable) -> tuple[str, bytes]:
    method = draw(st.sampled_from(list(REQUEST_TYPES)))
    ops = draw(
        st.lists(
            st.tuples(
                st.sampled_from(("flip", "truncate", "insert", "overwrite", "bad_string")),
                st.integers(0, 1 << 20),
                st.binary(min_size=1, max_size=16),
            ),
            min_size=1,
            max_size=3,
        )
    )
    return method, _mutate(base_bytes(method), ops)


def parses(method: str, data: bytes) -> bool:
    try:
        REQUEST_TYPES[method].FromString(data)
    except DecodeError:
        return False
    return True


def call(channel: grpc.Channel, method: str, data: bytes, timeout: float = 60) -> tuple[grpc.StatusCode, str, str]:
    """Send raw bytes to `method`: (code, details, ErrorInfo reason)."""
    try:
        if method == "Stylize":
            stream = channel.unary_stream(SERVICE + method, request_serializer=None, response_deserializer=None)
            for _ in stream(data, timeout=timeout):
                pass
        else:
            unary = channel.unary_unary(SERVICE + method, request_serializer=None, response_deserializer=None)
            unary(data, timeout=timeout)
    except grpc.RpcError as exc:
        return exc.code(), exc.details() or "", reason_of(exc)
    return grpc.StatusCode.OK, "", ""


def reason_of(error: grpc.RpcError) -> str:
    status = rpc_status.from_call(error)  # type: ignore[arg-type]
    for detail in status.details if status else ():
        if detail.Is(error_details_pb2.ErrorInfo.DESCRIPTOR):
            info = error_details_pb2.ErrorInfo()
            detail.Unpack(info)
            return info.reason
    return ""


# What a request that parses may get, by method (Stylize: the fuzz scenario's CLEAN set).
PARSED_OK: dict[str, set[grpc.StatusCode]] = {
    "Cancel": {grpc.StatusCode.OK, grpc.StatusCode.NOT_FOUND, grpc.StatusCode.INVALID_ARGUMENT},
    "GetServerInfo": {grpc.StatusCode.OK},
}


def problem(method: str, data: bytes, code: grpc.StatusCode, details: str, reason: str, clean: set) -> str | None:
    """Why the answer to these bytes is wrong; None when it is right."""
    if not parses(method, data):
        if code is grpc.StatusCode.INVALID_ARGUMENT and reason == "MALFORMED_REQUEST" and details:
            return None
        return f"unparsable bytes got {code.name} {reason or '(no reason)'}: {details[:80]}"
    allowed = clean if method == "Stylize" else PARSED_OK[method]
    return None if code in allowed else f"a parsable request got {code.name}: {details[:80]}"
