"""The synchronous Python client: `StyleTransferClient`.

    from stylize import StyleTransferClient, Progress, Result

    with StyleTransferClient("localhost:50051") as client:
        for event in client.stylize("photo.jpg", ["starry.jpg"], size=512, iterations=300):
            if isinstance(event, Progress):
                print(event.iteration, event.total_iterations, event.losses.total)
            elif isinstance(event, Result):
                event.save("out.png")

One client holds one channel; it is thread-safe, so several threads may run
streams on it at once. Failures raise the exceptions of `stylize.errors`.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import grpc

from stylize.v1 import stylize_pb2, stylize_pb2_grpc

from . import health as _health
from .connection import CallBudget, ClientChannel, RetryPolicy
from .errors import Cancelled, ServerError, error_from_rpc, error_from_status
from .events import Event, Result, event_from_frame
from .request import ImageInput, build_request

# Unary calls (info, health) get this deadline when the client has none.
DEFAULT_UNARY_TIMEOUT = 10.0


class StylizeStream:
    """The events of one Stylize call, in order; iterate it once.

    The `Result` event is yielded only after the server has closed the stream
    with OK, so a caller that stops after the result never cancels a job that
    finished. `cancel()` may be called from any thread: it stops the call (the
    server stops the job within one iteration) and iteration raises `Cancelled`.
    Closing the iterator early (break, KeyboardInterrupt) cancels the call too.
    """

    def __init__(
        self,
        stub: stylize_pb2_grpc.StyleTransferStub,
        request: stylize_pb2.StylizeRequest,
        *,
        target: str,
        timeout: float | None,
        metadata: Sequence[tuple[str, str]],
        retry: RetryPolicy,
    ) -> None:
        self._stub = stub
        self._request = request
        self._target = target
        self._metadata = tuple(metadata)
        self._lock = threading.Lock()
        self._cancelled = threading.Event()
        self._call: grpc.Call | None = None
        self._budget = CallBudget(timeout, retry)
        self._events = self._run()

    @property
    def attempts(self) -> int:
        return self._budget.attempts

    def __iter__(self) -> Iterator[Event]:
        return self

    def __next__(self) -> Event:
        return next(self._events)

    def close(self) -> None:
        """Stop iterating; cancels the call if it is still running."""
        self._events.close()

    def cancel(self) -> None:
        """Cancel the call (thread-safe); the iterator then raises `Cancelled`."""
        self._cancelled.set()
        with self._lock:
            call = self._call
        if call is not None:
            call.cancel()

    @property
    def cancelled(self) -> bool:
        return self._cancelled.is_set()

    def _cancelled_error(self) -> Cancelled:
        return Cancelled("cancelled by the client", code=grpc.StatusCode.CANCELLED, attempts=self.attempts)

    def _run(self) -> Iterator[Event]:
        budget = self._budget
        while True:
            remaining = budget.next_attempt()
            if self._cancelled.is_set():
                raise self._cancelled_error()
            call = self._stub.Stylize(self._request, timeout=remaining, metadata=self._metadata)
            with self._lock:
                self._call = call
            if self._cancelled.is_set():  # cancel() ran between the check above and now
                call.cancel()
            received = False
            result: Result | None = None
            try:
                for frame in call:
                    received = True
                    event = event_from_frame(frame)
                    if isinstance(event, Result):
                        result = event  # yielded once the stream has closed OK
                    else:
                        yield event
            except grpc.RpcError as exc:
                if self._cancelled.is_set():
                    raise self._cancelled_error() from exc
                code, details = call.code(), call.details()
                delay = budget.retry_delay(code, details, received)
                if delay is not None:
                    if self._cancelled.wait(delay):
                        raise self._cancelled_error() from exc
                    continue
                raise error_from_status(code, details, self._target, self.attempts) from exc
            finally:
                # Reached with the call still running only when the consumer
                # stopped early (GeneratorExit) or was interrupted (Ctrl-C).
                if not call.done():
                    call.cancel()
            if result is None:
                raise ServerError(
                    "server error: the stream ended without a result",
                    code=grpc.StatusCode.INTERNAL,
                    attempts=self.attempts,
                )
            yield result
            return


class StyleTransferClient(ClientChannel):
    """A client of one stylize server (or, with `dns:///`, of all its pods).

    target:  "host:port", "dns:///name:port" (round-robin over all addresses), ...
    token:   bearer token sent as `authorization: Bearer <token>`.
    tls:     TLSConfig for a TLS channel; None for plaintext.
    timeout: default deadline in seconds of each call, retries included (None: none).
    retry:   RetryPolicy for failures before a stream has started.
    """

    # -- lifecycle --------------------------------------------------------
    def close(self) -> None:
        """Close the channel; running calls are cancelled."""
        self._channel.close()

    def __enter__(self) -> StyleTransferClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- calls -----------------------------------------------------------
    def stylize(
        self,
        content: ImageInput,
        styles: ImageInput | Sequence[ImageInput],
        *,
        timeout: float | None = None,
        retry: RetryPolicy | None = None,
        **options: Any,
    ) -> StylizeStream:
        """Start stylizing; returns the stream of typed events (see `StylizeStream`).

        `options` are the request's fields (size, iterations, optimizer,
        style_weights, init, ...; see `stylize.request.build_request`).
        The call starts when iteration starts.
        """
        request = build_request(content, styles, **options)
        return self.stylize_request(request, timeout=timeout, retry=retry)

    def stylize_request(
        self,
        request: stylize_pb2.StylizeRequest,
        *,
        timeout: float | None = None,
        retry: RetryPolicy | None = None,
    ) -> StylizeStream:
        """Like `stylize`, for a request built already."""
        return StylizeStream(
            self._stub,
            request,
            target=self.target,
            timeout=timeout if timeout is not None else self.timeout,
            metadata=self._metadata,
            retry=retry if retry is not None else self.retry,
        )

    def stylize_to_file(
        self,
        content: ImageInput,
        styles: ImageInput | Sequence[ImageInput],
        output: str | os.PathLike[str],
        *,
        on_event: Callable[[Event], None] | None = None,
        timeout: float | None = None,
        **options: Any,
    ) -> Result:
        """Run a job to the end, write the image to `output`, return the `Result`.

        The output format is taken from `output`'s extension (.png, .jpg/.jpeg,
        .webp) unless `output_format` is given. `on_event` sees every event.
        """
        if options.get("output_format") is None:
            options["output_format"] = format_for_path(output)
        stream = self.stylize(content, styles, timeout=timeout, **options)
        result: Result | None = None
        try:
            for event in stream:
                if on_event is not None:
                    on_event(event)
                if isinstance(event, Result):
                    result = event
        finally:
            stream.close()
        assert result is not None  # the stream raises unless it ends with a result
        result.save(output)
        return result

    def server_info(self, *, timeout: float | None = None) -> stylize_pb2.ServerInfo:
        """The server's version, model, device, limits, queue and defaults."""
        return self._unary(
            lambda t: self._stub.GetServerInfo(stylize_pb2.GetServerInfoRequest(), timeout=t, metadata=self._metadata),
            timeout,
        )

    def health(self, service: str = "", *, timeout: float | None = None) -> str:
        """Standard gRPC health status of `service` ("" = the whole server):
        "SERVING", "NOT_SERVING", "SERVICE_UNKNOWN" or "UNKNOWN"."""
        try:
            data = self._unary(
                lambda t: self._health_check(_health.encode_request(service), timeout=t, metadata=self._metadata),
                timeout,
            )
        except ServerError as exc:
            if exc.code == grpc.StatusCode.NOT_FOUND:  # the health service's answer for an unknown name
                return "SERVICE_UNKNOWN"
            raise
        return _health.decode_response(data)

    def _unary(self, call: Callable[[float], Any], timeout: float | None) -> Any:
        """A unary call with the retry policy: a unary call is safe to repeat."""
        budget = CallBudget(timeout if timeout is not None else (self.timeout or DEFAULT_UNARY_TIMEOUT), self.retry)
        while True:
            remaining = budget.next_attempt()
            try:
                return call(max(0.001, remaining or 0.0))
            except grpc.RpcError as exc:
                delay = budget.retry_delay(exc.code(), exc.details(), received=False)  # type: ignore[attr-defined]
                if delay is not None:
                    time.sleep(delay)
                    continue
                raise error_from_rpc(exc, self.target, budget.attempts) from exc


def format_for_path(path: str | os.PathLike[str]) -> str:
    """Output format for a file name: png (default), jpeg or webp."""
    suffix = os.path.splitext(os.fspath(path))[1].lower()
    return {".jpg": "jpeg", ".jpeg": "jpeg", ".webp": "webp"}.get(suffix, "png")
