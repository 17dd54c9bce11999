"""Server configuration: every flag also from its env var (the flag wins),
defaults, and refusal of configurations that cannot work."""

from __future__ import annotations

import pytest

from stylize_server.config import ServerConfig, parse_config


def test_defaults():
    config = parse_config([], environ={})
    assert config == ServerConfig()
    assert (config.port, config.metrics_port, config.weights, config.pooling) == (50051, 9090, "imagenet", "avg")
    assert config.grace_seconds > config.max_job_seconds  # the longest job ends within the grace
    assert config.limits.max_pixels == 1024 * 1024


def test_env_vars_set_every_flag_and_flags_win():
    env = {
        "STYLIZE_HOST": "127.0.0.1",
        "STYLIZE_PORT": "6000",
        "STYLIZE_METRICS_PORT": "6001",
        "STYLIZE_WEIGHTS": "random:3",
        "STYLIZE_POOLING": "max",
        "STYLIZE_MAX_CONCURRENT_JOBS": "3",
        "STYLIZE_QUEUE_SIZE": "7",
        "STYLIZE_MAX_PIXELS": "250000",
        "STYLIZE_MAX_SIDE": "1000",
        "STYLIZE_MAX_ITERATIONS": "900",
        "STYLIZE_MAX_STYLES": "2",
        "STYLIZE_MAX_MESSAGE_MB": "8.5",
        "STYLIZE_MAX_JOB_SECONDS": "100",
        "STYLIZE_GRACE_SECONDS": "110",
        "STYLIZE_MAX_CONNECTION_AGE_SECONDS": "600",
        "STYLIZE_LOG_FORMAT": "text",
        "STYLIZE_LOG_LEVEL": "debug",
        "STYLIZE_WARMUP_SIZES": "",
    }
    config = parse_config([], environ=env)
    assert config.host == "127.0.0.1" and config.port == 6000 and config.metrics_port == 6001
    assert config.weights == "random:3" and config.pooling == "max"
    assert (config.max_concurrent_jobs, config.queue_size) == (3, 7)
    assert (config.max_pixels, config.max_side, config.max_iterations, config.max_styles) == (250000, 1000, 900, 2)
    assert config.max_message_bytes == int(8.5 * 1024 * 1024)
    assert (config.max_job_seconds, config.grace_seconds, config.max_connection_age_seconds) == (100, 110, 600)
    assert (config.log_format, config.log_level, config.warmup_sizes) == ("text", "DEBUG", ())

    flagged = parse_config(["--port", "7000", "--warmup-sizes", "64,128"], environ=env)
    assert flagged.port == 7000 and flagged.warmup_sizes == (64, 128)
    assert flagged.queue_size == 7  # still from the env


@pytest.mark.parametrize(
    ("argv", "needle"),
    [
        (["--port", "70000"], "--port"),
        (["--pooling", "min"], "--pooling"),
        (["--max-concurrent-jobs", "0"], "--max-concurrent-jobs"),
        (["--tls-cert", "/nonexistent.pem"], "--tls-cert and --tls-key"),
        (["--tls-cert", "/nonexistent.pem", "--tls-key", "/nonexistent.key"], "no such file"),
        (["--tls-client-ca", "/nonexistent.pem"], "--tls-client-ca"),
        (["--log-format", "xml"], "--log-format"),
        (["--warmup-sizes", "8"], "--warmup-sizes"),
        (["--warmup-sizes", "a,b"], "--warmup-sizes"),
        (["--auth-token-file", "/nonexistent-token"], "--auth-token-file"),
    ],
)
def test_bad_configurations_are_refused(argv, needle, capsys):
    with pytest.raises(SystemExit) as caught:
        parse_config(argv, environ={})
    assert caught.value.code == 2
    assert needle in capsys.readouterr().err


def test_bad_env_value_names_the_variable(capsys):
    with pytest.raises(SystemExit):
        parse_config([], environ={"STYLIZE_PORT": "http"})
    assert "STYLIZE_PORT" in capsys.readouterr().err


def test_empty_token_file_is_refused(tmp_path):
    path = tmp_path / "token"
    path.write_text("\n")
    with pytest.raises(ValueError, match="--auth-token-file"):
        ServerConfig(auth_token_file=str(path)).read_auth_token()
