"""The `stylize` command line: `run` (one image or a batch), `info`, `health`.

Exit codes (also in `stylize --help`): see EXIT_CODES. Every failure prints
one line on stderr, `stylize: <what happened>`; with --json an `error` object
is printed on stdout as well. Ctrl-C cancels the running call(s), so the
server stops the job(s), and exits with 130.

Only the client's own dependencies are imported here (grpcio, protobuf,
Pillow, rich); matplotlib is loaded only for --loss-plot.
"""

from __future__ import annotations

import argparse
import glob
import json
import os
import sys
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import FIRST_COMPLETED, ThreadPoolExecutor, wait
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .artifacts import JobRecorder, MissingExtra, require_matplotlib
from .client import StyleTransferClient, StylizeStream, format_for_path
from .connection import DEFAULT_TARGET, RetryPolicy, TLSConfig, read_token_file
from .display import Display, JobSummary, JsonDisplay, PlainDisplay, RichDisplay
from .errors import (
    Cancelled,
    ConnectError,
    DeadlineExceeded,
    InvalidArgument,
    Overloaded,
    ServerError,
    StylizeError,
    Unauthenticated,
)
from .events import Result

EXIT_OK = 0
EXIT_FAILED = 1  # some jobs of a batch failed (for different reasons)
EXIT_USAGE = 2  # bad flags, unreadable local file, missing optional extra
EXIT_CONNECT = 3  # cannot connect, or the server is unavailable (after retries)
EXIT_UNAUTHENTICATED = 4  # missing or wrong token / client certificate
EXIT_INVALID_ARGUMENT = 5  # the server rejected an image or option (its message is shown)
EXIT_OVERLOADED = 6  # the server's queue stayed full through every retry
EXIT_DEADLINE = 7  # --timeout passed; the server stopped the job
EXIT_SERVER_ERROR = 8  # the server failed (INTERNAL, ...) or cancelled the job itself
EXIT_NOT_SERVING = 9  # `stylize health`: the server is up but not serving
EXIT_INTERRUPTED = 130  # Ctrl-C; the call was cancelled and the server stops the job

EXIT_CODES = {
    EXIT_OK: "success",
    EXIT_FAILED: "batch: at least one image failed (the summary says which)",
    EXIT_USAGE: "usage error: bad flag, unreadable local file, missing optional extra",
    EXIT_CONNECT: "cannot connect / server unavailable (after retries)",
    EXIT_UNAUTHENTICATED: "unauthenticated: missing or wrong token or client certificate",
    EXIT_INVALID_ARGUMENT: "invalid argument: the server's message names the field and the limit",
    EXIT_OVERLOADED: "server overloaded: queue full after every retry, or request too large",
    EXIT_DEADLINE: "deadline exceeded (--timeout)",
    EXIT_SERVER_ERROR: "server error (INTERNAL, ...)",
    EXIT_NOT_SERVING: "health: the server answers but is not SERVING",
    EXIT_INTERRUPTED: "cancelled by Ctrl-C (the server stops the job)",
}

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".webp", ".bmp", ".gif", ".tif", ".tiff"}
INIT_KEYWORDS = ("content", "noise", "style")


class UsageError(Exception):
    """A problem with the command line or a local file (exit code 2)."""


_EXIT_CODES: tuple[tuple[type[BaseException] | tuple[type[BaseException], ...], int], ...] = (
    (ConnectError, EXIT_CONNECT),
    (Unauthenticated, EXIT_UNAUTHENTICATED),
    (InvalidArgument, EXIT_INVALID_ARGUMENT),
    (Overloaded, EXIT_OVERLOADED),
    (DeadlineExceeded, EXIT_DEADLINE),
    (KeyboardInterrupt, EXIT_INTERRUPTED),
    ((UsageError, MissingExtra, OSError, ValueError, TypeError), EXIT_USAGE),
)


def exit_code_for(error: BaseException) -> int:
    for kinds, code in _EXIT_CODES:
        if isinstance(error, kinds):
            return code
    return EXIT_SERVER_ERROR  # ServerError, Cancelled by the server, anything else


