"""The server's configuration: one typed dataclass, the command line that fills
it (every flag also read from its environment variable, the flag winning), and
the checks that refuse a configuration that cannot work.

The request limits are `options.Limits`, embedded whole: their flags
(--max-pixels, ...) are generated from its fields, so the one set of defaults
lives there. Defaults and why (README, "Server configuration"):

* ``max_concurrent_jobs`` 2 is an upper bound; the memory budget
  (``device_memory_budget``: 90% of the GPU's memory, or 8 GiB on a CPU)
  decides which jobs may run together, by the cost model's estimate.
* ``max_job_seconds`` 300: a job never runs longer than five minutes of device
  time; a job the limit stops still returns its best image (complete=false).
* ``grace_seconds`` 315: longer than ``max_job_seconds`` plus the time to
  encode and send a result, so a SIGTERM never cuts off a running job.
* ``queue_size`` 16, ``max_jobs_per_client`` 4: queued jobs hold their request
  message (not decoded); no client may hold more than 4 places, and the queue
  serves clients round-robin.
* ``max_open_calls`` 64 and ``max_message_mb`` 32: an open call holds at most
  one request message, so 64 x 32 MiB bounds what clients can make a pod hold.
* ``max_calls_per_client`` 8, ``reserved_calls`` -1 (an eighth of
  ``max_open_calls``, 8) and ``max_streams_per_job`` 2: no client can hold the
  pod's calls. A client holds at most min(max_calls_per_client,
  max_open_calls - reserve) calls, reattaching ones included; the last
  `reserve` calls of the pod go only to clients that hold none; one job has at
  most 2 streams (its own and one reattaching after a lost connection).
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import pathlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from stylize_server.flagtypes import optional_path, parse_bool, parse_bytes, parse_sizes, replace_checked
from stylize_server.job import profiles
from stylize_server.job.options import Limits

ENV_PREFIX = "STYLIZE_"
LOG_FORMATS = ("json", "text")
LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR")
PRECISIONS = ("auto", "float32", "bfloat16")
MIN_MESSAGE_MB = 1 / 16
LIMIT_FIELDS = tuple(f.name for f in dataclasses.fields(Limits))


class ConfigError(ValueError):
    """The configuration cannot work; the message names the flag."""


@dataclass(frozen=True)
class ServerConfig:
    """Everything `stylize-server` can be told. Port 0 means "any free port"."""

    host: str = "0.0.0.0"
    port: int = 50051
    metrics_port: int = 9090
    http_port: int = 0  # 0: no HTTP/JSON API (docs/http.md)
    http_allow_origin: str | None = None  # CORS for this one origin; None: no CORS
    weights: str = "imagenet"
    pooling: str = "avg"
    precision: str = "auto"  # of the convolutions: measured at start-up (bfloat16 where >= 1.3x faster)
    max_compiled_steps: int = 8
    max_concurrent_jobs: int = 2
    queue_size: int = 16
    max_jobs_per_client: int = 4
    device_memory_budget: int = 0  # bytes; 0: 90% of the GPU's memory, or CPU_MEMORY_BUDGET
    tile_size: int = -1  # -1: the cost model decides per job; 0: never tile; N: tiles of N px
    limits: Limits = field(default_factory=Limits)
    max_message_mb: float = 32.0
    max_job_seconds: float = 300.0
    max_video_frames: int = 1000  # frames of one StylizeVideo call (resume by request_id for more)
    grace_seconds: float = 315.0
    max_concurrent_decodes: int = 2
    max_open_calls: int = 64
    max_calls_per_client: int = 8
    reserved_calls: int = -1  # -1: max_open_calls // 8
    max_streams_per_job: int = 2
    max_streams_per_connection: int = 100
    request_receive_seconds: float = 10.0
    send_timeout_seconds: float = 60.0
    detach_grace_seconds: float = 30.0
    result_retention_seconds: float = 600.0
    result_store_mb: float = 256.0
    max_connection_age_seconds: float = 0.0  # 0: connections live forever
    auth_token_file: str | None = None
    tls_cert: str | None = None
    tls_key: str | None = None
    tls_client_ca: str | None = None
    log_format: str = "json"
    log_level: str = "INFO"
    warmup_sizes: tuple[int, ...] = (256, 512)
    xla: bool = False  # measured slower on the CPU (make bench); try it on your GPU
    device_profile: str | None = None  # a measured profile file (make gpu-check); None: the built-in figures

    def replace(self, **changes: object) -> ServerConfig:
        """A copy with `changes`; a Limits field name (max_pixels=...) changes the limits.
        Each value must be of its field's type (`replace_checked`: TypeError otherwise)."""
        limit_changes = {k: changes.pop(k) for k in list(changes) if k in LIMIT_FIELDS}
        limits = changes.get("limits", self.limits)
        if limit_changes and isinstance(limits, Limits):  # another `limits` fails its check below
            changes["limits"] = replace_checked(limits, limit_changes)
        return replace_checked(self, changes)

    @property
    def max_message_bytes(self) -> int:
        return int(self.max_message_mb * 1024 * 1024)

    @property
    def result_store_bytes(self) -> int:
        return int(self.result_store_mb * 1024 * 1024)

    @property
    def call_reserve(self) -> int:
        """The pod's last open calls, which only a client holding no call may take."""
        return self.reserved_calls if self.reserved_calls >= 0 else self.max_open_calls // 8

    @property
    def tls(self) -> bool:
        return bool(self.tls_cert)

    def validate(self) -> ServerConfig:
        """Raise ConfigError naming the first flag that cannot work."""
        _port("--port", self.port)
        _port("--metrics-port", self.metrics_port)
        _port("--http-port", self.http_port)
        if self.pooling not in ("avg", "max"):
            raise ConfigError(f"--pooling: must be avg or max, got {self.pooling!r}")
        if self.precision not in PRECISIONS:
            raise ConfigError(f"--precision: must be one of {', '.join(PRECISIONS)}, got {self.precision!r}")
        if not self.weights:
            raise ConfigError("--weights: must be imagenet, a file path or random:SEED")
        for flag, value, lo in (
            ("--max-compiled-steps", self.max_compiled_steps, 1),
            ("--max-concurrent-jobs", self.max_concurrent_jobs, 1),
            ("--queue-size", self.queue_size, 0),
            ("--max-jobs-per-client", self.max_jobs_per_client, 1),
            ("--device-memory-budget", self.device_memory_budget, 0),
            ("--tile-size", self.tile_size, -1),
            ("--max-concurrent-decodes", self.max_concurrent_decodes, 1),
            ("--max-open-calls", self.max_open_calls, 1),
            ("--max-calls-per-client", self.max_calls_per_client, 1),
            ("--reserved-calls", self.reserved_calls, -1),
            ("--max-streams-per-job", self.max_streams_per_job, 1),
            ("--max-video-frames", self.max_video_frames, 1),
            ("--max-streams-per-connection", self.max_streams_per_connection, 1),
            ("--max-side", self.limits.max_side, 16),
            ("--max-pixels", self.limits.max_pixels, 16 * 16),
            ("--max-iterations", self.limits.max_iterations, 1),
            ("--max-styles", self.limits.max_styles, 1),
            ("--max-input-pixels", self.limits.max_input_pixels, 1),
            ("--max-request-pixels", self.limits.max_request_pixels, 1),
            ("--max-preview-side", self.limits.max_preview_side, 0),
            ("--grace-seconds", self.grace_seconds, 0),
            ("--detach-grace-seconds", self.detach_grace_seconds, 0),
            ("--result-retention-seconds", self.result_retention_seconds, 0),
            ("--result-store-mb", self.result_store_mb, 0),
            ("--max-connection-age-seconds", self.max_connection_age_seconds, 0),
        ):
            _at_least(flag, value, lo)
        if self.reserved_calls >= self.max_open_calls:
            raise ConfigError(
                f"--reserved-calls: must be less than --max-open-calls ({self.max_open_calls}), "
                f"got {self.reserved_calls}"
            )
        if self.tile_size > 0 and self.tile_size % 16:
            raise ConfigError(f"--tile-size: must be -1 (auto), 0 (never) or a multiple of 16, got {self.tile_size}")
        if self.max_message_mb < MIN_MESSAGE_MB:
            # The started frame (options, estimate) and a progress frame must fit one message.
            raise ConfigError(
                f"--max-message-mb: must be at least {MIN_MESSAGE_MB:g} (64 KiB), got {self.max_message_mb:g}"
            )
        for flag, value in (
            ("--max-job-seconds", self.max_job_seconds),
            ("--request-receive-seconds", self.request_receive_seconds),
            ("--send-timeout-seconds", self.send_timeout_seconds),
        ):
            if not value > 0:
                raise ConfigError(f"{flag}: must be positive, got {value:g}")
        if bool(self.tls_cert) != bool(self.tls_key):
            raise ConfigError("--tls-cert and --tls-key must be given together")
        if self.tls_client_ca and not self.tls_cert:
            raise ConfigError("--tls-client-ca needs --tls-cert and --tls-key (mTLS is on top of TLS)")
        for flag, path in (
            ("--tls-cert", self.tls_cert),
            ("--tls-key", self.tls_key),
            ("--tls-client-ca", self.tls_client_ca),
            ("--auth-token-file", self.auth_token_file),
        ):
            if path and not pathlib.Path(path).is_file():
                raise ConfigError(f"{flag}: no such file {path}")
        if self.device_profile:
            try:
                profiles.load_file(self.device_profile)
            except profiles.ProfileFileError as exc:
                raise ConfigError(f"--device-profile: {exc}") from None
        if self.log_format not in LOG_FORMATS:
            raise ConfigError(f"--log-format: must be json or text, got {self.log_format!r}")
        if self.log_level.upper() not in LOG_LEVELS:
            raise ConfigError(f"--log-level: must be one of {', '.join(LOG_LEVELS)}, got {self.log_level!r}")
        for size in self.warmup_sizes:
            if not 16 <= size <= self.limits.max_side:
                raise ConfigError(f"--warmup-sizes: {size} is outside [16, --max-side {self.limits.max_side}]")
        return self


