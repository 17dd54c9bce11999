"""`stylize run`: one image, or a directory / glob of them (a batch).

    stylize run CONTENT STYLE[@MASK]... -o OUT [options]

Every local path is checked before a job is sent: inputs are images, outputs
can be written. A partial result (the server stopped the job early) is
saved, reported as such, and ends with its own exit code.
"""

from __future__ import annotations

import argparse
import signal
import sys
import threading
import time
from concurrent.futures import FIRST_COMPLETED, ThreadPoolExecutor, wait
from pathlib import Path
from types import FrameType, TracebackType
from typing import Any

from ..errors import Cancelled, StylizeError
from ..images import ImageError, check_image_file
from ..request import Style, format_for_path, output_format_for
from .artifacts import JobRecorder, require_matplotlib
from .common import code_name, connection_parser, describe, display_parser, make_client, say_error
from .display import Display, JobSummary, JsonDisplay, PlainDisplay, RichDisplay, partial_note
from .exits import EXIT_FAILED, EXIT_INTERRUPTED, EXIT_OK, EXIT_PARTIAL, UsageError, exit_code_for
from .flags import StyleSpec, add_mask_redirects, add_option_flags, image_options, option_values
from .jobs import JobSpec, Notices, RunContext, StreamRegistry, run_job
from .paths import (
    batch_inputs,
    batch_output_dir,
    check_output_dir,
    check_output_file,
    refuse_overwriting_inputs,
    single_output,
)

# What a job can fail with, as opposed to a bug.
JOB_ERRORS = (StylizeError, ImageError, OSError, ValueError, TypeError, KeyboardInterrupt)


class _CtrlC:
    """Ctrl-C during a batch sets a flag instead of raising.

    A KeyboardInterrupt raised inside `concurrent.futures.wait` can leave a
    future's lock held (it takes them one by one), and then every worker
    blocks when it finishes and the batch never ends. The flag is read by the
    main loop between waits. A second Ctrl-C raises as usual, for a user who
    will not wait for the cancels.
    """

    def __init__(self) -> None:
        self.pressed = False
        self._previous: Any = None

    def _on_sigint(self, signum: int, frame: FrameType | None) -> None:
        self.pressed = True
        signal.signal(signal.SIGINT, signal.default_int_handler)

    def __enter__(self) -> _CtrlC:
        # Only the main thread may set a handler; elsewhere Ctrl-C never arrives anyway.
        if threading.current_thread() is threading.main_thread():
            self._previous = signal.signal(signal.SIGINT, self._on_sigint)
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        if self._previous is not None:
            signal.signal(signal.SIGINT, self._previous)


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


def add_job_parser(
    sub: Any, name: str, *, summary: str, description: str, source: str, source_help: str, output: str, output_help: str
) -> argparse.ArgumentParser:
    """The parser of a command that stylizes (`run`, `video`): the connection
    and display flags, SOURCE (its dest is the lower-case name), STYLE[@MASK]...,
    -o OUTPUT, --style-weights and every option flag of the schema, which is
    what `_styles` and `_options` read. The command adds its own after these."""
    p: argparse.ArgumentParser = sub.add_parser(
        name, parents=[connection_parser(), display_parser()], help=summary, description=description
    )
    p.add_argument(source.lower(), metavar=source, help=source_help)
    p.add_argument("styles", metavar="STYLE[@MASK]", nargs="+", help="style image(s), each with an optional mask")
    p.add_argument("-o", "--output", required=True, metavar=output, help=output_help)
    p.add_argument("--style-weights", type=_float_list, metavar="W1,W2,...", help="blend weights of the styles")
    add_option_flags(p)
    add_mask_redirects(p)
    return p


def register(sub: Any) -> None:
    run = add_job_parser(
        sub,
        "run",
        summary="stylize an image (or a directory / glob of images)",
        description=(
            "Stylize CONTENT in the style of STYLE(s). A style may carry a mask: STYLE@MASK (a grayscale"
            " image, white where that style applies). CONTENT may be a directory or a quoted glob: then"
            " every image is stylized into the directory OUT, --parallel N at a time. Options left out take"
            " the server's defaults (see `stylize info`)."
        ),
        source="CONTENT",
        source_help="content image, or a directory / glob of them",
        output="OUT",
        output_help="output file (a directory for a batch)",
    )
    run.set_defaults(func=cmd_run)

    a = run.add_argument_group("previews and plots")
    a.add_argument("--save-every", type=_positive_int, metavar="K", help="keep a preview every K iterations")
    a.add_argument("--frames-dir", metavar="DIR", help="write the previews there as frame_<iteration>.png")
    a.add_argument("--timelapse", metavar="GIF", help="animated GIF of the previews, ending on the result")
    a.add_argument(
        "--loss-plot", metavar="PNG", help="loss curves, log scale (needs the `plot` extra: stylize-grpc[plot])"
    )

    b = run.add_argument_group("batch")
    b.add_argument("--parallel", type=_positive_int, default=1, metavar="N", help="streams at once (default: 1)")


