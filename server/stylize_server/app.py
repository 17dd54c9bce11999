"""The `stylize-server` entry point and the reusable `Server` that wires it:
configuration, logging, the gRPC server (servicer, health, reflection, auth,
TLS, channel options), the metrics endpoint, loading and warming the engine
once, and graceful shutdown.

Life of a server:
  start()   listen; health NOT_SERVING; Stylize answers UNAVAILABLE ("loading")
  loaded    engine loaded and warmed -> health SERVING
  stop()    health NOT_SERVING, new Stylize calls UNAVAILABLE, queued jobs end
            UNAVAILABLE, running jobs get `grace_seconds` to finish and are then
            stopped (UNAVAILABLE, with a message), streams flush, port closes.

`main()` adds signals: SIGTERM or SIGINT starts stop(); a second one cuts the
grace short. The process exits 0 after a clean drain, 1 if the model failed to
load, 2 on a bad command line.
"""

from __future__ import annotations

import concurrent.futures
import datetime as _dt
import json
import logging
import os
import signal
import sys
import threading
import time
from collections.abc import Callable, Sequence
from typing import Any

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from . import metrics
from .auth import BearerTokenInterceptor
from .config import ServerConfig, parse_config
from .errors import WeightsError
from .options import Pooling
from .scheduler import Scheduler
from .service import (
    SERVICE_NAME,
    ServiceState,
    StyleTransferServicer,
    add_to_server,
    server_version,
)
from .types import StopReason

log = logging.getLogger("stylize.server")

HEALTH_SERVICES = ("", SERVICE_NAME)
# How long streams may take to send their last frames once the jobs are over.
_FLUSH_SECONDS = 5.0


