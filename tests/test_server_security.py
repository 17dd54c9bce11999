"""Auth, TLS and mTLS, and reflection on a real in-process server. TLS
certificates are made per test session with the `openssl` command line (the
`cryptography` package is not installed): a throw-away CA, a server
certificate for 127.0.0.1 and a client certificate, all signed by it."""

from __future__ import annotations

import pathlib
import shutil
import subprocess
from dataclasses import dataclass

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc
from grpc_reflection.v1alpha.proto_reflection_descriptor_database import ProtoReflectionDescriptorDatabase

from stylize_api.v1 import stylize_pb2 as pb
from tests.support.metrics import scrape, value, wait_for_value
from tests.support.server import running_server, small_request

TOKEN = "s3cret-token-for-tests"


def _ok(stub, metadata=None) -> None:
    frames = list(stub.Stylize(small_request(iterations=1), timeout=60, metadata=metadata))
    assert frames[-1].HasField("result")


def _code(fn) -> tuple[grpc.StatusCode, str]:
    with pytest.raises(grpc.RpcError) as caught:
        fn()
    return caught.value.code(), caught.value.details() or ""


# ---------------------------------------------------------------- auth
@pytest.fixture
def token_file(tmp_path: pathlib.Path) -> pathlib.Path:
    path = tmp_path / "token"
    path.write_text(TOKEN + "\n")  # trailing newline as editors and Secrets write it
    return path


def test_auth_on_refuses_calls_without_the_token(engine, token_file):
    with running_server(engine=engine, auth_token_file=str(token_file)) as srv:
        stub = srv.stub()
        before = value(scrape(srv.metrics_port), "stylize_requests_total", code="UNAUTHENTICATED")
        for metadata in (
            None,
            [("authorization", "Bearer wrong")],
            [("authorization", TOKEN)],
            [("authorization", f"Bearer {TOKEN}x")],
        ):
            code, details = _code(lambda md=metadata: list(stub.Stylize(small_request(), timeout=30, metadata=md)))
            assert code == grpc.StatusCode.UNAUTHENTICATED
            assert "authorization: Bearer" in details and TOKEN not in details
        code, _ = _code(lambda: stub.GetServerInfo(pb.GetServerInfoRequest(), timeout=10))
        assert code == grpc.StatusCode.UNAUTHENTICATED
        wait_for_value(srv.metrics_port, "stylize_requests_total", lambda v: v == before + 4, code="UNAUTHENTICATED")

        auth = [("authorization", f"Bearer {TOKEN}")]
        _ok(stub, auth)
        assert stub.GetServerInfo(pb.GetServerInfoRequest(), timeout=10, metadata=auth).model.name == "vgg19"

        # Probes stay open; reflection, like every RPC but health, needs the token.
        health = health_pb2_grpc.HealthStub(srv.channel())
        for service in ("", "stylize.v1.StyleTransfer"):
            reply = health.Check(health_pb2.HealthCheckRequest(service=service), timeout=10)
            assert reply.status == health_pb2.HealthCheckResponse.SERVING
        reflection = reflection_pb2_grpc.ServerReflectionStub(srv.channel())
        ask = reflection_pb2.ServerReflectionRequest(list_services="")
        code, _ = _code(lambda: list(reflection.ServerReflectionInfo(iter([ask]), timeout=10)))
        assert code == grpc.StatusCode.UNAUTHENTICATED
        replies = list(reflection.ServerReflectionInfo(iter([ask]), timeout=10, metadata=auth))
        assert "stylize.v1.StyleTransfer" in {s.name for s in replies[0].list_services_response.service}


def test_auth_off_needs_no_token(server):
    _ok(server.stub())
    assert server.stub().GetServerInfo(pb.GetServerInfoRequest(), timeout=10).version


# ----------------------------------------------------------------- TLS
@dataclass(frozen=True)
class Certs:
    ca: pathlib.Path
    server_cert: pathlib.Path
    server_key: pathlib.Path
    client_cert: pathlib.Path
    client_key: pathlib.Path
    other_ca: pathlib.Path

    def read(self, name: str) -> bytes:
        return getattr(self, name).read_bytes()


def _openssl(*args: str, cwd: pathlib.Path) -> None:
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True, timeout=60)


