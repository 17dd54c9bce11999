"""A scripted StyleTransfer servicer on a real gRPC server on 127.0.0.1, and
a TCP proxy that can cut every connection: for client tests of what the real
server does rarely or not yet on demand (chunked results, protocol errors,
each error reason, a connection lost mid-job).

    def script(call: int, request, context):       # one generator per Stylize call
        yield started_frame(request)
        yield result_frame(request, b"...")
    with fake_server(script) as fake:
        fake.address, fake.requests (every Stylize request), fake.log (what happened, in order)

    with TcpProxy(fake.address) as proxy:          # proxy.address; proxy.cut() drops every connection
"""

from __future__ import annotations

import contextlib
import socket
import threading
from collections.abc import Callable, Iterator
from concurrent import futures
from typing import Any

import grpc
from google.protobuf import any_pb2, duration_pb2
from google.rpc import error_details_pb2, status_pb2
from grpc_status import rpc_status

from stylize_api.schema import DOMAIN
from stylize_api.v1 import stylize_pb2 as pb
from stylize_api.v1 import stylize_pb2_grpc as pb_grpc

Script = Callable[[int, pb.StylizeRequest, grpc.ServicerContext], Iterator[pb.StylizeResponse]]


def status(
    code: grpc.StatusCode,
    message: str,
    reason: str | None = None,
    field: str | None = None,
    retry_after: float | None = None,
    domain: str = DOMAIN,
) -> grpc.Status:
    """A gRPC status with google.rpc details, as a stylize server sends them."""
    details = []
    if reason is not None:
        details.append(error_details_pb2.ErrorInfo(reason=reason, domain=domain))
    if field is not None:
        violation = error_details_pb2.BadRequest.FieldViolation(field=field, description=message)
        details.append(error_details_pb2.BadRequest(field_violations=[violation]))
    if retry_after is not None:
        delay = duration_pb2.Duration(seconds=int(retry_after), nanos=int(retry_after % 1 * 1e9))
        details.append(error_details_pb2.RetryInfo(retry_delay=delay))
    packed = []
    for detail in details:
        box = any_pb2.Any()
        box.Pack(detail)
        packed.append(box)
    return rpc_status.to_status(status_pb2.Status(code=code.value[0], message=message, details=packed))


def started_frame(request: pb.StylizeRequest, *, reattached: bool = False, iterations: int = 10) -> pb.StylizeResponse:
    return pb.StylizeResponse(
        started=pb.Started(
            request_id=request.request_id,
            width=32,
            height=24,
            options=pb.ResolvedOptions(iterations=iterations, scale_sizes=[32], scale_iterations=[iterations]),
            reattached=reattached,
        )
    )


def progress_frame(iteration: int, total: int = 10) -> pb.StylizeResponse:
    return pb.StylizeResponse(progress=pb.Progress(iteration=iteration, total_iterations=total))


def result_frames(
    request: pb.StylizeRequest, data: bytes, chunks: int = 1, *, complete: bool = True, iterations: int = 10
) -> list[pb.StylizeResponse]:
    """The result as `chunks` frames, each with its part of `data` and the same metadata."""
    size = -(-len(data) // chunks)
    frames = []
    for i in range(chunks):
        frames.append(
            pb.StylizeResponse(
                result=pb.Result(
                    image=pb.Image(data=data[i * size : (i + 1) * size]),
                    mime_type="image/png",
                    width=32,
                    height=24,
                    iterations=iterations,
                    iterations_requested=10,
                    request_id=request.request_id,
                    complete=complete,
                    stop_reason=pb.STOP_REASON_NONE if complete else pb.STOP_REASON_TIME_LIMIT,
                    chunk_index=i,
                    chunk_count=chunks,
                    total_bytes=len(data),
                    bit_depth=8,
                )
            )
        )
    return frames


class FakeStyleTransfer(pb_grpc.StyleTransferServicer):
    def __init__(self, script: Script) -> None:
        self.script = script
        self.requests: list[pb.StylizeRequest] = []
        self.metadata: list[dict[str, str]] = []
        self.log: list[str] = []  # "stylize <id>", "ended <id>", "cancel <id>", in order
        self.lock = threading.Lock()
        self.changed = threading.Condition(self.lock)

    def note(self, entry: str) -> None:
        with self.changed:
            self.log.append(entry)
            self.changed.notify_all()

    def wait_log(self, entry: str, timeout: float = 30) -> None:
        with self.changed:
            assert self.changed.wait_for(lambda: entry in self.log, timeout), f"never logged {entry!r}: {self.log}"

    def Stylize(self, request: pb.StylizeRequest, context: grpc.ServicerContext) -> Iterator[pb.StylizeResponse]:
        with self.lock:
            call = len(self.requests)
            self.requests.append(request)
            self.metadata.append(dict(context.invocation_metadata()))
        self.note(f"stylize {request.request_id}")
        context.add_callback(lambda: self.note(f"ended {request.request_id}"))
        yield from self.script(call, request, context)

    def Cancel(self, request: pb.CancelRequest, context: grpc.ServicerContext) -> pb.CancelResponse:
        self.note(f"cancel {request.request_id}")
        return pb.CancelResponse(stopped=True)


@contextlib.contextmanager
def fake_server(script: Script) -> Iterator[Any]:
    """A real gRPC server on a free loopback port running `script`; yields the
    servicer, with `.address` set."""
    servicer = FakeStyleTransfer(script)
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=8))
    pb_grpc.add_StyleTransferServicer_to_server(servicer, server)
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    servicer.address = f"127.0.0.1:{port}"  # type: ignore[attr-defined]
    try:
        yield servicer
    finally:
        server.stop(grace=0)


def wait_until_inactive(context: grpc.ServicerContext, timeout: float = 60) -> None:
    """Hold a stream open until its client goes away (or `timeout`)."""
    done = threading.Event()
    if not context.add_callback(done.set):
        return
    done.wait(timeout)


class TcpProxy:
    """Forwards 127.0.0.1:<port> to `upstream`; `cut()` closes every connection
    at once, as a network that fails mid-stream would. New connections work."""

    def __init__(self, upstream: str) -> None:
        host, port = upstream.rsplit(":", 1)
        self._upstream = (host, int(port))
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.address = f"127.0.0.1:{self._listener.getsockname()[1]}"
        self._sockets: list[socket.socket] = []
        self._lock = threading.Lock()
        self._closed = False
        self.cuts = 0
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            try:
                upstream = socket.create_connection(self._upstream, timeout=10)
            except OSError:
                client.close()
                continue
            with self._lock:
                self._sockets += [client, upstream]
            for a, b in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pump, args=(a, b), daemon=True).start()

    @staticmethod
    def _pump(src: socket.socket, dst: socket.socket) -> None:
        try:
            while data := src.recv(65536):
                dst.sendall(data)
        except OSError:
            pass
        finally:
            for s in (src, dst):
                with contextlib.suppress(OSError):
                    s.shutdown(socket.SHUT_RDWR)

    def cut(self) -> None:
        with self._lock:
            sockets, self._sockets = self._sockets, []
            self.cuts += 1
        for s in sockets:
            with contextlib.suppress(OSError):
                s.shutdown(socket.SHUT_RDWR)
            s.close()

    def close(self) -> None:
        self._listener.close()
        self.cut()

    def __enter__(self) -> TcpProxy:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
