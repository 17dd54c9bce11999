"""Bytes that are not protobuf (issue 17, item 7): garbage, a truncated
message, a string field that is not UTF-8. Sent through a raw channel, the
way no generated stub can, to every StyleTransfer method of a real server:
each is INVALID_ARGUMENT with reason MALFORMED_REQUEST in the google.rpc.Status
details, nothing is logged at ERROR, and stylize_requests_total{code="INTERNAL"}
does not move (it feeds the StylizeHighErrorRatio alert)."""

from __future__ import annotations

import logging

import grpc
import pytest
from google.rpc import error_details_pb2
from grpc_status import rpc_status

from stylize_api.v1 import stylize_pb2 as pb
from tests.support.metrics import scrape, value
from tests.support.server import running_server, small_request

SERVICE = "/stylize.v1.StyleTransfer/"
REQUEST_TYPE = {"Stylize": "StylizeRequest", "Cancel": "CancelRequest", "GetServerInfo": "GetServerInfoRequest"}


def _string_field(number: int, payload: bytes) -> bytes:
    """A length-delimited field `number` holding `payload` (wire type 2)."""
    tag, out = (number << 3) | 2, bytearray()
    for value_ in (tag, len(payload)):
        while value_ >= 0x80:
            out.append((value_ & 0x7F) | 0x80)
            value_ >>= 7
        out.append(value_)
    return bytes(out) + payload


BAD_UTF8 = b"\xff\xfeid\xc3"
VALID_STYLIZE = small_request().SerializeToString()
CASES = {
    "Stylize": [
        b"\xff" * 7,  # a tag whose varint never ends
        VALID_STYLIZE[: len(VALID_STYLIZE) // 2],  # cut in the middle of an image's bytes
        VALID_STYLIZE + _string_field(24, BAD_UTF8),  # request_id is not UTF-8
    ],
    "Cancel": [b"\xff" * 7, _string_field(1, BAD_UTF8), b"\x0a\x40abc"],  # the last: longer than the message
    "GetServerInfo": [b"\xff" * 7, b"\x0a\x40abc"],
}


def _details(error: grpc.RpcError) -> tuple[str, list[str]]:
    """The ErrorInfo reason and the type names of every detail."""
    status = rpc_status.from_call(error)  # type: ignore[arg-type]
    assert status is not None, "no google.rpc.Status in the trailers"
    reason, kinds = "", []
    for detail in status.details:
        kinds.append(detail.type_url.rpartition("/")[2])
        if detail.Is(error_details_pb2.ErrorInfo.DESCRIPTOR):
            info = error_details_pb2.ErrorInfo()
            detail.Unpack(info)
            reason = info.reason
    return reason, kinds


def _call(channel: grpc.Channel, method: str, data: bytes) -> None:
    """One call with raw request bytes; the responses are left as bytes too."""
    if method == "Stylize":
        list(
            channel.unary_stream(SERVICE + method, request_serializer=None, response_deserializer=None)(
                data, timeout=30
            )
        )
    else:
        channel.unary_unary(SERVICE + method, request_serializer=None, response_deserializer=None)(data, timeout=30)


def test_every_method_refuses_malformed_bytes_as_invalid_argument(engine, caplog):
    caplog.set_level(logging.WARNING)  # any logger: gRPC's own deserialization errors included
    with running_server(engine=engine) as srv:
        port = srv.metrics_port
        channel = srv.channel()
        internal0 = value(scrape(port), "stylize_requests_total", code="INTERNAL")
        invalid0 = value(scrape(port), "stylize_requests_total", code="INVALID_ARGUMENT")
        refused0 = value(scrape(port), "stylize_refusals_total", reason="MALFORMED_REQUEST")
        sent = 0
        for method, bodies in CASES.items():
            for data in bodies:
                with pytest.raises(grpc.RpcError) as caught:
                    _call(channel, method, data)
                error = caught.value
                assert error.code() == grpc.StatusCode.INVALID_ARGUMENT, (method, data[:16], error.details())
                assert _details(error) == ("MALFORMED_REQUEST", ["google.rpc.ErrorInfo"])
                assert f"is not a valid stylize.v1.{REQUEST_TYPE[method]} message" in (error.details() or "")
                sent += 1 if method == "Stylize" else 0

        families = scrape(port)
        assert value(families, "stylize_requests_total", code="INTERNAL") == internal0
        assert value(families, "stylize_requests_total", code="INVALID_ARGUMENT") == invalid0 + sent
        assert value(families, "stylize_refusals_total", reason="MALFORMED_REQUEST") == refused0 + sent
        errors = [r for r in caplog.records if r.levelno >= logging.ERROR]
        assert errors == [], [r.getMessage() for r in errors]

        # The same channel still serves well-formed calls.
        stub = srv.stub(channel)
        assert stub.GetServerInfo(pb.GetServerInfoRequest(), timeout=10).version
        frames = list(stub.Stylize(small_request(iterations=1), timeout=60))
        assert frames[-1].HasField("result")


def test_a_not_utf8_string_names_the_problem(engine):
    with running_server(engine=engine) as srv:
        with pytest.raises(grpc.RpcError) as caught:
            _call(srv.channel(), "Cancel", _string_field(1, BAD_UTF8))
        assert "bad UTF-8" in (caught.value.details() or "")
        assert "\\xff" not in (caught.value.details() or "")  # the caller's bytes are not echoed


def test_health_and_reflection_refuse_garbage_too_and_still_answer(engine, caplog):
    """They are gRPC's own services, but health answers everyone without a token:
    garbage must not become UNKNOWN with a traceback at ERROR there either."""
    from grpc_health.v1 import health_pb2, health_pb2_grpc
    from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

    caplog.set_level(logging.WARNING)
    with running_server(engine=engine) as srv:
        channel = srv.channel()
        health = "/grpc.health.v1.Health/"
        for call in (
            channel.unary_unary(health + "Check", request_serializer=None, response_deserializer=None),
            channel.unary_stream(health + "Watch", request_serializer=None, response_deserializer=None),
        ):
            with pytest.raises(grpc.RpcError) as caught:
                reply = call(b"\xff" * 7, timeout=10)
                if not isinstance(reply, bytes):
                    next(iter(reply))
            assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
            assert _details(caught.value) == ("MALFORMED_REQUEST", ["google.rpc.ErrorInfo"])
        info = "/grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo"
        with pytest.raises(grpc.RpcError) as caught:
            list(channel.stream_stream(info, request_serializer=None, response_deserializer=None)(iter([b"\xff" * 7])))
        assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        errors = [r for r in caplog.records if r.levelno >= logging.ERROR]
        assert errors == [], [r.getMessage() for r in errors]

        # Well-formed calls go through the guard unchanged, in both response styles.
        stub = health_pb2_grpc.HealthStub(channel)
        serving = health_pb2.HealthCheckResponse.SERVING
        assert stub.Check(health_pb2.HealthCheckRequest(service=""), timeout=10).status == serving
        watch = stub.Watch(health_pb2.HealthCheckRequest(service="stylize.v1.StyleTransfer"), timeout=10)
        assert next(iter(watch)).status == serving
        watch.cancel()
        listing = reflection_pb2_grpc.ServerReflectionStub(channel).ServerReflectionInfo(
            iter([reflection_pb2.ServerReflectionRequest(list_services="")]), timeout=10
        )
        names = {s.name for s in next(iter(listing)).list_services_response.service}
        assert "stylize.v1.StyleTransfer" in names