# ------------------------------------------------------------------ logging
class JsonFormatter(logging.Formatter):
    """One JSON object per line: ts, level, logger, event, then the record's
    `fields` (passed as extra={"fields": {...}})."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "ts": _dt.datetime.fromtimestamp(record.created, _dt.UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "event": record.getMessage(),
        }
        entry.update(getattr(record, "fields", None) or {})
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry, default=str)


class TextFormatter(logging.Formatter):
    """`ts level logger event key=value ...` for people reading a terminal."""

    def format(self, record: logging.LogRecord) -> str:
        ts = _dt.datetime.fromtimestamp(record.created, _dt.UTC).strftime("%H:%M:%S.%f")[:-3]
        fields = getattr(record, "fields", None) or {}
        extra = " ".join(f"{k}={v}" for k, v in fields.items())
        line = f"{ts} {record.levelname:<7} {record.name} {record.getMessage()}" + (f" {extra}" if extra else "")
        if record.exc_info:
            line += "\n" + self.formatException(record.exc_info)
        return line


def setup_logging(log_format: str = "json", level: str = "INFO") -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter() if log_format == "json" else TextFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())


# ------------------------------------------------------------------ engine
def load_engine(config: ServerConfig):
    """Load VGG-19 as configured (the Engine turns GPU memory growth on before
    anything touches the GPU); raises WeightsError."""
    from .engine import Engine

    # The engine re-validates every job: it must know the server's limits.
    return Engine(weights=config.weights, pooling=config.pooling, limits=config.limits, xla=config.xla)


# ------------------------------------------------------------------ server
class Server:
    """A stylize gRPC server that can run in-process (tests) or from `main()`.

    `engine`: an already-loaded Engine to share (tests); otherwise
    `engine_loader(config)` (default: load from `config.weights`) runs on a
    background thread after the port is open, so health answers NOT_SERVING
    while the model loads.
    """

    def __init__(
        self,
        config: ServerConfig,
        engine: Any | None = None,
        engine_loader: Callable[[ServerConfig], Any] | None = None,
    ) -> None:
        self.config = config.validate()
        self._given_engine = engine
        self._loader = engine_loader or load_engine
        self._state = ServiceState(
            limits=config.limits,
            max_message_bytes=config.max_message_bytes,
            default_pooling=Pooling(config.pooling),
        )
        self._health = health.HealthServicer(
            experimental_non_blocking=True,
            experimental_thread_pool=concurrent.futures.ThreadPoolExecutor(max_workers=1),
        )
        self._grpc: grpc.Server | None = None
        self._metrics: metrics.MetricsEndpoint | None = None
        self._port: int | None = None
        self._ready = threading.Event()
        self._stopped = threading.Event()
        self._stop_lock = threading.Lock()
        self._stopping = False
        self._force = threading.Event()
        self._load_error: BaseException | None = None
        self.engine: Any | None = None

    # ------------------------------------------------------------- props
    @property
    def port(self) -> int:
        if self._port is None:
            raise RuntimeError("server not started")
        return self._port

    @property
    def metrics_port(self) -> int:
        if self._metrics is None:
            raise RuntimeError("server not started")
        return self._metrics.port

    @property
    def address(self) -> str:
        host = self.config.host
        if host in ("0.0.0.0", "::", "[::]"):
            host = "127.0.0.1"
        return f"{host}:{self.port}"

    @property
    def ready(self) -> bool:
        return self._ready.is_set() and self._load_error is None

    @property
    def load_finished(self) -> bool:
        """Loading is over, successfully or not (see `load_error`)."""
        return self._ready.is_set()

    @property
    def load_error(self) -> BaseException | None:
        return self._load_error

    @property
    def scheduler(self) -> Scheduler | None:
        return self._state.scheduler

    # ------------------------------------------------------------- start
    def _channel_options(self) -> list[tuple[str, int]]:
        cfg = self.config
        options = [
            ("grpc.max_receive_message_length", cfg.max_message_bytes),
            ("grpc.max_send_message_length", cfg.max_message_bytes),
            # Find dead clients of long streams; let clients ping us every 10 s.
            ("grpc.keepalive_time_ms", 60_000),
            ("grpc.keepalive_timeout_ms", 20_000),
            ("grpc.keepalive_permit_without_calls", 1),
            ("grpc.http2.min_ping_interval_without_data_ms", 10_000),
            ("grpc.http2.max_pings_without_data", 0),
            ("grpc.so_reuseport", 0),
        ]
        if cfg.max_connection_age_seconds > 0:
            options += [
                ("grpc.max_connection_age_ms", int(cfg.max_connection_age_seconds * 1000)),
                # Streams on an aged connection may finish: the longest job fits.
                ("grpc.max_connection_age_grace_ms", int((cfg.max_job_seconds + _FLUSH_SECONDS) * 1000)),
            ]
        return options

    def _credentials(self) -> grpc.ServerCredentials | None:
        cfg = self.config
        if not cfg.tls_cert:
            return None
        with open(cfg.tls_cert, "rb") as f:
            cert = f.read()
        with open(cfg.tls_key or "", "rb") as f:
            key = f.read()
        ca = None
        if cfg.tls_client_ca:
            with open(cfg.tls_client_ca, "rb") as f:
                ca = f.read()
        return grpc.ssl_server_credentials([(key, cert)], root_certificates=ca, require_client_auth=ca is not None)

    def start(self, wait_ready: bool = True, timeout: float | None = None) -> Server:
        cfg = self.config
        token = cfg.read_auth_token()
        for name in HEALTH_SERVICES:
            self._health.set(name, health_pb2.HealthCheckResponse.NOT_SERVING)
        interceptors = []
        if token:
            interceptors.append(BearerTokenInterceptor(token, on_denied=self._count_denied))
        workers = cfg.max_concurrent_jobs + cfg.queue_size + 16
        server = grpc.server(
            concurrent.futures.ThreadPoolExecutor(max_workers=workers, thread_name_prefix="grpc"),
            interceptors=interceptors,
            options=self._channel_options(),
        )
        add_to_server(StyleTransferServicer(self._state), server)
        health_pb2_grpc.add_HealthServicer_to_server(self._health, server)
        reflection.enable_server_reflection((SERVICE_NAME, health.SERVICE_NAME, reflection.SERVICE_NAME), server)
        bind = f"{cfg.host}:{cfg.port}"
        credentials = self._credentials()
        try:
            port = server.add_secure_port(bind, credentials) if credentials else server.add_insecure_port(bind)
        except RuntimeError as exc:
            raise OSError(f"cannot listen on {bind}: {exc}") from exc
        if port == 0:
            raise OSError(f"cannot listen on {bind}")
        self._metrics = metrics.MetricsEndpoint(cfg.host, cfg.metrics_port)
        server.start()
        self._grpc, self._port = server, port
        log.info(
            "listening",
            extra={
                "fields": {
                    "port": port,
                    "metrics_port": self._metrics.port,
                    "tls": cfg.tls,
                    "mtls": bool(cfg.tls_client_ca),
                    "auth": bool(token),
                    "version": server_version(),
                }
            },
        )
        if cfg.grace_seconds < cfg.max_job_seconds:
            log.warning(
                "--grace-seconds is shorter than --max-job-seconds: a SIGTERM may cut off running jobs",
                extra={"fields": {"grace_s": cfg.grace_seconds, "max_job_s": cfg.max_job_seconds}},
            )
        threading.Thread(target=self._load, name="engine-loader", daemon=True).start()
        if wait_ready:
            self.wait_ready(timeout)
        return self

    def _count_denied(self, method: str) -> None:
        if method.endswith("/Stylize"):
            metrics.REQUESTS.labels(code=grpc.StatusCode.UNAUTHENTICATED.name).inc()

    def _load(self) -> None:
        cfg = self.config
        try:
            t0 = time.monotonic()
            engine = self._given_engine if self._given_engine is not None else self._loader(cfg)
            info = engine.model_info
            metrics.MODEL_LOAD.set(float(getattr(info, "load_seconds", time.monotonic() - t0)))
            if info.random_weights:
                log.warning(
                    "RANDOM WEIGHTS: VGG-19 runs with seeded random weights; results are NOT artistic. "
                    "Use --weights imagenet or a path to the Keras notop .h5 file in production.",
                    extra={"fields": {"weights": info.weights_source}},
                )
            if cfg.warmup_sizes:
                t1 = time.monotonic()
                engine.warm_up(sizes=tuple(cfg.warmup_sizes))
                log.info(
                    "warmed up",
                    extra={"fields": {"sizes": list(cfg.warmup_sizes), "seconds": round(time.monotonic() - t1, 3)}},
                )
            self.engine = engine
            self._state.engine = engine
            metrics.DEVICE_MEMORY.set_source(engine.device_memory_bytes)
            with self._stop_lock:
                if self._stopping:
                    return
                self._state.scheduler = Scheduler(
                    engine,
                    max_concurrent=cfg.max_concurrent_jobs,
                    queue_size=cfg.queue_size,
                    max_job_seconds=cfg.max_job_seconds,
                    grace_seconds=cfg.grace_seconds,
                )
                for name in HEALTH_SERVICES:
                    self._health.set(name, health_pb2.HealthCheckResponse.SERVING)
            log.info(
                "serving",
                extra={
                    "fields": {
                        "port": self._port,
                        "metrics_port": self.metrics_port,
                        "weights": info.weights_source,
                        "random_weights": bool(info.random_weights),
                        "device": f"{info.device_kind} {info.device_name}",
                        "load_seconds": round(float(info.load_seconds), 3),
                        "max_concurrent_jobs": cfg.max_concurrent_jobs,
                        "queue_size": cfg.queue_size,
                    }
                },
            )
        except BaseException as exc:
            self._load_error = exc
            log.error("model load failed", extra={"fields": {"error": f"{type(exc).__name__}: {exc}"}})
        finally:
            self._ready.set()

    def wait_ready(self, timeout: float | None = None) -> None:
        """Block until the engine is loaded; re-raise its load error."""
        if not self._ready.wait(timeout):
            raise TimeoutError(f"server not ready after {timeout} s")
        if self._load_error is not None:
            raise self._load_error

    # -------------------------------------------------------------- stop
    def stop(self, grace: float | None = None) -> None:
        """Drain and stop (idempotent; a second caller waits for the first)."""
        with self._stop_lock:
            first = not self._stopping
            self._stopping = True
        if not first:
            self._stopped.wait()
            return
        grace = self.config.grace_seconds if grace is None else grace
        t0 = time.monotonic()
        self._health.enter_graceful_shutdown()
        self._state.draining = True
        scheduler = self._state.scheduler
        stopped_running = 0
        if scheduler is not None:
            ended = scheduler.close()
            running = scheduler.running
            log.info("draining", extra={"fields": {"running": running, "queued_ended": ended, "grace_s": grace}})
            deadline = time.monotonic() + grace
            while not scheduler.wait_idle(timeout=min(0.2, max(0.0, deadline - time.monotonic()))):
                if self._force.is_set() or time.monotonic() >= deadline:
                    stopped_running = scheduler.stop_running(StopReason.SHUTDOWN)
                    # A stopped job ends within one iteration.
                    scheduler.wait_idle(timeout=60)
                    break
        if self._grpc is not None:
            # Jobs are over: give their streams a moment to send the last frames.
            self._grpc.stop(grace=_FLUSH_SECONDS).wait()
        if self._metrics is not None:
            self._metrics.close()
        metrics.DEVICE_MEMORY.set_source(None)
        log.info(
            "stopped",
            extra={"fields": {"seconds": round(time.monotonic() - t0, 3), "jobs_cut_off": stopped_running}},
        )
        self._stopped.set()

    def force(self) -> None:
        """Cut the grace period short: running jobs stop within one iteration."""
        self._force.set()

    def wait(self, timeout: float | None = None) -> bool:
        """Block until stop() has finished."""
        return self._stopped.wait(timeout)

    def __enter__(self) -> Server:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop(grace=0)


# -------------------------------------------------------------------- main
def main(argv: Sequence[str] | None = None, hard_exit: bool = True) -> int:
    """Run the server until SIGTERM/SIGINT. With `hard_exit` (the console
    script), the process exits right after the drain: every job and stream is
    over by then, and skipping interpreter teardown (TensorFlow's and gRPC's
    thread pools) keeps the exit well within the pod's termination grace."""
    code = _serve(argv)
    if hard_exit:
        logging.shutdown()
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)
    return code


def _serve(argv: Sequence[str] | None) -> int:
    config = parse_config(argv)
    setup_logging(config.log_format, config.log_level)
    signals = {"count": 0}
    stop_requested = threading.Event()

    def on_signal(signum: int, _frame: object) -> None:
        signals["count"] += 1
        stop_requested.set()
        if signals["count"] > 1:
            server.force()

    server = Server(config)
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
        kind = "weights" if isinstance(error, WeightsError) else type(error).__name__
        log.error("exiting: the model could not be loaded", extra={"fields": {"kind": kind, "error": str(error)}})
        server.stop(grace=0)
        return 1
    while not stop_requested.wait(1.0):
        pass
    log.info("signal received, shutting down", extra={"fields": {"grace_s": config.grace_seconds}})
    server.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
