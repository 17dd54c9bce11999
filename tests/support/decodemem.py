"""Peak memory of one decode, measured in a fresh subprocess so that nothing
else in the process moves the high-water mark:

    decode_peak_mb(path, "content", (64, 64))  # MB above the RSS before the decode

The subprocess imports the server's `images` (whichever is first on
PYTHONPATH: pass `pythonpath` to measure another checkout), reads the file,
resets the kernel's high-water mark (/proc/self/clear_refs, Linux >= 4.0;
else it uses ru_maxrss, which includes the imports' peak), decodes, and
prints the rise of VmHWM over VmRSS before the decode.
"""

from __future__ import annotations

import json
import os
import pathlib
import subprocess
import sys

_SCRIPT = r"""
import json, pathlib, resource, sys
from stylize_server.job import images

def status(key):
    for line in pathlib.Path("/proc/self/status").read_text().splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1]) / 1024
    return 0.0

path, kind, h, w = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
data = pathlib.Path(path).read_bytes()
at_least = (h, w) if h > 0 else None
# Warm the code path on a tiny image so that lazy imports and first-call allocations are not counted.
images.decode(images.encode(__import__("numpy").zeros((4, 4, 3), "uint8"), "png"), "warm", 10**9)
try:
    pathlib.Path("/proc/self/clear_refs").write_text("5")
    reset = True
except OSError:
    reset = False
before = status("VmRSS")
if kind == "mask":
    out = images.decode_mask(data, "mask", 10**9, at_least=at_least)
    shape = list(out.shape)
else:
    decoded = images.decode(data, "content", 10**9, at_least=at_least)
    shape = list(decoded.rgb.shape)
peak = status("VmHWM") if reset else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
print(json.dumps({"rise_mb": peak - before, "shape": shape, "reset": reset}))
"""


def decode_peak_mb(
    path: str | os.PathLike[str],
    kind: str = "content",
    at_least: tuple[int, int] | None = (64, 64),
    pythonpath: str | None = None,
    timeout: float = 300,
) -> dict[str, object]:
    """{"rise_mb": float, "shape": [...], "reset": bool} of decoding `path`
    as content or mask in a fresh interpreter."""
    root = pathlib.Path(__file__).resolve().parents[2]
    env = dict(os.environ)
    env["PYTHONPATH"] = pythonpath or os.pathsep.join([str(root / "server"), str(root / "client"), str(root)])
    h, w = at_least or (0, 0)
    result = subprocess.run(
        [sys.executable, "-c", _SCRIPT, str(path), kind, str(h), str(w)],
        capture_output=True,
        text=True,
        env=env,
        timeout=timeout,
        check=False,
    )
    if result.returncode != 0:
        raise RuntimeError(f"decode subprocess failed ({result.returncode}): {result.stderr[-2000:]}")
    parsed: dict[str, object] = json.loads(result.stdout.strip().splitlines()[-1])
    return parsed
