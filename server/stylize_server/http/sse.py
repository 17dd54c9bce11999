"""The event stream of a job: each gRPC StylizeResponse frame as one
Server-Sent Event, `event:` the frame's kind (queued, started, progress,
result), `data:` the frame in proto3 JSON (one schema for both protocols),
`id:` its place in the job, so that a reconnect with Last-Event-ID gets only
what it has not seen. The result event carries the result's metadata without
the image bytes (GET result_url has them, with their content type); a failed
job ends with an `error` event whose data is the google.rpc.Status.
"""

from __future__ import annotations

import collections
import json
import re
from collections.abc import Mapping

from aiohttp import web
from google.protobuf import json_format

from stylize_api.v1 import stylize_pb2 as pb

Rank = tuple[int, int]
_KINDS = {"queued": 0, "started": 1, "progress": 2, "result": 3}
_PREFIX = {"started": "s", "progress": "p", "result": "r"}
_LAST_ID = re.compile(r"([qsr])|p([0-9]{1,9})")


def event_id(frame: pb.StylizeResponse) -> str:
    kind = frame.WhichOneof("frame") or ""
    if kind == "progress":
        return f"p{frame.progress.iteration}"
    return _PREFIX.get(kind, "q")


def parse_last_id(text: str | None) -> Rank | None:
    """Last-Event-ID -> its rank; None when absent or not one of ours."""
    # Exactly an id event_id makes: str.isdigit() takes "²" (which int() does
    # not), and a prefix alone would read "r<junk>" as "after the result".
    found = _LAST_ID.fullmatch(text or "")
    if found is None:
        return None
    if found[1]:
        return ({"q": 0, "s": 1, "r": 3}[found[1]], 0)
    return (2, int(found[2]))


def _rank(frame: pb.StylizeResponse) -> Rank:
    kind = frame.WhichOneof("frame") or "queued"
    return (_KINDS[kind], frame.progress.iteration if kind == "progress" else 0)


class _Encoded:
    """Frames as event text, by frame object: a progress frame with a preview is
    one object shared by every stream of its job, so it is encoded once, however
    many streams send it (the loop would otherwise encode it per stream)."""

    KEEP = 64

    def __init__(self) -> None:
        self._cache: collections.OrderedDict[int, tuple[object, bytes]] = collections.OrderedDict()

    def get(self, frame: pb.StylizeResponse) -> bytes:
        hit = self._cache.get(id(frame))
        if hit is not None and hit[0] is frame:
            return hit[1]
        text = encode_event(frame)
        self._cache[id(frame)] = (frame, text)  # the frame is kept, so its id is not reused meanwhile
        while len(self._cache) > self.KEEP:
            self._cache.popitem(last=False)
        return text


def encode_event(frame: pb.StylizeResponse) -> bytes:
    kind = frame.WhichOneof("frame") or "message"
    data = json.dumps(json_format.MessageToDict(frame), separators=(",", ":"))
    return f"id: {event_id(frame)}\nevent: {kind}\ndata: {data}\n\n".encode()


def error_event(status: Mapping[str, object]) -> bytes:
    return f"event: error\ndata: {json.dumps(status, separators=(',', ':'))}\n\n".encode()


ENCODED = _Encoded()


class EventSink:
    """The `write` of a watch call: frames -> events on `response`."""

    def __init__(self, response: web.StreamResponse, resume_after: Rank | None) -> None:
        self._response = response
        self._after = resume_after

    async def __call__(self, frame: object) -> None:
        assert isinstance(frame, pb.StylizeResponse)
        kind = frame.WhichOneof("frame")
        if kind == "result":
            if frame.result.chunk_index + 1 < max(1, frame.result.chunk_count):
                return  # the metadata is in every chunk: send it once, with the last
            slim = pb.StylizeResponse()
            slim.CopyFrom(frame)
            slim.result.image.Clear()
            frame = slim
        if self._after is not None and kind != "queued" and _rank(frame) <= self._after:
            return  # the client had it before it reconnected
        await self._response.write(ENCODED.get(frame) if kind == "progress" else encode_event(frame))
