"""Server configuration: every flag also from its env var (the flag wins),
the limits' flags generated from `options.Limits` (one set of defaults),
defaults, byte sizes, the token file, and refusal of configurations that cannot
work."""

from __future__ import annotations

import dataclasses

import pytest

from stylize_server import config as config_module
from stylize_server.config import ServerConfig, parse_config
from stylize_server.flagtypes import parse_bytes
from stylize_server.job.options import Limits
from stylize_server.serving.auth import Authenticator, TokenFileError, load_tokens


def test_defaults_and_limits_are_the_options_module_s():
    config = parse_config([], environ={})
    assert config == ServerConfig()
    assert (config.port, config.metrics_port, config.weights, config.pooling) == (50051, 9090, "imagenet", "avg")
    assert config.grace_seconds > config.max_job_seconds  # the longest job ends within the grace
    assert config.limits == Limits()  # one set of defaults: 16 MP, 4096 px
    assert config.limits.max_pixels == 4096 * 4096 and config.limits.max_side == 4096
    assert (config.max_jobs_per_client, config.device_memory_budget, config.tile_size) == (4, 0, -1)
    assert (config.request_receive_seconds, config.detach_grace_seconds) == (10.0, 30.0)
    assert (config.result_retention_seconds, config.result_store_mb, config.max_concurrent_decodes) == (600.0, 256.0, 2)


def test_every_limit_has_a_flag_and_an_env_var():
    flags = {action.dest: action for action in config_module.build_parser({})._actions}
    for field in dataclasses.fields(Limits):
        assert field.name in flags, field.name
        assert f"STYLIZE_{field.name.upper()}" in flags[field.name].help
    assert config_module.env_vars() >= {"STYLIZE_MAX_REQUEST_PIXELS", "STYLIZE_MAX_PREVIEW_SIDE"}


def test_env_vars_set_every_flag_and_flags_win():
    env = {
        "STYLIZE_HOST": "127.0.0.1",
        "STYLIZE_PORT": "6000",
        "STYLIZE_METRICS_PORT": "6001",
        "STYLIZE_WEIGHTS": "random:3",
        "STYLIZE_POOLING": "max",
        "STYLIZE_MAX_CONCURRENT_JOBS": "3",
        "STYLIZE_QUEUE_SIZE": "7",
        "STYLIZE_MAX_JOBS_PER_CLIENT": "2",
        "STYLIZE_DEVICE_MEMORY_BUDGET": "12GiB",
        "STYLIZE_TILE_SIZE": "512",
        "STYLIZE_MAX_PIXELS": "250000",
        "STYLIZE_MAX_SIDE": "1000",
        "STYLIZE_MAX_ITERATIONS": "900",
        "STYLIZE_MAX_STYLES": "2",
        "STYLIZE_MAX_REQUEST_PIXELS": "1000000",
        "STYLIZE_MAX_MESSAGE_MB": "8.5",
        "STYLIZE_MAX_JOB_SECONDS": "100",
        "STYLIZE_GRACE_SECONDS": "110",
        "STYLIZE_MAX_OPEN_CALLS": "9",
        "STYLIZE_REQUEST_RECEIVE_SECONDS": "3",
        "STYLIZE_SEND_TIMEOUT_SECONDS": "4",
        "STYLIZE_DETACH_GRACE_SECONDS": "5",
        "STYLIZE_RESULT_RETENTION_SECONDS": "6",
        "STYLIZE_RESULT_STORE_MB": "7.5",
        "STYLIZE_MAX_CONNECTION_AGE_SECONDS": "600",
        "STYLIZE_LOG_FORMAT": "text",
        "STYLIZE_LOG_LEVEL": "debug",
        "STYLIZE_WARMUP_SIZES": "",
    }
    config = parse_config([], environ=env)
    assert config.host == "127.0.0.1" and config.port == 6000 and config.metrics_port == 6001
    assert config.weights == "random:3" and config.pooling == "max"
    assert (config.max_concurrent_jobs, config.queue_size, config.max_jobs_per_client) == (3, 7, 2)
    assert (config.device_memory_budget, config.tile_size) == (12 * 2**30, 512)
    limits = config.limits
    assert (limits.max_pixels, limits.max_side, limits.max_iterations, limits.max_styles) == (250000, 1000, 900, 2)
    assert limits.max_request_pixels == 1_000_000
    assert config.max_message_bytes == int(8.5 * 1024 * 1024)
    assert (config.max_job_seconds, config.grace_seconds, config.max_connection_age_seconds) == (100, 110, 600)
    assert (config.max_open_calls, config.request_receive_seconds, config.send_timeout_seconds) == (9, 3, 4)
    assert (config.detach_grace_seconds, config.result_retention_seconds) == (5, 6)
    assert config.result_store_bytes == int(7.5 * 2**20)
    assert (config.log_format, config.log_level, config.warmup_sizes) == ("text", "DEBUG", ())

    flagged = parse_config(["--port", "7000", "--warmup-sizes", "64,128", "--max-pixels", "4096"], environ=env)
    assert flagged.port == 7000 and flagged.warmup_sizes == (64, 128) and flagged.limits.max_pixels == 4096
    assert flagged.queue_size == 7 and flagged.limits.max_side == 1000  # still from the env


