"""Static checks of the container image definition (deploy/docker).

No Docker engine is needed: hadolint lints every Dockerfile, and the
Dockerfile's instructions are read to assert what the image must do (bake the
VGG-19 weights, run as a non-root user, expose the ports, start the server)
and that it agrees with the Kubernetes manifests and the project metadata.
"""

from __future__ import annotations

import fnmatch
import importlib.metadata
import re
import shlex
import subprocess
import sys
import tomllib
from dataclasses import dataclass
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
DOCKER_DIR = REPO / "deploy" / "docker"
DOCKERFILE = DOCKER_DIR / "Dockerfile"
ENTRYPOINT = DOCKER_DIR / "entrypoint.sh"
HADOLINT = Path(sys.executable).parent / "hadolint"
WEIGHTS_FILE = "vgg19_weights_tf_dim_ordering_tf_kernels_notop.h5"
WEIGHTS_MD5 = "253f8cb515780f3b799900260a226db6"
DOCKERFILES = sorted(p for p in DOCKER_DIR.iterdir() if p.name.startswith("Dockerfile"))


@dataclass(frozen=True)
class Instruction:
    keyword: str
    args: str
    line: int


def parse(path: Path) -> list[Instruction]:
    """Instructions of a Dockerfile, continuation lines joined, comments dropped."""
    instructions: list[Instruction] = []
    pending: list[str] = []
    start = 0
    for number, raw in enumerate(path.read_text().splitlines(), start=1):
        stripped = raw.strip()
        if not pending and (not stripped or stripped.startswith("#")):
            continue
        if pending and stripped.startswith("#"):
            continue  # comment lines inside a continued instruction
        if not pending:
            start = number
        if stripped.endswith("\\"):
            pending.append(stripped[:-1])
            continue
        pending.append(stripped)
        text = " ".join(pending)
        keyword, _, args = text.partition(" ")
        instructions.append(Instruction(keyword.upper(), args.strip(), start))
        pending = []
    assert not pending, f"{path}: dangling line continuation"
    return instructions


def final_stage(instructions: list[Instruction]) -> list[Instruction]:
    last_from = max(i for i, ins in enumerate(instructions) if ins.keyword == "FROM")
    return instructions[last_from:]


def env_values(instructions: list[Instruction]) -> dict[str, str]:
    values: dict[str, str] = {}
    for ins in instructions:
        if ins.keyword == "ENV":
            for item in shlex.split(ins.args):
                key, _, value = item.partition("=")
                values[key] = value
    return values


def arg_defaults(instructions: list[Instruction]) -> dict[str, str]:
    return {k: v for ins in instructions if ins.keyword == "ARG" for k, _, v in [ins.args.partition("=")] if v}


