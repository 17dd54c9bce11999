"""The job routes: POST /v1/stylize drives the servicer's own Stylize (so
admission, the cost model, the fair queue, limits, auth, ownership and the
metrics are gRPC's), answers 202 once the job is admitted, and leaves the call
running in the background as a client that keeps its stream open would: the
job runs to its end whether anyone watches or not, and holds one of the
client's open calls meanwhile. GET .../events is a Watch (reattach by
request_id), GET .../result reads the kept outcome, DELETE is Cancel.

Without tokens, a client's request_ids are its host's and its job secret's
(`ownership`): the header Stylize-Job-Secret; a POST without one gets one
made for it, returned as `job_secret`, to send with the job's other routes.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import hashlib
import re
import secrets
import uuid
from urllib.parse import quote

from aiohttp import web
from google.protobuf import json_format

from stylize_api.schema import ErrorReason
from stylize_api.v1 import stylize_pb2 as pb
from stylize_server.job.errors import InvalidArgument, NotFound
from stylize_server.serving import ownership, watch
from stylize_server.serving.service import StyleTransferService
from stylize_server.wire.output import Output

from . import errors, sse, upload
from .call import Aborted, HttpCall, Sink, peer_of, status_of

SECRET_HEADER = "Stylize-Job-Secret"
# A request_id chosen over HTTP goes into a URL path as it is.
_URL_SAFE_ID = re.compile(r"^[A-Za-z0-9._~-]{1,128}$")
_UNSAFE_IN_NAME = re.compile(r"[^A-Za-z0-9._~-]")
KNOWN_IDS = 50_000  # jobs remembered (as hashes) to tell "expired" (410) from "never existed" (404)
HEARTBEAT_SECONDS = 15.0
STREAM_BUFFER_BYTES = 16 * 1024


class JobRoutes:
    def __init__(self, service: StyleTransferService) -> None:
        self.service = service
        cfg = service.config
        self.limits = upload.UploadLimits.of(cfg.max_message_bytes, cfg.limits.max_styles, cfg.request_receive_seconds)
        self._known: collections.OrderedDict[bytes, None] = collections.OrderedDict()
        self.tasks: set[asyncio.Task[None]] = set()

    # ------------------------------------------------------------ helpers
    def metadata(self, request: web.Request, secret: str | None = None) -> list[tuple[str, str]]:
        found: list[tuple[str, str]] = []
        token = request.headers.get("Authorization")
        if token is not None:
            found.append(("authorization", token))
        secret = secret or request.headers.get(SECRET_HEADER)
        if secret is not None:
            found.append((ownership.JOB_SECRET_KEY, secret))
        return found

    def call(self, request: web.Request, message: bytes | None, sink: Sink | None = None) -> HttpCall:
        peer = peer_of(request.remote, _port(request))
        return HttpCall(self.metadata(request), peer, message, sink=sink)

    def _key(self, request: web.Request, request_id: str, metadata: list[tuple[str, str]]) -> bytes | None:
        auth = self.service.auth
        client = auth.client_of(metadata, peer_of(request.remote, _port(request)))
        owner = ownership.owner_of(auth.enabled, client, metadata)
        return None if owner is None else hashlib.sha256(f"{owner}\0{request_id}".encode()).digest()

    def _remember(self, key: bytes | None) -> None:
        if key is not None:
            self._known[key] = None
            while len(self._known) > KNOWN_IDS:
                self._known.popitem(last=False)

    # -------------------------------------------------------------- POST
    async def stylize(self, request: web.Request) -> web.StreamResponse:
        upload.check_head(request, self.limits)
        made_secret = None
        if not self.service.auth.enabled and SECRET_HEADER not in request.headers:
            made_secret = secrets.token_urlsafe(24)
        metadata = self.metadata(request, made_secret)
        admitted: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        chosen: list[str] = []

        async def read() -> bytes:
            message = await upload.read_request(request, self.limits)
            if message.request_id and not _URL_SAFE_ID.match(message.request_id):
                raise InvalidArgument("request_id", "over HTTP must be 1-128 of A-Z a-z 0-9 . _ ~ -")
            message.request_id = message.request_id or uuid.uuid4().hex
            chosen.append(message.request_id)
            return message.SerializeToString()

        async def first_frame(frame: object) -> None:
            if not admitted.done():
                admitted.set_result(None)

        peer = peer_of(request.remote, _port(request))
        call = HttpCall(metadata, peer, None, sink=first_frame, reader=read)
        task = asyncio.create_task(self.service.Stylize(None, call))  # type: ignore[arg-type]
        self.tasks.add(task)
        task.add_done_callback(self._ended)
        try:
            await asyncio.wait({task, admitted}, return_when=asyncio.FIRST_COMPLETED)
        except asyncio.CancelledError:
            if not admitted.done():  # the client left before it was told the request_id
                task.cancel()
            raise
        if not admitted.done():
            return errors.response(status_of(task.exception() or RuntimeError("the call ended without a status")))
        request_id = chosen[0]
        self._remember(self._key(request, request_id, metadata))
        base = f"/v1/jobs/{quote(request_id, safe='')}"
        body: dict[str, str] = {
            "request_id": request_id,
            "events_url": f"{base}/events",
            "result_url": f"{base}/result",
        }
        if made_secret is not None:
            body["job_secret"] = made_secret
        return web.json_response(body, status=202, headers={"Location": base + "/events"})

    def _ended(self, task: asyncio.Task[None]) -> None:
        self.tasks.discard(task)
        if not task.cancelled():
            task.exception()  # Aborted: the job's error, already told to its watchers

    # ------------------------------------------------------------ events
    async def events(self, request: web.Request) -> web.StreamResponse:
        request_id = request.match_info["request_id"]
        response = web.StreamResponse(
            headers={"Content-Type": "text/event-stream", "Cache-Control": "no-store", "X-Accel-Buffering": "no"}
        )
        resume = sse.parse_last_id(request.headers.get("Last-Event-ID"))
        sink = sse.EventSink(response, resume)

        async def write(frame: object) -> None:
            if not response.prepared:
                await response.prepare(request)
                if request.transport is not None:
                    # What an unread stream may hold here: frames beyond it wait for the send timeout.
                    request.transport.set_write_buffer_limits(high=STREAM_BUFFER_BYTES)
            await sink(frame)

        call = self.call(request, None, sink=write)
        task = asyncio.create_task(watch.watch(self.service, call, request_id))  # type: ignore[arg-type]
        try:
            while not task.done():
                done, _ = await asyncio.wait({task}, timeout=HEARTBEAT_SECONDS)
                if not done and response.prepared:
                    await self._heartbeat(response, task)
            task.result()
        except Aborted as exc:
            if not response.prepared:
                if errors.reason_of(exc.status) == ErrorReason.NOT_FOUND.value:
                    gone = self._gone(request, request_id)
                    if gone is not None:
                        return gone
                return errors.response(exc.status)
            told = False
            if exc.status.details:  # not a send timeout: the client may be reading
                with contextlib.suppress(Exception):
                    async with asyncio.timeout(1.0):
                        await response.write(sse.error_event(json_format.MessageToDict(exc.status)))
                        told = True
            if not told and request.transport is not None:
                # Its buffer is full and it reads nothing: drop the connection (and
                # what waits in its buffer) rather than wait on it for ever.
                request.transport.abort()
        finally:
            task.cancel()
        if not response.prepared:
            await response.prepare(request)
        return response

    async def _heartbeat(self, response: web.StreamResponse, task: asyncio.Task[None]) -> None:
        # A comment line: finds a client that went away while the job sends nothing (queued).
        try:
            async with asyncio.timeout(self.service.config.send_timeout_seconds):
                await response.write(b":\n\n")
        except Exception:
            task.cancel()

    def _gone(self, request: web.Request, request_id: str, key: bytes | None = None) -> web.Response | None:
        """410 for a job of this client's that is no longer kept (its result and its events alike)."""
        key = key or self._key(request, request_id, self.metadata(request))
        if key is None or key not in self._known:
            return None
        gone = NotFound(
            f"the job {request_id!r} has ended and is no longer kept: a cancelled or stopped job is not "
            "kept at all, a finished one for --result-retention-seconds within --result-store-mb",
            field="request_id",
        )
        return errors.error_response(gone, http=410)

    # ------------------------------------------------------------ result
    async def result(self, request: web.Request) -> web.StreamResponse:
        request_id = request.match_info["request_id"]
        metadata = self.metadata(request)
        key = self._key(request, request_id, metadata)
        auth = self.service.auth
        owner = ownership.owner_of(auth.enabled, auth.client_of(metadata, peer_of(request.remote, 0)), metadata)
        job = self.service.registry.find((owner, request_id)) if owner is not None else None
        if job is None:
            gone = self._gone(request, request_id, key)
            if gone is not None:
                return gone
            hint = ownership.NO_SECRET_HINT if owner is None else ""
            return errors.error_response(
                NotFound(f"this client has no job with request_id {request_id!r}{hint}", field="request_id")
            )
        outcome = job.outcome
        if outcome is None:
            return errors.error_response(
                NotFound(f"the job {request_id!r} has no result yet ({job.state.value})", field="request_id")
            )
        if not isinstance(outcome, Output):
            return errors.error_response(outcome)
        extension = outcome.mime_type.rpartition("/")[2]
        # A gRPC request_id may hold any printable ASCII ('"', ';'): not a header's to quote.
        name = _UNSAFE_IN_NAME.sub("_", request_id)
        return web.Response(
            body=outcome.data,
            content_type=outcome.mime_type,
            headers={"Content-Disposition": f'attachment; filename="stylized-{name}.{extension}"'},
        )

    # ---------------------------------------------------- cancel and info
    async def cancel(self, request: web.Request) -> web.StreamResponse:
        message = pb.CancelRequest(request_id=request.match_info["request_id"]).SerializeToString()
        try:
            reply = await self.service.Cancel(None, self.call(request, message))  # type: ignore[arg-type]
        except Aborted as exc:
            return errors.response(exc.status)
        return web.json_response(json_format.MessageToDict(reply, always_print_fields_with_no_presence=True))

    async def info(self, request: web.Request) -> web.StreamResponse:
        message = pb.GetServerInfoRequest().SerializeToString()
        try:
            reply = await self.service.GetServerInfo(None, self.call(request, message))  # type: ignore[arg-type]
        except Aborted as exc:
            return errors.response(exc.status)
        return web.json_response(json_format.MessageToDict(reply))

    async def close(self) -> None:
        for task in list(self.tasks):
            task.cancel()
        if self.tasks:
            await asyncio.wait(self.tasks, timeout=5)


def _port(request: web.Request) -> int | None:
    peer = request.transport.get_extra_info("peername") if request.transport is not None else None
    return int(peer[1]) if isinstance(peer, tuple) and len(peer) >= 2 else None
