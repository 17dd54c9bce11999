"""A real `stylize-server` as a subprocess, for the tests that need signals,
exit codes, the command line or the process's own log:

    from tests.support.process import server_process
    with server_process("--max-concurrent-jobs", "1") as proc:
        proc.address, proc.metrics_port, proc.popen, proc.records (parsed JSON log lines)
        proc.popen.send_signal(signal.SIGTERM); proc.wait_exit(60)

It runs with the same random weights and test size as the in-process servers
of tests/support/server.py.
"""

from __future__ import annotations

import contextlib
import json
import os
import pathlib
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field

from .server import ROOT, TEST_SIZE, TEST_WEIGHTS


@dataclass
class ServerProcess:
    """A `stylize-server` child process and what it logged (JSON lines)."""

    popen: subprocess.Popen
    port: int = 0
    metrics_port: int = 0
    lines: list[str] = field(default_factory=list)
    records: list[dict] = field(default_factory=list)
    _changed: threading.Condition = field(default_factory=threading.Condition)

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def _read(self) -> None:
        assert self.popen.stderr is not None
        for raw in self.popen.stderr:
            line = raw.rstrip("\n")
            with self._changed:
                self.lines.append(line)
                if line.startswith("{"):
                    try:
                        self.records.append(json.loads(line))
                    except json.JSONDecodeError:
                        pass
                self._changed.notify_all()
        with self._changed:
            self._changed.notify_all()

    def wait_for_event(self, event: str, timeout: float = 120) -> dict:
        """The first log record with this `event`; raises with the log on timeout or exit."""
        deadline = time.monotonic() + timeout
        with self._changed:
            while True:
                for rec in self.records:
                    if rec.get("event") == event:
                        return rec
                if self.popen.poll() is not None and self.popen.stderr is not None and self.popen.stderr.closed:
                    break
                left = deadline - time.monotonic()
                if left <= 0:
                    break
                self._changed.wait(min(left, 0.5))
                if self.popen.poll() is not None and not any(r.get("event") == event for r in self.records):
                    # Give the reader a moment to drain the pipe, then give up.
                    self._changed.wait(0.5)
                    if not any(r.get("event") == event for r in self.records):
                        break
        tail = "\n".join(self.lines[-40:])
        raise AssertionError(f"server never logged {event!r} (exit code {self.popen.poll()}); log tail:\n{tail}")

    def wait_exit(self, timeout: float = 60) -> int:
        return self.popen.wait(timeout)


def server_command() -> list[str]:
    exe = shutil.which("stylize-server", path=str(pathlib.Path(sys.executable).parent))
    if exe:
        return [exe]
    return [sys.executable, "-m", "stylize_server.app"]


@contextlib.contextmanager
def server_process(
    *args: str, env: dict[str, str] | None = None, ready_timeout: float = 120, command: list[str] | None = None
) -> Iterator[ServerProcess]:
    """Run `stylize-server --host 127.0.0.1 --port 0 --metrics-port 0
    --http-port 0 --log-format json --weights random:0 *args` (HTTP off: a
    ConfigMap's fixed port would collide), wait until it logs "serving"
    (ports are read from that line), yield it, and kill it on exit if it is
    still running. Extra `args` come last and so win over those flags (e.g.
    "--weights", path); the fixed flags win over `env` (a rendered ConfigMap
    may name a weights file that is not on this machine).

    Other test defaults come as environment variables, so that both `env` and
    `args` override them: STYLIZE_WARMUP_SIZES=32, STYLIZE_MAX_PIXELS=16384,
    STYLIZE_MAX_SIDE=256, STYLIZE_GRACE_SECONDS=60, STYLIZE_PRECISION=float32
    (auto measures both precisions at start-up: seconds every test).
    `command` replaces `stylize-server` (the image's entry point, say)."""
    cmd = (command or server_command()) + [
        "--host",
        "127.0.0.1",
        "--port",
        "0",
        "--metrics-port",
        "0",
        "--http-port",
        "0",
        "--log-format",
        "json",
        "--weights",
        TEST_WEIGHTS,
        *args,
    ]
    child_env = dict(os.environ)
    child_env.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    child_env.update(
        {
            "STYLIZE_WARMUP_SIZES": str(TEST_SIZE),
            "STYLIZE_MAX_PIXELS": str(128 * 128),
            "STYLIZE_MAX_SIDE": "256",
            "STYLIZE_GRACE_SECONDS": "60",
            "STYLIZE_PRECISION": "float32",
        }
    )
    child_env.update(env or {})
    popen = subprocess.Popen(
        cmd,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        env=child_env,
        cwd=ROOT,
    )
    proc = ServerProcess(popen)
    reader = threading.Thread(target=proc._read, name="server-log-reader", daemon=True)
    reader.start()
    try:
        ready = proc.wait_for_event("serving", ready_timeout)
        proc.port, proc.metrics_port = int(ready["port"]), int(ready["metrics_port"])
        yield proc
    finally:
        if popen.poll() is None:
            popen.send_signal(signal.SIGKILL)
            popen.wait(10)
        reader.join(timeout=5)
