"""Real stylize servers in this test process, on 127.0.0.1 with free ports,
sharing one already-loaded random-weights Engine:

    from tests.support.server import running_server, small_request
    with running_server(max_concurrent_jobs=1) as srv:      # any ServerConfig field
        frames = list(srv.stub().Stylize(small_request(), timeout=60))
        srv.metrics_port, srv.address, srv.channel(), srv.server (the Server)

A `stylize-server` subprocess (for signals and exit codes) is in
tests/support/process.py.

Requests: `small_request(**fields)` builds a StylizeRequest with a 40x32
content image and a 32x32 style image at size 32, 5 iterations, progress every
iteration; keyword arguments set any StylizeRequest field (e.g. size=64,
iterations=2000, output_format=stylize_pb2.OUTPUT_FORMAT_JPEG). `long_request`
runs for minutes unless stopped; `StreamReader` reads a call's frames on a
thread so a test can wait for a frame instead of for wall time.
"""

from __future__ import annotations

import contextlib
import os
import pathlib
import socket
import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import grpc

from stylize_api.v1 import stylize_pb2, stylize_pb2_grpc

from .images import png_bytes
from .secret import TEST_JOB_SECRET, with_job_secret

ROOT = pathlib.Path(__file__).resolve().parents[2]
TEST_WEIGHTS = "random:0"
TEST_SIZE = 32

_engine_lock = threading.Lock()
_engine: Any = None


def shared_engine() -> Any:
    """One Engine(weights="random:0", precision="float32") per test process,
    warmed at 32 px, created on first use (loading VGG-19 costs seconds; a
    fixed precision skips auto's start-up measurement and keeps results
    identical run to run)."""
    global _engine
    with _engine_lock:
        if _engine is None:
            from stylize_server.engine.runner import Engine

            engine = Engine(weights=TEST_WEIGHTS, pooling="avg", precision="float32")
            engine.warm_up(sizes=(TEST_SIZE,), iterations=1)
            _engine = engine
        return _engine


def free_port() -> int:
    """A port that was free a moment ago (prefer port 0 where a server can take it).

    Under pytest-xdist each worker takes only ports of its own residue, so two
    workers never race for the same free port. The residue is of port // 2:
    Linux hands out odd ports to bind() and even ones to connect()."""
    worker, count = _xdist_worker()
    for _ in range(1000):
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
            s.bind(("127.0.0.1", 0))
            port = int(s.getsockname()[1])
        if (port // 2) % count == worker:
            return port
    raise RuntimeError(f"no free port with (port // 2) % {count} == {worker} in 1000 tries")


def _xdist_worker() -> tuple[int, int]:
    name = os.environ.get("PYTEST_XDIST_WORKER", "gw0")  # "gw3"; unset without xdist
    count = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))
    return int(name.removeprefix("gw") or 0) % count, count


def test_config(**overrides: Any):
    """A ServerConfig for tests: loopback, free ports, random weights, small
    limits, no warm-up, short grace. Keyword arguments override any field.

    Every test client comes from 127.0.0.1, and without tokens the server sees
    them as one client: so one client may hold all of --max-open-calls here
    (no reserve). The per-client limits have tests of their own
    (tests/test_server_calls.py), which set them."""
    from stylize_server.config import ServerConfig

    base = ServerConfig().replace(
        host="127.0.0.1",
        port=0,
        metrics_port=0,
        weights=TEST_WEIGHTS,
        max_concurrent_jobs=2,
        queue_size=4,
        max_pixels=128 * 128,
        max_side=256,
        max_iterations=5000,
        max_styles=3,
        max_input_pixels=512 * 512,
        max_message_mb=2.0,
        max_job_seconds=120.0,
        grace_seconds=30.0,
        log_format="text",
        warmup_sizes=(),
        max_calls_per_client=1000,
        reserved_calls=0,
    )
    return base.replace(**overrides)


@dataclass
class ServerHandle:
    """A running in-process server and the channels opened to it."""

    server: Any  # stylize_server.app.Server
    _channels: list[grpc.Channel] = field(default_factory=list)

    @property
    def port(self) -> int:
        return self.server.port

    @property
    def metrics_port(self) -> int:
        return self.server.metrics_port

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.server.port}"

    @property
    def metrics_url(self) -> str:
        return f"http://127.0.0.1:{self.metrics_port}/metrics"

    def channel(
        self,
        credentials: grpc.ChannelCredentials | None = None,
        options: Sequence[tuple[str, Any]] = (),
        job_secret: str | None = TEST_JOB_SECRET,
    ) -> grpc.Channel:
        """A new channel to the server, closed when the server context exits.
        Receives up to 64 MiB by default; `options` are extra channel args.
        Every call sends `job_secret` (tests.support.secret; None: no secret)."""
        opts = [("grpc.max_receive_message_length", 64 * 1024 * 1024), *options]
        if credentials is not None:
            ch = grpc.secure_channel(self.address, credentials, options=opts)
        else:
            ch = grpc.insecure_channel(self.address, options=opts)
        self._channels.append(ch)
        return with_job_secret(ch, job_secret)

    def stub(self, channel: grpc.Channel | None = None) -> stylize_pb2_grpc.StyleTransferStub:
        return stylize_pb2_grpc.StyleTransferStub(channel or self.channel())

    def close_channels(self) -> None:
        for ch in self._channels:
            ch.close()
        self._channels.clear()