def _one_line(text: str) -> str:
    return " ".join(str(text).split())


def _error(message: str) -> None:
    print(f"stylize: {_one_line(message)}", file=sys.stderr, flush=True)


# ------------------------------------------------------------------ parser


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def _float_list(text: str) -> list[float]:
    try:
        return [float(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated numbers like 0.7,0.3, got {text!r}") from None


def _connection_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(add_help=False)
    g = p.add_argument_group("connection")
    g.add_argument(
        "--server",
        default=os.environ.get("STYLIZE_SERVER", DEFAULT_TARGET),
        metavar="HOST:PORT",
        help="server address; dns:///NAME:PORT balances over every address (default: $STYLIZE_SERVER or %(default)s)",
    )
    g.add_argument(
        "--token-file",
        default=os.environ.get("STYLIZE_TOKEN_FILE"),
        metavar="PATH",
        help="file holding the bearer token (default: $STYLIZE_TOKEN_FILE)",
    )
    g.add_argument("--tls", action="store_true", help="use TLS with the system's root certificates")
    g.add_argument("--tls-ca", metavar="PEM", help="CA certificate that signed the server's (implies --tls)")
    g.add_argument("--tls-cert", metavar="PEM", help="client certificate for mutual TLS (implies --tls)")
    g.add_argument("--tls-key", metavar="PEM", help="client private key for mutual TLS")
    g.add_argument("--tls-server-name", metavar="NAME", help="name to check the server's certificate against")
    g.add_argument(
        "--timeout", type=float, metavar="SECONDS", help="deadline of the whole call, queue and retries included"
    )
    g.add_argument(
        "--retries",
        type=int,
        default=4,
        metavar="N",
        help="retries when the server is unavailable or its queue is full, before the job starts "
        "(default: %(default)s)",
    )
    g.add_argument(
        "--retry-backoff",
        type=float,
        default=0.5,
        metavar="SECONDS",
        help="first retry delay bound; doubles per retry, full jitter, capped at 10 s (default: %(default)s)",
    )
    return p


def _output_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(add_help=False)
    g = p.add_argument_group("display").add_mutually_exclusive_group()
    g.add_argument("--json", action="store_true", help="one JSON object per event per line on stdout")
    g.add_argument("-q", "--quiet", action="store_true", help="print nothing but errors")
    return p


def build_parser() -> argparse.ArgumentParser:
    codes = "\n".join(f"  {code:>3}  {text}" for code, text in EXIT_CODES.items())
    parser = argparse.ArgumentParser(
        prog="stylize",
        description="Neural style transfer (Gatys et al. 2015) on a stylize server.",
        epilog=(
            "examples:\n"
            "  stylize run photo.jpg starry.jpg -o out.png --size 512 --iterations 300\n"
            "  stylize run photo.jpg a.jpg b.jpg --style-weights 0.7,0.3 -o out.jpg\n"
            "  stylize run photo.jpg starry.jpg -o out.png --save-every 20 --frames-dir frames --timelapse out.gif\n"
            "  stylize run 'photos/*.jpg' starry.jpg -o outdir --parallel 4\n"
            "  stylize info --server stylize.example.com:443 --tls\n\n"
            f"exit codes:\n{codes}"
        ),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    conn, output = _connection_parser(), _output_parser()

    run = sub.add_parser(
        "run",
        parents=[conn, output],
        help="stylize an image (or a directory / glob of images)",
        description=(
            "Stylize CONTENT in the style of STYLE(s). CONTENT may be a directory or a quoted glob:"
            " then every image is stylized into OUTDIR, --parallel N at a time. Options left out take"
            " the server's defaults (see `stylize info`)."
        ),
    )
    run.set_defaults(func=cmd_run)
    run.add_argument("content", metavar="CONTENT", help="content image, or a directory / glob of them")
    run.add_argument("styles", metavar="STYLE", nargs="+", help="style image(s)")
    run.add_argument("-o", "--output", required=True, metavar="OUT", help="output file (a directory for a batch)")

    o = run.add_argument_group("style transfer options")
    o.add_argument("--size", type=int, help="longest side of the output in pixels")
    o.add_argument("--iterations", type=int, help="iterations over all scales")
    o.add_argument("--optimizer", choices=("lbfgs", "adam"))
    o.add_argument("--learning-rate", type=float, help="Adam step (0..255 scale) or L-BFGS step scale")
    o.add_argument("--content-weight", type=float)
    o.add_argument("--style-weight", type=float)
    o.add_argument("--tv-weight", type=float, help="total-variation (smoothness) weight")
    o.add_argument("--content-layers", metavar="LAYERS", help="e.g. relu4_2 or relu4_2:1,relu3_2:0.5")
    o.add_argument("--style-layers", metavar="LAYERS", help="e.g. relu1_1,relu2_1:0.5,relu3_1")
    o.add_argument("--style-weights", type=_float_list, metavar="W1,W2,...", help="blend weights of the styles")
    o.add_argument("--style-scale", type=float, help="style image size relative to the output (0.1..4)")
    o.add_argument("--pooling", choices=("avg", "max"))
    o.add_argument("--init", metavar="content|noise|style|PATH", help="starting image: a keyword or an image file")
    o.add_argument("--seed", type=int, help="seed of the noise init")
    o.add_argument("--preserve-colors", action="store_true", default=None, help="keep the content's colours")
    o.add_argument(
        "--multiscale",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="optimize coarse to fine (server default: on above 256 px)",
    )
    o.add_argument("--multiscale-min-size", type=int, metavar="PX", help="longest side of the coarsest scale")
    o.add_argument("--progress-interval", type=int, metavar="N", help="a progress event every N iterations")
    o.add_argument(
        "--format", choices=("png", "jpeg", "jpg", "webp"), help="output format (default: from OUT's extension)"
    )
    o.add_argument("--quality", type=int, help="JPEG/WebP quality 1..100")
    o.add_argument("--request-id", metavar="ID", help="echoed in the server's logs")

    a = run.add_argument_group("previews and plots")
    a.add_argument("--save-every", type=_positive_int, metavar="K", help="keep a preview every K iterations")
    a.add_argument("--frames-dir", metavar="DIR", help="write the previews there as frame_0001.png, ...")
    a.add_argument("--timelapse", metavar="GIF", help="animated GIF of the previews, ending on the result")
    a.add_argument("--preview-size", type=int, metavar="PX", help="longest side of previews (default: --size or 512)")
    a.add_argument("--loss-plot", metavar="PNG", help="loss curves, log scale (needs the `plot` extra: matplotlib)")

    b = run.add_argument_group("batch")
    b.add_argument("--parallel", type=_positive_int, default=1, metavar="N", help="streams at once (default: 1)")

    info = sub.add_parser("info", parents=[conn, output], help="the server's version, model, device, limits, queue")
    info.set_defaults(func=cmd_info)

    health = sub.add_parser("health", parents=[conn, output], help="the server's gRPC health status")
    health.add_argument("--service", default="", help='service to check ("" = the whole server)')
    health.set_defaults(func=cmd_health)
    return parser


# ------------------------------------------------------------------ helpers


def make_client(args: argparse.Namespace) -> StyleTransferClient:
    token = None
    if args.token_file:
        try:
            token = read_token_file(args.token_file)
        except OSError as exc:
            raise UsageError(f"--token-file: cannot read {args.token_file}: {exc.strerror or exc}") from None
        except ValueError as exc:
            raise UsageError(f"--token-file: {exc}") from None
    tls = None
    if args.tls or args.tls_ca or args.tls_cert or args.tls_key:
        if bool(args.tls_cert) != bool(args.tls_key):
            raise UsageError("--tls-cert and --tls-key go together (mutual TLS needs both)")
        for flag, path in (("--tls-ca", args.tls_ca), ("--tls-cert", args.tls_cert), ("--tls-key", args.tls_key)):
            if path and not os.path.isfile(path):
                raise UsageError(f"{flag}: no such file: {path}")
        tls = TLSConfig(ca=args.tls_ca, cert=args.tls_cert, key=args.tls_key, server_name=args.tls_server_name)
    if args.retries < 0:
        raise UsageError("--retries must be >= 0")
    retry = RetryPolicy(max_attempts=args.retries + 1, initial_backoff=max(0.0, args.retry_backoff))
    return StyleTransferClient(args.server, token=token, tls=tls, timeout=args.timeout, retry=retry)


@dataclass
class JobSpec:
    """One image to stylize and where its outputs go."""

    name: str
    content: Path
    output: Path
    recorder: JobRecorder
    request_id: str | None


def _is_glob(text: str) -> bool:
    return any(ch in text for ch in "*?[")


def _batch_inputs(content: str) -> list[Path] | None:
    """The images of a batch, or None when CONTENT is a single file."""
    path = Path(content)
    if path.is_dir():
        files = sorted(p for p in path.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
        if not files:
            raise UsageError(f"CONTENT: no images ({', '.join(sorted(IMAGE_SUFFIXES))}) in directory {content}")
        return files
    if not path.exists() and _is_glob(content):
        files = sorted(Path(p) for p in glob.glob(content) if Path(p).is_file())
        if not files:
            raise UsageError(f"CONTENT: no files match {content}")
        return files
    return None


def _request_options(args: argparse.Namespace, wants_previews: bool) -> dict[str, Any]:
    if args.style_weights is not None and len(args.style_weights) != len(args.styles):
        raise UsageError(
            f"--style-weights: {len(args.style_weights)} weights given for {len(args.styles)} style images"
        )
    init: Any = None
    if args.init is not None:
        if args.init.lower() in INIT_KEYWORDS:
            init = args.init.lower()
        elif os.path.isfile(args.init):
            init = Path(args.init)
        else:
            raise UsageError(f"--init: expected content, noise, style or an image file; no such file: {args.init}")
    for style in args.styles:
        if not os.path.isfile(style):
            raise UsageError(f"STYLE: no such file: {style}")
    progress_interval = args.progress_interval
    if progress_interval is None and args.save_every:
        progress_interval = args.save_every
    preview = args.preview_size
    if preview is None and wants_previews:
        preview = args.size or 512
    return {
        "size": args.size,
        "iterations": args.iterations,
        "optimizer": args.optimizer,
        "learning_rate": args.learning_rate,
        "content_weight": args.content_weight,
        "style_weight": args.style_weight,
        "tv_weight": args.tv_weight,
        "content_layers": args.content_layers,
        "style_layers": args.style_layers,
        "style_weights": args.style_weights,
        "style_scale": args.style_scale,
        "pooling": args.pooling,
        "init": init,
        "seed": args.seed,
        "preserve_colors": args.preserve_colors,
        "multiscale": args.multiscale,
        "multiscale_min_size": args.multiscale_min_size,
        "progress_interval": progress_interval,
        "preview_max_side": preview,
        "quality": args.quality,
    }


def _display(args: argparse.Namespace, batch: bool) -> Display:
    if args.quiet:
        return Display()
    if args.json:
        return JsonDisplay()
    if sys.stdout.isatty():
        return RichDisplay()
    return PlainDisplay(prefix_names=batch)


class StreamRegistry:
    """The running streams, so that Ctrl-C can cancel every one of them."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._streams: set[StylizeStream] = set()
        self.stopping = threading.Event()

    def add(self, stream: StylizeStream) -> None:
        with self._lock:
            self._streams.add(stream)
        if self.stopping.is_set():
            stream.cancel()

    def remove(self, stream: StylizeStream) -> None:
        with self._lock:
            self._streams.discard(stream)

    def cancel_all(self) -> None:
        self.stopping.set()
        with self._lock:
            streams = list(self._streams)
        for stream in streams:
            stream.cancel()


def run_job(
    client: StyleTransferClient,
    spec: JobSpec,
    styles: Sequence[str],
    options: dict[str, Any],
    display: Display,
    registry: StreamRegistry,
) -> Result:
    """Stylize one image to the end, writing its outputs; raises on failure."""
    if registry.stopping.is_set():
        raise KeyboardInterrupt
    started = time.monotonic()
    stream = client.stylize(spec.content, list(styles), request_id=spec.request_id, **options)
    registry.add(stream)
    result: Result | None = None
    try:
        for event in stream:
            frame = spec.recorder.on_event(event)
            if isinstance(event, Result):
                result = event
            else:
                display.event(spec.name, event, {"frame": frame} if frame else None)
    finally:
        registry.remove(stream)
        stream.close()
    if result is None:  # pragma: no cover - the stream raises instead
        raise ServerError("server error: the stream ended without a result")
    spec.output.parent.mkdir(parents=True, exist_ok=True)
    result.save(spec.output)
    spec.recorder.finish(result)
    info: dict[str, Any] = {
        "output": str(spec.output),
        "wall_seconds": round(time.monotonic() - started, 3),
        "attempts": stream.attempts,
    }
    if spec.recorder.frames_dir is not None:
        info["frames_dir"] = str(spec.recorder.frames_dir)
        info["frames"] = [str(p) for p in spec.recorder.frames]
    if spec.recorder.timelapse is not None:
        info["timelapse"] = str(spec.recorder.timelapse)
        info["timelapse_frames"] = spec.recorder.timelapse_frames
    if spec.recorder.loss_plot is not None:
        info["loss_plot"] = str(spec.recorder.loss_plot)
    display.done(spec.name, result, info)
    return result


def _failure(display: Display, name: str, error: BaseException) -> tuple[int, str, str]:
    """Report a failed job; returns (exit code, code name, message)."""
    code = exit_code_for(error)
    if isinstance(error, StylizeError):
        code_name, message = error.code_name, str(error)
    elif isinstance(error, KeyboardInterrupt):
        code_name, message = "CANCELLED", "cancelled by Ctrl-C; the server stops the job"
    else:
        code_name, message = "LOCAL", str(error)
    display.failed(name, code_name, code, _one_line(message))
    return code, code_name, _one_line(message)


# ------------------------------------------------------------------ commands


def cmd_run(args: argparse.Namespace) -> int:
    if args.loss_plot:
        require_matplotlib()
    if args.save_every and not (args.frames_dir or args.timelapse):
        raise UsageError("--save-every needs --frames-dir DIR and/or --timelapse GIF")
    inputs = _batch_inputs(args.content)
    batch = inputs is not None
    if batch and (args.timelapse or args.loss_plot):
        raise UsageError("--timelapse and --loss-plot are for one image, not a batch")
    if not batch and not os.path.isfile(args.content):
        raise UsageError(f"CONTENT: no such file: {args.content}")
    wants_previews = bool(args.frames_dir or args.timelapse)
    options = _request_options(args, wants_previews)
    fmt = args.format

    specs: list[JobSpec] = []
    if not batch:
        out = Path(args.output)
        if out.is_dir():
            out = out / (Path(args.content).stem + "." + ("jpg" if fmt in ("jpeg", "jpg") else fmt or "png"))
        if fmt is None:
            fmt = format_for_path(out)
        elif format_for_path(out) != ("jpeg" if fmt == "jpg" else fmt):
            print(f"stylize: warning: writing {fmt} data to {out}", file=sys.stderr)
        recorder = JobRecorder(
            frames_dir=Path(args.frames_dir) if args.frames_dir else None,
            save_every=args.save_every,
            timelapse=Path(args.timelapse) if args.timelapse else None,
            loss_plot=Path(args.loss_plot) if args.loss_plot else None,
        )
        specs.append(JobSpec(args.content, Path(args.content), out, recorder, args.request_id))
    else:
        assert inputs is not None
        fmt = fmt or "png"
        ext = {"jpeg": "jpg", "jpg": "jpg"}.get(fmt, fmt)
        outdir = Path(args.output)
        if outdir.exists() and not outdir.is_dir():
            raise UsageError(f"-o: {outdir} is a file; a batch needs an output directory")
        stems = [p.stem for p in inputs]
        for i, path in enumerate(inputs):
            # Two inputs may share a stem (a.png, a.jpg); keep their outputs apart.
            stem = path.stem if stems.count(path.stem) == 1 else path.name.replace(".", "_")
            frames = Path(args.frames_dir) / stem if args.frames_dir else None
            request_id = f"{args.request_id}-{i + 1}" if args.request_id else None
            specs.append(
                JobSpec(
                    str(path),
                    path,
                    outdir / f"{stem}.{ext}",
                    JobRecorder(frames_dir=frames, save_every=args.save_every),
                    request_id,
                )
            )
    options["output_format"] = fmt

    client = make_client(args)
    registry = StreamRegistry()
    try:
        with _display(args, batch) as display:
            if not batch:
                return _run_single(client, specs[0], args.styles, options, display, registry)
            return _run_batch(client, specs, args.styles, options, display, registry, args.parallel)
    finally:
        client.close()


def _run_single(
    client: StyleTransferClient,
    spec: JobSpec,
    styles: Sequence[str],
    options: dict[str, Any],
    display: Display,
    registry: StreamRegistry,
) -> int:
    try:
        run_job(client, spec, styles, options, display, registry)
    except (StylizeError, OSError, ValueError, TypeError, KeyboardInterrupt) as exc:
        code, _, message = _failure(display, spec.name, exc)
        display.close()
        _error(message)
        return code
    return EXIT_OK


def _run_batch(
    client: StyleTransferClient,
    specs: list[JobSpec],
    styles: Sequence[str],
    options: dict[str, Any],
    display: Display,
    registry: StreamRegistry,
    parallel: int,
) -> int:
    summaries: dict[str, JobSummary] = {}

    def job(spec: JobSpec) -> JobSummary:
        started = time.monotonic()
        try:
            result = run_job(client, spec, styles, options, display, registry)
        except (StylizeError, OSError, ValueError, TypeError, KeyboardInterrupt) as exc:
            if isinstance(exc, Cancelled) and registry.stopping.is_set():
                exc = KeyboardInterrupt()
            code, _code_name, message = _failure(display, spec.name, exc)
            return JobSummary(spec.name, False, seconds=time.monotonic() - started, error=message, exit_code=code)
        return JobSummary(
            spec.name, True, str(spec.output), time.monotonic() - started, result.iterations, exit_code=EXIT_OK
        )

    interrupted = False
    pool = ThreadPoolExecutor(max_workers=parallel, thread_name_prefix="stylize-batch")
    futures = {pool.submit(job, spec): spec for spec in specs}
    try:
        pending = set(futures)
        while pending:
            # A timeout, so that Ctrl-C reaches this (main) thread promptly.
            _, pending = wait(pending, timeout=0.2, return_when=FIRST_COMPLETED)
    except KeyboardInterrupt:
        interrupted = True
        registry.cancel_all()
        for future in futures:
            future.cancel()
    pool.shutdown(wait=True)
    for future, spec in futures.items():
        if future.cancelled():
            summaries[spec.name] = JobSummary(
                spec.name, False, error="not started (Ctrl-C)", exit_code=EXIT_INTERRUPTED
            )
        else:
            summaries[spec.name] = future.result()
    jobs = [summaries[spec.name] for spec in specs]
    display.summary(jobs)
    if interrupted:
        display.close()
        _error("cancelled by Ctrl-C; the server stops the running jobs")
        return EXIT_INTERRUPTED
    failed = [j for j in jobs if not j.ok]
    if not failed:
        return EXIT_OK
    display.close()
    _error(f"{len(failed)} of {len(jobs)} images failed: {', '.join(j.name for j in failed)}")
    codes = {j.exit_code for j in failed}
    # Every image failed for the same reason (e.g. no server): say which.
    if len(failed) == len(jobs) and len(codes) == 1:
        return codes.pop()
    return EXIT_FAILED


def _enum_name(enum_type: Any, value: int, prefix: str) -> str:
    try:
        return enum_type.Name(value).removeprefix(prefix).lower()
    except ValueError:
        return str(value)


def cmd_info(args: argparse.Namespace) -> int:
    from google.protobuf import json_format

    from stylize.v1 import stylize_pb2

    with make_client(args) as client:
        try:
            info = client.server_info()
        except StylizeError as exc:
            _error(str(exc))
            return exit_code_for(exc)
    warning = None
    if info.model.random_weights:
        warning = (
            f"WARNING: the server at {args.server} runs RANDOM weights ({info.model.weights_source}):"
            " its results will not look like paintings. Start it with --weights imagenet or a VGG-19 weights file."
        )
    if args.json:
        obj = json_format.MessageToDict(
            info, preserving_proto_field_name=True, always_print_fields_with_no_presence=True
        )
        obj["server"] = args.server
        obj["warning"] = warning
        print(json.dumps(obj))
    elif not args.quiet:
        m, d, lim, q, df = info.model, info.device, info.limits, info.queue, info.defaults
        pooling = _enum_name(stylize_pb2.Pooling, m.default_pooling, "POOLING_")
        mem = f", {d.memory_bytes / 2**30:.2f} GiB in use" if d.memory_bytes else ""
        rows = [
            ("server", f"{args.server} (stylize {info.version})"),
            ("model", f"{m.name}, weights {m.weights_source}, pooling {pooling}, loaded in {m.load_seconds:.1f} s"),
            ("device", f"{d.kind} {d.name}{mem}"),
            (
                "limits",
                f"size <= {lim.max_side} px, <= {lim.max_pixels} output pixels, <= {lim.max_iterations} iterations,"
                f" <= {lim.max_styles} styles, message <= {lim.max_message_bytes / 2**20:.0f} MiB,"
                f" input <= {lim.max_input_pixels} pixels",
            ),
            (
                "queue",
                f"{q.running} running of {q.max_concurrent_jobs} slots, {q.depth} queued of {q.capacity}",
            ),
            (
                "defaults",
                f"size {df.size}, iterations {df.iterations},"
                f" optimizer {_enum_name(stylize_pb2.Optimizer, df.optimizer, 'OPTIMIZER_')},"
                f" content/style/tv weight {df.content_weight:g}/{df.style_weight:g}/{df.tv_weight:g},"
                f" init {_enum_name(stylize_pb2.Init, df.init, 'INIT_')},"
                f" progress every {df.progress_interval}",
            ),
        ]
        for key, value in rows:
            print(f"{key:<9} {value}")
    if warning:
        # Loud on purpose: random weights are a deployment mistake, not a choice.
        print(f"\n{'!' * 78}\nstylize: {warning}\n{'!' * 78}", file=sys.stderr, flush=True)
    return EXIT_OK


def cmd_health(args: argparse.Namespace) -> int:
    with make_client(args) as client:
        try:
            status = client.health(args.service)
        except StylizeError as exc:
            _error(str(exc))
            return exit_code_for(exc)
    if args.json:
        print(json.dumps({"server": args.server, "service": args.service, "status": status}))
    elif not args.quiet:
        print(status)
    return EXIT_OK if status == "SERVING" else EXIT_NOT_SERVING


# ------------------------------------------------------------------ entry


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    func: Callable[[argparse.Namespace], int] | None = getattr(args, "func", None)
    if func is None:
        parser.print_help(sys.stderr)
        return EXIT_USAGE
    try:
        return func(args)
    except (UsageError, MissingExtra) as exc:
        _error(str(exc))
        return EXIT_USAGE
    except KeyboardInterrupt:
        _error("cancelled by Ctrl-C")
        return EXIT_INTERRUPTED
    except StylizeError as exc:
        _error(str(exc))
        return exit_code_for(exc)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
