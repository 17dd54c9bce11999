"""The committed Python stubs and reason enums match proto/: regenerate them into a temporary
folder with scripts/gen_proto.py and compare byte for byte (`make proto` fixes
a failure)."""

from __future__ import annotations

import filecmp
import pathlib
import subprocess
import sys

ROOT = pathlib.Path(__file__).resolve().parent.parent
COMMITTED = ROOT / "proto"


def test_committed_stubs_are_up_to_date(tmp_path):
    subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "gen_proto.py"), "--out", str(tmp_path)],
        check=True,
        capture_output=True,
        timeout=120,
    )
    generated = sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*") if p.is_file())
    assert generated, "gen_proto.py wrote nothing"
    assert pathlib.Path("stylize_api/v1/stylize_pb2.py") in generated
    assert pathlib.Path("stylize_api/reasons.py") in generated
    stale = [
        str(rel)
        for rel in generated
        if not (COMMITTED / rel).is_file() or not filecmp.cmp(tmp_path / rel, COMMITTED / rel, shallow=False)
    ]
    assert not stale, f"stale or missing stubs (run `make proto`): {stale}"
