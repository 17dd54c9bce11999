"""Attacks on the HTTP/JSON API's upload against a real server on 127.0.0.1:
options JSON that is valid JSON but hostile (nested past Python's recursion
limit, integers past its digit limit, duplicate keys) and parts that say one
thing twice (two `content`s, two `options`). Each is a 400 INVALID_OPTION
naming the field, never a 500 with a traceback in the log nor a request that
silently takes the last of two values; the server keeps serving after them.
Also the paths and methods the page's routes must not answer."""

from __future__ import annotations

import gzip
import json
import logging
import socket
from collections.abc import Iterator
from urllib.parse import quote

import pytest

from tests.support.http import BOUNDARY, HttpApi, job_parts, multipart, reason
from tests.support.images import png_bytes
from tests.support.secret import TEST_JOB_SECRET
from tests.support.server import ServerHandle, free_port, running_server, small_request

CONTENT = png_bytes(40, 32, seed=1)
STYLE = png_bytes(32, 32, seed=2)
MULTIPART = {"Content-Type": f"multipart/form-data; boundary={BOUNDARY}"}
# Every request here is refused before admission: no job ever runs.
TOO_LONG = {"size": 32, "iterations": 10**6}
BOMB = gzip.compress(b"\0" * 50_000_000)  # 48 KB


@pytest.fixture(scope="module")
def srv() -> Iterator[ServerHandle]:
    # The result store holds one small result: the next evicts it.
    with running_server(http_port=free_port(), max_message_mb=1.0, result_store_mb=5000 / 2**20) as handle:
        yield handle


@pytest.fixture(scope="module")
def api(srv: ServerHandle) -> HttpApi:
    return HttpApi(srv.server.http_port)


def _post(api: HttpApi, parts: list[tuple[str, bytes, str | None]]) -> tuple[int, dict[str, object]]:
    status, error, _ = api.json("POST", "/v1/stylize", body=multipart(parts), headers=MULTIPART)
    return status, error


@pytest.mark.parametrize(
    "options",
    [
        b'{"size":' + b"[" * 20_000 + b"]" * 20_000 + b"}",  # 40 KB, under the options cap
        b'{"size":' + b'{"a":' * 5_000 + b"1" + b"}" * 5_000 + b"}",
        b'{"size":' + b"9" * 5_000 + b"}",  # over int_max_str_digits
        b'{"size":32,"size":64}',  # which one? a proxy and the server may disagree
    ],
    ids=["nested-arrays", "nested-objects", "huge-integer", "duplicate-key"],
)
def test_hostile_options_json_is_400_invalid_option(api: HttpApi, options: bytes) -> None:
    status, error = _post(api, [*job_parts(CONTENT, [STYLE]), ("options", options, None)])
    assert status == 400, error
    assert reason(error) == "INVALID_OPTION", error
    assert str(error["message"]).startswith("options"), error["message"]
    status, info, _ = api.json("GET", "/v1/info")
    assert status == 200 and info["limits"]["maxStyles"] >= 1


@pytest.mark.parametrize("name", ["content", "options", "init_image"])
def test_a_part_sent_twice_is_refused_naming_it(api: HttpApi, name: str) -> None:
    once = json.dumps(TOO_LONG).encode() if name == "options" else png_bytes(24, 24, seed=4)
    parts = [*job_parts(CONTENT, [STYLE], {"size": 32, "iterations": 2}), (name, once, None)]
    if name == "init_image":
        parts.append((name, once, None))
    status, error = _post(api, parts)
    assert status == 400, error
    assert reason(error) == "INVALID_OPTION" and "more than once" in str(error["message"]), error
    assert str(error["message"]).startswith(name), error


@pytest.mark.parametrize(
    "path",
    ["/static/../jobs.py", "/static/%2e%2e/jobs.py", "/static/..%2fjobs.py", "//etc/passwd", "/static//etc/passwd"],
)
def test_the_static_routes_serve_nothing_outside_static(api: HttpApi, path: str) -> None:
    status, body, _ = api.request("GET", path)
    assert status in (403, 404) and b"JobRoutes" not in body and b"root:" not in body, (status, body[:80])


@pytest.mark.parametrize("method", ["TRACE", "PUT", "OPTIONS"])
def test_methods_the_routes_do_not_have_are_405(api: HttpApi, method: str) -> None:
    status, body, _ = api.request(method, "/v1/info")
    assert status == 405, (status, body[:80])


@pytest.mark.parametrize("encoding", ["gzip", "br", "zstd"])
def test_a_compressed_body_is_refused_undecoded(api: HttpApi, encoding: str) -> None:
    # The HTTP parser must not inflate a bomb on the event loop before the
    # handler refuses it (a 486 KB gzip body stalled health checks 2.4 s, with
    # or without a token); so an encoding it could not decode gets the same
    # JSON error as one it could, not the parser's text/plain 400.
    status, error, _ = api.json("POST", "/v1/stylize", body=BOMB, headers={**MULTIPART, "Content-Encoding": encoding})
    assert status == 400 and reason(error) == "INVALID_OPTION", error
    assert error["message"].startswith("Content-Encoding"), error
    assert api.json("GET", "/v1/info")[0] == 200


