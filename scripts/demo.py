#!/usr/bin/env python3
"""`make demo`: from a fresh checkout to a stylized picture in one command.

Draws the sample pair (scripts/make_samples.py), starts `stylize-server` on a
free loopback port, waits until its gRPC health check says SERVING, stylizes
the pair with the `stylize` CLI (result, preview frames, time-lapse GIF, loss
plot), draws the run's picture (OUT/demo.png: content, style, three frames,
result; docs/demo.png is one), stops the server with SIGTERM and says where
everything is.

    python scripts/demo.py [--weights imagenet|PATH|random:SEED] [--size 384] [--iterations 300] [--out out]
    python scripts/demo.py --controls [--size 256] [--iterations 100]   # docs/controls.png (make demo CONTROLS=1)
    python scripts/demo.py --statistics [--size 256] [--iterations 100] # docs/statistics.png (STATISTICS=1)

With `--weights random:SEED` it runs offline, but the network then has random
filters and the result is not a painting: the demo says so loudly.

The demo server's time limit per job is raised (DEMO_MAX_JOB_SECONDS), so
that a slow machine gets a slow demo, never a partial one; its drain grace is
longer still, as the server asks of every configuration.
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

sys.path.insert(0, str(Path(__file__).resolve().parent))
from demo_controls import control_jobs, draw_controls, run_jobs
from demo_picture import draw_demo, mark_result, random_warning
from demo_statistics import RESULT_PREFIX, draw_statistics, statistics_jobs
from make_samples import write_control_samples, write_samples

BIN = Path(sys.executable).parent
SERVER_STOP_SECONDS = 60
DEMO_MAX_JOB_SECONDS = 3600
# Longer than the job limit (else the server warns that a SIGTERM may cut a job
# short); the demo only stops its server once the job has ended, so it costs nothing.
DEMO_GRACE_SECONDS = DEMO_MAX_JOB_SECONDS + 15
OFFLINE_HINT = (
    "no weights? Offline, run `make demo WEIGHTS=random:0` (the network then has random filters:"
    " everything works, but the result is not a painting)"
)


class DemoError(RuntimeError):
    """A step of the demo failed; the message says which and shows the evidence."""


@dataclass(frozen=True)
class Outputs:
    result: Path
    frames: Path
    timelapse: Path
    loss_plot: Path | None
    server_log: Path
    picture: Path


# The text log's "serving" line names the ports the server bound (--port 0).
SERVING_LINE = re.compile(r" serving port=(\d+) metrics_port=\d+")


def console_script(name: str, module: str) -> list[str]:
    """The venv's console script if installed, else the module's main()."""
    script = BIN / name
    if script.exists():
        return [str(script)]
    return [sys.executable, "-c", f"import sys; from {module} import main; sys.exit(main())"]


def say(message: str) -> None:
    print(f"[demo] {message}", flush=True)


def warn_random_weights(weights: str) -> None:
    line = "!" * 78
    print(
        f"\n{line}\n"
        f"!!  WEIGHTS={weights}: VGG-19 runs with RANDOM filters.\n"
        "!!  Everything works end to end, but the result is NOT an artistic painting.\n"
        "!!  For a real result: make demo WEIGHTS=imagenet (downloads ~80 MB once)\n"
        "!!  or WEIGHTS=/path/to/vgg19_weights_tf_dim_ordering_tf_kernels_notop.h5\n"
        f"{line}\n",
        file=sys.stderr,
        flush=True,
    )


def tail(path: Path, lines: int = 30) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no server log)"


def wait_until_serving(server: subprocess.Popen[bytes], log: Path, timeout: float) -> str:
    """The server's address once it is SERVING: the port it chose (its "serving"
    log line), then the standard gRPC health service. Fails fast if the server
    process exits (bad weights, ...)."""
    deadline = time.monotonic() + timeout

    def check_alive() -> None:
        if server.poll() is not None:
            raise DemoError(
                f"the server exited with code {server.returncode} before it was ready; its log ({log}):\n{tail(log)}"
            )
        if time.monotonic() > deadline:
            raise DemoError(f"the server was not SERVING after {timeout:.0f} s; its log ({log}):\n{tail(log)}")

    while (found := SERVING_LINE.search(log.read_text(errors="replace"))) is None:
        check_alive()
        time.sleep(0.2)
    address = f"127.0.0.1:{found.group(1)}"
    with grpc.insecure_channel(address) as channel:
        stub = health_pb2_grpc.HealthStub(channel)
        while True:
            try:
                reply = stub.Check(health_pb2.HealthCheckRequest(service=""), timeout=2)
                if reply.status == health_pb2.HealthCheckResponse.SERVING:
                    return address
            except grpc.RpcError:
                pass  # not listening yet
            check_alive()
            time.sleep(0.5)


def stop_server(server: subprocess.Popen[bytes]) -> int | None:
    """SIGTERM (graceful drain), then SIGKILL if it does not exit in time."""
    if server.poll() is not None:
        return server.returncode
    server.send_signal(signal.SIGTERM)
    try:
        return server.wait(timeout=SERVER_STOP_SECONDS)
    except subprocess.TimeoutExpired:
        say(f"the server did not stop within {SERVER_STOP_SECONDS} s of SIGTERM; killing it")
        server.kill()
        server.wait()
        return None


def start_server(weights: str, log: Path, env: dict[str, str]) -> subprocess.Popen[bytes]:
    """`stylize-server` on loopback ports that it chooses itself (no race for a
    port picked here and bound there), its output into `log`."""
    command = console_script("stylize-server", "stylize_server.app") + [
        "--host",
        "127.0.0.1",
        "--port",
        "0",
        "--metrics-port",
        "0",
        "--weights",
        weights,
        "--warmup-sizes",
        "",
        "--log-format",
        "text",
        "--max-job-seconds",
        str(DEMO_MAX_JOB_SECONDS),
        "--grace-seconds",
        str(DEMO_GRACE_SECONDS),
    ]
    say(f"starting the server (weights {weights}); log: {log}")
    with log.open("wb") as log_file:
        server = subprocess.Popen(
            command,
            stdout=log_file,
            stderr=subprocess.STDOUT,
            env=env,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
    return server


def picture_of_run(
    args: argparse.Namespace, content: Path, style: Path, outputs: Outputs, random_weights: bool
) -> None:
    """Mark result.png with the run's facts and draw the run's picture."""
    mark_result(
        outputs.result, size=args.size, iterations=args.iterations, weights=args.weights, random_weights=random_weights
    )
    frames = sorted(outputs.frames.glob("*.png"))
    draw_demo(
        content,
        style,
        frames,
        outputs.result,
        outputs.picture,
        size=args.size,
        iterations=args.iterations,
        weights=args.weights,
        random_weights=random_weights,
    )


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--weights", default="imagenet", help="imagenet, a path to the notop .h5 file, or random:SEED")
    parser.add_argument("--size", type=int, help="longest side of the result in pixels (default 384; controls: 256)")
    parser.add_argument("--iterations", type=int, help="optimization iterations (default 300; controls: 100 per job)")
    parser.add_argument(
        "--save-every", type=int, default=0, help="keep a preview frame every K iterations (default: about 30 frames)"
    )
    parser.add_argument("--out", type=Path, default=Path("out"), help="output directory (default out/)")
    parser.add_argument("--sample-size", type=int, default=512, help="width of the drawn sample images")
    parser.add_argument(
        "--ready-timeout",
        type=float,
        default=600,
        help="seconds to wait for the server to load the model (default 600)",
    )
    parser.add_argument("--no-loss-plot", action="store_true", help="skip the loss plot (needs matplotlib)")
    parser.add_argument(
        "--controls", action="store_true", help="draw the spatial and colour controls into --picture instead"
    )
    parser.add_argument(
        "--statistics", action="store_true", help="draw gram vs mean_cov, without and with EMA, into --picture"
    )
    parser.add_argument(
        "--picture",
        type=Path,
        help="where the run's picture goes (default OUT/demo.png; with --controls, docs/controls.png)",
    )
    args = parser.parse_args(argv)
    several = args.controls or args.statistics  # jobs side by side: smaller and shorter each
    args.size = args.size if args.size is not None else (256 if several else 384)
    args.iterations = args.iterations if args.iterations is not None else (100 if several else 300)
    if args.size < 16 or args.iterations < 1:
        parser.error("--size must be at least 16 and --iterations at least 1")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    save_every = args.save_every or max(1, args.iterations // 30)
    random_weights = args.weights.startswith("random")

    out: Path = args.out
    out.mkdir(parents=True, exist_ok=True)
    outputs = Outputs(
        result=out / "result.png",
        frames=out / "frames",
        timelapse=out / "timelapse.gif",
        loss_plot=None if args.no_loss_plot or importlib.util.find_spec("matplotlib") is None else out / "losses.png",
        server_log=out / "server.log",
        picture=args.picture
        or (Path("docs/controls.png") if args.controls else Path("docs/statistics.png") if args.statistics else None)
        or out / "demo.png",
    )
    # Frames of an earlier, longer run would otherwise end up mixed in.
    shutil.rmtree(outputs.frames, ignore_errors=True)

    if random_weights:
        warn_random_weights(args.weights)

    if args.controls:
        controls = write_control_samples(out / "samples", args.sample_size)
        say(f"samples: {controls.content.parent}/ (content, two styles, sky and land masks)")
    else:
        samples = write_samples(out / "samples", args.sample_size)
        say(f"samples: {samples.content} (content), {samples.style} (style)")

    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL=os.environ.get("TF_CPP_MIN_LOG_LEVEL", "2"))
    env.pop("STYLIZE_AUTH_TOKEN_FILE", None)  # the demo server is loopback-only and open
    started = time.monotonic()
    server = start_server(args.weights, outputs.server_log, env)
    cli_rc = 1
    failure: DemoError | None = None
    try:
        address = wait_until_serving(server, outputs.server_log, args.ready_timeout)
        say(f"server SERVING on {address} after {time.monotonic() - started:.1f} s")
        cli = console_script("stylize", "stylize.cli")
        if args.controls:
            results = run_jobs(cli, address, control_jobs(controls), out, args.size, args.iterations, say)
            draw_controls(controls, results, outputs.picture, args.weights, random_weights)
            cli_rc = 0
        elif args.statistics:
            jobs = statistics_jobs(samples.content, samples.style)
            results = run_jobs(cli, address, jobs, out, args.size, args.iterations, say, prefix=RESULT_PREFIX)
            draw_statistics(samples.content, samples.style, results, outputs.picture, args.weights, random_weights)
            cli_rc = 0
        else:
            cli_cmd = cli + [
                "run",
                str(samples.content),
                str(samples.style),
                "-o",
                str(outputs.result),
                "--server",
                address,
                "--size",
                str(args.size),
                "--iterations",
                str(args.iterations),
                "--save-every",
                str(save_every),
                "--frames-dir",
                str(outputs.frames),
                "--timelapse",
                str(outputs.timelapse),
            ]
            if outputs.loss_plot is not None:
                cli_cmd += ["--loss-plot", str(outputs.loss_plot)]
            say("$ " + shlex.join(cli_cmd))
            cli_rc = subprocess.call(cli_cmd, env=env)
            if cli_rc == 0:
                picture_of_run(args, samples.content, samples.style, outputs, random_weights)
    except DemoError as exc:
        failure = exc
    except RuntimeError as exc:  # a control job failed; its CLI said why
        print(f"[demo] {exc}; server log tail:\n{tail(outputs.server_log)}", file=sys.stderr)
        cli_rc = 1
    except KeyboardInterrupt:
        cli_rc = 130
    finally:
        if server.poll() is None:
            say("stopping the server (SIGTERM)")
            server_rc = stop_server(server)
            if server_rc not in (0, None):
                say(f"the server exited with code {server_rc} after SIGTERM; see {outputs.server_log}")

    if failure is not None:
        print(f"[demo] {failure}", file=sys.stderr)
        if not random_weights and server.returncode not in (None, 0):
            print(f"[demo] {OFFLINE_HINT}", file=sys.stderr)
        return 1
    if cli_rc == 130:
        say("interrupted: the job was cancelled and the server stopped")
        return cli_rc
    if cli_rc != 0:
        if not (args.controls or args.statistics):
            print(
                f"[demo] the stylize CLI failed (exit code {cli_rc}); server log tail:\n{tail(outputs.server_log)}",
                file=sys.stderr,
            )
        return cli_rc

    say("done. Outputs:")
    if args.controls or args.statistics:
        print(f"  picture     {outputs.picture}")
        print(f"  results     {out}/{'masked.png, color-*.png' if args.controls else 'statistics-*.png'}")
    else:
        frames = sorted(outputs.frames.glob("*.png"))
        note = f" ({random_warning(args.weights)})" if random_weights else ""
        print(f"  result      {outputs.result}, {args.size} px, {args.iterations} iterations{note}")
        print(f"  picture     {outputs.picture}")
        print(f"  frames      {outputs.frames}/ ({len(frames)} PNGs, one every {save_every} iterations)")
        print(f"  time-lapse  {outputs.timelapse}")
        if outputs.loss_plot is not None:
            print(f"  loss plot   {outputs.loss_plot}")
    print(f"  samples     {out / 'samples'}/")
    print(f"  server log  {outputs.server_log}")
    if random_weights:
        warn_random_weights(args.weights)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
