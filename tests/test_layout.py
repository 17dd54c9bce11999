"""The layout shows the architecture, and the code keeps to it:

- only `stylize_server.engine` imports TensorFlow: importing every other
  server module (in a fresh interpreter) leaves TensorFlow unloaded;
- the server owns its vocabulary: nothing under server/ imports the client
  package (`stylize`); both use `stylize_api`;
- pyproject lists every package, so none is left out of a wheel.
"""

from __future__ import annotations

import pathlib
import re
import subprocess
import sys
import tomllib

ROOT = pathlib.Path(__file__).resolve().parents[1]
SERVER = ROOT / "server" / "stylize_server"


def _modules(base: pathlib.Path, prefix: str) -> list[str]:
    names = []
    for path in sorted(base.rglob("*.py")):
        parts = list(path.relative_to(base).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        names.append(".".join([prefix, *parts]))
    return names


def test_only_the_engine_imports_tensorflow() -> None:
    outside = [m for m in _modules(SERVER, "stylize_server") if not m.startswith("stylize_server.engine")]
    assert "stylize_server.serving.service" in outside and "stylize_server.job.cost" in outside
    script = (
        "import importlib, sys\n"
        f"for name in {outside!r}:\n"
        "    importlib.import_module(name)\n"
        "loaded = sorted(m for m in sys.modules if m == 'tensorflow' or m.startswith('tensorflow.'))\n"
        "print(len(loaded))\n"
    )
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120, check=False)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "0", (
        f"importing the modules outside engine/ loaded TensorFlow:\n{proc.stderr[-2000:]}"
    )


def test_the_engine_is_where_tensorflow_is_imported() -> None:
    importers = sorted(
        str(p.relative_to(SERVER))
        for p in SERVER.rglob("*.py")
        if re.search(r"^\s*(import tensorflow|from tensorflow)", p.read_text(), re.M)
    )
    assert importers, "no module imports TensorFlow: the check below would prove nothing"
    assert all(name.startswith("engine/") for name in importers), importers


def test_the_server_imports_nothing_from_the_client() -> None:
    offenders = []
    for path in SERVER.rglob("*.py"):
        for line in path.read_text().splitlines():
            if re.match(r"^\s*(from stylize(\.| )|import stylize(\.|$| ))", line):
                offenders.append(f"{path.relative_to(ROOT)}: {line.strip()}")
    assert not offenders, offenders


def test_pyproject_lists_every_package() -> None:
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    listed = set(config["packages"])
    found = set()
    for name, folder in config["package-dir"].items():
        base = ROOT / folder
        for init in base.rglob("__init__.py"):
            rel = init.parent.relative_to(base).parts
            found.add(".".join([name, *rel]))
    assert found == listed, f"missing from pyproject: {found - listed}; listed but absent: {listed - found}"


def test_top_level_of_the_server_is_small() -> None:
    top = sorted(p.name for p in SERVER.glob("*.py") if p.name != "__init__.py")
    assert len(top) <= 6, top
