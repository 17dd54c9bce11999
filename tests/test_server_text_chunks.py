"""PNG text bombs against a real server (issue 17, item 2): requests whose
17 images each carry 63 zTXt chunks of 1 MiB before their pixels. Admission
reads their headers without inflating anything, the decode executor
refuses them (DECODE_FAILED naming the field and Pillow's text limit), and
health keeps answering within the readiness probe's 5 s meanwhile. Before
the fix, Pillow's header parse on the event loop inflated about 1 GiB per
request, and three such clients blocked the loop past a 5 s health check.
"""

from __future__ import annotations

import threading
import time

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from stylize_api.v1 import stylize_pb2 as pb
from tests.support.hostile_images import text_bomb_png
from tests.support.server import running_server, small_request
from tests.support.streams import error_reason

# Health latency is measured here: alone on the machine (make test's second run).
pytestmark = pytest.mark.serial

READINESS_TIMEOUT_S = 5.0  # the k8s readiness probe's timeoutSeconds
CLIENTS = 3
STYLES = 8


def bomb_request(seed: int) -> pb.StylizeRequest:
    bomb = text_bomb_png(40, 32, chunks=63, inflated=1 << 20)
    styles = [
        pb.StyleImage(image=pb.Image(data=bomb), mask=pb.Image(data=text_bomb_png(40 + i, 32))) for i in range(STYLES)
    ]
    return small_request(content=pb.Image(data=bomb), styles=styles, request_id=f"bomb-{seed}")


def test_text_bombs_are_refused_while_health_answers() -> None:
    requests = [bomb_request(i) for i in range(CLIENTS)]
    with running_server(max_styles=STYLES, max_message_mb=4.0) as srv:
        health = health_pb2_grpc.HealthStub(srv.channel())
        health.Check(health_pb2.HealthCheckRequest(), timeout=30)
        outcomes: list[tuple[grpc.StatusCode, str | None, str]] = []
        window: list[float] = []
        stop = threading.Event()
        answers: list[tuple[float, int]] = []
        late: list[str] = []

        def check_health() -> None:
            while not stop.is_set():
                t0 = time.monotonic()
                try:
                    reply = health.Check(health_pb2.HealthCheckRequest(), timeout=READINESS_TIMEOUT_S)
                except grpc.RpcError as exc:
                    late.append(f"{exc.code().name} after {time.monotonic() - t0:.1f} s")
                    continue
                answers.append((t0, reply.status))

        def send(request: pb.StylizeRequest) -> None:
            try:
                list(srv.stub().Stylize(request, timeout=120))
                outcomes.append((grpc.StatusCode.OK, None, ""))
            except grpc.RpcError as exc:
                outcomes.append((exc.code(), error_reason(exc), exc.details() or ""))

        checker = threading.Thread(target=check_health)
        checker.start()
        try:
            time.sleep(0.05)
            clients = [threading.Thread(target=send, args=(r,)) for r in requests]
            window.append(time.monotonic())
            for client in clients:
                client.start()
            for client in clients:
                client.join(120)
            window.append(time.monotonic())
        finally:
            stop.set()
            checker.join(30)
        assert not checker.is_alive()
        assert not late, f"health checks past the readiness probe's {READINESS_TIMEOUT_S:g} s: {late}"
        during = [status for t0, status in answers if window[0] <= t0 <= window[1]]
        assert during, "no health check ran while the bombs were in flight"
        assert set(during) == {health_pb2.HealthCheckResponse.SERVING}
        assert len(outcomes) == CLIENTS
        for code, reason, details in outcomes:
            assert (code, reason) == (grpc.StatusCode.INVALID_ARGUMENT, "DECODE_FAILED"), details
            assert details.startswith("content: ") and "text" in details, details
        # The server serves the next good request.
        frames = list(srv.stub().Stylize(small_request(iterations=1), timeout=120))
        assert frames[-1].WhichOneof("frame") == "result"
