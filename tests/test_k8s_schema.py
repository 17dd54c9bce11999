"""Schema validation of the Kubernetes manifests in deploy/k8s.

Every overlay, and the default one with each optional component, is rendered
with the real `kubectl kustomize` and each object is validated strictly, for
the oldest and the newest Kubernetes the manifests support (see
tests/support/k8s.py). The negative tests make sure the validation really
fails on what the API server or a CRD's schema would reject, and that the
server-side parse of the ConfigMap refuses typos and bad values.
"""

from __future__ import annotations

import copy
import os
from pathlib import Path

import pytest

from tests.support.k8s import (
    COMPONENTS,
    K8S_VERSIONS,
    OVERLAYS,
    ManifestError,
    only,
    rendered,
    server_accepts,
    server_config,
    server_container,
    validate_object,
    with_component,
)


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
        server_accepts(dict(config, STYLIZE_WARMUP_SIZES="8192"))  # over --max-side


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
