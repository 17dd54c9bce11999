"""The reusable `Server`: a grpc.aio server on an event loop of its own
thread, behind a synchronous start()/stop()/wait_ready() for `main()` and tests.

Life of a server:
  start()   listen; health NOT_SERVING; Stylize answers UNAVAILABLE (LOADING)
  loaded    engine loaded and warmed (on a thread of its own, so health answers
            meanwhile) -> the memory budget is decided -> health SERVING
  stop()    health NOT_SERVING, new calls UNAVAILABLE (DRAINING), queued jobs
            end UNAVAILABLE, running jobs get `grace` seconds to finish and are
            then stopped (they return their best image, complete=false),
            streams flush, the port closes.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import os
import threading
import time
from collections.abc import Callable, Coroutine
from typing import TYPE_CHECKING, TypeVar

from grpc import aio
from grpc_health.v1 import health, health_pb2

from stylize_server.config import ServerConfig
from stylize_server.job import profiles
from stylize_server.job.port import EnginePort
from stylize_server.job.types import StopReason
from stylize_server.serving import budget, metrics, rpc
from stylize_server.serving.auth import Authenticator, load_tokens
from stylize_server.serving.info import server_version
from stylize_server.serving.scheduler import Scheduler
from stylize_server.serving.service import SERVICE_NAME, Pools, StyleTransferService

if TYPE_CHECKING:
    from stylize_server.http.server import HttpServer

log = logging.getLogger("stylize.server")

HEALTH_SERVICES = ("", SERVICE_NAME)
T = TypeVar("T")


def load_engine(config: ServerConfig) -> EnginePort:
    """Load VGG-19 as configured (the Engine turns GPU memory growth on before
    anything touches the GPU); raises WeightsError."""
    from stylize_server.engine.runner import Engine

    engine = Engine(
        weights=config.weights,
        pooling=config.pooling,
        limits=config.limits,
        xla=config.xla,
        precision=config.precision,
        max_compiled=config.max_compiled_steps,
    )
    engine.profile = profiles.in_force(config.device_profile, engine.profile)
    return engine


# The bulk work (TensorFlow's compute threads, the engine, decoding, encoding)
# runs this much nicer than the event loop and gRPC's own threads, so that on
# a saturated CPU health, refusals and frames still get the processor at once:
# they need little of it, but need it now. Raising niceness needs no privilege.
WORKER_NICENESS = 10


def lower_priority() -> None:
    """Make the calling thread (and the threads it starts) WORKER_NICENESS nicer."""
    try:
        current = os.getpriority(os.PRIO_PROCESS, threading.get_native_id())
        os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), min(19, current + WORKER_NICENESS))
    except (AttributeError, OSError):  # not Linux, or not allowed: run at the same priority
        pass


def _worker_pool(workers: int, name: str) -> concurrent.futures.ThreadPoolExecutor:
    return concurrent.futures.ThreadPoolExecutor(workers, thread_name_prefix=name, initializer=lower_priority)


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
        engine: EnginePort | None = None,
        engine_loader: Callable[[ServerConfig], EnginePort] | None = None,
    ) -> None:
        self.config = config.validate()
        self._given_engine = engine
        self._loader = engine_loader or load_engine
        self._authenticator = Authenticator(load_tokens(config.auth_token_file) if config.auth_token_file else None)
        self._pools = Pools(
            engine=_worker_pool(config.max_concurrent_jobs, "engine"),
            decode=_worker_pool(config.max_concurrent_decodes, "decode"),
            encode=_worker_pool(max(2, config.max_concurrent_jobs), "encode"),
        )
        self._service = StyleTransferService(config, self._pools, self._authenticator)
        self._loop = asyncio.new_event_loop()
        self._loop_thread = threading.Thread(target=self._loop.run_forever, name="grpc-loop", daemon=True)
        self._grpc: aio.Server | None = None
        self._http: HttpServer | None = None
        self._health: health.aio.HealthServicer | None = None
        self._metrics: metrics.MetricsEndpoint | None = None
        self._port: int | None = None
        self._ready = threading.Event()
        self._stopped = threading.Event()
        self._stop_lock = threading.Lock()
        self._stopping = False
        self._force: asyncio.Event | None = None
        self._load_error: BaseException | None = None
        self._budget_bytes = 0
        self._precision: str | None = None
        self.engine: EnginePort | None = None

    # ------------------------------------------------------------- props
    @property
    def port(self) -> int:
        if self._port is None:
            raise RuntimeError("server not started")
        return self._port

    @property
    def http_port(self) -> int:
        if self._http is None:
            raise RuntimeError("no HTTP server (--http-port 0)")
        return self._http.port

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
        return self._service.scheduler

    def _call(self, coroutine: Coroutine[object, None, T], timeout: float | None = None) -> T:
        return asyncio.run_coroutine_threadsafe(coroutine, self._loop).result(timeout)

    # ------------------------------------------------------------- start
    def start(self, wait_ready: bool = True, timeout: float | None = None) -> Server:
        self._loop_thread.start()
        try:
            self._port = self._call(self._astart(), timeout=60)
        except BaseException:
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._loop_thread.join(10)
            raise
        cfg = self.config
        self._metrics = metrics.MetricsEndpoint(cfg.host, cfg.metrics_port)
        fields = {
            "port": self._port,
            "metrics_port": self._metrics.port,
            "http_port": self._http.port if self._http is not None else 0,
            "tls": cfg.tls,
            "mtls": bool(cfg.tls_client_ca),
            "auth": self._authenticator.enabled,
            "clients": len(self._authenticator.names),
            "version": server_version(),
        }
        log.info("listening", extra={"fields": fields})
        if cfg.grace_seconds < cfg.max_job_seconds:
            log.warning(
                "--grace-seconds is shorter than --max-job-seconds: a SIGTERM may cut running jobs short",
                extra={"fields": {"grace_s": cfg.grace_seconds, "max_job_s": cfg.max_job_seconds}},
            )
        threading.Thread(target=self._load, name="engine-loader", daemon=True).start()
        if wait_ready:
            self.wait_ready(timeout)
        return self

    async def _astart(self) -> int:
        self._force = asyncio.Event()
        self._health = health.aio.HealthServicer()
        for name in HEALTH_SERVICES:
            await self._health.set(name, health_pb2.HealthCheckResponse.NOT_SERVING)
        server, port = rpc.build(self.config, self._service, self._health, self._authenticator, self._count_denied)
        await server.start()
        self._grpc = server
        if self.config.http_port:
            from stylize_server.http.server import HttpServer  # aiohttp only where HTTP is on

            self._http = HttpServer(self._service)
            await self._http.start()
        return port

    def _count_denied(self, method: str) -> None:
        if method.endswith("/Stylize"):
            metrics.REQUESTS.labels(code="UNAUTHENTICATED").inc()
            metrics.REFUSALS.labels(reason="UNAUTHENTICATED").inc()

    def _load(self) -> None:
        cfg = self.config
        # TensorFlow's compute threads are started from this thread and inherit its priority.
        lower_priority()
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
                fields = {"sizes": list(cfg.warmup_sizes), "seconds": round(time.monotonic() - t1, 3)}
                log.info("warmed up", extra={"fields": fields})
            decided = budget.decide(cfg.device_memory_budget, info)
            self.engine = engine
            if not self._stopping and self._call(self._aserve(engine, decided.bytes), timeout=60):
                self._log_serving(engine, decided)
        except BaseException as exc:
            self._load_error = exc
            log.error("model load failed", extra={"fields": {"error": f"{type(exc).__name__}: {exc}"}})
        finally:
            self._ready.set()

    async def _aserve(self, engine: EnginePort, budget_bytes: int) -> bool:
        with self._stop_lock:
            if self._stopping:
                return False
        self._service.attach_engine(engine, budget_bytes)
        metrics.DEVICE_MEMORY.set_source(engine.device_memory_bytes)
        metrics.MEMORY_BUDGET.inc(budget_bytes)
        self._budget_bytes = budget_bytes
        self._precision = str(engine.model_info.precision)
        metrics.PRECISION.labels(precision=self._precision).inc()
        assert self._health is not None
        for name in HEALTH_SERVICES:
            await self._health.set(name, health_pb2.HealthCheckResponse.SERVING)
        return True

    def _log_serving(self, engine: EnginePort, decided: budget.Budget) -> None:
        cfg, info = self.config, engine.model_info
        fields = {
            "port": self._port,
            "metrics_port": self.metrics_port,
            "weights": info.weights_source,
            "random_weights": bool(info.random_weights),
            "device": f"{info.device_kind} {info.device_name}",
            "precision": info.precision,
            "precision_reason": info.precision_reason,
            "load_seconds": round(float(info.load_seconds), 3),
            "max_concurrent_jobs": cfg.max_concurrent_jobs,
            "queue_size": cfg.queue_size,
            "memory_budget_bytes": decided.bytes,
            "memory_budget_source": decided.source,
        }
        log.info("serving", extra={"fields": fields})

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
        try:
            cut_off = self._call(self._astop(grace)) if self._loop_thread.is_alive() else 0
        finally:
            if self._metrics is not None:
                self._metrics.close()
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._loop_thread.join(10)
            self._pools.shutdown()
            log.info("stopped", extra={"fields": {"seconds": round(time.monotonic() - t0, 3), "jobs_cut_off": cut_off}})
            self._stopped.set()

    async def _astop(self, grace: float) -> int:
        service = self._service
        service.draining = True
        if self._health is not None:
            await self._health.enter_graceful_shutdown()
        scheduler = service.scheduler
        cut_off = 0
        if scheduler is not None:
            ended = scheduler.close()
            log.info(
                "draining", extra={"fields": {"running": scheduler.running, "queued_ended": ended, "grace_s": grace}}
            )
            assert self._force is not None
            idle = asyncio.ensure_future(scheduler.wait_idle())
            force = asyncio.ensure_future(self._force.wait())
            await asyncio.wait({idle, force}, timeout=grace, return_when=asyncio.FIRST_COMPLETED)
            force.cancel()
            if not idle.done():
                cut_off = scheduler.stop_running(StopReason.SHUTDOWN)
                # A stopped job ends within one iteration (or one style pass).
                await asyncio.wait({idle}, timeout=60)
            idle.cancel()
        if self._http is not None:
            await self._http.stop()
        if self._grpc is not None:
            # Jobs are over: give their streams a moment to send the last frames.
            await self._grpc.stop(rpc.FLUSH_SECONDS)
        service.registry.close()
        metrics.DEVICE_MEMORY.set_source(None)
        metrics.MEMORY_BUDGET.dec(self._budget_bytes)
        if self._precision is not None:
            metrics.PRECISION.labels(precision=self._precision).dec()
        return cut_off

    def force(self) -> None:
        """Cut the grace period short: running jobs stop within one iteration."""
        if self._force is not None:
            self._loop.call_soon_threadsafe(self._force.set)

    def wait(self, timeout: float | None = None) -> bool:
        """Block until stop() has finished."""
        return self._stopped.wait(timeout)

    def __enter__(self) -> Server:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop(grace=0)