@contextlib.contextmanager
def running_server(engine: Any = None, wait_ready: bool = True, **overrides: Any) -> Iterator[ServerHandle]:
    """Start a real in-process Server on 127.0.0.1 (free gRPC and metrics
    ports) with `test_config(**overrides)` and the shared Engine (or `engine`;
    pass engine_loader=... in `overrides` to control loading yourself). Stops
    it (grace 0) on exit."""
    from stylize_server.app import Server

    loader = overrides.pop("engine_loader", None)
    config = test_config(**overrides)
    if loader is None and engine is None:
        engine = shared_engine()
    server = Server(config, engine=engine, engine_loader=loader)
    server.start(wait_ready=wait_ready, timeout=120)
    handle = ServerHandle(server)
    try:
        yield handle
    finally:
        handle.close_channels()
        server.stop(grace=0)


def small_request(**fields: Any) -> stylize_pb2.StylizeRequest:
    """A valid StylizeRequest that runs in well under a second on a CPU."""
    request = stylize_pb2.StylizeRequest(
        content=stylize_pb2.Image(data=png_bytes(40, 32, seed=1)),
        styles=[stylize_pb2.StyleImage(image=stylize_pb2.Image(data=png_bytes(32, 32, seed=2)))],
        size=TEST_SIZE,
        iterations=5,
        progress_interval=1,
    )
    for name, value in fields.items():
        if name == "styles":
            del request.styles[:]
            request.styles.extend(value)
        elif name in ("content_layers", "style_layers"):
            getattr(request, name).extend(value)
        elif name in ("content", "init_image"):
            getattr(request, name).CopyFrom(value)
        else:
            setattr(request, name, value)
    return request


def frame_kinds(frames: list[stylize_pb2.StylizeResponse]) -> list[str]:
    return [f.WhichOneof("frame") for f in frames]


# ----------------------------------------------------------- stream reader
class StreamReader:
    """Reads a Stylize call's frames on a background thread, so a test can wait
    for an observable event (a frame, the end) instead of for wall time.

        reader = StreamReader(stub.Stylize(request, timeout=60))
        reader.wait_for(lambda f: f.HasField("progress"))
        reader.call.cancel()
        reader.wait_done()  # -> grpc.StatusCode
    """

    def __init__(self, call: Any) -> None:
        self.call = call
        self.frames: list[stylize_pb2.StylizeResponse] = []
        self.code: grpc.StatusCode | None = None
        self.details: str = ""
        self._cond = threading.Condition()
        self._done = False
        self._thread = threading.Thread(target=self._read, name="stream-reader", daemon=True)
        self._thread.start()

    def _read(self) -> None:
        code, details = grpc.StatusCode.OK, ""
        try:
            for frame in self.call:
                with self._cond:
                    self.frames.append(frame)
                    self._cond.notify_all()
        except grpc.RpcError as exc:
            code, details = exc.code(), exc.details() or ""
        with self._cond:
            self.code, self.details, self._done = code, details, True
            self._cond.notify_all()

    def wait_for(self, predicate: Any, timeout: float = 60) -> stylize_pb2.StylizeResponse:
        """The first frame (already read or still to come) for which predicate holds."""
        with self._cond:
            seen = 0
            deadline = time.monotonic() + timeout
            while True:
                for frame in self.frames[seen:]:
                    if predicate(frame):
                        return frame
                seen = len(self.frames)
                if self._done:
                    raise AssertionError(
                        f"stream ended ({self.code}: {self.details}) without the frame; got {frame_kinds(self.frames)}"
                    )
                left = deadline - time.monotonic()
                if left <= 0:
                    raise AssertionError(f"no such frame within {timeout} s; got {frame_kinds(self.frames)}")
                self._cond.wait(left)

    def wait_done(self, timeout: float = 60) -> grpc.StatusCode:
        with self._cond:
            if not self._cond.wait_for(lambda: self._done, timeout):
                raise AssertionError(f"stream still open after {timeout} s; got {frame_kinds(self.frames)}")
            assert self.code is not None
            return self.code

    def kinds(self) -> list[str]:
        with self._cond:
            return frame_kinds(self.frames)


def is_kind(kind: str) -> Any:
    """Predicate for StreamReader.wait_for: lambda frame: frame is a `kind` frame."""
    return lambda frame: frame.WhichOneof("frame") == kind


def long_request(**fields: Any) -> stylize_pb2.StylizeRequest:
    """A job that runs for minutes at 64 px unless stopped: for cancel, queue
    and drain tests, which stop it once its frames show it is running. It
    accepts a partial result: under a short --max-job-seconds it is admitted
    and stopped at the limit instead of refused (OVER_TIME_LIMIT)."""
    defaults: dict[str, Any] = {"size": 64, "iterations": 4000, "progress_interval": 1, "accept_partial": True}
    defaults.update(fields)
    return small_request(**defaults)


def collapse(kinds: list[str]) -> list[str]:
    """Frame kinds with runs collapsed: ["queued", "started", "progress", "result"].
    Progress (and queued) frames may be coalesced when a client reads slower
    than the job runs, so tests compare the order, not the count."""
    out: list[str] = []
    for kind in kinds:
        if not out or out[-1] != kind:
            out.append(kind)
    return out