def test_replace_routes_limit_fields_into_the_limits():
    config = ServerConfig().replace(max_pixels=1000, port=0)
    assert config.limits.max_pixels == 1000 and config.limits.max_side == Limits().max_side and config.port == 0


def test_replace_checks_each_value_against_its_field_s_type():
    defaults = ServerConfig()
    # Every field's own type can be checked: its default passes (a new kind of field would not).
    assert defaults.replace(**{f.name: getattr(defaults, f.name) for f in dataclasses.fields(defaults)}) == defaults
    fine = defaults.replace(grace_seconds=3, tls_cert=None, warmup_sizes=(64,), limits=Limits(max_side=9), max_pixels=5)
    assert (fine.grace_seconds, fine.limits.max_side, fine.limits.max_pixels) == (3, 9, 5)  # an int is a float
    refused = [
        ({"port": "7000"}, "ServerConfig.port is int, not '7000'"),
        ({"port": True}, "ServerConfig.port is int, not True"),
        ({"warmup_sizes": [64]}, "ServerConfig.warmup_sizes is tuple[int, ...], not [64]"),
        ({"tls_cert": 1}, "ServerConfig.tls_cert is str | None, not 1"),
        ({"max_pixels": 1.5}, "Limits.max_pixels is int, not 1.5"),
        ({"limits": {}, "max_side": 9}, "ServerConfig.limits is Limits, not {}"),
        ({"no_such_flag": 1}, "ServerConfig has no field 'no_such_flag'"),
    ]
    for changes, message in refused:
        with pytest.raises(TypeError) as caught:
            defaults.replace(**changes)
        assert str(caught.value) == message


@pytest.mark.parametrize(
    ("text", "expected"),
    [("0", 0), ("4096", 4096), ("12GiB", 12 * 2**30), ("800MB", 800 * 10**6), ("1.5 GiB", int(1.5 * 2**30))],
)
def test_byte_sizes(text, expected):
    assert parse_bytes(text) == expected


@pytest.mark.parametrize(
    ("argv", "needle"),
    [
        (["--port", "70000"], "--port"),
        (["--pooling", "min"], "--pooling"),
        (["--max-concurrent-jobs", "0"], "--max-concurrent-jobs"),
        (["--max-jobs-per-client", "0"], "--max-jobs-per-client"),
        (["--tile-size", "100"], "--tile-size"),
        (["--device-memory-budget", "12 potatoes"], "--device-memory-budget"),
        (["--request-receive-seconds", "0"], "--request-receive-seconds"),
        (["--max-request-pixels", "0"], "--max-request-pixels"),
        (["--max-message-mb", "0.05"], "--max-message-mb: must be at least 0.0625 (64 KiB)"),
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


def test_version_flag(capsys):
    with pytest.raises(SystemExit) as caught:
        parse_config(["--version"], environ={}, version="1.2.3")
    assert caught.value.code == 0
    assert capsys.readouterr().out.strip() == "stylize-server 1.2.3"


def test_token_file_formats(tmp_path):
    bare = tmp_path / "bare"
    bare.write_text("s3cret\n")  # one bare token, as a Secret's `token` key holds it
    assert load_tokens(str(bare)) == {"default": "s3cret"}
    named = tmp_path / "named"
    named.write_text("# clients\nalice: tok-a\n\nbob:tok:b\n")  # a token may contain ':' after the name
    tokens = load_tokens(str(named))
    assert tokens == {"alice": "tok-a", "bob": "tok:b"}
    auth = Authenticator(tokens)
    assert auth.identify([("authorization", "Bearer tok-a")]) == "alice"
    assert auth.identify([("authorization", "Bearer tok:b")]) == "bob"
    assert auth.identify([("authorization", "Bearer tok-")]) is None
    assert auth.identify([("authorization", "tok-a")]) is None
    assert auth.identify([]) is None


@pytest.mark.parametrize(
    ("text", "needle"),
    [
        ("\n", "no token"),
        ("alice:\n", "line 1"),
        ("alice:x\nalice:y\n", "listed twice"),
        ("alice:x\nbob:x\n", "another client's"),
        ("al ice:x\nbob:y\n", "name must be"),
    ],
)
def test_bad_token_files_are_refused_without_showing_a_token(tmp_path, text, needle):
    path = tmp_path / "tokens"
    path.write_text(text)
    with pytest.raises(TokenFileError, match=needle) as caught:
        load_tokens(str(path))
    assert "--auth-token-file" in str(caught.value)
    assert ":x" not in str(caught.value) and ":y" not in str(caught.value)
