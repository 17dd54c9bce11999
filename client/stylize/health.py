"""The standard gRPC health check (`grpc.health.v1.Health/Check`) without the
`grpcio-health-checking` package, so the default install stays small.

The two messages have one field each (request: `string service = 1`,
response: `ServingStatus status = 1`), so they are encoded and decoded here
directly in the protobuf wire format.
"""

from __future__ import annotations

HEALTH_CHECK_METHOD = "/grpc.health.v1.Health/Check"
SERVICE_NAME = "stylize.v1.StyleTransfer"

STATUS_NAMES = {0: "UNKNOWN", 1: "SERVING", 2: "NOT_SERVING", 3: "SERVICE_UNKNOWN"}


def _varint(value: int) -> bytes:
    out = bytearray()
    while True:
        byte = value & 0x7F
        value >>= 7
        if value:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def encode_request(service: str) -> bytes:
    """HealthCheckRequest{service}: field 1, wire type 2 (length-delimited)."""
    data = service.encode("utf-8")
    if not data:
        return b""  # proto3 leaves the default value out
    return b"\x0a" + _varint(len(data)) + data


def decode_response(data: bytes) -> str:
    """The status name of a HealthCheckResponse; unknown fields are skipped."""
    status = 0
    i = 0
    while i < len(data):
        key, i = _read_varint(data, i)
        number, wire_type = key >> 3, key & 7
        if wire_type == 0:
            value, i = _read_varint(data, i)
            if number == 1:
                status = value
        elif wire_type == 2:
            length, i = _read_varint(data, i)
            i += length
        elif wire_type == 1:
            i += 8
        elif wire_type == 5:
            i += 4
        else:
            raise ValueError(f"malformed HealthCheckResponse (wire type {wire_type})")
    return STATUS_NAMES.get(status, f"UNKNOWN({status})")


def _read_varint(data: bytes, i: int) -> tuple[int, int]:
    result = shift = 0
    while True:
        if i >= len(data):
            raise ValueError("malformed HealthCheckResponse (truncated varint)")
        byte = data[i]
        i += 1
        result |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return result, i
        shift += 7
