"""The HTTP/JSON API (`--http-port`) against real in-process servers on
127.0.0.1: a job from POST to its events and its result, resume with
Last-Event-ID, cancel, 404/410, the errors as google.rpc.Status JSON with
gRPC's HTTP mapping, auth and identities, CORS, and the bad inputs of issue 20
(bodies too large, never finished, 10,000 parts, a decompression bomb, bad
options, slowloris headers), each followed by a request that still works."""

from __future__ import annotations

import base64
import http.client
import io
import json
import socket
import ssl
import subprocess
import threading
import time
import urllib.request
from collections.abc import Iterator

import pytest
from PIL import Image

from tests.support.http import BOUNDARY, HttpApi, job_parts, multipart, parse_events, reason
from tests.support.images import bomb_png, png_bytes
from tests.support.metrics import scrape, value
from tests.support.server import ServerHandle, free_port, running_server, shared_engine

CONTENT = png_bytes(40, 32, seed=1)
STYLE = png_bytes(32, 32, seed=2)
SMALL = {"size": 32, "iterations": 4, "progressInterval": 1, "previewMaxSide": 32}
RECEIVE_SECONDS = 1.5
MULTIPART = {"Content-Type": f"multipart/form-data; boundary={BOUNDARY}"}


@pytest.fixture(scope="module")
def open_server() -> Iterator[tuple[ServerHandle, HttpApi]]:
    """No tokens: a client is its host and its job secret."""
    with running_server(http_port=free_port(), request_receive_seconds=RECEIVE_SECONDS, max_message_mb=1.0) as srv:
        yield srv, HttpApi(srv.server.http_port)


@pytest.fixture(scope="module")
def token_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[ServerHandle, dict[str, HttpApi]]]:
    """Two clients with tokens, CORS for one origin, and a result store that holds one small result."""
    tokens = tmp_path_factory.mktemp("tokens") / "tokens"
    tokens.write_text("alice:alice-token-0123456789\nbob:bob-token-0123456789\n")
    with running_server(
        http_port=free_port(),
        auth_token_file=str(tokens),
        http_allow_origin="https://paint.example",
        result_store_mb=5000 / 2**20,
    ) as srv:
        port = srv.server.http_port
        yield (
            srv,
            {
                "alice": HttpApi(port, {"Authorization": "Bearer alice-token-0123456789"}),
                "bob": HttpApi(port, {"Authorization": "Bearer bob-token-0123456789"}),
                "nobody": HttpApi(port),
            },
        )


def _still_serves(api: HttpApi) -> None:
    status, info, _ = api.json("GET", "/v1/info")
    assert status == 200 and info["limits"]["maxStyles"] >= 1


def test_a_job_from_post_to_events_to_result(open_server: tuple[ServerHandle, HttpApi]) -> None:
    srv, api = open_server
    status, body, headers = api.post_job(CONTENT, [STYLE, png_bytes(24, 24, seed=3)], SMALL)
    assert status == 202, body
    assert set(body) == {"request_id", "events_url", "result_url", "job_secret"}
    assert headers["Location"] == body["events_url"]
    mine = HttpApi(api.port, {"Stylize-Job-Secret": body["job_secret"]})
    events = mine.events(body["events_url"])
    kinds = [kind for kind, _, _ in events]
    assert kinds[-1] == "result" and "started" in kinds, kinds
    # The stream attaches after the POST: it hears the latest progress, then the newer ones (a run of
    # progress a slow stream has not taken collapses to the newest, as on gRPC).
    progress = [data["progress"] for kind, _, data in events if kind == "progress"]
    iterations = [p["iteration"] for p in progress]
    assert iterations and iterations == sorted(set(iterations)) and iterations[-1] == 4, iterations
    preview = Image.open(io.BytesIO(base64.b64decode(progress[-1]["preview"]["data"])))
    assert max(preview.size) <= 32
    assert [event_id for kind, event_id, _ in events if kind == "progress"] == [f"p{i}" for i in iterations]
    result = events[-1][2]["result"]
    assert result["requestId"] == body["request_id"] and result["complete"] is True
    assert "data" not in result["image"]  # the bytes come from result_url
    status, image, headers = mine.request("GET", body["result_url"])
    assert status == 200 and headers["Content-Type"] == "image/png"
    assert Image.open(io.BytesIO(image)).size == (result["width"], result["height"])
    # The same job, resumed after its third progress event: only what came later.
    resumed = mine.events(body["events_url"], headers={"Last-Event-ID": "p3"})
    assert [kind for kind, _, _ in resumed] == ["result"]
    # Without the job secret the job is nobody's: 404, as for an id that never existed.
    status, other, _ = api.json("GET", body["result_url"])
    assert status == 404 and reason(other) == "NOT_FOUND"
    families = scrape(srv.metrics_port)
    assert value(families, "stylize_http_requests_total", route="/v1/stylize", code="202") >= 1
    assert value(families, "stylize_http_requests_total", route="/v1/jobs/{request_id}/result", code="404") >= 1