def _port(flag: str, value: int) -> None:
    if not 0 <= value <= 65535:
        raise ConfigError(f"{flag}: must be in [0, 65535] (0 = any free port), got {value}")


def _at_least(flag: str, value: float, lo: float) -> None:
    if value < lo:
        raise ConfigError(f"{flag}: must be >= {lo:g}, got {value:g}")


Parser = Callable[[str], object]  # a flag's text -> its value

# (field, type, help) of the server's own settings. The flag is --field-name,
# the env var STYLIZE_FIELD_NAME.
_SERVER_FLAGS: tuple[tuple[str, Parser, str], ...] = (
    ("host", str, "address to listen on"),
    ("port", int, "gRPC port (0 = any free port)"),
    ("metrics_port", int, "Prometheus /metrics HTTP port (0 = any free port)"),
    ("http_port", int, "HTTP/JSON API and web page port (0 = off); same auth, limits and queue as gRPC"),
    ("http_allow_origin", optional_path, "the one origin the HTTP API allows cross-origin (CORS); unset: none"),
    ("weights", str, "VGG-19 weights: imagenet, a path to the Keras notop .h5 file, or random:SEED"),
    ("pooling", str, "default pooling of the network: avg (the paper) or max"),
    (
        "precision",
        str,
        "convolutions in auto (bfloat16 where measured >= 1.3x faster at start-up), float32 or bfloat16",
    ),
    ("max_compiled_steps", int, "compiled objectives and optimizers kept (LRU); each costs ~20 MB"),
    ("max_concurrent_jobs", int, "most jobs on the device at once (the memory budget may allow fewer)"),
    ("queue_size", int, "jobs allowed to wait for a slot, all clients together"),
    ("max_jobs_per_client", int, "running plus queued jobs one client (token name, or peer host) may have"),
    (
        "device_memory_budget",
        parse_bytes,
        "device memory the jobs' estimates may add up to, e.g. 12GiB (0 = 90%% of the GPU's, or 8GiB on a CPU)",
    ),
    ("tile_size", int, "-1: tile a job only when the whole image would not fit its share; 0: never; N: tiles of N px"),
    ("max_message_mb", float, "largest request or response message in MiB (larger results come in chunks)"),
    ("max_job_seconds", float, "a job running longer is stopped and returns its best image (complete=false)"),
    (
        "max_video_frames",
        int,
        "frames one StylizeVideo call may send (VIDEO_TOO_LONG beyond; a video with a request_id resumes)",
    ),
    ("grace_seconds", float, "on SIGTERM, how long running jobs may take to finish"),
    ("max_concurrent_decodes", int, "images decoded at once, all calls together"),
    ("max_open_calls", int, "open Stylize calls per pod; beyond: RESOURCE_EXHAUSTED (CALL_LIMIT)"),
    (
        "max_calls_per_client",
        int,
        "open Stylize calls one client may hold, reattaching ones included (at most --max-open-calls less "
        "--reserved-calls); beyond: RESOURCE_EXHAUSTED (CLIENT_CALL_LIMIT)",
    ),
    (
        "reserved_calls",
        int,
        "the pod's last open calls, given only to a client that holds none (-1 = --max-open-calls / 8); "
        "others get CALL_LIMIT",
    ),
    (
        "max_streams_per_job",
        int,
        "streams attached to one job (its own and reattaching ones); beyond: RESOURCE_EXHAUSTED (JOB_STREAM_LIMIT)",
    ),
    (
        "max_streams_per_connection",
        int,
        "concurrent streams one HTTP/2 connection may open (grpc.max_concurrent_streams)",
    ),
    ("request_receive_seconds", float, "a call whose request message has not arrived by then ends (RECEIVE_TIMEOUT)"),
    ("send_timeout_seconds", float, "a frame the client has not taken by then ends the call (the job goes on)"),
    ("detach_grace_seconds", float, "a job with a client request_id keeps running this long after its stream is lost"),
    ("result_retention_seconds", float, "results of jobs with a client request_id are kept this long for reattach"),
    ("result_store_mb", float, "bytes of kept results, in MiB; the oldest are evicted first"),
    (
        "max_connection_age_seconds",
        float,
        "close client connections after this age so load balancers rebalance (0 = never)",
    ),
    ("auth_token_file", optional_path, "file of `name:token` lines (or one bare token) clients must send"),
    ("tls_cert", optional_path, "PEM server certificate (turns TLS on)"),
    ("tls_key", optional_path, "PEM private key of --tls-cert"),
    ("tls_client_ca", optional_path, "PEM CA bundle; clients must present a cert it signed (mTLS)"),
    ("log_format", str, "json (one object per line, every line) or text"),
    ("log_level", str, "DEBUG, INFO, WARNING or ERROR"),
    ("warmup_sizes", parse_sizes, 'sizes compiled before serving, e.g. "256,512" ("" = none)'),
    ("xla", parse_bool, "compile the optimization steps with XLA (true/false); `make bench` shows if it helps"),
    (
        "device_profile",
        optional_path,
        "the cost model's device figures as measured by `make gpu-check` (a JSON file); unset: the built-in ones",
    ),
)
_LIMIT_HELP: dict[str, str] = {
    "max_pixels": "largest output, width*height",
    "max_side": "largest output side in pixels",
    "max_iterations": "most iterations one job may ask for",
    "max_styles": "most style images in one request",
    "max_input_pixels": "largest input image, checked from its header before decoding",
    "max_request_pixels": "most decoded pixels of all the images of one request, checked from their headers",
    "max_preview_side": "largest preview side a request may ask for",
}


