"""The Kubernetes manifests of deploy/k8s against a real server, and the
monitoring objects they ship.

The probes: a `stylize-server` process started from the rendered ConfigMap
(the pod's Secret mounts moved under a temporary directory) answers kubelet's
native gRPC probes, and with the tls component the exec probes, which also
verify the server's certificate. The monitoring objects: the GPU overlays
carry deploy/monitoring's rules and dashboard unchanged, deploy/monitoring
applies on its own, and the PrometheusRule schema refuses what the operator
would (the rules themselves are checked with promtool in test_monitoring.py).
"""

from __future__ import annotations

import copy
import json
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import grpc
import pytest
import yaml
from grpc_health.v1 import health_pb2, health_pb2_grpc

from stylize_api.v1 import stylize_pb2, stylize_pb2_grpc
from tests.support.k8s import (
    GPU_OVERLAYS,
    K8S_VERSIONS,
    REPO,
    ManifestError,
    kustomize,
    of_kind,
    only,
    rendered,
    server_config,
    server_container,
    validate_object,
    with_component,
)
from tests.support.process import server_process

# --- the probes against a real server ------------------------------------------------

SECRET_DIRS = ("/var/run/secrets/stylize-tls/", "/var/run/secrets/stylize/")


def local_env(config: dict[str, str], secrets: Path) -> dict[str, str]:
    """The rendered ConfigMap with the pod's secret mounts moved under a local
    directory: secrets/stylize-tls/..., secrets/stylize/..."""
    env = dict(config)
    for key, value in env.items():
        for prefix in SECRET_DIRS:
            if value.startswith(prefix):
                env[key] = str(secrets / prefix.rstrip("/").rsplit("/", 1)[1] / value[len(prefix) :])
    return env


def write_token(secrets: Path) -> None:
    (secrets / "stylize").mkdir(parents=True, exist_ok=True)
    (secrets / "stylize" / "token").write_text("s3cret-probe-test-token\n")


def openssl(*args: str, cwd: Path) -> None:
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True, timeout=60)


def write_tls_secret(directory: Path, dns_names: list[str]) -> None:
    """What a kubernetes.io/tls Secret holds (tls.crt, tls.key, ca.crt), made
    with a throw-away CA; plus other-ca.crt, a CA that did not sign it."""
    directory.mkdir(parents=True)
    for ca in ("ca", "other-ca"):
        openssl(
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
            "-keyout",
            f"{ca}.key",
            "-out",
            f"{ca}.crt",
            "-days",
            "2",
            "-subj",
            f"/CN={ca}",
            cwd=directory,
        )
    openssl(
        "req",
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:prime256v1",
        "-nodes",
        "-keyout",
        "tls.key",
        "-out",
        "tls.csr",
        "-subj",
        f"/CN={dns_names[0]}",
        cwd=directory,
    )
    (directory / "san.ext").write_text(
        "subjectAltName=" + ",".join(f"DNS:{n}" for n in dns_names) + "\nextendedKeyUsage=serverAuth\n"
    )
    openssl(
        "x509",
        "-req",
        "-in",
        "tls.csr",
        "-CA",
        "ca.crt",
        "-CAkey",
        "ca.key",
        "-CAcreateserial",
        "-out",
        "tls.crt",
        "-days",
        "2",
        "-extfile",
        "san.ext",
        cwd=directory,
    )


# The probes answer the same whatever the server compiled or measured before
# serving; the ConfigMap's warm-up and its precision=auto start-up measurement
# (7 s each start on 2 cores; tested in test_engine_precision.py) are skipped.
FAST_START = ("--warmup-sizes", "", "--precision", "float32")


def test_native_grpc_probes_pass_on_a_server_run_with_the_rendered_config(tmp_path: Path) -> None:
    """What kubelet does: a plaintext grpc.health.v1 Check with no credentials,
    against a server started from the rendered ConfigMap (auth token on)."""
    objs = rendered("overlays/gpu")
    container = server_container(objs)
    write_token(tmp_path)
    env = local_env(server_config(objs), tmp_path)
    with server_process(*FAST_START, env=env) as proc, grpc.insecure_channel(proc.address) as channel:
        health = health_pb2_grpc.HealthStub(channel)
        for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
            spec = container[probe]
            reply = health.Check(
                health_pb2.HealthCheckRequest(service=spec["grpc"].get("service", "")), timeout=spec["timeoutSeconds"]
            )
            assert reply.status == health_pb2.HealthCheckResponse.SERVING, probe
        # The ConfigMap really turned authentication on: the API refuses
        # the same credential-less channel the probes used.
        with pytest.raises(grpc.RpcError) as refused:
            stylize_pb2_grpc.StyleTransferStub(channel).GetServerInfo(stylize_pb2.GetServerInfoRequest(), timeout=10)
        assert refused.value.code() == grpc.StatusCode.UNAUTHENTICATED


