"""What every reliability scenario shares: a `stylize-server` subprocess whose
output and memory we can watch, one Stylize call with its timings, request
builders, the FAST and FULL profiles, and the result types.

Only the proto stubs, the `stylize-server` command line and its JSON log line
"serving" (which carries the ports) are relied on, so the suite tests the
server as a deployment sees it.
"""

from __future__ import annotations

import contextlib
import io
import itertools
import json
import math
import os
import pathlib
import random
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc
from PIL import Image

from stylize.v1 import stylize_pb2 as pb
from stylize.v1 import stylize_pb2_grpc as pb_grpc

ROOT = pathlib.Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from tests.support.images import encode, image_array  # noqa: E402
from tests.support.metrics import scrape, value  # noqa: E402
from tests.support.server import free_port, server_command  # noqa: E402

__all__ = ["free_port"]  # re-exported for the scenarios

WEIGHTS = "random:0"
SERVICE = "stylize.v1.StyleTransfer"
CLIENT_MAX_MESSAGE = 64 * 1024 * 1024


# ------------------------------------------------------------------ profiles
@dataclass(frozen=True)
class Profile:
    """How much of each scenario to run. FAST runs inside `make test`."""

    name: str
    # main server
    max_concurrent_jobs: int = 2
    queue_size: int = 4
    max_message_mb: float = 1.0
    # load / overload
    load_seconds: float = 6.0
    load_iterations: int = 5
    overload_seconds: float = 6.0
    overload_factor: int = 10
    overload_rss_bound_mb: float = 64.0
    # cancellation storm
    cancel_clients: int = 18
    cancel_waves: int = 1
    # faults
    sigterm_iterations: int = 60
    stall_iterations: int = 120
    stall_size: int = 64
    slow_clients: int = 2
    slow_iterations: int = 40
    slow_frame_delay: float = 0.1
    stall_rss_bound_mb: float = 64.0
    # fuzz
    fuzz_examples: int = 300
    # memory over time
    memory_jobs: int = 30
    memory_sizes: tuple[int, ...] = (32, 48, 64)
    memory_rss_bound_mb: float = 32.0
    memory_novel_shapes: int = 0  # jobs of never-seen shapes after the main run (reported only)
    # the serving core (issue 9)
    header_only_streams: int = 200
    unread_streams: int = 100
    layer_lists: int = 12
    fair_seconds: float = 8.0


FAST = Profile(name="fast")
FULL = Profile(
    name="full",
    load_seconds=60.0,
    overload_seconds=60.0,
    cancel_clients=60,
    cancel_waves=3,
    sigterm_iterations=200,
    stall_iterations=400,
    stall_size=128,
    slow_clients=4,
    slow_iterations=100,
    fuzz_examples=1200,
    memory_jobs=300,
    memory_sizes=(32, 40, 48, 56, 64),
    memory_novel_shapes=100,
    header_only_streams=1000,
    unread_streams=200,
    layer_lists=60,
    fair_seconds=30.0,
)
PROFILES = {"fast": FAST, "full": FULL}


# ------------------------------------------------------------------- results
@dataclass
class Check:
    """One property of a scenario. `soft` checks (timings, and questions of
    policy rather than of correctness) are reported, never failing a test."""

    name: str
    ok: bool
    detail: str = ""
    soft: bool = False


@dataclass
class ScenarioResult:
    name: str
    figures: dict[str, Any] = field(default_factory=dict)
    checks: list[Check] = field(default_factory=list)
    seconds: float = 0.0

    def check(self, name: str, ok: bool, detail: str = "", soft: bool = False) -> bool:
        self.checks.append(Check(name, bool(ok), detail, soft))
        return bool(ok)

    @property
    def hard_failures(self) -> list[Check]:
        return [c for c in self.checks if not c.ok and not c.soft]

    @property
    def soft_failures(self) -> list[Check]:
        return [c for c in self.checks if not c.ok and c.soft]

    def assert_ok(self) -> None:
        """Raise AssertionError listing every failed hard check (for pytest)."""
        failed = self.hard_failures
        if failed:
            lines = [f"{self.name}: {len(failed)} check(s) failed"]
            lines += [f"  - {c.name}: {c.detail}" for c in failed]
            lines.append(f"  figures: {json.dumps(self.figures, default=str)}")
            raise AssertionError("\n".join(lines))

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "seconds": round(self.seconds, 2),
            "figures": self.figures,
            "checks": [asdict(c) for c in self.checks],
            "passed": not self.hard_failures,
        }


@contextlib.contextmanager
def scenario(name: str) -> Iterator[ScenarioResult]:
    """A ScenarioResult timed over the with-block; an exception becomes a failed check."""
    result = ScenarioResult(name)
    t0 = time.monotonic()
    try:
        yield result
    except Exception as exc:
        result.check("scenario ran to the end", False, f"{type(exc).__name__}: {exc}")
    finally:
        result.seconds = time.monotonic() - t0


