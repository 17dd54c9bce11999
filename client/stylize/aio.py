"""The asyncio client: `AsyncStyleTransferClient`, the same API and events as
the sync `StyleTransferClient`, on `grpc.aio`.

    async with AsyncStyleTransferClient("localhost:50051") as client:
        async for event in client.stylize("photo.jpg", ["starry.jpg"], size=256):
            ...

Retries, reattach and chunk reassembly are the sync client's (`stylize.calls`).
Cancelling the task that iterates (or leaving the `async for` early) asks the
server to stop the job (the Cancel RPC) and cancels the call.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Sequence
from typing import Any, TypeVar

import grpc
import grpc.aio
from grpc_status import rpc_status

from stylize_api.v1 import stylize_pb2

from . import health as _health
from .calls import CANCEL_TIMEOUT, StylizeCall, UnaryCall
from .client import DEFAULT_UNARY_TIMEOUT
from .connection import ClientChannel, RetryPolicy
from .errors import Failure, NotFound
from .events import Event, Result
from .images import ImageInput
from .request import StyleInput, build_request, output_format_for
from .video import VideoCall, VideoEvent, build_header

T = TypeVar("T")


async def failure_of(call: Any, error: grpc.RpcError) -> Failure:
    """The Failure of a finished asyncio call, read from the call's trailers."""
    try:
        status = await rpc_status.aio.from_call(call)
    except (ValueError, AttributeError):  # code or message do not match the details: ignore them
        status = None
    code = error.code() if hasattr(error, "code") else None
    details = error.details() if hasattr(error, "details") else str(error)
    return Failure.from_status(code, details, status)


async def _read(call: Any) -> Any:
    """The call's next frame (or grpc.aio.EOF). The read is shielded: grpc.aio
    cancels a call whose reader is cancelled, and this client must first ask
    the server to stop the job (Cancel), which outlives its stream there."""
    read = asyncio.ensure_future(call.read())
    try:
        return await asyncio.shield(read)
    except asyncio.CancelledError:
        read.add_done_callback(_settle)  # it ends when the call is cancelled next; nobody's error
        raise


def _settle(future: asyncio.Future[Any]) -> None:
    if not future.cancelled():
        future.exception()


class AsyncStyleTransferClient(ClientChannel):
    """asyncio twin of `stylize.StyleTransferClient` (same arguments)."""

    _grpc = grpc.aio

    async def close(self) -> None:
        await self._channel.close()

    async def __aenter__(self) -> AsyncStyleTransferClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    def stylize(
        self,
        content: ImageInput,
        styles: StyleInput | Sequence[StyleInput],
        *,
        timeout: float | None = None,
        retry: RetryPolicy | None = None,
        **options: Any,
    ) -> AsyncIterator[Event]:
        """Async iterator of the job's events; `Result` comes after the stream closed OK."""
        request = build_request(content, styles, **options)
        return self.stylize_request(request, timeout=timeout, retry=retry)

    async def stylize_request(
        self,
        request: stylize_pb2.StylizeRequest,
        *,
        timeout: float | None = None,
        retry: RetryPolicy | None = None,
    ) -> AsyncIterator[Event]:
        state = StylizeCall(
            request,
            target=self.target,
            timeout=timeout if timeout is not None else self.timeout,
            policy=retry if retry is not None else self.retry,
        )
        while True:
            call = self._stub.Stylize(state.request, timeout=state.begin_attempt(), metadata=self._metadata)
            ended = False  # the server ended the call (OK or a status): nothing is left to stop
            try:
                while (frame := await _read(call)) is not grpc.aio.EOF:
                    event = state.on_frame(frame)
                    if event is not None:
                        yield event
                ended = True
            except grpc.RpcError as exc:
                ended = True
                delay = state.on_failure(await failure_of(call, exc))
                await asyncio.sleep(delay)
                continue
            finally:
                # The consumer left early, the task was cancelled, or the server broke the protocol.
                if not ended:
                    await self._stop(call, state.request_id)
            yield state.finish()
            return

    async def stylize_video(
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
    ) -> AsyncIterator[VideoEvent]:
        """Async iterator of a video's events (see the sync client's `stylize_video`)."""
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
            while (message := await _read(call)) is not grpc.aio.EOF:
                event = video.on_message(message)
                if event is not None:
                    yield event
            ended = True
        except grpc.RpcError as exc:
            ended = True
            raise video.error(await failure_of(call, exc)) from exc
        finally:
            if not ended:
                call.cancel()
        video.finish()

    async def _stop(self, call: Any, request_id: str) -> None:
        """The Cancel RPC (best effort: a job with a request_id outlives its
        stream on the server), then cancel the call."""
        try:
            await asyncio.wait_for(
                self._stub.Cancel(
                    stylize_pb2.CancelRequest(request_id=request_id), timeout=CANCEL_TIMEOUT, metadata=self._metadata
                ),
                CANCEL_TIMEOUT + 0.5,
            )
        except (grpc.RpcError, TimeoutError):
            pass  # already ended, unknown to this server, or unreachable: the stream's end stops it too
        finally:
            call.cancel()

    async def stylize_to_file(
        self,
        content: ImageInput,
        styles: StyleInput | Sequence[StyleInput],
        output: str | os.PathLike[str],
        *,
        on_event: Callable[[Event], Any] | None = None,
        timeout: float | None = None,
        **options: Any,
    ) -> Result:
        """Run a job to the end and write the image to `output` (see the sync client)."""
        options["output_format"] = output_format_for(
            output, options.get("output_format"), options.get("output_bit_depth")
        )
        result: Result | None = None
        events = self.stylize(content, styles, timeout=timeout, **options)
        try:
            async for event in events:
                if on_event is not None:
                    maybe = on_event(event)
                    if asyncio.iscoroutine(maybe):
                        await maybe
                if isinstance(event, Result):
                    result = event
        finally:
            await events.aclose()  # type: ignore[attr-defined]
        assert result is not None
        result.save(output)
        return result

    async def server_info(self, *, timeout: float | None = None) -> stylize_pb2.ServerInfo:
        return await self._unary(
            lambda t: self._stub.GetServerInfo(stylize_pb2.GetServerInfoRequest(), timeout=t, metadata=self._metadata),
            timeout,
        )

    async def cancel(self, request_id: str, *, timeout: float | None = None) -> bool:
        reply: stylize_pb2.CancelResponse = await self._unary(
            lambda t: self._stub.Cancel(
                stylize_pb2.CancelRequest(request_id=request_id), timeout=t, metadata=self._metadata
            ),
            timeout,
        )
        return reply.stopped

    async def health(self, service: str = "", *, timeout: float | None = None) -> str:
        try:
            data: bytes = await self._unary(
                lambda t: self._health_check(_health.encode_request(service), timeout=t, metadata=self._metadata),
                timeout,
            )
        except NotFound:
            return "SERVICE_UNKNOWN"
        return _health.decode_response(data)

    async def _unary(self, call: Callable[[float], Awaitable[T]], timeout: float | None) -> T:
        state = UnaryCall(
            target=self.target, timeout=timeout or self.timeout or DEFAULT_UNARY_TIMEOUT, policy=self.retry
        )
        while True:
            pending = call(state.begin_attempt())
            try:
                return await pending
            except grpc.RpcError as exc:
                delay = state.on_failure(await failure_of(pending, exc))
            await asyncio.sleep(delay)
