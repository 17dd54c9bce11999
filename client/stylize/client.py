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
from collections.abc import Callable, Generator, Iterable, Iterator, Sequence
from typing import Any, TypeVar, cast

import grpc
from grpc_status import rpc_status

from stylize_api.v1 import stylize_pb2, stylize_pb2_grpc

from . import health as _health
from .calls import CANCEL_TIMEOUT, StylizeCall, UnaryCall
from .connection import ClientChannel, RetryPolicy
from .errors import Cancelled, Failure, NotFound
from .events import Event, Result
from .images import ImageInput
from .request import StyleInput, build_request, output_format_for
from .video import VideoCall, VideoEvent, build_header

# Unary calls (info, health) get this deadline when the client has none.
DEFAULT_UNARY_TIMEOUT = 10.0

T = TypeVar("T")


def failure_of(call: Any) -> Failure:
    """The Failure of a finished sync call (the RpcError it raised is the call)."""
    try:
        status = rpc_status.from_call(call)
    except (ValueError, AttributeError):  # code or message do not match the details: ignore them
        status = None
    code = call.code() if hasattr(call, "code") else None
    details = call.details() if hasattr(call, "details") else str(call)
    return Failure.from_status(code, details, status)


class StylizeStream:
    """The events of one Stylize call, in order; iterate it once.

    The `Result` event is yielded only after the server has closed the stream
    with OK, so a caller that stops after the result never cancels a job that
    finished. `cancel()` may be called from any thread: it asks the server to
    stop the job (the Cancel RPC), cancels the call, and iteration raises
    `Cancelled`. Closing the iterator early (break, KeyboardInterrupt) does
    the same. `request_id` is the job's name on the server.
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
        self._state = StylizeCall(request, target=target, timeout=timeout, policy=retry)
        self._metadata = tuple(metadata)
        self._lock = threading.Lock()
        self._cancelled = threading.Event()
        self._call: Any = None
        self._events = self._run()

    @property
    def request_id(self) -> str:
        return self._state.request_id

    @property
    def attempts(self) -> int:
        return self._state.attempts

    def __iter__(self) -> Iterator[Event]:
        return self

    def __next__(self) -> Event:
        return next(self._events)

    def close(self) -> None:
        """Stop iterating; stops the job if it is still running."""
        self._events.close()

    def __enter__(self) -> StylizeStream:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def cancel(self) -> None:
        """Stop the job and the call (thread-safe); the iterator then raises `Cancelled`."""
        self._cancelled.set()
        with self._lock:
            call = self._call
        if call is not None and not call.done():
            self._stop(call)

    @property
    def cancelled(self) -> bool:
        return self._cancelled.is_set()

    def _stop(self, call: Any) -> None:
        """Ask the server to stop the job, then cancel the call. A job with a
        request_id outlives its stream on the server (so that its client can
        attach again); the Cancel RPC ends it at once. Best effort."""
        try:
            self._stub.Cancel(
                stylize_pb2.CancelRequest(request_id=self.request_id), timeout=CANCEL_TIMEOUT, metadata=self._metadata
            )
        except grpc.RpcError:
            pass  # already ended, unknown to this server, or unreachable: the stream's end stops it too
        call.cancel()

    def _cancelled_error(self) -> Cancelled:
        return Cancelled("cancelled by the client", code=grpc.StatusCode.CANCELLED, attempts=self.attempts)

    def _run(self) -> Generator[Event, None, None]:
        state = self._state
        while True:
            timeout = state.begin_attempt()
            if self._cancelled.is_set():
                raise self._cancelled_error()
            call = self._stub.Stylize(state.request, timeout=timeout, metadata=self._metadata)
            with self._lock:
                self._call = call
            if self._cancelled.is_set():  # cancel() ran between the check above and now
                self._stop(call)
            ended = False  # the call ended with a status (OK or not): nothing is left to stop
            try:
                for frame in call:
                    event = state.on_frame(frame)
                    if event is not None:
                        yield event
                ended = True
            except grpc.RpcError as exc:
                ended = True
                if self._cancelled.is_set():
                    raise self._cancelled_error() from exc
                delay = state.on_failure(failure_of(call))
                if self._cancelled.wait(delay):
                    raise self._cancelled_error() from exc
                continue
            finally:
                # Not ended: the consumer stopped early (GeneratorExit), was
                # interrupted (Ctrl-C), or the server broke the protocol.
                if not ended:
                    self._stop(call)
            yield state.finish()
            return


class StyleTransferClient(ClientChannel):
    """A client of one stylize server (or, with `dns:///`, of all its pods).

    target:  "host:port", "dns:///name:port" (round-robin over all addresses), ...
    token:   bearer token sent as `authorization: Bearer <token>`.
    job_secret: proves on a server without auth that a job is this client's
             (reattach, `cancel`); a random one by default. Pass the same one
             to cancel from another process.
    tls:     TLSConfig for a TLS channel; None for plaintext.
    timeout: default deadline in seconds of each call, retries included (None: none).
    retry:   RetryPolicy: how often to try again after a refusal that waiting fixes
             or a lost connection (a started job is attached to again, not restarted).
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
        styles: StyleInput | Sequence[StyleInput],
        *,
        timeout: float | None = None,
        retry: RetryPolicy | None = None,
        **options: Any,
    ) -> StylizeStream:
        """Start stylizing; returns the stream of typed events (see `StylizeStream`).

        `styles`: an image, a `Style(image, weight, mask)`, an (image, mask)
        pair, or a list of these. `options` are the request's fields by name
        (size, iterations, optimizer, color_control, ...; see
        `stylize.request.build_request`). The call starts when iteration starts.
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
        styles: StyleInput | Sequence[StyleInput],
        output: str | os.PathLike[str],
        *,
        on_event: Callable[[Event], None] | None = None,
        timeout: float | None = None,
        **options: Any,
    ) -> Result:
        """Run a job to the end, write the image to `output`, return the `Result`.

        The output format is taken from `output`'s extension (.png, .jpg/.jpeg,
        .webp) unless `output_format` is given. `on_event` sees every event.
        A partial result (`complete=False`) is saved and returned too.
        """
        options["output_format"] = output_format_for(
            output, options.get("output_format"), options.get("output_bit_depth")
        )
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

    def stylize_video(
        self,
        frames: Iterable[ImageInput],
        styles: StyleInput | Sequence[StyleInput],
        *,
        temporal_weight: float | None = None,
        frame_iterations: int | None = None,
        frame_count: int = 0,
        first_frame: int = 0,
        timeout: float | None = None,
        **options: Any,
    ) -> Iterator[VideoEvent]:
        """Stylize a video: yields each frame's `FrameEvent`s, its `VideoFrame`
        as soon as it is stylized (in order), then the `VideoSummary`
        (`stylize.video`). `frames` is read lazily, as the server takes them;
        `first_frame` resumes the video of the `request_id` option there.
        A failure raises the exceptions of `stylize.errors` after the frames
        before it were yielded. No automatic retry: resume with first_frame."""
        video = VideoCall(
            build_header(
                styles,
                temporal_weight=temporal_weight,
                frame_iterations=frame_iterations,
                frame_count=frame_count,
                first_frame=first_frame,
                **options,
            ),
            frames,
            target=self.target,
            timeout=timeout if timeout is not None else self.timeout,
        )
        call = self._stub.StylizeVideo(video.requests, timeout=video.timeout, metadata=self._metadata)
        ended = False
        try:
            for message in call:
                event = video.on_message(message)
                if event is not None:
                    yield event
            ended = True
        except grpc.RpcError as exc:
            ended = True
            raise video.error(failure_of(call)) from exc
        finally:
            if not ended:  # the consumer stopped early: end the call (the server stops the frame)
                call.cancel()
        video.finish()

    def server_info(self, *, timeout: float | None = None) -> stylize_pb2.ServerInfo:
        """The server's version, model, device, limits, budget, queue and defaults."""
        info = self._unary(
            lambda t: self._stub.GetServerInfo(stylize_pb2.GetServerInfoRequest(), timeout=t, metadata=self._metadata),
            timeout,
        )
        return cast(stylize_pb2.ServerInfo, info)

    def cancel(self, request_id: str, *, timeout: float | None = None) -> bool:
        """Stop this client's job `request_id`; True when a queued or running
        job was stopped, False when it had ended. NotFound for an unknown id."""
        reply: stylize_pb2.CancelResponse = self._unary(
            lambda t: self._stub.Cancel(
                stylize_pb2.CancelRequest(request_id=request_id), timeout=t, metadata=self._metadata
            ),
            timeout,
        )
        return reply.stopped

    def health(self, service: str = "", *, timeout: float | None = None) -> str:
        """Standard gRPC health status of `service` ("" = the whole server):
        "SERVING", "NOT_SERVING", "SERVICE_UNKNOWN" or "UNKNOWN"."""
        try:
            data: bytes = self._unary(
                lambda t: self._health_check(_health.encode_request(service), timeout=t, metadata=self._metadata),
                timeout,
            )
        except NotFound:  # the health service's answer for an unknown name
            return "SERVICE_UNKNOWN"
        return _health.decode_response(data)

    def _unary(self, call: Callable[[float], T], timeout: float | None) -> T:
        """A unary call with the retry policy."""
        state = UnaryCall(
            target=self.target, timeout=timeout or self.timeout or DEFAULT_UNARY_TIMEOUT, policy=self.retry
        )
        while True:
            try:
                return call(state.begin_attempt())
            except grpc.RpcError as exc:
                delay = state.on_failure(failure_of(exc))
            time.sleep(delay)
