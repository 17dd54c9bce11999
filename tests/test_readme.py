"""The README's quick start, run as written (random weights, a small size),
so the README cannot rot; CI runs exactly its set-up and test commands; and
the README's picture is what `make demo WEIGHTS=random:0` draws at its
defaults. (Links, code blocks and CLI lines of every page: test_docs.py.)"""

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
    block = re.search(r"```text\n(.*?)```", section, re.S)  # `text`: make test is the suite itself
    assert block, "the quick start has no block of commands"
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


def makefile_default(name: str) -> str:
    match = re.search(rf"^{name}\s*\?=\s*(\S+)", (ROOT / "Makefile").read_text(), re.M)
    assert match, name
    return match.group(1)


def test_the_readme_picture_is_what_its_caption_says() -> None:
    # docs/demo.png is out/demo.png of `make demo WEIGHTS=random:0` at the Makefile's defaults; its
    # title names the size, iterations and weights of the run that drew it, so the picture, the
    # caption and the command agree, and the picture warns that the weights were random.
    size, iterations = makefile_default("SIZE"), makefile_default("ITERATIONS")
    with Image.open(ROOT / "docs" / "demo.png") as picture:
        assert picture.text["Title"] == f"stylize demo: {size} px, {iterations} iterations, weights random:0"
        assert "RANDOM weights (random:0)" in picture.text["Warning"]
        assert picture.text["Description"].split("; ")[-1].startswith(f"result, {iterations} iterations:")
    readme = (ROOT / "README.md").read_text()
    caption = readme.split("](docs/demo.png)", 1)[1].split("\n\n", 2)[1]
    assert "`make demo WEIGHTS=random:0`" in caption and f"{size} px and {iterations} iterations" in caption
    with Image.open(ROOT / "docs" / "losses.png") as plot:  # the same run's loss plot: one scale
        assert plot.text["Title"] == "stylize: losses"
