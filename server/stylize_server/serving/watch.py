"""Watch: the frames of a job that already exists, by request_id, for a
caller that has no request message to send (HTTP's event stream). It is a
Stylize call that skips admission and attaches as reattach does: the same
identity and ownership rules (another's request_id reads as unknown), the same
open-call gate, --max-streams-per-job, send timeout, frames and metrics."""

from __future__ import annotations

import asyncio
import logging
import time

from stylize_server.job.errors import NotFound, StylizeError
from stylize_server.serving import calls, ownership, stream
from stylize_server.serving.calllog import CallRecord
from stylize_server.serving.service import StyleTransferService
from stylize_server.wire.status import status_for

log = logging.getLogger("stylize.jobs")


async def watch(service: StyleTransferService, context: calls.Context, request_id: str) -> None:
    t0 = time.monotonic()
    call = CallRecord()
    entered = False
    try:
        metadata = context.invocation_metadata()
        call.client = client = service.auth.client_of(metadata, context.peer())
        call.request_id = request_id
        owner = ownership.owner_of(service.auth.enabled, client, metadata)
        job = service.registry.find((owner, request_id)) if owner is not None else None
        if job is None:  # the same answer for "not yours" as for "no such job"
            hint = ownership.NO_SECRET_HINT if owner is None else ""
            raise NotFound(f"this client has no job with request_id {request_id!r}{hint}", field="request_id")
        service.gate.enter(client)
        entered = True
        call.job, call.subscriber = job, job.subscribe(reattached=True, limit=service.config.max_streams_per_job)
        call.output = await stream.send_frames(job, call.subscriber, job.head, context, service._stream_settings)
    except asyncio.CancelledError:
        call.code = stream.gone(context)
        raise
    except calls.ClientGone:
        call.code = stream.gone(context)
    except Exception as exc:
        if not isinstance(exc, StylizeError):
            log.exception("watch failed", extra={"fields": {"client": call.client, "request_id": request_id}})
        reply = status_for(exc)
        call.code, call.reason, call.message = reply.code, reply.reason.value, reply.message
        service._end_call(call, context, t0, entered)
        entered = False
        await context.abort_with_status(reply.grpc_status())
    finally:
        if entered:
            service._end_call(call, context, t0, entered)