def _styles(args: argparse.Namespace) -> list[Style]:
    specs = [StyleSpec(text) for text in args.styles]
    if args.style_weights is not None and len(args.style_weights) != len(specs):
        raise UsageError(f"--style-weights: {len(args.style_weights)} weights given for {len(specs)} style images")
    for spec in specs:
        check_image_file(spec.image, "STYLE")
        if spec.mask is not None:
            check_image_file(spec.mask, f"mask of STYLE {spec.image}")
    weights = args.style_weights or [None] * len(specs)
    return [Style(spec.image, weight, spec.mask) for spec, weight in zip(specs, weights)]


def _options(args: argparse.Namespace) -> dict[str, Any]:
    options = option_values(args)
    for flag, path in image_options(options):
        check_image_file(path, flag)
    options.pop("request_id", None)  # per job: see JobSpec
    if "progress_interval" not in options and args.save_every:
        options["progress_interval"] = args.save_every
    if "preview_max_side" not in options and (args.frames_dir or args.timelapse):
        options["preview_max_side"] = min(int(options.get("size") or 512), 1024)
    return options


def _recorder(args: argparse.Namespace, frames_dir: Path | None, single: bool) -> JobRecorder:
    return JobRecorder(
        frames_dir=frames_dir,
        save_every=args.save_every,
        timelapse=Path(args.timelapse) if single and args.timelapse else None,
        loss_plot=Path(args.loss_plot) if single and args.loss_plot else None,
    )


def _plan(args: argparse.Namespace, options: dict[str, Any]) -> tuple[list[JobSpec], bool]:
    """The jobs of this run, every output checked; (specs, is_batch)."""
    inputs = batch_inputs(args.content)
    fmt = options.get("output_format")
    depth = options.get("output_bit_depth")  # more than 8 bits: PNG, unless OUT or --format says otherwise
    if args.frames_dir:
        check_output_dir(Path(args.frames_dir), "--frames-dir")
    if inputs is None:
        check_image_file(args.content, "CONTENT")
        content = Path(args.content)
        ext = {"jpeg": "jpg"}.get(str(fmt).lower(), str(fmt).lower()) if fmt else "png"
        out = single_output(args.output, content, ext)
        if fmt is not None and format_for_path(out) != {"jpg": "jpeg"}.get(str(fmt).lower(), str(fmt).lower()):
            print(f"stylize: warning: writing {fmt} data to {out}", file=sys.stderr)
        try:
            options["output_format"] = output_format_for(out, fmt, depth)
        except ValueError as exc:
            raise UsageError(f"--output-bit-depth: {exc}") from None
        for flag, path in (("--timelapse", args.timelapse), ("--loss-plot", args.loss_plot)):
            if path:
                check_output_file(Path(path), flag)
        frames = Path(args.frames_dir) if args.frames_dir else None
        spec = JobSpec(args.content, content, out, _recorder(args, frames, True), args.request_id)
        refuse_overwriting_inputs([out], [content])
        return [spec], False
    if args.timelapse or args.loss_plot:
        raise UsageError("--timelapse and --loss-plot are for one image, not a batch")
    fmt = fmt or "png"
    try:
        options["output_format"] = output_format_for(f"x.{fmt}", fmt, depth)
    except ValueError as exc:
        raise UsageError(f"--output-bit-depth: {exc}") from None
    ext = {"jpeg": "jpg"}.get(str(fmt).lower(), str(fmt).lower())
    outdir = batch_output_dir(args.output, len(inputs))
    stems = [p.stem for p in inputs]
    specs = []
    for i, path in enumerate(inputs):
        # Two inputs may share a stem (a.png, a.jpg); keep their outputs apart.
        stem = path.stem if stems.count(path.stem) == 1 else path.name.replace(".", "_")
        frames = Path(args.frames_dir) / stem if args.frames_dir else None
        request_id = f"{args.request_id}-{i + 1}" if args.request_id else None
        specs.append(JobSpec(str(path), path, outdir / f"{stem}.{ext}", _recorder(args, frames, False), request_id))
    refuse_overwriting_inputs([s.output for s in specs], inputs)
    return specs, True