def test_a_last_event_id_not_of_ours_is_ignored(api: HttpApi) -> None:
    # "p²" passed str.isdigit() and then broke int(): a 500 and a logged
    # traceback per request. "r<junk>" was read as "r": a stream with no result.
    conn = api.connection()
    conn.request("GET", "/v1/jobs/no-such-job/events", headers={"Last-Event-ID": "p²".encode()})
    response = conn.getresponse()
    assert response.status == 404 and reason(json.loads(response.read())) == "NOT_FOUND"
    conn.close()
    status, body, _ = api.post_job(CONTENT, [STYLE], {"size": 32, "iterations": 2})
    assert status == 202, body
    mine = HttpApi(api.port, {"Stylize-Job-Secret": body["job_secret"]})
    assert [kind for kind, _, _ in mine.events(body["events_url"])][-1] == "result"
    for junk in ("r-junk", "s" * 2000, "p12x", "p-1"):
        replayed = mine.events(body["events_url"], headers={"Last-Event-ID": junk})
        assert [kind for kind, _, _ in replayed] == ["started", "result"], (junk[:8], replayed)


def test_a_grpc_request_id_cannot_rewrite_the_download_header(srv: ServerHandle, api: HttpApi) -> None:
    # gRPC allows any printable ASCII request_id; the result's download name
    # quoted it as it was, so its owner could end the quoted name early.
    request_id = "x\"; filename*=UTF-8''page.html"
    frames = list(srv.stub().Stylize(small_request(request_id=request_id, iterations=2), timeout=60))
    assert frames[-1].WhichOneof("frame") == "result"
    mine = HttpApi(api.port, {"Stylize-Job-Secret": TEST_JOB_SECRET})
    status, data, headers = mine.request("GET", f"/v1/jobs/{quote(request_id, safe='')}/result")
    assert status == 200 and data.startswith(b"\x89PNG")
    disposition = headers["Content-Disposition"]
    assert disposition.count('"') == 2 and "filename*" not in disposition, disposition


def test_the_events_of_an_evicted_job_are_410_as_its_result_is(api: HttpApi) -> None:
    first = api.post_job(CONTENT, [STYLE], {"size": 32, "iterations": 2})[1]
    mine = HttpApi(api.port, {"Stylize-Job-Secret": first["job_secret"]})
    mine.events(first["events_url"])
    second = mine.post_job(CONTENT, [STYLE], {"size": 32, "iterations": 2, "seed": 7})[1]
    mine.events(second["events_url"])
    assert mine.request("GET", first["result_url"])[0] == 410
    status, gone, _ = mine.json("GET", first["events_url"])
    assert status == 410 and reason(gone) == "NOT_FOUND" and "no longer kept" in gone["message"], (status, gone)


CHARSET = '--{b}\r\nContent-Disposition: form-data; name="_charset_"\r\n\r\n' + "x" * 40 + "\r\n"


@pytest.mark.parametrize(
    ("preamble", "boundary"),
    [
        (b"\n" * 100_000, BOUNDARY),
        (CHARSET.format(b="short").encode(), "short"),
        (CHARSET.format(b=BOUNDARY).encode(), BOUNDARY),
    ],
    ids=["100000-line-preamble", "long-charset-part", "charset-part-long-boundary"],
)
def test_what_the_multipart_reader_reads_itself_is_bounded(api: HttpApi, preamble: bytes, boundary: str) -> None:
    # Lines before the first boundary cost the loop a Python call each (2 MB
    # of newlines stalled health 4 s); aiohttp reads a first `_charset_` part
    # itself and raised RuntimeError (over 31 bytes) or AssertionError (a
    # boundary over 30 bytes): a 500 with a traceback logged.
    body = preamble + multipart(job_parts(CONTENT, [STYLE], {"size": 32, "iterations": 2}), boundary)
    headers = {"Content-Type": f"multipart/form-data; boundary={boundary}"}
    status, error, _ = api.json("POST", "/v1/stylize", body=body, headers=headers)
    assert status == 400 and reason(error) == "MALFORMED_REQUEST", (status, error)
    assert api.json("GET", "/v1/info")[0] == 200


def test_a_refused_upload_is_closed_not_drained(api: HttpApi) -> None:
    # aiohttp's lingering close read and discarded a refused body for 10 s
    # more: 16 clients streaming bodies the server had refused made it read
    # 12 GB and spend 9.4 s of CPU in 12 s. Its answer, then the end of the
    # connection (with lingering, recv waited for those 10 s and timed out).
    with socket.create_connection(("127.0.0.1", api.port), timeout=5) as sock:
        head = (
            "POST /v1/stylize HTTP/1.1\r\nHost: x\r\n"
            f"Content-Type: multipart/form-data; boundary={BOUNDARY}\r\nContent-Length: {50 * 2**20}\r\n\r\n"
        )
        sock.sendall(head.encode())  # the body never comes: with lingering, the server waited for it
        reply = b""
        while chunk := sock.recv(65536):
            reply += chunk
    assert reply.startswith(b"HTTP/1.1 413") and b"TOO_LARGE" in reply, reply[:200]


def test_a_request_aiohttp_cannot_parse_is_not_an_error_in_the_log(
    api: HttpApi, caplog: pytest.LogCaptureFixture
) -> None:
    # Before any auth: each was an ERROR with a traceback, one per request.
    for head in (
        "POST /v1/stylize HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nContent-Length: 5\r\n\r\n",
        f"GET /v1/info HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {'a' * 9000}\r\n\r\n",
    ):
        with socket.create_connection(("127.0.0.1", api.port), timeout=5) as sock:
            sock.sendall(head.encode())
            reply = sock.recv(100)
        assert reply.startswith(b"HTTP/1.0 400"), (head[:40], reply)
    assert api.json("GET", "/v1/info")[0] == 200
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING], caplog.records
