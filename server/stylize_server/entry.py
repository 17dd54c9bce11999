"""The `stylize-server` console script: a shim that imports nothing heavy.

A client-only install (`pip install stylize-grpc`, no extras) has this script
too. Without the server's dependencies it says, in one line, how to install
them (exit 2) instead of failing with a traceback; `--version` answers from
the package metadata without loading TensorFlow. Otherwise it hands over to
`stylize_server.app.main`.
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
import sys
from collections.abc import Sequence

DISTRIBUTION = "stylize-grpc"
# Import names of the `server` extra's distributions (pyproject.toml).
SERVER_MODULES = ("tensorflow", "numpy", "h5py", "grpc_health", "grpc_reflection", "prometheus_client")
EXIT_USAGE = 2


def version() -> str:
    try:
        return importlib.metadata.version(DISTRIBUTION)
    except importlib.metadata.PackageNotFoundError:
        return "0+unknown"


def missing_modules() -> list[str]:
    missing = []
    for name in SERVER_MODULES:
        try:
            found = importlib.util.find_spec(name) is not None
        except (ImportError, ValueError):
            found = False
        if not found:
            missing.append(name)
    return missing


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if "--version" in args:
        print(f"stylize-server {version()} ({DISTRIBUTION})")
        return 0
    missing = missing_modules()
    if missing:
        print(
            f"stylize-server: the server is not installed here (missing: {', '.join(missing)});"
            f" install it with: pip install '{DISTRIBUTION}[server]'",
            file=sys.stderr,
        )
        return EXIT_USAGE
    from stylize_server import app

    return app.main(args)


if __name__ == "__main__":
    sys.exit(main())
