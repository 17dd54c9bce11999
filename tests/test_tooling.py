"""The developer tooling: `make help` lists every target, `make lint` runs
every checker (ruff check, ruff format --check, mypy, hadolint) and reports
each one's findings in one run, and `.ci/run` runs setup, lint and tests and
stops with a clear message when it cannot get promtool."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
MAKEFILE = REPO / "Makefile"
CI = REPO / ".ci" / "run"
VENV = Path(sys.prefix)


def make_targets() -> list[str]:
    return [t for t in re.findall(r"^([A-Za-z0-9_.-]+):(?!=)", MAKEFILE.read_text(), re.M) if t != ".PHONY"]


def test_make_help_lists_every_target_with_a_description() -> None:
    out = subprocess.run(
        ["make", "-s", "-C", str(REPO), "help"], capture_output=True, text=True, timeout=60, check=True
    ).stdout
    listed = dict(re.findall(r"^\s*(\S+)\s{2,}(\S.*)$", out, re.M))
    targets = make_targets()
    assert {"help", "setup", "test", "lint", "monitoring-check", "k8s-validate"} <= set(targets)
    for target in targets:
        assert listed.get(target), f"`make help` does not describe {target}"
    phony = set(re.search(r"^\.PHONY:(.*)$", MAKEFILE.read_text(), re.M).group(1).split())  # type: ignore[union-attr]
    assert set(targets) <= phony, set(targets) - phony


def test_make_lint_reports_the_findings_of_every_checker(tmp_path: Path) -> None:
    """One finding per checker planted in a copy of the tree: a single
    `make lint` run reports all four and fails."""
    for tool in ("ruff", "mypy", "hadolint"):
        assert (VENV / "bin" / tool).exists(), f"{tool} is not installed in {VENV} (make setup)"
    copy = tmp_path / "repo"
    skip = shutil.ignore_patterns("__pycache__", "*.egg-info", ".mypy_cache", ".pytest_cache", ".ruff_cache")
    for name in ("server", "client", "proto", "tests", "scripts", "benchmarks", "deploy"):
        shutil.copytree(REPO / name, copy / name, ignore=skip)
    for name in ("pyproject.toml", "Makefile"):
        shutil.copy2(REPO / name, copy / name)
    (copy / "server" / "stylize_server" / "lint_probe.py").write_text('"""Probe."""\n\nWIDTH: int = "wide"\n')
    (copy / "client" / "stylize" / "lint_probe.py").write_text('"""Probe."""\n\nimport os\n')
    (copy / "tests" / "lint_probe_format.py").write_text("x = 'single quotes'\n")
    with (copy / "deploy" / "docker" / "Dockerfile").open("a") as dockerfile:
        dockerfile.write("RUN cd /tmp && ls\n")

    # -o: never rebuild the shared virtualenv from the copy's pyproject.toml.
    installed = VENV / ".installed"
    proc = subprocess.run(
        ["make", "-C", str(copy), "lint", f"VENV={VENV}", "-o", str(installed)],
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    out = proc.stdout + proc.stderr
    assert proc.returncode != 0
    assert "F401" in out and "client/stylize/lint_probe.py:3:" in out, out  # ruff check
    assert "tests/lint_probe_format.py" in out and "1 file would be reformatted" in out, out  # ruff format --check
    assert "server/stylize_server/lint_probe.py:3: error: Incompatible types in assignment" in out, out  # mypy
    assert "DL3003" in out, out  # hadolint


def test_ci_runs_setup_then_lint_then_the_tests() -> None:
    text = CI.read_text()
    assert re.findall(r"^make (\w+)", text, re.M) == ["setup", "lint", "test"]
    assert re.search(r"^export CI=true$", text, re.M), "tests must know they run in CI"
    subprocess.run(["bash", "-n", str(CI)], check=True, timeout=30)


def test_ci_stops_at_once_when_it_cannot_install_promtool() -> None:
    """Without promtool, root or password-less sudo, CI fails before setup
    with what to do (not later, as a pile of skipped or failed tests)."""
    if os.geteuid() == 0:
        if not shutil.which("setpriv"):
            pytest.skip("running as root without setpriv: cannot run CI as an unprivileged user")
        as_user = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups"]
    else:
        if shutil.which("sudo") and subprocess.run(["sudo", "-n", "true"], capture_output=True).returncode == 0:
            pytest.skip("this user has password-less sudo: CI would install promtool")
        as_user = []
    # A copy the unprivileged user can read wherever the checkout lives; the
    # script stops before it looks at anything else.
    scratch = Path(tempfile.mkdtemp(prefix="stylize-ci-"))
    try:
        (scratch / ".ci").mkdir()
        shutil.copy(CI, scratch / ".ci" / "run")
        for path in (scratch, scratch / ".ci", scratch / ".ci" / "run"):
            path.chmod(0o755)
        env = dict(os.environ, PROMTOOL=str(scratch / "no-promtool"), HOME=str(scratch))
        proc = subprocess.run(
            [*as_user, "bash", str(scratch / ".ci" / "run")],
            capture_output=True,
            text=True,
            timeout=60,
            env=env,
            check=False,
        )
    finally:
        shutil.rmtree(scratch)
    assert proc.returncode == 1, proc.stderr
    assert "promtool is missing" in proc.stderr and "apt-get install prometheus" in proc.stderr, proc.stderr
    assert "PROMTOOL=" in proc.stderr
    assert proc.stdout == "", "it must stop before `make setup`"


def test_ci_stops_at_once_when_it_cannot_install_chromium() -> None:
    """The page's browser tests need Debian's chromium and chromedriver: without
    them, root or password-less sudo, CI fails before setup and says what to do."""
    if os.geteuid() == 0:
        if not shutil.which("setpriv"):
            pytest.skip("running as root without setpriv: cannot run CI as an unprivileged user")
        as_user = [str(shutil.which("setpriv")), "--reuid=65534", "--regid=65534", "--clear-groups"]
    else:
        if shutil.which("sudo") and subprocess.run(["sudo", "-n", "true"], capture_output=True).returncode == 0:
            pytest.skip("this user has password-less sudo: CI would install chromium")
        as_user = []
    scratch = Path(tempfile.mkdtemp(prefix="stylize-ci-"))
    try:
        (scratch / ".ci").mkdir()
        (scratch / "bin").mkdir()
        shutil.copy(CI, scratch / ".ci" / "run")
        promtool = scratch / "bin" / "promtool"  # present, so CI gets as far as chromium
        promtool.write_text("#!/bin/sh\necho 'promtool, version 2.0 (fake)'\n")
        for tool in ("dirname", "id", "head", "tail"):  # and nothing else: no chromium, no sudo, no apt-get
            (scratch / "bin" / tool).symlink_to(shutil.which(tool) or f"/usr/bin/{tool}")
        for path in (scratch, scratch / ".ci", scratch / "bin", scratch / ".ci" / "run", promtool):
            path.chmod(0o755)
        env = dict(os.environ, PATH=str(scratch / "bin"), PROMTOOL=str(promtool), HOME=str(scratch))
        proc = subprocess.run(
            [*as_user, shutil.which("bash") or "/bin/bash", str(scratch / ".ci" / "run")],
            capture_output=True,
            text=True,
            timeout=60,
            env=env,
            check=False,
        )
    finally:
        shutil.rmtree(scratch)
    assert proc.returncode == 1, proc.stderr
    assert "chromium or chromedriver is missing" in proc.stderr, proc.stderr
    assert "apt-get install chromium chromium-driver" in proc.stderr
    assert "make" not in proc.stdout, "it must stop before `make setup`"