def test_cancel_and_the_result_before_it_exists(open_server: tuple[ServerHandle, HttpApi]) -> None:
    _, api = open_server
    secret = {"Stylize-Job-Secret": "a-secret-of-the-cancel-test"}
    options = {**SMALL, "iterations": 4000}
    status, body, _ = api.post_job(CONTENT, [STYLE], options, headers=secret)
    assert status == 202 and "job_secret" not in body  # the caller sent its own
    mine = HttpApi(api.port, secret)
    with mine.event_stream(body["events_url"]) as watching:  # attached before the job can end
        status, early, _ = mine.json("GET", body["result_url"])
        assert status == 404 and "no result yet" in early["message"]
        status, stopped, _ = mine.json("DELETE", f"/v1/jobs/{body['request_id']}")
        assert status == 200 and stopped == {"stopped": True}
        events = parse_events(watching)
    assert events[-1][0] == "error" and reason(events[-1][2]) == "CANCELLED"
    # A cancelled job is not kept (its request_id is free again): once it has ended, 410 says so.
    status, gone, _ = mine.json("GET", body["events_url"])
    assert status == 410 and "cancelled" in gone["message"], gone
    status, _, _ = mine.json("DELETE", "/v1/jobs/no-such-job")
    assert status == 404


@pytest.mark.parametrize(
    ("options", "field"),
    [
        (b"{not json", "options"),
        (json.dumps({"size": 32, "colour": "luminance"}).encode(), "options.colour"),
        (json.dumps({"content": "x"}).encode(), "options.content"),
        (json.dumps({"size": "big"}).encode(), "options"),
        (json.dumps([1, 2]).encode(), "options"),
    ],
)
def test_bad_options_are_400_naming_the_field(
    open_server: tuple[ServerHandle, HttpApi], options: bytes, field: str
) -> None:
    _, api = open_server
    body = multipart([*job_parts(CONTENT, [STYLE]), ("options", options, None)])
    status, error, _ = api.json("POST", "/v1/stylize", body=body, headers=MULTIPART)
    assert status == 400, error
    assert reason(error) == "INVALID_OPTION" and error["code"] == 3
    assert error["message"].startswith(field), error["message"]


@pytest.mark.parametrize(
    "body",
    [
        b"not multipart at all",
        f"--{BOUNDARY}\r\nContent-Disposition: form-data; name=content\r\n\r\ncut short".encode(),
        f"--{BOUNDARY}\r\nX-Long: {'a' * 100_000}\r\n\r\nx\r\n--{BOUNDARY}--\r\n".encode(),
    ],
    ids=["no-boundary", "truncated", "part-header-too-long"],
)
def test_a_malformed_body_is_400_malformed_request(open_server: tuple[ServerHandle, HttpApi], body: bytes) -> None:
    _, api = open_server
    status, error, _ = api.json("POST", "/v1/stylize", body=body, headers=MULTIPART)
    assert status == 400 and reason(error) == "MALFORMED_REQUEST", error


def test_an_option_out_of_range_is_admissions_error(open_server: tuple[ServerHandle, HttpApi]) -> None:
    _, api = open_server
    status, error, _ = api.post_job(CONTENT, [STYLE], {"size": 100_000})
    assert status == 400 and reason(error) == "INVALID_OPTION" and "size" in error["message"]


def test_a_decompression_bomb_is_refused_from_its_header(open_server: tuple[ServerHandle, HttpApi]) -> None:
    _, api = open_server
    status, error, _ = api.post_job(bomb_png(), [STYLE], SMALL)
    assert status == 413 and reason(error) == "TOO_LARGE" and "content" in error["message"]
    _still_serves(api)


def test_a_body_over_the_limit_is_refused_before_it_is_read(open_server: tuple[ServerHandle, HttpApi]) -> None:
    _, api = open_server
    with socket.create_connection(("127.0.0.1", api.port), timeout=10) as sock:
        head = (
            "POST /v1/stylize HTTP/1.1\r\nHost: x\r\n"
            f"Content-Type: multipart/form-data; boundary={BOUNDARY}\r\nContent-Length: {50 * 2**20}\r\n\r\n"
        )
        sock.sendall(head.encode())  # and not one byte of the 50 MiB
        reply = sock.recv(65536).decode(errors="replace")
    assert reply.startswith("HTTP/1.1 413"), reply[:200]
    assert "TOO_LARGE" in reply and "52428800 bytes" in reply


