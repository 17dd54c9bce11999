"""The asyncio client: `AsyncStyleTransferClient`, the same API and events as
the sync `StyleTransferClient`, on `grpc.aio`.

    async with AsyncStyleTransferClient("localhost:50051") as client:
        async for event in client.stylize("photo.jpg", ["starry.jpg"], size=256):
            ...

Cancelling the task that iterates (or leaving the `async for` early) cancels
the call, and the server stops the job.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from typing import Any

import grpc
import grpc.aio

from stylize.v1 import stylize_pb2

from . import health as _health
from .client import DEFAULT_UNARY_TIMEOUT, format_for_path
from .connection import CallBudget, ClientChannel, RetryPolicy
from .errors import ServerError, error_from_rpc, error_from_status
from .events import Event, Result, event_from_frame
from .request import ImageInput, build_request


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
        styles: ImageInput | Sequence[ImageInput],
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
        budget = CallBudget(
            timeout if timeout is not None else self.timeout, retry if retry is not None else self.retry
        )
        while True:
            remaining = budget.next_attempt()
            call = self._stub.Stylize(request, timeout=remaining, metadata=self._metadata)
            received = False
            result: Result | None = None
            try:
                async for frame in call:
                    received = True
                    event = event_from_frame(frame)
                    if isinstance(event, Result):
                        result = event
                    else:
                        yield event
            except grpc.RpcError as exc:
                code, details = exc.code(), exc.details()  # type: ignore[attr-defined]
                delay = budget.retry_delay(code, details, received)
                if delay is not None:
                    await asyncio.sleep(delay)
                    continue
                raise error_from_status(code, details, self.target, budget.attempts) from exc
            finally:
                # The consumer left early or the task was cancelled: stop the job.
                if not call.done():
                    call.cancel()
            if result is None:
                raise ServerError(
                    "server error: the stream ended without a result",
                    code=grpc.StatusCode.INTERNAL,
                    attempts=budget.attempts,
                )
            yield result
            return

    async def stylize_to_file(
        self,
        content: ImageInput,
        styles: ImageInput | Sequence[ImageInput],
        output: str | os.PathLike[str],
        *,
        on_event: Callable[[Event], Any] | None = None,
        timeout: float | None = None,
        **options: Any,
    ) -> Result:
        """Run a job to the end and write the image to `output` (see the sync client)."""
        if options.get("output_format") is None:
            options["output_format"] = format_for_path(output)
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

    async def health(self, service: str = "", *, timeout: float | None = None) -> str:
        try:
            data = await self._unary(
                lambda t: self._health_check(_health.encode_request(service), timeout=t, metadata=self._metadata),
                timeout,
            )
        except ServerError as exc:
            if exc.code == grpc.StatusCode.NOT_FOUND:
                return "SERVICE_UNKNOWN"
            raise
        return _health.decode_response(data)

    async def _unary(self, call: Callable[[float], Awaitable[Any]], timeout: float | None) -> Any:
        budget = CallBudget(timeout if timeout is not None else (self.timeout or DEFAULT_UNARY_TIMEOUT), self.retry)
        while True:
            remaining = budget.next_attempt()
            try:
                return await call(max(0.001, remaining or 0.0))
            except grpc.RpcError as exc:
                delay = budget.retry_delay(exc.code(), exc.details(), received=False)  # type: ignore[attr-defined]
                if delay is not None:
                    await asyncio.sleep(delay)
                    continue
                raise error_from_rpc(exc, self.target, budget.attempts) from exc