def flag_of(name: str) -> str:
    return "--" + name.replace("_", "-")


def env_var(name: str) -> str:
    return ENV_PREFIX + name.upper()


def flag_fields() -> tuple[str, ...]:
    """Every setting that has a flag: the server's own, then the limits."""
    return tuple(name for name, *_ in _SERVER_FLAGS) + LIMIT_FIELDS


def env_vars() -> frozenset[str]:
    """Every STYLIZE_* variable the server reads."""
    return frozenset(env_var(name) for name in flag_fields())


def _flags() -> tuple[tuple[str, Parser, str], ...]:
    missing = set(LIMIT_FIELDS) - set(_LIMIT_HELP)
    if missing:  # a new limit without its help would lack a documented flag
        raise RuntimeError(f"Limits fields without help in config._LIMIT_HELP: {sorted(missing)}")
    return _SERVER_FLAGS + tuple((name, int, _LIMIT_HELP[name]) for name in LIMIT_FIELDS)


def _default(name: str) -> object:
    defaults = ServerConfig()
    return getattr(defaults.limits, name) if name in LIMIT_FIELDS else getattr(defaults, name)


def build_parser(environ: dict[str, str] | None = None, version: str | None = None) -> argparse.ArgumentParser:
    """The command line; each flag's default comes from its env var when set."""
    environ = dict(os.environ if environ is None else environ)
    parser = argparse.ArgumentParser(
        prog="stylize-server",
        description="Neural style transfer (Gatys et al.) over gRPC. Every flag can also be set "
        "with the environment variable STYLIZE_<FLAG> (e.g. STYLIZE_MAX_PIXELS); the flag wins.",
    )
    if version is not None:
        parser.add_argument("--version", action="version", version=f"stylize-server {version}")
    for name, kind, help_text in _flags():
        default = _default(name)
        var = env_var(name)
        if var in environ:
            try:
                default = kind(environ[var])
            except (ValueError, argparse.ArgumentTypeError) as exc:
                parser.error(f"{var}={environ[var]!r}: {exc}")
        shown = ",".join(map(str, default)) if isinstance(default, tuple) else default
        parser.add_argument(flag_of(name), dest=name, type=kind, default=default, help=f"{help_text} [{var}, {shown}]")
    return parser


def config_from_args(args: argparse.Namespace) -> ServerConfig:
    values = vars(args)
    limits = Limits(**{name: values[name] for name in LIMIT_FIELDS})
    own = {name: values[name] for name, *_ in _SERVER_FLAGS}
    return ServerConfig(limits=limits, **own)


def parse_config(
    argv: Sequence[str] | None = None, environ: dict[str, str] | None = None, version: str | None = None
) -> ServerConfig:
    """Flags and env vars -> a validated ServerConfig (exits with usage on error)."""
    parser = build_parser(environ, version)
    config = config_from_args(parser.parse_args(argv))
    try:
        return config.replace(log_level=config.log_level.upper()).validate()
    except ConfigError as exc:
        parser.error(str(exc))
        raise  # unreachable; parser.error exits