def _make_ca(d: pathlib.Path, name: str) -> None:
    _openssl(
        "req",
        "-x509",
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:prime256v1",
        "-nodes",
        "-keyout",
        f"{name}.key",
        "-out",
        f"{name}.pem",
        "-days",
        "2",
        "-subj",
        f"/CN={name}",
        cwd=d,
    )


def _make_leaf(d: pathlib.Path, name: str, ca: str, ext: str) -> None:
    (d / f"{name}.ext").write_text(ext)
    _openssl(
        "req",
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:prime256v1",
        "-nodes",
        "-keyout",
        f"{name}.key",
        "-out",
        f"{name}.csr",
        "-subj",
        f"/CN={name}",
        cwd=d,
    )
    _openssl(
        "x509",
        "-req",
        "-in",
        f"{name}.csr",
        "-CA",
        f"{ca}.pem",
        "-CAkey",
        f"{ca}.key",
        "-CAcreateserial",
        "-out",
        f"{name}.pem",
        "-days",
        "2",
        "-extfile",
        f"{name}.ext",
        cwd=d,
    )


@pytest.fixture(scope="module")
def certs(tmp_path_factory) -> Certs:
    assert shutil.which("openssl"), "the openssl command line is needed to make test certificates"
    d = tmp_path_factory.mktemp("tls")
    _make_ca(d, "test-ca")
    _make_ca(d, "other-ca")
    _make_leaf(d, "server", "test-ca", "subjectAltName=IP:127.0.0.1,DNS:localhost\nextendedKeyUsage=serverAuth\n")
    _make_leaf(d, "client", "test-ca", "extendedKeyUsage=clientAuth\n")
    return Certs(
        d / "test-ca.pem", d / "server.pem", d / "server.key", d / "client.pem", d / "client.key", d / "other-ca.pem"
    )


def test_tls(engine, certs):
    with running_server(engine=engine, tls_cert=str(certs.server_cert), tls_key=str(certs.server_key)) as srv:
        secure = srv.channel(grpc.ssl_channel_credentials(root_certificates=certs.read("ca")))
        _ok(srv.stub(secure))
        # A plaintext client cannot talk to a TLS port.
        code, _ = _code(lambda: srv.stub(srv.channel()).GetServerInfo(pb.GetServerInfoRequest(), timeout=5))
        assert code == grpc.StatusCode.UNAVAILABLE
        # A client that does not trust the server's CA refuses it.
        untrusting = srv.channel(grpc.ssl_channel_credentials(root_certificates=certs.read("other_ca")))
        code, _ = _code(lambda: srv.stub(untrusting).GetServerInfo(pb.GetServerInfoRequest(), timeout=5))
        assert code == grpc.StatusCode.UNAVAILABLE


def test_mtls(engine, certs):
    with running_server(
        engine=engine,
        tls_cert=str(certs.server_cert),
        tls_key=str(certs.server_key),
        tls_client_ca=str(certs.ca),
    ) as srv:
        with_cert = grpc.ssl_channel_credentials(
            root_certificates=certs.read("ca"),
            private_key=certs.read("client_key"),
            certificate_chain=certs.read("client_cert"),
        )
        _ok(srv.stub(srv.channel(with_cert)))
        without_cert = grpc.ssl_channel_credentials(root_certificates=certs.read("ca"))
        code, _ = _code(lambda: srv.stub(srv.channel(without_cert)).GetServerInfo(pb.GetServerInfoRequest(), timeout=5))
        assert code == grpc.StatusCode.UNAVAILABLE


# ---------------------------------------------------------- reflection
def test_reflection_lists_and_describes_the_service(server):
    db = ProtoReflectionDescriptorDatabase(server.channel())
    services = db.get_services()
    assert "stylize.v1.StyleTransfer" in services
    assert "grpc.health.v1.Health" in services
    file_proto = db.FindFileContainingSymbol("stylize.v1.StyleTransfer")
    service = next(s for s in file_proto.service if s.name == "StyleTransfer")
    assert {m.name for m in service.method} == {"Stylize", "GetServerInfo", "Cancel", "StylizeVideo"}
    stylize = next(m for m in service.method if m.name == "Stylize")
    assert stylize.server_streaming and stylize.output_type == ".stylize.v1.StylizeResponse"
    video = next(m for m in service.method if m.name == "StylizeVideo")
    assert video.client_streaming and video.server_streaming and video.input_type == ".stylize.v1.VideoRequest"
