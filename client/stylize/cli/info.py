"""`stylize info` (what the server runs: version, model, device, limits,
budget, queue, defaults) and `stylize health` (the standard gRPC health check)."""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from google.protobuf import json_format

from stylize_api.schema import BY_NAME
from stylize_api.v1 import stylize_pb2

from ..errors import StylizeError
from .common import connection_parser, describe, display_parser, make_client, say_error
from .exits import EXIT_NOT_SERVING, EXIT_OK, exit_code_for


def register(sub: Any) -> None:
    conn, output = connection_parser(), display_parser()
    info = sub.add_parser(
        "info", parents=[conn, output], help="the server's version, model, device, limits, budget, queue, defaults"
    )
    info.set_defaults(func=cmd_info)
    health = sub.add_parser("health", parents=[conn, output], help="the server's gRPC health status")
    health.add_argument("--service", default="", help='service to check ("" = the whole server)')
    health.set_defaults(func=cmd_health)


def _choice(field: str, number: int) -> str:
    try:
        return BY_NAME[field].enum_name(number)
    except ValueError:
        return str(number)


def _gib(n: int) -> str:
    return f"{n / 2**30:.2f} GiB"


def _rows(info: stylize_pb2.ServerInfo, server: str) -> list[tuple[str, str]]:
    m, d, lim, q, df, b = info.model, info.device, info.limits, info.queue, info.defaults, info.budget
    precision = f", precision {m.precision}" + (f" ({m.precision_reason})" if m.precision_reason else "")
    mem = f", {_gib(d.memory_bytes)} in use" if d.memory_bytes else ""
    limits = (
        f"size <= {lim.max_side} px, <= {lim.max_pixels} output pixels, <= {lim.max_iterations} iterations,"
        f" <= {lim.max_styles} styles, message <= {lim.max_message_bytes / 2**20:.0f} MiB,"
        f" input <= {lim.max_input_pixels} pixels"
    )
    if lim.max_request_pixels:
        limits += f" (request <= {lim.max_request_pixels})"
    if lim.max_job_seconds:
        limits += f", job <= {lim.max_job_seconds:g} s"
    if lim.max_jobs_per_client:
        limits += f", <= {lim.max_jobs_per_client} jobs per client"
    queue = f"{q.running} running of {q.max_concurrent_jobs} slots, {q.depth} queued of {q.capacity}"
    if q.max_open_calls:
        queue += f", {q.open_calls} open calls of {q.max_open_calls}"
    rows = [
        ("server", f"{server} (stylize {info.version})"),
        (
            "model",
            f"{m.name}, weights {m.weights_source}, pooling {_choice('pooling', m.default_pooling)}{precision},"
            f" loaded in {m.load_seconds:.1f} s",
        ),
        ("device", f"{d.kind} {d.name}{mem}"),
        ("limits", limits),
    ]
    if b.device_memory_budget_bytes:
        tiles = {-1: "chosen per job", 0: "never"}.get(b.tile_size, f"{b.tile_size} px")
        rows.append(
            (
                "budget",
                f"{_gib(b.device_memory_budget_bytes)} device memory, {_gib(b.reserved_bytes)} reserved; tiles {tiles}",
            )
        )
    if lim.result_retention_seconds:
        rows.append(("reattach", f"results kept {lim.result_retention_seconds:g} s under their request id"))
    rows += [
        ("queue", queue),
        (
            "defaults",
            f"size {df.size}, iterations {df.iterations}, optimizer {_choice('optimizer', df.optimizer)},"
            f" content/style/tv weight {df.content_weight:g}/{df.style_weight:g}/{df.tv_weight:g},"
            f" init {_choice('init', df.init)}, colour control {_choice('color_control', df.color_control)},"
            f" progress every {df.progress_interval}",
        ),
    ]
    return rows


def cmd_info(args: argparse.Namespace) -> int:
    with make_client(args) as client:
        try:
            info = client.server_info()
        except StylizeError as exc:
            say_error(describe(exc, args))
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
        for key, value in _rows(info, args.server):
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
            say_error(describe(exc, args))
            return exit_code_for(exc)
    if args.json:
        print(json.dumps({"server": args.server, "service": args.service, "status": status}))
    elif not args.quiet:
        print(status)
    return EXIT_OK if status == "SERVING" else EXIT_NOT_SERVING
