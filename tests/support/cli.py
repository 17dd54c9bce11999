"""Helpers for tests of the `stylize` command: run it as a user does (a
subprocess of this environment's console script) and read what it printed."""

from __future__ import annotations

import json
import os
import pathlib
import shutil
import subprocess
import sys
from typing import Any


def stylize_command() -> list[str]:
    """The `stylize` console script of this environment (or the module)."""
    exe = shutil.which("stylize", path=str(pathlib.Path(sys.executable).parent))
    return [exe] if exe else [sys.executable, "-m", "stylize.cli"]


def cli_env(**extra: str) -> dict[str, str]:
    """The environment for a CLI subprocess: no STYLIZE_* settings of the caller's."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("STYLIZE_")}
    env["PYTHONUNBUFFERED"] = "1"
    env.update(extra)
    return env


def run_cli(*args: str, timeout: float = 120, env: dict[str, str] | None = None):
    """Run `stylize *args` to the end; the CompletedProcess (text)."""
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
    reset = "import os, signal, sys; signal.signal(signal.SIGINT, signal.SIG_DFL); os.execv(sys.argv[1], sys.argv[1:])"
    return [sys.executable, "-c", reset, *command]


def json_lines(stdout: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in stdout.splitlines() if line.strip()]


def error_lines(stderr: str) -> list[str]:
    """The CLI's stderr without its warnings (e.g. the random-weights one the test servers cause)."""
    return [line for line in stderr.splitlines() if line.strip() and not line.startswith("stylize: warning:")]
