"""The README's quick start, run as written (random weights, a small size),
so the README cannot rot; and CI runs exactly its set-up and test commands."""

from __future__ import annotations

import pathlib
import re
import shlex
import subprocess

from PIL import Image

ROOT = pathlib.Path(__file__).resolve().parent.parent


def quick_start_commands() -> list[str]:
    readme = (ROOT / "README.md").read_text()
    section = readme.split("## Quick start", 1)[1]
    block = re.search(r"```sh\n(.*?)```", section, re.S)
    assert block, "the quick start has no shell block"
    return [line.split("#", 1)[0].strip() for line in block.group(1).splitlines() if line.split("#", 1)[0].strip()]


def test_quick_start_is_two_commands_and_ci_runs_them() -> None:
    assert quick_start_commands() == ["make demo", "make test"]
    ci = (ROOT / ".ci" / "run").read_text()
    # CI also runs the style checks (`make lint`) between the two (issue 10).
    assert re.findall(r"^(make \w+)", ci, re.M) == ["make setup", "make lint", "make test"]
    assert "make setup" in (ROOT / "README.md").read_text()


def test_the_quick_start_demo_runs_as_written(tmp_path: pathlib.Path) -> None:
    demo = quick_start_commands()[0]
    # The same command, offline and small: what a newcomer types plus the README's offline variables.
    command = shlex.split(demo) + ["WEIGHTS=random:0", "SIZE=48", "ITERATIONS=6", f"OUT={tmp_path / 'out'}"]
    proc = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=240, check=False)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    out = tmp_path / "out"
    with Image.open(out / "result.png") as result:
        assert max(result.size) == 48
    assert sorted((out / "frames").glob("*.png")), "no preview frames"
    with Image.open(out / "timelapse.gif") as gif:
        assert gif.n_frames >= 2
    assert "RANDOM" in proc.stdout + proc.stderr  # the demo says the result is not artistic


def readme_cli_commands() -> list[list[str]]:
    """Every `stylize ...` command line of the README's shell blocks (continuations
    joined, comments and pipes cut; lines with a `...` placeholder left out)."""
    readme = (ROOT / "README.md").read_text()
    commands = []
    for block in re.findall(r"```sh\n(.*?)```", readme, re.S):
        for line in block.replace("\\\n", " ").splitlines():
            words = shlex.split(line, comments=True)
            if "|" in words:
                words = words[: words.index("|")]
            if words and words[0].endswith("bin/stylize"):
                words[0] = "stylize"
            if words and words[0] == "stylize" and "..." not in words and "…" not in line:
                commands.append(words[1:])
    return commands


def test_every_cli_example_in_the_readme_parses() -> None:
    from stylize.cli import build_parser

    commands = readme_cli_commands()
    assert len(commands) >= 5 and any(c[0] == "run" for c in commands)
    parser = build_parser()
    for argv in commands:
        args = parser.parse_args(argv)  # raises (one line) on an unknown or malformed flag
        assert callable(args.func), argv
