"""What the schemas cannot check in the Kubernetes manifests of deploy/k8s.

Every overlay is rendered with the real `kubectl kustomize` (see
tests/support/k8s.py) and the tests assert what no schema knows: the GPU
scheduling essentials, the gRPC probes on the server's port, the grace-period
ordering that lets a pod finish its jobs, the configuration and Secret wiring,
a CPU pod's memory budget, the pod's security context, and that the pieces
(Services, PDB, HPA, adapter rule, KEDA, NetworkPolicy, ServiceMonitor) point
at each other correctly.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest
import yaml

import stylize_server.config as server_config_module
from tests.support.k8s import (
    GPU_OVERLAYS,
    GRPC_PORT,
    HTTP_PORT,
    K8S,
    METRICS_PORT,
    OVERLAYS,
    matches,
    of_kind,
    only,
    rendered,
    server_accepts,
    server_config,
    server_container,
)


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
    assert int(config["STYLIZE_HTTP_PORT"]) == HTTP_PORT
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    assert ports == {"grpc": GRPC_PORT, "http": HTTP_PORT, "metrics": METRICS_PORT}
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


def test_base_server_env_lists_every_flag_but_tls() -> None:
    keys = {
        line.split("=", 1)[0]
        for line in (K8S / "base" / "server.env").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    }
    tls = {"STYLIZE_TLS_CERT", "STYLIZE_TLS_KEY", "STYLIZE_TLS_CLIENT_CA"}
    assert sorted(server_config_module.env_vars() - tls - keys) == []


def test_the_documented_token_secret_format_is_what_the_server_reads(tmp_path: Path) -> None:
    from stylize_server.serving.auth import load_tokens

    text = (K8S / "base" / "deployment.yaml").read_text()
    block = text.split("./tokens holds one `name:token` line per client", 1)[1].split("A file with one bare token", 1)[
        0
    ]
    example = [line.strip().lstrip("#").strip() for line in block.splitlines()[2:] if ":" in line]
    assert len(example) == 2, example
    tokens = tmp_path / "tokens"
    tokens.write_text("\n".join(example) + "\n")
    assert sorted(load_tokens(str(tokens))) == ["render-farm", "web-frontend"]


def _bytes(quantity: str) -> int:
    units = {"Ki": 2**10, "Mi": 2**20, "Gi": 2**30}
    for unit, factor in units.items():
        if quantity.endswith(unit):
            return int(float(quantity[: -len(unit)]) * factor)
    return int(quantity)


def test_a_cpu_pod_s_memory_limit_holds_its_budget_calls_and_kept_results() -> None:
    objs = rendered("overlays/cpu")
    config = server_accepts(server_config(objs))
    limit = _bytes(server_container(objs)["resources"]["limits"]["memory"])
    process = 2 * 2**30  # TensorFlow, VGG-19 and the server itself, measured ~1.5 GiB (README)
    held = config.max_open_calls * config.max_message_bytes + config.result_store_bytes
    assert config.device_memory_budget > 0, "a CPU pod must not take the 8 GiB CPU default under an 8Gi limit"
    assert config.device_memory_budget + process + held <= limit


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
    assert {p["name"]: p["port"] for p in cluster_ip["spec"]["ports"]} == {
        "grpc": GRPC_PORT,
        "http": HTTP_PORT,
        "metrics": METRICS_PORT,
    }
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
    assert set(by_port) == {GRPC_PORT, HTTP_PORT, METRICS_PORT}
    for port in (GRPC_PORT, HTTP_PORT):  # the page and the JSON API: the same clients as gRPC
        assert all(peer["podSelector"]["matchLabels"] == {"stylize-client": "true"} for peer in by_port[port])
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
