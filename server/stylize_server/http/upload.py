"""POST /v1/stylize's body -> a StylizeRequest, under limits checked before
and while it is read, never after:

* Content-Length over the cap: refused before a byte of the body is read;
* the bytes received so far over the cap (chunked bodies, lying lengths):
  refused at once, the rest never read (the connection is closed);
* a compressed body (Content-Encoding) is refused: decompressing it would
  hand us bytes the cap did not count;
* more parts than a request can use (content, options, init_image, and a
  style and a style_mask per style the server allows): refused at the first
  part too many;
* the whole body must arrive within --request-receive-seconds, as a gRPC
  request message must (RECEIVE_TIMEOUT).

The images are not looked at here: admission probes their headers
(decompression bombs included) exactly as it does for gRPC.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import cast

from aiohttp import BodyPartReader, MultipartReader, StreamReader, web
from aiohttp.http_exceptions import HttpProcessingError
from google.protobuf import json_format

from stylize_api.schema import OPTIONS, Scope
from stylize_api.v1 import stylize_pb2 as pb
from stylize_server.job.errors import InvalidArgument, MalformedRequest, ReceiveTimeout, TooLarge

# Boundaries, part headers and the options JSON, on top of the images.
MULTIPART_OVERHEAD = 256 * 1024
OPTIONS_BYTES = 64 * 1024
CHUNK = 64 * 1024
# Lines the multipart reader may read per part allowed (its boundary and
# headers; a client sends two or three); the preamble spends from the same budget.
LINES_PER_PART = 32
FILE_PARTS = ("content", "style", "style_mask", "init_image")
# Parts a request has once: a second one would silently replace (or, for
# options, merge into) the first, so what a proxy checked is not what runs.
SINGLE_PARTS = ("content", "init_image", "options")


@dataclass(frozen=True)
class UploadLimits:
    max_body_bytes: int
    max_parts: int
    receive_seconds: float

    @classmethod
    def of(cls, max_message_bytes: int, max_styles: int, receive_seconds: float) -> UploadLimits:
        return cls(max_message_bytes + MULTIPART_OVERHEAD, 3 + 2 * max_styles, receive_seconds)


def _option_names() -> Mapping[str, str]:
    """Every name the options JSON may use (proto and JSON names) -> the proto name."""
    fields = {fd.name: fd for fd in pb.StylizeRequest.DESCRIPTOR.fields}
    names: dict[str, str] = {}
    for option in OPTIONS:
        if option.scope is not Scope.INPUT:
            names[option.name] = option.name
            names[fields[option.name].json_name] = option.name
    return names


OPTION_NAMES = _option_names()


def check_head(request: web.Request, limits: UploadLimits) -> None:
    """What the headers alone decide: refused before the body is read."""
    length = request.content_length
    if length is not None and length > limits.max_body_bytes:
        raise TooLarge(
            "request",
            f"the body is {length} bytes; this server accepts at most {limits.max_body_bytes} "
            "(--max-message-mb, plus the multipart framing)",
        )
    encoding = request.headers.get("Content-Encoding", "identity").strip().lower()
    if encoding not in ("", "identity"):
        raise InvalidArgument("Content-Encoding", f"{encoding!r} is not accepted: send the body uncompressed")
    if request.content_type != "multipart/form-data":
        raise InvalidArgument(
            "Content-Type",
            f"must be multipart/form-data (content, style, style_mask, options), got {request.content_type!r}",
        )


async def read_request(request: web.Request, limits: UploadLimits) -> pb.StylizeRequest:
    """The StylizeRequest of a checked head's body (see the module's docstring)."""
    try:
        async with asyncio.timeout(limits.receive_seconds):
            return await _read(request, limits)
    except TimeoutError:
        raise ReceiveTimeout(
            f"the request body did not arrive within {limits.receive_seconds:g} s (--request-receive-seconds)"
        ) from None
    except (ValueError, HttpProcessingError) as exc:  # aiohttp's parser: a bad boundary, a part header too long
        why = exc.message if isinstance(exc, HttpProcessingError) else str(exc)
        raise MalformedRequest(f"the multipart body cannot be read ({why[:200]})") from None


class _CappedBody:
    """request.content as the multipart reader reads it, under two caps its
    own reads of lines (the preamble, part headers, boundaries) escape: the
    body's bytes (_part_bytes checks only the parts' data), and the number of
    lines: a body of newlines before the first boundary costs the event loop
    a Python call per byte (2 MB of them stalled the health check 4 s)."""

    def __init__(self, content: StreamReader, cap: int, max_lines: int) -> None:
        self._content = content
        self._cap = cap
        self._lines_left = max_lines

    def _check(self) -> None:
        if self._content.total_bytes > self._cap:
            raise TooLarge("request", f"the body is over {self._cap} bytes, this server's limit")

    async def readline(self, *, max_line_length: int | None = None) -> bytes:
        self._lines_left -= 1
        if self._lines_left < 0:
            raise MalformedRequest("the multipart body has more lines outside its parts' data than a request needs")
        line = await self._content.readline(max_line_length=max_line_length)
        self._check()
        return line

    async def read(self, n: int = -1) -> bytes:
        data = await self._content.read(n)
        self._check()
        return data

    def at_eof(self) -> bool:
        return self._content.at_eof()

    def unread_data(self, data: bytes) -> None:
        self._content.unread_data(data)


async def _read(request: web.Request, limits: UploadLimits) -> pb.StylizeRequest:
    body = _CappedBody(request.content, limits.max_body_bytes, LINES_PER_PART * limits.max_parts)
    reader = MultipartReader(request.headers, cast(StreamReader, body))
    message = pb.StylizeRequest()
    masks: list[bytes] = []
    seen: set[str] = set()
    parts = 0
    while True:
        try:
            part = await reader.next()
        except (RuntimeError, AssertionError) as exc:
            # aiohttp reads a first part named _charset_ itself: over 31 bytes it
            # raises RuntimeError, and with a boundary over 30 bytes it asserts.
            raise MalformedRequest(f"the multipart body cannot be read ({str(exc)[:200]})") from None
        if part is None:
            break
        parts += 1
        if parts > limits.max_parts:
            raise InvalidArgument(
                "request", f"more than {limits.max_parts} multipart parts; a request uses at most that many"
            )
        if not isinstance(part, BodyPartReader):
            raise InvalidArgument("request", "a nested multipart body is not accepted")
        name = part.name or ""
        if name not in (*FILE_PARTS, "options"):
            raise InvalidArgument(
                name or "request", "unknown part: use content, style, style_mask, init_image, options"
            )
        if name in SINGLE_PARTS:
            if name in seen:
                raise InvalidArgument(name, "is sent more than once; a request has one")
            seen.add(name)
        if part.headers.get("Content-Encoding", "identity").lower() not in ("", "identity"):
            raise InvalidArgument(name, "a compressed part (Content-Encoding) is not accepted")
        data = await _part_bytes(request, part, limits, OPTIONS_BYTES if name == "options" else None)
        if name == "options":
            _apply_options(message, data)
        elif name == "content":
            message.content.data = data
        elif name == "init_image":
            message.init_image.data = data
        elif name == "style":
            message.styles.add().image.data = data
        else:
            masks.append(data)
    if len(masks) > len(message.styles):
        raise InvalidArgument("style_mask", f"{len(masks)} masks for {len(message.styles)} style images")
    for style, mask in zip(message.styles, masks):
        style.mask.data = mask
    return message


async def _part_bytes(request: web.Request, part: BodyPartReader, limits: UploadLimits, cap: int | None) -> bytes:
    chunks: list[bytes] = []
    size = 0
    while True:
        chunk = await part.read_chunk(CHUNK)  # raw: a part is never decoded for us
        if not chunk:
            return b"".join(chunks)
        size += len(chunk)
        received = request.content.total_bytes
        if received > limits.max_body_bytes:
            raise TooLarge("request", f"the body is over {limits.max_body_bytes} bytes, this server's limit")
        if cap is not None and size > cap:
            raise InvalidArgument(part.name or "options", f"is over {cap} bytes")
        chunks.append(chunk)


def _unique_keys(pairs: list[tuple[str, object]]) -> dict[str, object]:
    # json.loads keeps the last of two equal keys; another reader may keep the first.
    values = dict(pairs)
    if len(values) < len(pairs):
        keys = [key for key, _ in pairs]
        raise InvalidArgument("options", f"has the key {next(k for k in keys if keys.count(k) > 1)!r} more than once")
    return values


def _apply_options(message: pb.StylizeRequest, data: bytes) -> None:
    try:
        parsed: object = json.loads(data, object_pairs_hook=_unique_keys)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise InvalidArgument("options", f"is not JSON ({exc})") from None
    except ValueError as exc:  # an integer over sys.get_int_max_str_digits()
        raise InvalidArgument("options", f"has a number too long ({str(exc)[:80]})") from None
    except RecursionError:  # 64 KB of brackets nests far deeper than the interpreter's stack
        raise InvalidArgument("options", "is nested too deeply; the options are a flat JSON object") from None
    if not isinstance(parsed, dict):
        raise InvalidArgument("options", "must be a JSON object of StylizeRequest's option fields")
    values: dict[str, object] = parsed  # a JSON object: _unique_keys' dict, its keys strings
    for key in values:
        if key not in OPTION_NAMES:
            raise InvalidArgument(
                f"options.{key}",
                f"unknown field {key!r}: the options are StylizeRequest's option fields in proto3 JSON "
                "(content, style and style_mask are parts of their own)",
            )
    try:
        json_format.ParseDict(values, message)
    except json_format.ParseError as exc:
        raise InvalidArgument("options", str(exc)) from None
