"""The image's entry point (deploy/docker/entrypoint.sh) run for real, without
Docker, in front of the real `stylize-server`: authentication is on by default
with a generated token that only the server's user can read, and is off only
when a person says so (STYLIZE_ALLOW_NO_AUTH=1)."""

from __future__ import annotations

import os
import stat
import subprocess
from pathlib import Path

import grpc
import pytest

from stylize_api.v1 import stylize_pb2 as pb
from stylize_api.v1 import stylize_pb2_grpc as pb_grpc
from tests.support.process import server_command, server_process

REPO = Path(__file__).resolve().parents[1]
ENTRYPOINT = ["sh", str(REPO / "deploy" / "docker" / "entrypoint.sh")]


def _env(tmp_path: Path, **extra: str) -> dict[str, str]:
    """The entry point finds `stylize-server` on PATH, as in the image."""
    assert len(server_command()) == 1, "stylize-server is not installed in this environment"
    bin_dir = Path(server_command()[0]).parent  # the virtual environment's bin: stylize-server and python3
    return {
        "PATH": f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}",
        "STYLIZE_GENERATED_TOKEN_FILE": str(tmp_path / "generated" / "token"),
        "STYLIZE_WARMUP_SIZES": "",  # what is checked is authentication: no need to compile before serving
        **extra,
    }


def _info(address: str, token: str | None) -> grpc.StatusCode:
    metadata = [("authorization", f"Bearer {token}")] if token else []
    with grpc.insecure_channel(address) as channel:
        try:
            pb_grpc.StyleTransferStub(channel).GetServerInfo(pb.GetServerInfoRequest(), timeout=30, metadata=metadata)
        except grpc.RpcError as exc:
            return exc.code()
    return grpc.StatusCode.OK


@pytest.fixture(autouse=True)
def _no_token_from_the_caller(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("STYLIZE_AUTH_TOKEN_FILE", raising=False)
    monkeypatch.delenv("STYLIZE_ALLOW_NO_AUTH", raising=False)


def test_by_default_the_server_requires_a_generated_token(tmp_path: Path) -> None:
    env = _env(tmp_path)
    with server_process(env=env, command=ENTRYPOINT) as proc:
        token_file = Path(env["STYLIZE_GENERATED_TOKEN_FILE"])
        mode = stat.S_IMODE(token_file.stat().st_mode)
        assert mode == 0o600, oct(mode)  # the server's user only
        token = token_file.read_text().strip()
        assert len(token) == 64 and ":" not in token  # a bare token: the client "default", as a client reads it
        assert any("authentication is on with a generated token" in line for line in proc.lines)
        assert token not in "\n".join(proc.lines)  # its path is printed, never the token
        assert _info(proc.address, None) == grpc.StatusCode.UNAUTHENTICATED
        assert _info(proc.address, "wrong") == grpc.StatusCode.UNAUTHENTICATED
        assert _info(proc.address, token) == grpc.StatusCode.OK


def test_no_auth_only_when_a_person_says_so(tmp_path: Path) -> None:
    env = _env(tmp_path, STYLIZE_ALLOW_NO_AUTH="1")
    with server_process(env=env, command=ENTRYPOINT) as proc:
        assert _info(proc.address, None) == grpc.StatusCode.OK
        assert not Path(env["STYLIZE_GENERATED_TOKEN_FILE"]).exists()


def test_own_tokens_and_version_pass_through(tmp_path: Path) -> None:
    env = {**os.environ, **_env(tmp_path)}
    version = subprocess.run([*ENTRYPOINT, "--version"], env=env, capture_output=True, text=True, timeout=60)
    assert version.returncode == 0 and version.stdout.strip()
    assert not Path(env["STYLIZE_GENERATED_TOKEN_FILE"]).exists()
    tokens = tmp_path / "tokens"
    tokens.write_text("alice:token-a\n")
    with server_process(env=_env(tmp_path, STYLIZE_AUTH_TOKEN_FILE=str(tokens)), command=ENTRYPOINT) as proc:
        assert _info(proc.address, "token-a") == grpc.StatusCode.OK
        assert _info(proc.address, None) == grpc.StatusCode.UNAUTHENTICATED
        assert not Path(env["STYLIZE_GENERATED_TOKEN_FILE"]).exists()