def percentile(values: Sequence[float], q: float) -> float | None:
    """Nearest-rank percentile (q in 0..100); None for no values."""
    if not values:
        return None
    ordered = sorted(values)
    rank = max(1, math.ceil(q / 100 * len(ordered)))
    return ordered[min(rank, len(ordered)) - 1]


def ms(seconds: float | None) -> float | None:
    return None if seconds is None else round(seconds * 1000, 1)


# ------------------------------------------------------------------- server
class ServerProc:
    """A `stylize-server` child: its stdout and stderr (kept whole, for the
    secrets-in-logs check), its JSON log records, its memory, and channels."""

    def __init__(
        self,
        args: Sequence[str],
        port: int = 0,
        env: dict[str, str] | None = None,
        command: Sequence[str] | None = None,
    ) -> None:
        self.args = list(args)
        cmd = list(command or server_command()) + [
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--metrics-port",
            "0",
            "--weights",
            WEIGHTS,
            "--warmup-sizes",
            "32",
            "--log-format",
            "json",
            # The suite's many clients all come from 127.0.0.1 without tokens,
            # so the server sees them as one; fair share has scenarios of its own.
            # (A baseline build from before per-client quotas has no such flag.)
            *(("--max-jobs-per-client", "1000") if command is None else ()),
            # float32: no start-up measurement, the same numbers every run.
            *(("--precision", "float32") if command is None else ()),
            *self.args,
        ]
        child_env = dict(os.environ)
        child_env.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
        child_env.setdefault("PYTHONUNBUFFERED", "1")
        child_env.update(env or {})
        self.popen = subprocess.Popen(
            cmd,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env=child_env,
            cwd=ROOT,
        )
        self.pid = self.popen.pid
        self.port = 0
        self.metrics_port = 0
        self._lines: list[str] = []
        self._raw = bytearray()
        self._cond = threading.Condition()
        self._readers = [
            threading.Thread(target=self._read, args=(stream,), daemon=True, name=f"server-{self.pid}-{i}")
            for i, stream in enumerate((self.popen.stdout, self.popen.stderr))
        ]
        for reader in self._readers:
            reader.start()
        self._channels: list[grpc.Channel] = []

    # ------------------------------------------------------------ output
    def _read(self, stream: io.BufferedReader) -> None:
        for raw in iter(stream.readline, b""):
            with self._cond:
                self._raw.extend(raw)
                self._lines.append(raw.decode("utf-8", "replace").rstrip("\n"))
                self._cond.notify_all()
        with self._cond:
            self._cond.notify_all()

    @property
    def output(self) -> bytes:
        """Everything the server wrote to stdout and stderr so far, as bytes."""
        with self._cond:
            return bytes(self._raw)

    def records(self) -> list[dict]:
        out = []
        with self._cond:
            lines = list(self._lines)
        for line in lines:
            if line.startswith("{"):
                try:
                    out.append(json.loads(line))
                except json.JSONDecodeError:
                    pass
        return out

    def tail(self, n: int = 30) -> str:
        with self._cond:
            return "\n".join(self._lines[-n:])

    def wait_ready(self, timeout: float = 180) -> ServerProc:
        """Wait for the "serving" log line (it carries the ports), then for
        grpc.health.v1 SERVING on the overall and the service name."""
        deadline = time.monotonic() + timeout
        while True:
            rec = next((r for r in self.records() if r.get("event") == "serving"), None)
            if rec is not None:
                self.port, self.metrics_port = int(rec["port"]), int(rec["metrics_port"])
                break
            if self.popen.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"server did not start (exit {self.popen.poll()}); output:\n{self.tail()}")
            with self._cond:
                self._cond.wait(0.2)
        return self

    def wait_serving(self, credentials: grpc.ChannelCredentials | None = None, timeout: float = 60) -> None:
        channel = self.channel(credentials)
        stub = health_pb2_grpc.HealthStub(channel)
        deadline = time.monotonic() + timeout
        for service in ("", SERVICE):
            while True:
                try:
                    status = stub.Check(health_pb2.HealthCheckRequest(service=service), timeout=5).status
                    if status == health_pb2.HealthCheckResponse.SERVING:
                        break
                except grpc.RpcError:
                    pass
                if time.monotonic() > deadline:
                    raise RuntimeError(f"health of {service!r} never SERVING; output:\n{self.tail()}")
                time.sleep(0.1)

    # ----------------------------------------------------------- memory
    def _status_kb(self, key: str) -> int:
        with open(f"/proc/{self.pid}/status", encoding="ascii") as f:
            for line in f:
                if line.startswith(key + ":"):
                    return int(line.split()[1])
        raise KeyError(key)

    def rss_mb(self) -> float:
        """Resident set size now (VmRSS), MiB."""
        return self._status_kb("VmRSS") / 1024

    def peak_rss_mb(self) -> float:
        """Peak resident set size since start (VmHWM), MiB."""
        return self._status_kb("VmHWM") / 1024

    # ----------------------------------------------------------- talking
    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def channel(
        self,
        credentials: grpc.ChannelCredentials | None = None,
        options: Sequence[tuple[str, Any]] = (),
        target: str | None = None,
    ) -> grpc.Channel:
        opts = [
            ("grpc.max_receive_message_length", CLIENT_MAX_MESSAGE),
            ("grpc.max_send_message_length", CLIENT_MAX_MESSAGE),
            *options,
        ]
        target = target or self.address
        ch = (
            grpc.secure_channel(target, credentials, options=opts)
            if credentials is not None
            else grpc.insecure_channel(target, options=opts)
        )
        self._channels.append(ch)
        return ch

    def stub(self, channel: grpc.Channel | None = None) -> pb_grpc.StyleTransferStub:
        return pb_grpc.StyleTransferStub(channel or self.channel())

    def metric(self, sample: str, **labels: str) -> float:
        return value(scrape(self.metrics_port), sample, **labels)

    def wait_metric(self, sample: str, predicate: Callable[[float], bool], timeout: float = 30) -> tuple[float, float]:
        """Scrape until predicate(value); (value, seconds waited). Raises on timeout."""
        t0 = time.monotonic()
        while True:
            current = self.metric(sample)
            if predicate(current):
                return current, time.monotonic() - t0
            if time.monotonic() - t0 > timeout:
                raise AssertionError(f"{sample} stayed at {current} for {timeout} s")
            time.sleep(0.05)

    def info(self, metadata: Sequence[tuple[str, str]] = ()) -> pb.ServerInfo:
        return self.stub().GetServerInfo(pb.GetServerInfoRequest(), timeout=10, metadata=metadata)

    # --------------------------------------------------------- lifetime
    def signal(self, signum: int) -> None:
        self.popen.send_signal(signum)

    def wait_exit(self, timeout: float) -> int:
        code = self.popen.wait(timeout)
        for reader in self._readers:
            reader.join(timeout=5)
        return code

    def close(self) -> None:
        for ch in self._channels:
            ch.close()
        self._channels.clear()
        if self.popen.poll() is None:
            self.popen.send_signal(signal.SIGKILL)
            self.popen.wait(15)
        for reader in self._readers:
            reader.join(timeout=5)


