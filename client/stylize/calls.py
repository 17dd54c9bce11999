"""What one Stylize call does across its attempts, shared by the sync and the
asyncio clients: they only move frames and failures between gRPC and this.

* Every call has a request_id (a random one when the caller gave none): it is
  the key the server keeps a job under, so that a client which lost its
  connection can attach to the job again instead of starting it over.
* Before the job has started (no `started` frame yet), a failure that waiting
  fixes is retried within the RetryPolicy: a lost or refused connection,
  LOADING, DRAINING, QUEUE_FULL, CLIENT_QUOTA, CALL_LIMIT, CLIENT_CALL_LIMIT,
  JOB_STREAM_LIMIT (RetryInfo's delay is the floor of the backoff). TOO_LARGE, INVALID_ARGUMENT and the rest never.
* After it has started, only a lost connection (UNAVAILABLE without a reason)
  is retried: the same request again, which attaches to the running job or
  returns its stored result (`Started.reattached`).
* A result comes as one frame or as `chunk_count` chunk frames; they are
  checked (index, count, total_bytes) and joined into one `Result`. A
  missing, extra or out-of-order chunk is a ServerError.
"""

from __future__ import annotations

import uuid

from stylize_api.v1 import stylize_pb2

from .connection import CallBudget, RetryPolicy
from .errors import Failure, StylizeError, error_for, protocol_error
from .events import Progress, Queued, Result, Started, event_from_frame

# The Cancel RPC is best effort, on the way out of a call: never wait long for it.
CANCEL_TIMEOUT = 2.0


def new_request_id() -> str:
    return uuid.uuid4().hex


def with_request_id(request: stylize_pb2.StylizeRequest) -> stylize_pb2.StylizeRequest:
    """`request` with a request_id: its own, or a new random one (on a copy)."""
    if request.request_id:
        return request
    copy = stylize_pb2.StylizeRequest()
    copy.CopyFrom(request)
    copy.request_id = new_request_id()
    return copy


class ResultAssembler:
    """Result frames -> one Result: chunk 0, 1, ... chunk_count-1 in order,
    their bytes `total_bytes` long in all."""

    def __init__(self) -> None:
        self._first: stylize_pb2.Result | None = None
        self._parts: list[bytes] = []
        self._count = 0
        self._size = 0

    @property
    def receiving(self) -> bool:
        """Some chunks of a result have arrived."""
        return self._first is not None

    @property
    def done(self) -> bool:
        return self._first is not None and len(self._parts) == self._count

    def add(self, msg: stylize_pb2.Result) -> None:
        count = max(1, msg.chunk_count)
        if self._first is None:
            if msg.chunk_index != 0:
                raise protocol_error(f"result chunk {msg.chunk_index} of {count} came first; chunk 0 is missing")
            self._first, self._count = msg, count
        elif self.done:
            raise protocol_error(f"a result frame (chunk {msg.chunk_index}) after the whole result")
        elif count != self._count:
            raise protocol_error(f"result chunk {msg.chunk_index} says {count} chunks, chunk 0 said {self._count}")
        elif msg.chunk_index != len(self._parts):
            raise protocol_error(
                f"result chunk {msg.chunk_index} of {count} came where chunk {len(self._parts)} was due"
                " (a chunk is missing or out of order)"
            )
        self._parts.append(bytes(msg.image.data))
        self._size += len(self._parts[-1])
        total = self._first.total_bytes
        if total and self._size > total:
            raise protocol_error(f"the result's chunks hold more than its total_bytes ({self._size} > {total})")

    def result(self) -> Result:
        """The whole result; ServerError when the stream ended before it was complete."""
        if self._first is None:
            raise protocol_error("the stream ended without a result")
        if not self.done:
            raise protocol_error(f"the stream ended after result chunk {len(self._parts) - 1} of {self._count}")
        data = b"".join(self._parts)
        total = self._first.total_bytes
        if total and len(data) != total:
            raise protocol_error(f"the result is {len(data)} bytes, its total_bytes says {total}")
        return Result.from_proto(self._first, data, self._count)


class StylizeCall:
    """One logical Stylize call: its request (with request_id), its attempts
    and deadline, and the frames of the current attempt.

    The client loops: `begin_attempt()` -> send `request` -> `on_frame()` per
    frame (yield the events it returns) -> `finish()` when the stream closed
    OK, or `on_failure()` when it failed (wait the delay it returns and loop;
    it raises the final error instead)."""

    def __init__(
        self, request: stylize_pb2.StylizeRequest, *, target: str, timeout: float | None, policy: RetryPolicy
    ) -> None:
        self.request = with_request_id(request)
        self.target = target
        self.budget = CallBudget(timeout, policy)
        self.started = False  # a `started` frame arrived: the job ran on the server
        self._assembler = ResultAssembler()

    @property
    def request_id(self) -> str:
        return self.request.request_id

    @property
    def attempts(self) -> int:
        return self.budget.attempts

    def begin_attempt(self) -> float | None:
        """Count an attempt; its timeout (None: none). Raises DeadlineExceeded when the time is spent."""
        timeout = self.budget.next_attempt()
        self._assembler = ResultAssembler()  # a result cut short is sent again whole
        return timeout

    def on_frame(self, frame: stylize_pb2.StylizeResponse) -> Queued | Started | Progress | None:
        """The event to hand to the caller for `frame` (None for a result chunk)."""
        kind = frame.WhichOneof("frame")
        if kind == "result":
            self._assembler.add(frame.result)
            return None
        if self._assembler.receiving:
            raise protocol_error(f"a {kind} frame between the chunks of the result")
        try:
            event = event_from_frame(frame)
        except ValueError as exc:
            raise protocol_error(str(exc)) from None
        if isinstance(event, Started):
            self.started = True
        return event

    def finish(self) -> Result:
        """The result, once the stream has closed OK."""
        try:
            return self._assembler.result()
        except StylizeError as exc:
            exc.attempts = self.attempts
            raise

    def on_failure(self, failure: Failure) -> float:
        """Seconds to wait before the next attempt; raises the call's error when there is none."""
        if self.started:
            again = failure.transport  # attach to the job again; anything else is the job's answer
        else:
            again = failure.retryable
        delay = self.budget.retry_delay(failure) if again else None
        if delay is None:
            raise error_for(failure, self.target, self.attempts)
        return delay


class UnaryCall:
    """The attempts of one unary call (GetServerInfo, Cancel, health): safe
    to repeat, so every failure that waiting fixes is retried."""

    def __init__(self, *, target: str, timeout: float, policy: RetryPolicy) -> None:
        self.target = target
        self.budget = CallBudget(timeout, policy)

    def begin_attempt(self) -> float:
        return max(0.001, self.budget.next_attempt() or 0.0)

    def on_failure(self, failure: Failure) -> float:
        """Seconds to wait before the next attempt; raises the call's error when there is none."""
        delay = self.budget.retry_delay(failure) if failure.retryable else None
        if delay is None:
            raise error_for(failure, self.target, self.budget.attempts)
        return delay
