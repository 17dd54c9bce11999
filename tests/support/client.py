"""Client-side test helpers shared by the client and CLI tests."""

from __future__ import annotations

import threading
from typing import Any

from stylize import Started, StyleTransferClient


def hold_slot(address: str, content: Any, style: Any, **options: Any):
    """Start a long job from a background thread and return once it runs.

    Returns (stream, thread, errors): `stream.cancel()` frees the slot; `errors`
    collects what the stream raised (a cancelled blocker ends with Cancelled).
    """
    client = StyleTransferClient(address, timeout=120)
    stream = client.stylize(content, style, **options)
    started = threading.Event()
    errors: list[BaseException] = []

    def run() -> None:
        try:
            for event in stream:
                if isinstance(event, Started):
                    started.set()
        except BaseException as exc:
            errors.append(exc)
        finally:
            started.set()
            client.close()

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    assert started.wait(60), "the blocking job never started"
    return stream, thread, errors


# ------------------------------------------------------------------ the CLI
def stylize_command() -> list[str]:
    """The `stylize` console script of this environment (or the module)."""
    import pathlib
    import shutil
    import sys

    exe = shutil.which("stylize", path=str(pathlib.Path(sys.executable).parent))
    return [exe] if exe else [sys.executable, "-m", "stylize.cli"]


def cli_env(**extra: str) -> dict[str, str]:
    """The environment for a CLI subprocess: no STYLIZE_* settings of the caller's."""
    import os

    env = {k: v for k, v in os.environ.items() if not k.startswith("STYLIZE_")}
    env["PYTHONUNBUFFERED"] = "1"
    env.update(extra)
    return env


def run_cli(*args: str, timeout: float = 120, env: dict[str, str] | None = None):
    """Run `stylize *args` to the end; the CompletedProcess (text)."""
    import subprocess

    return subprocess.run(
        stylize_command() + list(args),
        capture_output=True,
        text=True,
        timeout=timeout,
        env=env or cli_env(),
        stdin=subprocess.DEVNULL,
    )


def with_default_sigint(command: list[str]) -> list[str]:
    """`command` run with SIGINT at its default: a shell that runs the tests in
    the background makes children ignore SIGINT, and the CLI must see Ctrl-C as
    a terminal would send it. (An exec wrapper rather than preexec_fn: forking
    a process that runs gRPC threads is not safe.)"""
    import sys

    reset = "import os, signal, sys; signal.signal(signal.SIGINT, signal.SIG_DFL); os.execv(sys.argv[1], sys.argv[1:])"
    return [sys.executable, "-c", reset, *command]


def json_lines(stdout: str) -> list[dict[str, Any]]:
    import json

    return [json.loads(line) for line in stdout.splitlines() if line.strip()]


def error_lines(stderr: str) -> list[str]:
    """The CLI's stderr without its warnings (e.g. the random-weights one the test servers cause)."""
    return [line for line in stderr.splitlines() if line.strip() and not line.startswith("stylize: warning:")]
