"""The server's configuration: one typed dataclass, the command line that fills
it (every flag also read from its environment variable, the flag winning), and
the checks that refuse a configuration that cannot work.

Defaults and why (README, "Server configuration"):

* ``max_pixels`` 1 MiP (1024x1024) and ``max_concurrent_jobs`` 2: one job's
  peak device memory grows linearly with the output's pixels (VGG-19 forward
  activations up to relu5_1 kept for the backward pass, their gradients, the
  L-BFGS history of image-sized vectors, cuDNN workspaces). Published numbers
  put this at roughly 3.5-4 GB per megapixel for the Gatys optimization, so two
  1 MP jobs plus the resident weights and allocator slack stay well under a
  16 GB card.
* ``max_iterations`` 2000 and ``max_job_seconds`` 300: a job never runs longer
  than five minutes of device time; at 1 MP on a 16 GB-class card 2000 L-BFGS
  iterations take minutes, and the cap bounds the worst case whatever the card.
* ``grace_seconds`` 315: longer than ``max_job_seconds`` plus the time to
  encode and send a result, so a SIGTERM never cuts off a job that was already
  running (Kubernetes' terminationGracePeriodSeconds must exceed it).
* ``queue_size`` 16: queued jobs hold their decoded (already shrunk) images in
  host memory and a handler thread each; 16 is minutes of work at most sizes,
  beyond which a client is better told RESOURCE_EXHAUSTED and retries elsewhere.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import pathlib
from collections.abc import Sequence
from dataclasses import dataclass

from .options import Limits

ENV_PREFIX = "STYLIZE_"
LOG_FORMATS = ("json", "text")
LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR")


class ConfigError(ValueError):
    """The configuration cannot work; the message names the flag."""


@dataclass(frozen=True)
class ServerConfig:
    """Everything `stylize-server` can be told. Port 0 means "any free port"."""

    host: str = "0.0.0.0"
    port: int = 50051
    metrics_port: int = 9090
    weights: str = "imagenet"
    pooling: str = "avg"
    max_concurrent_jobs: int = 2
    queue_size: int = 16
    max_pixels: int = 1024 * 1024
    max_side: int = 2048
    max_iterations: int = 2000
    max_styles: int = 8
    max_input_pixels: int = 40_000_000
    max_message_mb: float = 32.0
    max_job_seconds: float = 300.0
    grace_seconds: float = 315.0
    max_connection_age_seconds: float = 0.0  # 0: connections live forever
    auth_token_file: str | None = None
    tls_cert: str | None = None
    tls_key: str | None = None
    tls_client_ca: str | None = None
    log_format: str = "json"
    log_level: str = "INFO"
    warmup_sizes: tuple[int, ...] = (256, 512)
    xla: bool = False  # measured slower on the CPU (make bench); try it on your GPU

    def replace(self, **changes: object) -> ServerConfig:
        return dataclasses.replace(self, **changes)

    @property
    def limits(self) -> Limits:
        return Limits(
            max_pixels=self.max_pixels,
            max_side=self.max_side,
            max_iterations=self.max_iterations,
            max_styles=self.max_styles,
            max_input_pixels=self.max_input_pixels,
        )

    @property
    def max_message_bytes(self) -> int:
        return int(self.max_message_mb * 1024 * 1024)

    @property
    def tls(self) -> bool:
        return bool(self.tls_cert)

    def read_auth_token(self) -> str | None:
        """The bearer token, stripped of surrounding whitespace, or None."""
        if not self.auth_token_file:
            return None
        token = pathlib.Path(self.auth_token_file).read_text(encoding="utf-8").strip()
        if not token:
            raise ConfigError(f"--auth-token-file: {self.auth_token_file} is empty")
        return token

    def validate(self) -> ServerConfig:
        """Raise ConfigError naming the first flag that cannot work."""
        _port("--port", self.port)
        _port("--metrics-port", self.metrics_port)
        if self.pooling not in ("avg", "max"):
            raise ConfigError(f"--pooling: must be avg or max, got {self.pooling!r}")
        if not self.weights:
            raise ConfigError("--weights: must be imagenet, a file path or random:SEED")
        _at_least("--max-concurrent-jobs", self.max_concurrent_jobs, 1)
        _at_least("--queue-size", self.queue_size, 0)
        _at_least("--max-side", self.max_side, 16)
        _at_least("--max-pixels", self.max_pixels, 16 * 8)
        _at_least("--max-iterations", self.max_iterations, 1)
        _at_least("--max-styles", self.max_styles, 1)
        _at_least("--max-input-pixels", self.max_input_pixels, 1)
        if not self.max_message_mb > 0:
            raise ConfigError(f"--max-message-mb: must be positive, got {self.max_message_mb:g}")
        if not self.max_job_seconds > 0:
            raise ConfigError(f"--max-job-seconds: must be positive, got {self.max_job_seconds:g}")
        if self.grace_seconds < 0:
            raise ConfigError(f"--grace-seconds: must be >= 0, got {self.grace_seconds:g}")
        if self.max_connection_age_seconds < 0:
            raise ConfigError(
                f"--max-connection-age-seconds: must be >= 0 (0 = off), got {self.max_connection_age_seconds:g}"
            )
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
        if self.log_format not in LOG_FORMATS:
            raise ConfigError(f"--log-format: must be json or text, got {self.log_format!r}")
        if self.log_level.upper() not in LOG_LEVELS:
            raise ConfigError(f"--log-level: must be one of {', '.join(LOG_LEVELS)}, got {self.log_level!r}")
        for size in self.warmup_sizes:
            if not 16 <= size <= self.max_side:
                raise ConfigError(f"--warmup-sizes: {size} is outside [16, --max-side {self.max_side}]")
        return self


def _port(flag: str, value: int) -> None:
    if not 0 <= value <= 65535:
        raise ConfigError(f"{flag}: must be in [0, 65535] (0 = any free port), got {value}")


def _at_least(flag: str, value: float, lo: float) -> None:
    if value < lo:
        raise ConfigError(f"{flag}: must be >= {lo:g}, got {value:g}")


def parse_sizes(text: str) -> tuple[int, ...]:
    """ "256,512" -> (256, 512); "" -> ()."""
    parts = [p.strip() for p in text.split(",") if p.strip()]
    try:
        return tuple(int(p) for p in parts)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a comma-separated list of sizes, got {text!r}") from None


def _optional_path(text: str) -> str | None:
    return text or None


def parse_bool(text: str) -> bool:
    value = str(text).strip().lower()
    if value in ("1", "true", "yes", "on"):
        return True
    if value in ("0", "false", "no", "off", ""):
        return False
    raise argparse.ArgumentTypeError(f"expected true or false, got {text!r}")


# (field, flag, type, help). The env var is STYLIZE_ + the field name upper-cased.
_FLAGS: tuple[tuple[str, str, object, str], ...] = (
    ("host", "--host", str, "address to listen on"),
    ("port", "--port", int, "gRPC port (0 = any free port)"),
    ("metrics_port", "--metrics-port", int, "Prometheus /metrics HTTP port (0 = any free port)"),
    ("weights", "--weights", str, "VGG-19 weights: imagenet, a path to the Keras notop .h5 file, or random:SEED"),
    ("pooling", "--pooling", str, "default pooling of the network: avg (the paper) or max"),
    ("max_concurrent_jobs", "--max-concurrent-jobs", int, "jobs running on the device at once"),
    ("queue_size", "--queue-size", int, "jobs allowed to wait behind the running ones"),
    ("max_pixels", "--max-pixels", int, "largest output, width*height"),
    ("max_side", "--max-side", int, "largest output side in pixels"),
    ("max_iterations", "--max-iterations", int, "most iterations one job may ask for"),
    ("max_styles", "--max-styles", int, "most style images in one request"),
    ("max_input_pixels", "--max-input-pixels", int, "largest decoded input image, checked from its header"),
    ("max_message_mb", "--max-message-mb", float, "largest request/response message in MiB"),
    ("max_job_seconds", "--max-job-seconds", float, "a job running longer is stopped (DEADLINE_EXCEEDED)"),
    ("grace_seconds", "--grace-seconds", float, "on SIGTERM, how long running jobs may take to finish"),
    (
        "max_connection_age_seconds",
        "--max-connection-age-seconds",
        float,
        "close client connections after this age so load balancers rebalance (0 = never)",
    ),
    ("auth_token_file", "--auth-token-file", _optional_path, "file with the bearer token clients must send"),
    ("tls_cert", "--tls-cert", _optional_path, "PEM server certificate (turns TLS on)"),
    ("tls_key", "--tls-key", _optional_path, "PEM private key of --tls-cert"),
    ("tls_client_ca", "--tls-client-ca", _optional_path, "PEM CA bundle; clients must present a cert it signed (mTLS)"),
    ("log_format", "--log-format", str, "json (one object per line) or text"),
    ("log_level", "--log-level", str, "DEBUG, INFO, WARNING or ERROR"),
    ("warmup_sizes", "--warmup-sizes", parse_sizes, 'sizes compiled before serving, e.g. "256,512" ("" = none)'),
    (
        "xla",
        "--xla",
        parse_bool,
        "compile the optimization steps with XLA (true/false); `make bench` shows if it helps",
    ),
)


def env_var(field: str) -> str:
    return ENV_PREFIX + field.upper()


def build_parser(environ: dict[str, str] | None = None) -> argparse.ArgumentParser:
    """The command line; each flag's default comes from its env var when set."""
    environ = dict(os.environ if environ is None else environ)
    defaults = ServerConfig()
    parser = argparse.ArgumentParser(
        prog="stylize-server",
        description="Neural style transfer (Gatys et al.) over gRPC. Every flag can also be set "
        "with the environment variable STYLIZE_<FLAG> (e.g. STYLIZE_MAX_PIXELS); the flag wins.",
    )
    for field, flag, kind, help_text in _FLAGS:
        default = getattr(defaults, field)
        var = env_var(field)
        if var in environ:
            try:
                default = kind(environ[var])  # type: ignore[operator]
            except (ValueError, argparse.ArgumentTypeError) as exc:
                parser.error(f"{var}={environ[var]!r}: {exc}")
        shown = ",".join(map(str, default)) if isinstance(default, tuple) else default
        parser.add_argument(flag, dest=field, type=kind, default=default, help=f"{help_text} [{var}, {shown}]")
    return parser


def parse_config(argv: Sequence[str] | None = None, environ: dict[str, str] | None = None) -> ServerConfig:
    """Flags and env vars -> a validated ServerConfig (exits with usage on error)."""
    parser = build_parser(environ)
    args = parser.parse_args(argv)
    config = ServerConfig(**{field: getattr(args, field) for field, *_ in _FLAGS})
    try:
        return config.replace(log_level=config.log_level.upper()).validate()
    except ConfigError as exc:
        parser.error(str(exc))
        raise  # unreachable; parser.error exits