@contextlib.contextmanager
def spawn_server(
    *args: str,
    port: int = 0,
    env: dict[str, str] | None = None,
    credentials: grpc.ChannelCredentials | None = None,
    ready_timeout: float = 180,
    command: Sequence[str] | None = None,
) -> Iterator[ServerProc]:
    """A ready `stylize-server` subprocess (killed on exit if still running);
    `command` runs another build of the server (the benchmark's baseline)."""
    proc = ServerProc(args, port=port, env=env, command=command)
    try:
        proc.wait_ready(ready_timeout)
        proc.wait_serving(credentials)
        yield proc
    finally:
        proc.close()


def main_server_args(profile: Profile) -> list[str]:
    """The server most scenarios share: 2 slots, a short queue, small limits."""
    return [
        "--max-concurrent-jobs",
        str(profile.max_concurrent_jobs),
        "--queue-size",
        str(profile.queue_size),
        "--max-side",
        "128",
        "--max-pixels",
        str(128 * 128),
        "--max-iterations",
        "2000",
        "--max-styles",
        "3",
        "--max-input-pixels",
        str(1024 * 1024),
        "--max-message-mb",
        str(profile.max_message_mb),
        "--max-job-seconds",
        "120",
        "--grace-seconds",
        "30",
    ]


# ------------------------------------------------------------------ requests
_IMAGE_CACHE: dict[tuple[int, int, int, str], bytes] = {}
_IMAGE_LOCK = threading.Lock()


def image_bytes(width: int, height: int, seed: int = 0, fmt: str = "PNG") -> bytes:
    key = (width, height, seed, fmt)
    with _IMAGE_LOCK:
        data = _IMAGE_CACHE.get(key)
    if data is None:
        data = encode(image_array(width, height, seed), fmt)
        with _IMAGE_LOCK:
            _IMAGE_CACHE[key] = data
    return data


_REQUEST_IDS = itertools.count(1)


