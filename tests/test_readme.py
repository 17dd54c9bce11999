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
    """The README's first command, offline and small: what a newcomer types
    plus the README's offline variables. It is also the demo's own end-to-end
    test (scripts/demo.py behind `make demo`; test_demo.py has its other paths)."""
    demo = quick_start_commands()[0]
    out = tmp_path / "out"
    command = shlex.split(demo) + ["WEIGHTS=random:0", "SIZE=48", "ITERATIONS=6", f"OUT={out}"]
    proc = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=280, check=False)
    output = proc.stdout + proc.stderr
    assert proc.returncode == 0, output[-4000:]
    assert "NOT an artistic" in proc.stderr, "random weights must be announced loudly"
    assert "stopping the server (SIGTERM)" in output
    assert "exited with code" not in output, "the server must stop cleanly on SIGTERM"

    with Image.open(out / "result.png") as result:
        assert result.format == "PNG" and max(result.size) == 48
        # The result says what made it, random weights included.
        assert "RANDOM weights (random:0)" in result.text["Warning"]
        assert result.text["Description"] == "stylize demo: 48 px, 6 iterations, weights random:0"
    assert len(sorted((out / "frames").glob("*.png"))) >= 2, "no preview frames"
    with Image.open(out / "timelapse.gif") as gif:
        assert gif.format == "GIF" and gif.n_frames >= 2
    assert (out / "samples" / "content.png").is_file() and (out / "samples" / "style.png").is_file()
    assert (out / "server.log").stat().st_size > 0
    for path in (out / "result.png", out / "timelapse.gif", out / "demo.png"):
        assert str(path) in proc.stdout, "the demo says where its outputs are"
    assert "48 px, 6 iterations (Made with RANDOM weights (random:0)" in proc.stdout
    with Image.open(out / "demo.png") as picture:
        assert picture.text["Title"] == "stylize demo: 48 px, 6 iterations, weights random:0"
        assert "RANDOM weights (random:0)" in picture.text["Warning"]
        labels = [item.split(": ")[0] for item in picture.text["Description"].split("; ")]
        assert labels[:2] == ["content", "style"] and labels[-1] == "result, 6 iterations"
        assert len(labels) == 6 and all(label.startswith("iteration ") for label in labels[2:5])
    if (out / "losses.png").exists():  # matplotlib installed (the dev extra has it)
        with Image.open(out / "losses.png") as plot:
            assert "next scale" not in plot.text["Title"], "a 48 px run has one scale"
    assert "grace-seconds is shorter" not in (out / "server.log").read_text()


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
