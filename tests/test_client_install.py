"""The default install is the client only: a fresh virtual environment,
`pip install <project>` with no extras, then `stylize --help` and
`--version` work there, TensorFlow (and matplotlib, the `plot` extra) cannot
be imported, and the `stylize-server` script that comes with the
distribution explains in one line how to install the server instead of
failing with a traceback.

pip resolves grpcio, protobuf, Pillow and rich from its configured index or
cache. The project is copied first so that the build leaves nothing in the
working tree.
"""

from __future__ import annotations

import os
import pathlib
import shutil
import subprocess
import sys

ROOT = pathlib.Path(__file__).resolve().parents[1]


def _copy_project(dest: pathlib.Path) -> pathlib.Path:
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc", "*.egg-info", "build", "dist")
    dest.mkdir()
    for name in ("pyproject.toml", "README.md", "LICENSE"):
        if (ROOT / name).exists():
            shutil.copy2(ROOT / name, dest / name)
    for name in ("client", "server", "proto"):
        shutil.copytree(ROOT / name, dest / name, ignore=ignore)
    return dest


def test_default_install_has_the_cli_and_no_tensorflow(tmp_path):
    project = _copy_project(tmp_path / "project")
    venv = tmp_path / "venv"
    env = {
        k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV") and not k.startswith("STYLIZE_")
    }
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=120, env=env)
    py, bindir = venv / "bin" / "python", venv / "bin"
    install = subprocess.run(
        [str(py), "-m", "pip", "install", "--disable-pip-version-check", "--quiet", str(project)],
        capture_output=True,
        text=True,
        timeout=300,
        env=env,
        cwd=tmp_path,
    )
    assert install.returncode == 0, install.stdout + install.stderr

    help_ = subprocess.run(
        [str(bindir / "stylize"), "--help"], capture_output=True, text=True, timeout=60, env=env, cwd=tmp_path
    )
    assert help_.returncode == 0, help_.stderr
    assert "usage: stylize" in help_.stdout and "exit codes:" in help_.stdout
    version = subprocess.run(
        [str(bindir / "stylize"), "--version"], capture_output=True, text=True, timeout=60, env=env, cwd=tmp_path
    )
    assert version.returncode == 0 and version.stdout.startswith("stylize ") and "stylize-grpc" in version.stdout

    server_version = subprocess.run(
        [str(bindir / "stylize-server"), "--version"], capture_output=True, text=True, timeout=60, env=env, cwd=tmp_path
    )
    assert server_version.returncode == 0, server_version.stderr
    assert server_version.stdout.split()[:2] == ["stylize-server", version.stdout.split()[1]]
    for argv in ([], ["--port", "50051"]):
        server = subprocess.run(
            [str(bindir / "stylize-server"), *argv], capture_output=True, text=True, timeout=60, env=env, cwd=tmp_path
        )
        assert server.returncode == 2, server.stderr
        assert server.stdout == "" and server.stderr.count("\n") == 1 and "Traceback" not in server.stderr
        assert "missing: tensorflow" in server.stderr
        assert server.stderr.strip().endswith("install it with: pip install 'stylize-grpc[server]'")

    run_help = subprocess.run(
        [str(bindir / "stylize"), "run", "--help"], capture_output=True, text=True, timeout=60, env=env, cwd=tmp_path
    )
    assert run_help.returncode == 0 and "--style-weights" in run_help.stdout
    # `stylize video` needs the video extra (numpy, PyAV): without it, one line that says so, exit 2.
    (tmp_path / "frames").mkdir()
    video = subprocess.run(
        [str(bindir / "stylize"), "video", "frames", "style.png", "-o", "out"],
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
        cwd=tmp_path,
    )
    assert video.returncode == 2 and "Traceback" not in video.stderr, video.stderr
    assert "pip install 'stylize-grpc[video]'" in video.stderr

    for module in ("tensorflow", "matplotlib"):
        probe = subprocess.run(
            [str(py), "-c", f"import {module}"], capture_output=True, text=True, timeout=60, env=env, cwd=tmp_path
        )
        assert probe.returncode != 0 and "ModuleNotFoundError" in probe.stderr, module

    # The whole client imports there (asyncio client included) and pulls in no TensorFlow.
    check = subprocess.run(
        [
            str(py),
            "-c",
            "import sys, stylize, stylize.cli, stylize.aio; "
            "print(stylize.StyleTransferClient.__name__, 'tensorflow' in sys.modules)",
        ],
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
        cwd=tmp_path,
    )
    assert check.stdout.split() == ["StyleTransferClient", "False"], check.stderr

    # --loss-plot without the `plot` extra: a clear message before any call is made.
    (tmp_path / "a.png").write_bytes(b"not needed: the check comes first")
    plot = subprocess.run(
        [
            str(bindir / "stylize"),
            "run",
            "a.png",
            "a.png",
            "-o",
            "out.png",
            "--loss-plot",
            "plot.png",
            "--server",
            "127.0.0.1:1",
        ],
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
        cwd=tmp_path,
    )
    assert plot.returncode == 2
    assert "pip install 'stylize-grpc[plot]'" in plot.stderr and plot.stderr.count("\n") == 1