def test_a_chunked_body_over_the_limit_is_cut_off(open_server: tuple[ServerHandle, HttpApi]) -> None:
    _, api = open_server
    conn = api.connection()
    conn.putrequest("POST", "/v1/stylize")
    conn.putheader("Content-Type", MULTIPART["Content-Type"])
    conn.putheader("Transfer-Encoding", "chunked")
    conn.endheaders()
    start = f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="content"; filename="c.png"\r\n\r\n'.encode()
    chunk = b"\0" * 2**16
    try:
        for data in [start] + [chunk] * 40:  # 2.5 MiB against a cap of 1.25 MiB
            conn.send(f"{len(data):x}\r\n".encode() + data + b"\r\n")
    except OSError:
        pass  # the server closed the connection after its answer: the rest was never read
    response = conn.getresponse()
    error = json.loads(response.read())
    conn.close()
    assert response.status == 413 and reason(error) == "TOO_LARGE"
    _still_serves(api)


def test_ten_thousand_tiny_parts_are_refused_at_the_first_too_many(open_server: tuple[ServerHandle, HttpApi]) -> None:
    srv, api = open_server
    parts = [("style", b"x", "s.png")] * 10_000
    status, error, _ = api.json("POST", "/v1/stylize", body=multipart(parts), headers=MULTIPART)
    max_parts = 3 + 2 * srv.server.config.limits.max_styles
    assert status == 400 and f"more than {max_parts} multipart parts" in error["message"]
    _still_serves(api)