def hadolint(path: Path) -> subprocess.CompletedProcess[str]:
    # The strictest threshold: even style findings fail.
    return subprocess.run(
        [str(HADOLINT), "--no-color", "--failure-threshold", "style", str(path)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_there_is_a_dockerfile() -> None:
    assert DOCKERFILE in DOCKERFILES


@pytest.mark.parametrize("path", DOCKERFILES, ids=lambda p: p.name)
def test_hadolint_is_clean(path: Path) -> None:
    result = hadolint(path)
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.strip() == ""


def test_hadolint_catches_a_bad_dockerfile(tmp_path: Path) -> None:
    bad = tmp_path / "Dockerfile"
    bad.write_text("FROM python\nUSER root\nRUN pip install grpcio\nCMD python -m stylize_server\n")
    result = hadolint(bad)
    assert result.returncode != 0
    for rule in ("DL3006", "DL3013", "DL3042", "DL3002"):
        assert rule in result.stdout, rule


def test_bases_are_official_tensorflow_images_of_the_tested_version() -> None:
    instructions = parse(DOCKERFILE)
    args = arg_defaults(instructions)
    froms = [ins.args.split()[0] for ins in instructions if ins.keyword == "FROM"]
    assert "tensorflow/tensorflow:${TF_VERSION}-gpu" in froms
    assert "tensorflow/tensorflow:${TF_VERSION}" in froms
    assert args["VARIANT"] == "gpu", "the GPU image is the default"
    assert froms[-1] == "base-${VARIANT}"
    tested = importlib.metadata.version("tensorflow")
    assert args["TF_VERSION"].split(".")[:2] == tested.split(".")[:2], (
        f"image TensorFlow {args['TF_VERSION']} differs from the tested {tested}"
    )


def test_weights_are_baked_at_build_time_and_used_by_path() -> None:
    stage = final_stage(parse(DOCKERFILE))
    keras_home = env_values(stage)["KERAS_HOME"]
    runs = [ins for ins in stage if ins.keyword == "RUN"]
    download = [ins for ins in runs if "keras.applications.VGG19" in ins.args]
    assert len(download) == 1
    assert re.search(r"VGG19\(include_top=False, weights=['\"]imagenet['\"]\)", download[0].args)
    assert WEIGHTS_MD5 in download[0].args and WEIGHTS_FILE in download[0].args
    first_user = next(i for i, ins in enumerate(stage) if ins.keyword == "USER")
    assert stage.index(download[0]) < first_user, "weights must be written before dropping root"
    baked = f"{keras_home}/models/{WEIGHTS_FILE}"
    assert env_values(stage)["STYLIZE_WEIGHTS"] == baked
    # The Kubernetes ConfigMap points the server at the same baked file.
    server_env = (REPO / "deploy" / "k8s" / "base" / "server.env").read_text()
    assert f"STYLIZE_WEIGHTS={baked}" in server_env.splitlines()


def test_weights_snippet_matches_the_keras_api() -> None:
    stage = final_stage(parse(DOCKERFILE))
    run = next(ins.args for ins in stage if ins.keyword == "RUN" and "keras.applications" in ins.args)
    snippet = re.search(r'python3 -c "([^"]+)"', run).group(1)
    compile(snippet, "<dockerfile>", "exec")
    # Ask the installed Keras (the tested version) whether the call is valid.
    check = (
        "import inspect, keras; "
        "p = inspect.signature(keras.applications.VGG19).parameters; "
        "assert {'include_top', 'weights'} <= set(p), p"
    )
    proc = subprocess.run([sys.executable, "-c", check], capture_output=True, text=True, timeout=240, check=False)
    assert proc.returncode == 0, proc.stderr[-2000:]


def test_runs_as_the_non_root_user_the_manifests_expect() -> None:
    stage = final_stage(parse(DOCKERFILE))
    users = [ins.args for ins in stage if ins.keyword == "USER"]
    assert users, "the image must not run as root"
    uid, _, gid = users[-1].partition(":")
    assert uid.isdigit() and int(uid) != 0, "numeric UID, so runAsNonRoot can verify it"
    assert gid.isdigit() and int(gid) != 0
    useradd = next(ins.args for ins in stage if ins.keyword == "RUN" and "useradd" in ins.args)
    assert f"--uid {uid}" in useradd
    deployment = (REPO / "deploy" / "k8s" / "base" / "deployment.yaml").read_text()
    assert f"runAsUser: {uid}" in deployment and f"runAsGroup: {gid}" in deployment


def test_exposes_the_ports_and_starts_the_server() -> None:
    stage = final_stage(parse(DOCKERFILE))
    exposed = {p for ins in stage if ins.keyword == "EXPOSE" for p in ins.args.split()}
    assert exposed == {"50051", "8080", "9090"}
    entrypoints = [ins.args for ins in stage if ins.keyword == "ENTRYPOINT"]
    assert entrypoints == ['["stylize-entrypoint"]'], "exec form, so SIGTERM reaches the server"
    copies = [ins.args for ins in stage if ins.keyword == "COPY" and "entrypoint" in ins.args]
    assert copies == ["--chmod=0755 deploy/docker/entrypoint.sh /usr/local/bin/stylize-entrypoint"]
    # The script ends in `exec stylize-server` on every path: the server replaces the shell.
    script = [
        line.strip()
        for line in ENTRYPOINT.read_text().splitlines()
        if line.strip().startswith(("exec", "stylize-server"))
    ]
    assert script and all(line.startswith("exec stylize-server") for line in script)
    scripts = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["scripts"]
    # The shim answers --version and a missing server extra itself, then runs stylize_server.app.main.
    assert scripts["stylize-server"] == "stylize_server.entry:main"
    # The CLI is in the image too: the TLS probes run `stylize health`.
    assert scripts["stylize"] == "stylize.cli:main"
    install = [ins.args for ins in stage if ins.keyword == "RUN" and "pip install" in ins.args]
    assert len(install) == 1 and "[server]" in install[0] and "--no-cache-dir" in install[0]


def _dockerignore_excludes(path: str, patterns: list[str]) -> bool:
    """Docker's rule: the last pattern matching the path (or a parent) wins."""
    parts = path.split("/")
    candidates = ["/".join(parts[: i + 1]) for i in range(len(parts))]
    excluded = False
    for pattern in patterns:
        negate = pattern.startswith("!")
        pattern = pattern[1:] if negate else pattern
        pattern = pattern.rstrip("/")
        if pattern.startswith("**/"):
            hit = any(fnmatch.fnmatch(c.split("/")[-1], pattern[3:]) for c in candidates)
        else:
            hit = any(fnmatch.fnmatch(c, pattern) for c in candidates)
        if hit:
            excluded = not negate
    return excluded


def test_dockerignore_keeps_what_the_image_copies_and_drops_the_rest() -> None:
    patterns = [
        line.strip()
        for line in (REPO / ".dockerignore").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]
    copied: list[str] = []
    for ins in parse(DOCKERFILE):
        if ins.keyword == "COPY" and "--from" not in ins.args:
            copied.extend(arg for arg in ins.args.split()[:-1] if not arg.startswith("--"))  # --chmod=...: a flag
    assert copied
    for source in copied:
        assert (REPO / source).exists(), f"COPY source {source} is missing from the repository"
        assert not _dockerignore_excludes(source, patterns), f"{source} is excluded by .dockerignore"
    assert not _dockerignore_excludes("server/stylize_server/engine.py", patterns)
    for unwanted in (
        ".venv",
        ".git",
        "out",
        "tests",
        "deploy/k8s",
        "server/stylize_server/__pycache__",
        "stylize.egg-info",
        "client/stylize.egg-info",
    ):
        assert _dockerignore_excludes(unwanted, patterns), unwanted