def make_request(
    size: int = 32,
    iterations: int = 5,
    content: tuple[int, int] = (40, 32),
    style: tuple[int, int] = (32, 32),
    seed: int = 1,
    **fields: Any,
) -> pb.StylizeRequest:
    """A valid request: seeded content and style images, progress every iteration.
    A `request_id` gets a unique suffix: the server attaches a call to the job
    a request_id already names (or replays its kept result), and these
    scenarios mean a new job each time (reattach has scenarios of its own)."""
    if "request_id" in fields:
        fields["request_id"] = f"{fields['request_id']}.{next(_REQUEST_IDS)}"
    request = pb.StylizeRequest(
        content=pb.Image(data=image_bytes(*content, seed=seed)),
        styles=[pb.StyleImage(image=pb.Image(data=image_bytes(*style, seed=seed + 1000)))],
        size=size,
        iterations=iterations,
        progress_interval=1,
    )
    for name, val in fields.items():
        setattr(request, name, val)
    return request


# --------------------------------------------------------------------- calls
@dataclass
class CallOutcome:
    """What one Stylize call did, as the client saw it."""

    code: grpc.StatusCode
    details: str
    kinds: list[str]
    result: pb.Result | None
    started: pb.Started | None
    progress_iterations: list[int]
    latency: float  # call to end of stream, seconds
    first_frame_at: float | None = None

    @property
    def ok(self) -> bool:
        return self.code is grpc.StatusCode.OK and self.result is not None

    @property
    def saw_started(self) -> bool:
        return self.started is not None


def stylize(
    stub: pb_grpc.StyleTransferStub,
    request: pb.StylizeRequest,
    timeout: float | None = 120,
    metadata: Sequence[tuple[str, str]] = (),
    on_frame: Callable[[pb.StylizeResponse, Any], None] | None = None,
    on_call: Callable[[Any], None] | None = None,
) -> CallOutcome:
    """Run one Stylize call to its end. `on_frame(frame, call)` runs after each
    frame (it may cancel the call or sleep); `on_call(call)` runs once at the
    start (e.g. to arm a timer that cancels it)."""
    t0 = time.monotonic()
    kinds: list[str] = []
    progress: list[int] = []
    result = started = None
    first = None
    call = stub.Stylize(request, timeout=timeout, metadata=metadata)
    if on_call is not None:
        on_call(call)
    code, details = grpc.StatusCode.OK, ""
    try:
        for frame in call:
            if first is None:
                first = time.monotonic() - t0
            kind = frame.WhichOneof("frame")
            kinds.append(kind)
            if kind == "result":
                result = frame.result
            elif kind == "started":
                started = frame.started
            elif kind == "progress":
                progress.append(frame.progress.iteration)
            if on_frame is not None:
                on_frame(frame, call)
    except grpc.RpcError as exc:
        code, details = exc.code(), exc.details() or ""
    return CallOutcome(code, details, kinds, result, started, progress, time.monotonic() - t0, first)


def result_problems(outcome: CallOutcome, request: pb.StylizeRequest) -> list[str]:
    """Why an OK outcome is not a correct one: the image must decode to the
    reported size, the iteration count must be the requested one, the stream
    must be started -> progress... -> result."""
    problems: list[str] = []
    if not outcome.ok:
        return [f"{outcome.code.name}: {outcome.details}"]
    res = outcome.result
    assert res is not None
    if res.iterations != request.iterations:
        problems.append(f"iterations {res.iterations} != requested {request.iterations}")
    if outcome.progress_iterations and outcome.progress_iterations[-1] != request.iterations:
        problems.append(f"last progress iteration {outcome.progress_iterations[-1]} != {request.iterations}")
    if outcome.progress_iterations != sorted(set(outcome.progress_iterations)):
        problems.append("progress iterations not strictly increasing")
    if outcome.kinds[-1] != "result" or "started" not in outcome.kinds:
        problems.append(f"frame order {outcome.kinds[:3]}...{outcome.kinds[-2:]}")
    try:
        with Image.open(io.BytesIO(res.image.data)) as im:
            im.load()
            if im.size != (res.width, res.height):
                problems.append(f"image is {im.size}, result says {res.width}x{res.height}")
    except Exception as exc:
        problems.append(f"result image does not decode: {exc}")
    return problems


class Sampler:
    """Samples the server's RSS every `interval` seconds on a thread."""

    def __init__(self, server: ServerProc, interval: float = 0.25) -> None:
        self._server = server
        self._interval = interval
        self._stop = threading.Event()
        self.samples: list[float] = []
        self._thread = threading.Thread(target=self._loop, daemon=True, name="rss-sampler")

    def _loop(self) -> None:
        while not self._stop.is_set():
            with contextlib.suppress(OSError, KeyError):
                self.samples.append(self._server.rss_mb())
            self._stop.wait(self._interval)

    def __enter__(self) -> Sampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=5)


def rng_for(name: str, seed: int = 0) -> random.Random:
    """A deterministic random stream per scenario (runs are repeatable in what they send)."""
    return random.Random(f"{name}:{seed}")