def test_tls_exec_probes_pass_on_a_tls_server_and_check_the_certificate(tmp_path: Path) -> None:
    objs = with_component("tls", tmp_path / "kustomize")
    container = server_container(objs)
    secrets = tmp_path / "secrets"
    write_token(secrets)
    write_tls_secret(secrets / "stylize-tls", ["stylize.stylize.svc", "stylize-headless.stylize.svc"])
    env = local_env(server_config(objs), secrets)
    stylize_cli = Path(sys.executable).parent / "stylize"

    def probe_command(probe: str, port: int) -> list[str]:
        command = container[probe]["exec"]["command"]
        local = [str(stylize_cli)] + [arg.replace("127.0.0.1:50051", f"127.0.0.1:{port}") for arg in command[1:]]
        return [local_env({"arg": arg}, secrets)["arg"] for arg in local]

    with server_process(*FAST_START, env=env) as proc:
        for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
            result = subprocess.run(
                probe_command(probe, proc.port),
                capture_output=True,
                text=True,
                timeout=container[probe]["timeoutSeconds"] + 20,
                check=False,
            )
            assert result.returncode == 0, f"{probe}: {result.stdout}{result.stderr}"
        # The probe really verifies the server: a CA that did not sign it fails.
        wrong_ca = [arg.replace("/ca.crt", "/other-ca.crt") for arg in probe_command("readinessProbe", proc.port)]
        result = subprocess.run(wrong_ca, capture_output=True, text=True, timeout=40, check=False)
        assert result.returncode != 0


# --- the monitoring objects (deploy/monitoring; rules and dashboard are checked with promtool in test_monitoring.py) --

MONITORING = REPO / "deploy" / "monitoring"


@pytest.mark.parametrize("overlay", GPU_OVERLAYS)
def test_gpu_overlays_ship_the_rules_and_dashboard_unchanged(overlay: str) -> None:
    objs = rendered(overlay)
    rule = only(objs, "PrometheusRule", "stylize")
    assert rule["spec"] == yaml.safe_load((MONITORING / "prometheus-rule.yaml").read_text())["spec"]
    dashboards = [o for o in of_kind(objs, "ConfigMap") if o["metadata"]["labels"].get("grafana_dashboard") == "1"]
    assert [d["metadata"]["name"] for d in dashboards] == ["stylize-grafana-dashboard"]
    (text,) = dashboards[0]["data"].values()
    assert json.loads(text) == json.loads((MONITORING / "grafana-dashboard.json").read_text())
    # kubectl's client-side apply keeps a copy in an annotation limited to 256 KiB.
    assert len(text.encode()) < 256 * 1024


def test_monitoring_applies_on_its_own() -> None:
    objs = kustomize(MONITORING)
    assert sorted((o["kind"], o["metadata"]["name"]) for o in objs) == [
        ("ConfigMap", "stylize-grafana-dashboard"),
        ("PrometheusRule", "stylize"),
    ]
    for obj in objs:
        validate_object(obj, K8S_VERSIONS[-1])


def test_prometheus_rule_schema_rejects_what_the_operator_would() -> None:
    rule = only(rendered("overlays/gpu"), "PrometheusRule")
    validate_object(rule, K8S_VERSIONS[-1])
    groups = rule["spec"]["groups"]
    record_at = next(i for i, r in enumerate(groups[0]["rules"]) if "record" in r)
    alert_at = next(i for i, r in enumerate(groups[1]["rules"]) if "alert" in r)

    def broken(change: Any) -> dict[str, Any]:
        bad = copy.deepcopy(rule)
        change(bad["spec"]["groups"])
        return bad

    # Each change and what the error names: the field, or the rule that is
    # neither a valid recording rule nor a valid alert.
    cases: list[tuple[Any, str]] = [
        (lambda g: g[0]["rules"][record_at].update({"for": "5m"}), f"spec.groups.0.rules.{record_at}"),
        (lambda g: g[0]["rules"][record_at].update({"annotations": {"x": "y"}}), f"spec.groups.0.rules.{record_at}"),
        (lambda g: g[1]["rules"][alert_at].update({"record": "x:y:sum"}), f"spec.groups.1.rules.{alert_at}"),
        (lambda g: g[1]["rules"][alert_at].pop("expr"), "'expr' is a required property"),
        (lambda g: g[1]["rules"][alert_at].update({"annotation": {"x": "y"}}), "'annotation' was unexpected"),
        (lambda g: g[1]["rules"][alert_at].update({"for": "5 minutes"}), "'5 minutes' does not match"),
        (lambda g: g[1].update({"rule": g[1].pop("rules")}), "'rule' was unexpected"),
    ]
    for change, error in cases:
        with pytest.raises(ManifestError, match=re.escape(error)):
            validate_object(broken(change), K8S_VERSIONS[-1])
