"""What every command shares: the connection and display flags, the client
they make, and how an error becomes one line on stderr.

Every failure prints one line on stderr, `stylize: <what happened>`; with
--json an `error` object is printed on stdout as well.
"""

from __future__ import annotations

import argparse
import os
import sys

from ..client import StyleTransferClient
from ..connection import DEFAULT_TARGET, RetryPolicy, TLSConfig, read_token_file
from ..errors import OverTimeLimit, StylizeError, TooLarge, Unauthenticated
from .exits import UsageError


def one_line(text: str) -> str:
    return " ".join(str(text).split())


def say_error(message: str) -> None:
    print(f"stylize: {one_line(message)}", file=sys.stderr, flush=True)


def say_warning(message: str) -> None:
    print(f"stylize: warning: {one_line(message)}", file=sys.stderr, flush=True)


def describe(error: BaseException, args: argparse.Namespace | None = None) -> str:
    """The line a person reads for `error`: the client's message, plus what to do where the CLI knows it."""
    text = str(error)
    if isinstance(error, Unauthenticated):
        token_file = getattr(args, "token_file", None)
        if token_file:
            text += f"; check the token in --token-file {token_file}"
        else:
            text += "; give the token with --token-file PATH (or $STYLIZE_TOKEN_FILE)"
    elif isinstance(error, OverTimeLimit):
        text += "; here: --iterations N, --size PX, or --accept-partial"
    elif isinstance(error, TooLarge) and error.reason is None:
        text += "; `stylize info` shows the server's max_message_bytes: send smaller files (e.g. JPEG)"
    elif isinstance(error, KeyboardInterrupt):
        text = "cancelled by Ctrl-C; the server stops the job"
    return one_line(text)


def code_name(error: BaseException) -> str:
    """The machine-readable name of an error in --json output: the reason, else the code."""
    if isinstance(error, StylizeError):
        return error.reason_name
    if isinstance(error, KeyboardInterrupt):
        return "CANCELLED"
    return "LOCAL"


def connection_parser() -> argparse.ArgumentParser:
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
        help="retries when the server is unreachable, loading, draining or full, and reattaches after a lost"
        " connection (default: %(default)s)",
    )
    g.add_argument(
        "--retry-backoff",
        type=float,
        default=0.5,
        metavar="SECONDS",
        help="first retry delay bound; doubles per retry, full jitter, capped at 10 s; a server's suggested delay"
        " is the floor (default: %(default)s)",
    )
    return p


def display_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(add_help=False)
    g = p.add_argument_group("display").add_mutually_exclusive_group()
    g.add_argument("--json", action="store_true", help="one JSON object per event per line on stdout")
    g.add_argument("-q", "--quiet", action="store_true", help="print nothing but errors")
    return p


def make_client(args: argparse.Namespace, job_secret: str | None = None) -> StyleTransferClient:
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
    return StyleTransferClient(
        args.server, token=token, tls=tls, timeout=args.timeout, retry=retry, job_secret=job_secret
    )