def test_a_body_that_never_finishes_times_out(open_server: tuple[ServerHandle, HttpApi]) -> None:
    _, api = open_server
    body = multipart(job_parts(CONTENT, [STYLE], SMALL))
    with socket.create_connection(("127.0.0.1", api.port), timeout=10) as sock:
        head = (
            f"POST /v1/stylize HTTP/1.1\r\nHost: x\r\nContent-Type: {MULTIPART['Content-Type']}\r\n"
            f"Content-Length: {len(body)}\r\n\r\n"
        )
        sock.sendall(head.encode() + body[: len(body) // 2])
        t0 = time.monotonic()
        reply = sock.recv(65536).decode(errors="replace")
        waited = time.monotonic() - t0
    assert reply.startswith("HTTP/1.1 408"), reply[:200]
    assert "RECEIVE_TIMEOUT" in reply and waited < RECEIVE_SECONDS + 5
    _still_serves(api)


def test_slowloris_headers_are_cut_off(open_server: tuple[ServerHandle, HttpApi]) -> None:
    _, api = open_server
    with socket.create_connection(("127.0.0.1", api.port), timeout=10) as sock:
        sock.sendall(b"GET /v1/info HTTP/1.1\r\nHost: x\r\n")
        t0 = time.monotonic()
        closed = False
        while time.monotonic() - t0 < RECEIVE_SECONDS + 8:
            try:
                sock.sendall(b"X-A: b\r\n")  # a header line now and then, never the blank line
                sock.settimeout(0.5)
                if sock.recv(1024) == b"":
                    closed = True
                    break
            except TimeoutError:
                continue
            except OSError:
                closed = True
                break
    assert closed, "the server kept a connection that never finished its headers"
    _still_serves(api)


def test_no_cors_unless_an_origin_is_named(open_server: tuple[ServerHandle, HttpApi]) -> None:
    _, api = open_server
    status, _, headers = api.request("GET", "/v1/info", headers={"Origin": "https://paint.example"})
    assert status == 200 and "Access-Control-Allow-Origin" not in headers


def test_tokens_identities_and_cors(token_server: tuple[ServerHandle, dict[str, HttpApi]]) -> None:
    _, apis = token_server
    alice, bob, nobody = apis["alice"], apis["bob"], apis["nobody"]
    # Without a token: 401 before the body is read (the Content-Length promises bytes never sent).
    with socket.create_connection(("127.0.0.1", alice.port), timeout=10) as sock:
        sock.sendall(
            f"POST /v1/stylize HTTP/1.1\r\nHost: x\r\nContent-Type: {MULTIPART['Content-Type']}\r\n"
            "Content-Length: 100000\r\n\r\n".encode()
        )
        reply = sock.recv(65536).decode(errors="replace")
    assert reply.startswith("HTTP/1.1 401") and "UNAUTHENTICATED" in reply and "WWW-Authenticate" in reply
    status, error, _ = nobody.json("GET", "/v1/info", headers={"Authorization": "Bearer wrong"})
    assert status == 401 and reason(error) == "UNAUTHENTICATED"
    # alice's job is hers: bob gets exactly what an unknown id gets.
    status, job, _ = alice.post_job(CONTENT, [STYLE], {**SMALL, "requestId": "alice-1"})
    assert status == 202 and "job_secret" not in job
    alice.events(job["events_url"])
    assert alice.request("GET", job["result_url"])[0] == 200
    theirs = bob.json("GET", "/v1/jobs/alice-1/result")
    unknown = bob.json("GET", "/v1/jobs/alice-2/result")
    assert theirs[0] == unknown[0] == 404
    assert theirs[1]["message"].replace("alice-1", "ID") == unknown[1]["message"].replace("alice-2", "ID")
    assert bob.json("DELETE", "/v1/jobs/alice-1")[0] == 404
    # A second result evicts the first from the one-result store: 410 Gone, not 404.
    status, second, _ = alice.post_job(CONTENT, [STYLE], {**SMALL, "requestId": "alice-3", "seed": 7})
    alice.events(second["events_url"])
    status, gone, _ = alice.json("GET", job["result_url"])
    assert status == 410 and reason(gone) == "NOT_FOUND" and "no longer kept" in gone["message"]
    # CORS for the named origin only.
    _, _, headers = alice.request("GET", "/v1/info", headers={"Origin": "https://paint.example"})
    assert headers["Access-Control-Allow-Origin"] == "https://paint.example"
    _, _, headers = alice.request("GET", "/v1/info", headers={"Origin": "https://evil.example"})
    assert "Access-Control-Allow-Origin" not in headers


def test_the_page_is_served_with_its_policy(open_server: tuple[ServerHandle, HttpApi]) -> None:
    _, api = open_server
    with urllib.request.urlopen(f"http://127.0.0.1:{api.port}/", timeout=10) as response:
        page = response.read().decode()
        policy = response.headers["Content-Security-Policy"]
    assert "<form" in page and "default-src 'self'" in policy
    for asset in ("/static/app.js", "/static/style.css"):
        with urllib.request.urlopen(f"http://127.0.0.1:{api.port}{asset}", timeout=10) as response:
            assert response.status == 200 and len(response.read()) > 100


def test_a_client_over_its_quota_gets_429_with_retry_after(
    token_server: tuple[ServerHandle, dict[str, HttpApi]],
) -> None:
    srv, apis = token_server
    bob = apis["bob"]
    quota = srv.server.config.max_jobs_per_client
    posted = []
    try:
        for i in range(quota):
            status, job, _ = bob.post_job(CONTENT, [STYLE], {**SMALL, "iterations": 4000, "requestId": f"bob-q{i}"})
            assert status == 202, job
            posted.append(job["request_id"])
        status, error, headers = bob.post_job(CONTENT, [STYLE], {**SMALL, "requestId": "bob-over"})
        assert status == 429 and reason(error) == "CLIENT_QUOTA", error
        assert int(headers["Retry-After"]) >= 1
        assert any(d["@type"].endswith("google.rpc.RetryInfo") for d in error["details"])
    finally:
        for request_id in posted:
            bob.json("DELETE", f"/v1/jobs/{request_id}")


def test_with_tls_the_http_port_speaks_tls(tmp_path_factory: pytest.TempPathFactory) -> None:
    folder = tmp_path_factory.mktemp("tls")
    cert, key = folder / "cert.pem", folder / "key.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", "/CN=127.0.0.1",
         "-addext", "subjectAltName=IP:127.0.0.1", "-keyout", str(key), "-out", str(cert)],
        check=True, capture_output=True, timeout=60,
    )  # fmt: skip
    with running_server(http_port=free_port(), tls_cert=str(cert), tls_key=str(key)) as srv:
        url = f"https://127.0.0.1:{srv.server.http_port}/v1/info"
        context = ssl.create_default_context(cafile=str(cert))
        with urllib.request.urlopen(url, context=context, timeout=10) as response:
            assert response.status == 200 and "limits" in json.loads(response.read())
        plain = HttpApi(srv.server.http_port, timeout=5)
        with pytest.raises((ConnectionError, http.client.HTTPException, OSError)):
            plain.request("GET", "/v1/info")


def test_while_the_model_loads_a_post_is_503_loading() -> None:
    release = threading.Event()

    def slow_loader(config: object) -> object:
        release.wait(60)
        return shared_engine()

    with running_server(http_port=free_port(), engine_loader=slow_loader, wait_ready=False) as srv:
        api = HttpApi(srv.server.http_port)
        try:
            status, error, _ = api.post_job(CONTENT, [STYLE], SMALL)
        finally:
            release.set()
        assert status == 503 and reason(error) == "LOADING", error
        srv.server.wait_ready(60)
        status, job, _ = api.post_job(CONTENT, [STYLE], SMALL, headers={"Stylize-Job-Secret": "after-loading-secret"})
        assert status == 202, job
