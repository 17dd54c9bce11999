"""A small HTTP client for the HTTP/JSON API's tests (http.client, so a test
controls every header and byte): multipart bodies built by hand, JSON and
Server-Sent Events read back.

    api = HttpApi(port, headers={"Authorization": "Bearer t"})
    status, body, headers = api.post_job(content=png, styles=[png], options={"size": 32})
    events = api.events(body["events_url"])  # [(event, id, data dict)] until the stream ends
"""

from __future__ import annotations

import contextlib
import http.client
import json
import uuid
from collections.abc import Iterator, Sequence
from typing import Any

BOUNDARY = "stylize-test-" + uuid.uuid4().hex


def multipart(parts: Sequence[tuple[str, bytes, str | None]], boundary: str = BOUNDARY) -> bytes:
    """(name, data, filename or None) parts as one multipart/form-data body."""
    out = bytearray()
    for name, data, filename in parts:
        out += f"--{boundary}\r\n".encode()
        disposition = f'form-data; name="{name}"' + (f'; filename="{filename}"' if filename else "")
        out += f"Content-Disposition: {disposition}\r\n\r\n".encode()
        out += data + b"\r\n"
    out += f"--{boundary}--\r\n".encode()
    return bytes(out)


def job_parts(
    content: bytes, styles: Sequence[bytes], options: dict[str, Any] | None = None, masks: Sequence[bytes] = ()
) -> list[tuple[str, bytes, str | None]]:
    parts: list[tuple[str, bytes, str | None]] = [("content", content, "content.png")]
    parts += [("style", style, f"style{i}.png") for i, style in enumerate(styles)]
    parts += [("style_mask", mask, f"mask{i}.png") for i, mask in enumerate(masks)]
    if options is not None:
        parts.append(("options", json.dumps(options).encode(), None))
    return parts


class HttpApi:
    def __init__(self, port: int, headers: dict[str, str] | None = None, timeout: float = 60) -> None:
        self.port = port
        self.headers = dict(headers or {})
        self.timeout = timeout

    def connection(self) -> http.client.HTTPConnection:
        return http.client.HTTPConnection("127.0.0.1", self.port, timeout=self.timeout)

    def request(
        self, method: str, path: str, body: bytes | None = None, headers: dict[str, str] | None = None
    ) -> tuple[int, bytes, http.client.HTTPMessage]:
        conn = self.connection()
        try:
            conn.request(method, path, body=body, headers={**self.headers, **(headers or {})})
            response = conn.getresponse()
            return response.status, response.read(), response.headers
        finally:
            conn.close()

    def json(self, method: str, path: str, **kw: Any) -> tuple[int, Any, http.client.HTTPMessage]:
        status, data, headers = self.request(method, path, **kw)
        return status, json.loads(data) if data else None, headers

    def post_job(
        self, content: bytes, styles: Sequence[bytes], options: dict[str, Any] | None = None, **kw: Any
    ) -> tuple[int, Any, http.client.HTTPMessage]:
        body = multipart(job_parts(content, styles, options, kw.pop("masks", ())))
        headers = {"Content-Type": f"multipart/form-data; boundary={BOUNDARY}", **kw.pop("headers", {})}
        return self.json("POST", "/v1/stylize", body=body, headers=headers)

    def events(self, path: str, headers: dict[str, str] | None = None) -> list[tuple[str, str, Any]]:
        """Every event of the stream until the server ends it: (event, id, data)."""
        with self.event_stream(path, headers) as response:
            return parse_events(response)

    @contextlib.contextmanager
    def event_stream(self, path: str, headers: dict[str, str] | None = None) -> Iterator[http.client.HTTPResponse]:
        """An event stream whose headers have come: the server has attached it to the job."""
        conn = self.connection()
        try:
            conn.request("GET", path, headers={**self.headers, **(headers or {})})
            response = conn.getresponse()
            assert response.status == 200, (response.status, response.read())
            assert response.headers["Content-Type"].startswith("text/event-stream")
            yield response
        finally:
            conn.close()


def parse_events(response: http.client.HTTPResponse) -> list[tuple[str, str, Any]]:
    events: list[tuple[str, str, Any]] = []
    fields: dict[str, str] = {}
    for raw in response:
        line = raw.decode().rstrip("\r\n")
        if not line:
            if "data" in fields:
                events.append((fields.get("event", "message"), fields.get("id", ""), json.loads(fields["data"])))
            fields = {}
        elif not line.startswith(":"):
            key, _, value = line.partition(": ")
            fields[key] = value
    return events


def reason(body: Any) -> str:
    """The ErrorInfo reason of a google.rpc.Status in JSON."""
    for detail in body.get("details", []):
        if detail.get("@type", "").endswith("google.rpc.ErrorInfo"):
            return str(detail["reason"])
    return ""
