"""A `stylize-server` subprocess whose output and memory the reliability
scenarios watch. Only the server's command line and its JSON log line
"serving" (which carries the ports) are relied on, so the suite tests the
server as a deployment sees it.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import pathlib
import signal
import subprocess
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from stylize_api.v1 import stylize_pb2 as pb
from stylize_api.v1 import stylize_pb2_grpc as pb_grpc
from tests.support.metrics import scrape, value
from tests.support.process import server_command
from tests.support.secret import with_job_secret

WEIGHTS = "random:0"
SERVICE = "stylize.v1.StyleTransfer"
CLIENT_MAX_MESSAGE = 64 * 1024 * 1024
ROOT = pathlib.Path(__file__).resolve().parents[2]


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
            # Likewise for open calls: the per-client call limits have scenarios of their own (calls.py).
            *(("--max-calls-per-client", "100000", "--reserved-calls", "0") if command is None else ()),
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
        return with_job_secret(ch)  # reattach and Cancel on a server without auth (tests.support.secret)

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
