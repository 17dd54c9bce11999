"""Issue 18's options over the real thing: `stylize run --style-loss mean_cov
--iterate-average ema --ema-decay D` against an in-process server on
127.0.0.1 (random weights, 32 px), and their bad values refused as
INVALID_ARGUMENT naming the field, the server serving on."""

from __future__ import annotations

import pathlib
from collections.abc import Iterator

import grpc
import pytest

from stylize.cli import EXIT_OK
from stylize_api.v1 import stylize_pb2 as pb
from tests.support.cli import json_lines, run_cli
from tests.support.images import png_bytes
from tests.support.server import ServerHandle, running_server, small_request


@pytest.fixture(scope="module")
def server() -> Iterator[ServerHandle]:
    with running_server() as srv:
        yield srv


def test_a_mean_cov_job_with_the_iterate_average_runs_through_the_cli(server: ServerHandle, tmp_path: pathlib.Path):
    content, style, out = tmp_path / "c.png", tmp_path / "s.png", tmp_path / "out.png"
    content.write_bytes(png_bytes(40, 32, seed=1))
    style.write_bytes(png_bytes(32, 32, seed=2))
    proc = run_cli(
        "run", str(content), str(style), "-o", str(out), "--server", server.address, "--json",
        "--size", "32", "--iterations", "4", "--multiscale-min-size", "32",
        "--style-loss", "mean_cov", "--iterate-average", "ema", "--ema-decay", "0.5", "--progress-interval", "1",
    )  # fmt: skip
    assert proc.returncode == EXIT_OK, proc.stderr
    events = json_lines(proc.stdout)
    started = next(e for e in events if e.get("event") == "started")
    assert started["options"]["style_loss"] == "STYLE_LOSS_MEAN_COV"
    assert started["options"]["iterate_average"] == "ITERATE_AVERAGE_EMA"
    assert started["options"]["ema_decay"] == pytest.approx(0.5)
    result = next(e for e in events if e.get("event") == "result")
    assert set(result["losses"]) == {"content", "style_w2", "tv", "total"} and out.stat().st_size > 0
    # The result's losses are the returned average's: its W2 is below the starting image's.
    first = next(e for e in events if e.get("event") == "progress")
    assert 0 < result["losses"]["style_w2"] < 0.9 * first["losses"]["style_w2"]


@pytest.mark.parametrize(
    ("fields", "name"),
    [({"style_loss": 7}, "style_loss"), ({"ema_decay": 1.0}, "ema_decay"), ({"ema_decay": -0.1}, "ema_decay")],
    ids=["unknown-style-loss", "ema-decay-1", "ema-decay-negative"],
)
def test_bad_values_are_invalid_argument_naming_the_field(server: ServerHandle, fields: dict, name: str) -> None:
    stub = server.stub()
    with pytest.raises(grpc.RpcError) as caught:
        list(stub.Stylize(small_request(**fields), timeout=30))
    assert caught.value.code() is grpc.StatusCode.INVALID_ARGUMENT
    assert name in (caught.value.details() or "")
    done = list(stub.Stylize(small_request(style_loss=pb.STYLE_LOSS_GRAM), timeout=60))
    assert done[-1].HasField("result")