def _display(args: argparse.Namespace, batch: bool) -> Display:
    if args.quiet:
        return Display()
    if args.json:
        return JsonDisplay()
    if sys.stdout.isatty():
        return RichDisplay()
    return PlainDisplay(prefix_names=batch)


def cmd_run(args: argparse.Namespace) -> int:
    if args.loss_plot:
        require_matplotlib()
    if args.save_every and not (args.frames_dir or args.timelapse):
        raise UsageError("--save-every needs --frames-dir DIR and/or --timelapse GIF")
    styles = _styles(args)
    options = _options(args)
    specs, batch = _plan(args, options)
    inputs = [p for s in styles for p in (s.image, s.mask) if isinstance(p, Path)]
    inputs += [path for _, path in image_options(options)]
    refuse_overwriting_inputs([s.output for s in specs], inputs)

    client = make_client(args)
    try:
        with _display(args, batch) as display:
            ctx = RunContext(client, styles, options, display, StreamRegistry(), Notices(args.quiet))
            if not batch:
                return _run_single(ctx, specs[0], args)
            return _run_batch(ctx, specs, args)
    finally:
        client.close()


def _report_failure(ctx: RunContext, name: str, error: BaseException, args: argparse.Namespace) -> tuple[int, str]:
    code, message = exit_code_for(error), describe(error, args)
    ctx.display.failed(name, code_name(error), code, message)
    return code, message


def _run_single(ctx: RunContext, spec: JobSpec, args: argparse.Namespace) -> int:
    try:
        result = run_job(ctx, spec)
    except JOB_ERRORS as exc:
        code, message = _report_failure(ctx, spec.name, exc, args)
        ctx.display.close()
        say_error(message)
        return code
    if not result.complete:
        ctx.display.close()
        say_error(f"{partial_note(result)}; saved it to {spec.output}")
        return EXIT_PARTIAL
    return EXIT_OK


def _run_batch(ctx: RunContext, specs: list[JobSpec], args: argparse.Namespace) -> int:
    def job(spec: JobSpec) -> JobSummary:
        started = time.monotonic()
        try:
            check_image_file(spec.content, "CONTENT")
            result = run_job(ctx, spec)
        except JOB_ERRORS as exc:
            if isinstance(exc, Cancelled) and ctx.registry.stopping.is_set():
                exc = KeyboardInterrupt()
            code, message = _report_failure(ctx, spec.name, exc, args)
            return JobSummary(spec.name, False, seconds=time.monotonic() - started, error=message, exit_code=code)
        return JobSummary(
            spec.name,
            True,
            str(spec.output),
            time.monotonic() - started,
            result.iterations,
            error="" if result.complete else partial_note(result),
            exit_code=EXIT_OK if result.complete else EXIT_PARTIAL,
            partial=not result.complete,
        )

    pool = ThreadPoolExecutor(max_workers=args.parallel, thread_name_prefix="stylize-batch")
    futures = {pool.submit(job, spec): spec for spec in specs}
    with _CtrlC() as ctrl_c:
        pending = set(futures)
        while pending and not ctrl_c.pressed:
            # A timeout, so that the flag set by Ctrl-C is seen promptly.
            _, pending = wait(pending, timeout=0.2, return_when=FIRST_COMPLETED)
        interrupted = ctrl_c.pressed
        if interrupted:
            ctx.registry.cancel_all()
            for future in futures:
                future.cancel()
        pool.shutdown(wait=True)
    jobs = [
        JobSummary(spec.name, False, error="not started (Ctrl-C)", exit_code=EXIT_INTERRUPTED)
        if future.cancelled()
        else future.result()
        for future, spec in futures.items()
    ]
    ctx.display.summary(jobs)
    ctx.display.close()
    if interrupted:
        say_error("cancelled by Ctrl-C; the server stops the running jobs")
        return EXIT_INTERRUPTED
    failed = [j for j in jobs if not j.ok]
    partial = [j for j in jobs if j.partial]
    if not failed and not partial:
        return EXIT_OK
    if not failed:
        say_error(f"{len(partial)} of {len(jobs)} results are partial: {', '.join(j.name for j in partial)}")
        return EXIT_PARTIAL
    say_error(f"{len(failed)} of {len(jobs)} images failed: {', '.join(j.name for j in failed)}")
    codes = {j.exit_code for j in failed}
    # Every image failed for the same reason (e.g. no server): say which.
    if len(failed) == len(jobs) and len(codes) == 1:
        return codes.pop()
    return EXIT_FAILED
