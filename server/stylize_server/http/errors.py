"""google.rpc.Status as an HTTP answer: the status in proto3 JSON (code,
message, details with ErrorInfo's reason), the HTTP status of gRPC's standard
mapping (google/rpc/code.proto), and Retry-After from RetryInfo."""

from __future__ import annotations

import json
import math

from aiohttp import web
from google.protobuf import json_format
from google.rpc import error_details_pb2, status_pb2

from stylize_api.schema import ErrorReason
from stylize_server.wire.status import status_for

# google/rpc/code.proto, "HTTP Mapping" of each code.
HTTP_STATUS: dict[int, int] = {
    0: 200,  # OK
    1: 499,  # CANCELLED
    2: 500,  # UNKNOWN
    3: 400,  # INVALID_ARGUMENT
    4: 504,  # DEADLINE_EXCEEDED
    5: 404,  # NOT_FOUND
    6: 409,  # ALREADY_EXISTS
    7: 403,  # PERMISSION_DENIED
    8: 429,  # RESOURCE_EXHAUSTED
    9: 400,  # FAILED_PRECONDITION
    10: 409,  # ABORTED
    11: 400,  # OUT_OF_RANGE
    12: 501,  # UNIMPLEMENTED
    13: 500,  # INTERNAL
    14: 503,  # UNAVAILABLE
    15: 500,  # DATA_LOSS
    16: 401,  # UNAUTHENTICATED
}
# Where HTTP has a more exact word than the code's mapping: TOO_LARGE is never
# fixed by waiting (429 invites a retry), and a body the client did not finish
# sending is the client's timeout, not a gateway's.
BY_REASON: dict[str, int] = {
    ErrorReason.TOO_LARGE.value: 413,
    ErrorReason.RECEIVE_TIMEOUT.value: 408,
}
JSON = "application/json"


def reason_of(status: status_pb2.Status) -> str:
    for detail in status.details:
        info = error_details_pb2.ErrorInfo()
        if detail.Unpack(info):
            return str(info.reason)
    return ""


def retry_after(status: status_pb2.Status) -> int | None:
    for detail in status.details:
        info = error_details_pb2.RetryInfo()
        if detail.Unpack(info):
            return max(1, math.ceil(int(info.retry_delay.seconds) + int(info.retry_delay.nanos) / 1e9))
    return None


def http_status(status: status_pb2.Status) -> int:
    return BY_REASON.get(reason_of(status), HTTP_STATUS.get(status.code, 500))


def status_json(status: status_pb2.Status) -> str:
    return json.dumps(json_format.MessageToDict(status), separators=(",", ":"))


def response(status: status_pb2.Status, http: int | None = None) -> web.Response:
    """The HTTP answer of a failed call; `http` overrides the mapping (410 Gone)."""
    headers = {}
    delay = retry_after(status)
    if delay is not None:
        headers["Retry-After"] = str(delay)
    return web.Response(
        status=http or http_status(status), text=status_json(status), content_type=JSON, headers=headers
    )


def error_response(exc: BaseException, http: int | None = None) -> web.Response:
    return response(status_for(exc).proto(), http)
