"""The `stylize-server` entry point: configuration, logging, signals.

SIGTERM or SIGINT starts a drain (lifecycle.Server.stop); a second one cuts
the grace short. The process exits 0 after a clean drain, 1 if the model
failed to load or the port could not be opened, 2 on a bad command line.

`Server` (the reusable server, in `lifecycle`) is re-exported here for tests
and embedding: `stylize_server.app.Server(config, engine=..., engine_loader=...)`.
"""

from __future__ import annotations

import logging
import os
import signal
import sys
import threading
from collections.abc import Sequence
from typing import TYPE_CHECKING

from stylize_server.config import parse_config
from stylize_server.serving.info import server_version
from stylize_server.serving.logs import capture_stderr, release_stderr, setup_logging

if TYPE_CHECKING:
    from stylize_server.serving.lifecycle import Server

log = logging.getLogger("stylize.server")
SWITCH_INTERVAL = 0.001  # seconds
WEIGHTS_FIX = (
    "give the weights source with --weights SOURCE (or STYLIZE_WEIGHTS): imagenet, a path to the .h5 file, "
    "or random:0 for a smoke test"
)

__all__ = ["Server", "main"]


def __getattr__(name: str) -> type[Server]:
    # `Server` imports the servicer and, through it, TensorFlow's neighbours:
    # loaded on first use, so that `main` can capture fd 2 before TensorFlow loads.
    if name == "Server":
        from stylize_server.serving.lifecycle import Server

        return Server
    raise AttributeError(name)


def main(argv: Sequence[str] | None = None, hard_exit: bool = True) -> int:
    """Run the server until SIGTERM/SIGINT. With `hard_exit` (the console
    script), the process exits right after the drain: every job and stream is
    over by then, and skipping interpreter teardown (TensorFlow's and gRPC's
    thread pools) keeps the exit well within the pod's termination grace."""
    try:
        code = _serve(argv)
    except SystemExit:
        raise  # argparse: usage errors (2), --help and --version (0)
    except BaseException:
        log.critical("the server failed", exc_info=True)
        code = 1
    if hard_exit:
        logging.shutdown()
        release_stderr()
        sys.stdout.flush()
        os._exit(code)
    return code


def _serve(argv: Sequence[str] | None) -> int:
    config = parse_config(argv, version=server_version())
    # The event loop answers every call (health, refusals, frames) on one
    # thread, while the engine threads run Python between TensorFlow ops. A
    # thread that wants the GIL waits up to the switch interval per hand-over
    # (5 ms by default); 1 ms keeps refusals and health quick under load.
    sys.setswitchinterval(SWITCH_INTERVAL)
    capture_stderr()  # before TensorFlow is imported: its C++ lines go straight to fd 2
    setup_logging(config.log_format, config.log_level)
    from stylize_server.job.errors import WeightsError
    from stylize_server.serving.lifecycle import Server

    signals = {"count": 0}
    stop_requested = threading.Event()

    def on_signal(signum: int, _frame: object) -> None:
        signals["count"] += 1
        stop_requested.set()
        if signals["count"] > 1:
            server.force()

    try:
        server = Server(config)
    except (OSError, ValueError) as exc:
        log.error("cannot start", extra={"fields": {"error": str(exc)}})
        return 1
    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    try:
        server.start(wait_ready=False)
    except OSError as exc:
        log.error("cannot start", extra={"fields": {"error": str(exc)}})
        return 1
    while not stop_requested.is_set() and not server.load_finished:
        stop_requested.wait(0.1)
    if server.load_error is not None:
        error = server.load_error
        fields = {"kind": type(error).__name__, "error": str(error)}
        if isinstance(error, WeightsError):  # its text names no flag: the engine is also used from Python
            fields.update(kind="weights", fix=WEIGHTS_FIX)
        log.error("exiting: the model could not be loaded", extra={"fields": fields})
        server.stop(grace=0)
        return 1
    while not stop_requested.wait(1.0):
        pass
    log.info("signal received, shutting down", extra={"fields": {"grace_s": config.grace_seconds}})
    server.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
