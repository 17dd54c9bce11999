"""What a new user hits with `stylize run`, each a clear one-line error with
exit code 2 before any call is made (the --server port below is unused, so
reaching it would be exit 3): unwritable outputs, `-o x.png` for a folder,
files that are no image (the message lists the accepted formats, never a
Python repr), masks written the other way, 16 bits for a JPEG, --version.
"""

from __future__ import annotations

import os
import pathlib
import subprocess
import sys
import tempfile

import pytest

from stylize.cli import EXIT_OK, EXIT_USAGE, main
from stylize.images import ACCEPTED_FORMATS, ImageError, decode
from tests.support.cli import cli_env, error_lines, run_cli
from tests.support.images import garbage_bytes, png_bytes
from tests.support.process import server_command
from tests.support.server import free_port

ACCEPTED = "accepted: PNG, JPEG, WebP, BMP, GIF or TIFF"


@pytest.fixture()
def files(tmp_path) -> dict[str, pathlib.Path]:
    (tmp_path / "content.png").write_bytes(png_bytes(40, 32, seed=1))
    (tmp_path / "style.png").write_bytes(png_bytes(32, 32, seed=2))
    (tmp_path / "garbage.png").write_bytes(garbage_bytes(300))
    (tmp_path / "notes.txt").write_text("a shopping list, not a painting\n")
    (tmp_path / "a-file").write_text("x")
    return {p.name: p for p in tmp_path.iterdir()}


def usage_error(capsys, *argv: str) -> str:
    """Run the CLI in-process; assert exit 2 with exactly one line on stderr and return it."""
    code = main([*argv, "--server", f"127.0.0.1:{free_port()}"])
    err = capsys.readouterr().err
    assert code == EXIT_USAGE, err
    assert err.count("\n") == 1 and err.startswith("stylize: "), err
    assert "object at 0x" not in err and "Traceback" not in err
    return err.strip()


@pytest.mark.parametrize(
    "args, message",
    [
        (["run", "{missing}", "{style}", "-o", "{out}"], "CONTENT: no such file"),
        (["run", "{content}", "{missing}", "-o", "{out}"], "STYLE: no such file"),
        (["run", "{content}", "{style}", "-o", "{out}", "--style-weights", "0.5,0.5"], "--style-weights: 2 weights"),
        (["run", "{content}", "{style}", "-o", "{out}", "--init", "{missing}"], "--init: expected content, noise"),
        (["run", "{content}", "{style}", "-o", "{out}", "--save-every", "2"], "--save-every needs --frames-dir"),
        (["run", "{tmp}/*.nothing", "{style}", "-o", "{out}"], "CONTENT: no files match"),
        (["run", "{content}", "{style}", "-o", "{out}", "--token-file", "{missing}"], "--token-file: cannot read"),
        (["run", "{content}", "{style}", "-o", "{out}", "--tls-cert", "{content}"], "--tls-cert and --tls-key"),
        (["run", "{content}", "{style}", "-o", "{out}", "--size", "big"], "--size: expected a whole number"),
        (["run", "{content}", "{style}", "-o", "{out}", "--optimizer", "sgd"], "expected lbfgs, adam; got 'sgd'"),
        (["run", "{content}", "{style}", "-o", "{out}", "--style-layers", "relu1_1:x"], "bad weight 'x'"),
        (["run", "{content}", "{style}@{missing}", "-o", "{out}"], "mask of STYLE"),
        (["run", "{content}", "{style}", "-o", "{out}", "--mask", "{content}"], "give each style with its mask as"),
        (["run", "{content}", "{style}", "-o", "{out}", "--style", "{content}"], "STYLE@MASK"),
        (["run", "{content}", "{style}", "-o", "{tmp}/x.jpg", "--output-bit-depth", "16"], "needs PNG output"),
        (["run", "{content}", "{style}", "-o", "{content}"], "is one of the input images"),
        (["run", "{content}", "{style}", "-o", "{style}"], "is one of the input images"),
        (["run", "{content}", "{style}", "-o", "{tmp}"], "is one of the input images"),  # -o DIR -> DIR/content.png
        # An unknown flag of a command points at that command's help, and at the flag meant.
        (
            ["run", "{content}", "{style}", "-o", "{out}", "--iteratons", "3"],
            "unrecognized arguments: --iteratons 3; did you mean --iterations? (see `stylize run --help`)",
        ),
        (["info", "--bogus"], "unrecognized arguments: --bogus (see `stylize info --help`)"),
    ],
)
def test_usage_errors_exit_2_with_one_line(files, tmp_path, capsys, args, message):
    fill = {
        "missing": str(tmp_path / "missing.png"),
        "style": str(files["style.png"]),
        "content": str(files["content.png"]),
        "out": str(tmp_path / "o.png"),
        "tmp": str(tmp_path),
    }
    line = usage_error(capsys, *[a.format(**fill) for a in args])
    assert message in line


@pytest.mark.parametrize(
    "role, argv",
    [
        ("CONTENT", ["{garbage}", "{style}"]),
        ("CONTENT", ["{notes}", "{style}"]),
        ("STYLE", ["{content}", "{notes}"]),
        ("mask of STYLE", ["{content}", "{style}@{garbage}"]),
        ("--init-image", ["{content}", "{style}", "--init-image", "{garbage}"]),
    ],
)
def test_files_that_are_no_image_name_the_accepted_formats(files, tmp_path, capsys, role, argv):
    fill = {"garbage": files["garbage.png"], "notes": files["notes.txt"]}
    fill.update(content=files["content.png"], style=files["style.png"])
    line = usage_error(capsys, "run", *[a.format(**fill) for a in argv], "-o", str(tmp_path / "o.png"))
    assert role in line and ACCEPTED in line


def test_result_bytes_that_do_not_decode_say_so_without_a_repr():
    with pytest.raises(ImageError) as info:
        decode(b"\x89PNG\r\n\x1a\nbroken", "result")
    assert str(info.value) == "result: cannot decode the 14 bytes the server sent (not an image)"


def test_the_client_accepts_what_the_server_decodes():
    from stylize_server.job import images

    assert ACCEPTED_FORMATS == images.ALLOWED_FORMATS


def test_an_output_whose_parent_is_a_file_fails_before_the_job(files, tmp_path, capsys):
    line = usage_error(
        capsys, "run", str(files["content.png"]), str(files["style.png"]), "-o", f"{files['a-file']}/o.png"
    )
    assert line == f"stylize: -o: cannot write {files['a-file']}/o.png: {files['a-file']} is a file, not a directory"
    line = usage_error(
        capsys,
        "run",
        str(files["content.png"]),
        str(files["style.png"]),
        "-o",
        str(tmp_path / "o.png"),
        "--frames-dir",
        str(files["a-file"] / "frames"),
    )
    assert line.startswith("stylize: --frames-dir: cannot write") and "is a file, not a directory" in line
    line = usage_error(
        capsys,
        "run",
        str(files["content.png"]),
        str(files["style.png"]),
        "-o",
        str(tmp_path / "o.png"),
        "--timelapse",
        str(files["a-file"] / "t.gif"),
    )
    assert line.startswith("stylize: --timelapse: cannot write")


def test_an_output_in_a_read_only_directory_fails_before_the_job(files):
    """As an unprivileged user (root may write anywhere, so a root test run drops to `nobody`)."""
    base = pathlib.Path(tempfile.mkdtemp(prefix="stylize-ro-"))
    try:
        os.chmod(base, 0o755)
        for name in ("content.png", "style.png"):
            (base / name).write_bytes(files[name].read_bytes())
            os.chmod(base / name, 0o644)
        locked = base / "locked"
        locked.mkdir(mode=0o555)
        os.chmod(locked, 0o555)
        command = [sys.executable, "-m", "stylize.cli", "run", str(base / "content.png"), str(base / "style.png")]
        command += ["-o", str(locked / "sub" / "o.png"), "--server", f"127.0.0.1:{free_port()}"]
        if os.geteuid() == 0:
            command = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", *command]
        proc = subprocess.run(
            command, capture_output=True, text=True, timeout=60, env=cli_env(HOME=str(base)), cwd=base
        )
        assert proc.returncode == EXIT_USAGE, proc.stderr
        assert error_lines(proc.stderr) == [
            f"stylize: -o: cannot write {locked / 'sub' / 'o.png'}: {locked} is not writable"
        ]
        assert not (locked / "sub").exists()
    finally:
        os.chmod(base / "locked", 0o755)
        subprocess.run(["rm", "-rf", str(base)], check=False)


def test_a_single_file_output_for_a_folder_of_inputs_is_a_clear_error(files, tmp_path, capsys):
    indir = tmp_path / "photos"
    indir.mkdir()
    for i in range(3):
        (indir / f"p{i}.png").write_bytes(png_bytes(40, 32, seed=i))
    out = tmp_path / "x.png"
    line = usage_error(capsys, "run", str(indir), str(files["style.png"]), "-o", str(out))
    assert line == (
        f"stylize: -o: CONTENT is a batch of 3 images, so -o must be a directory, and {out} looks like an image"
        f" file name; use e.g. -o {tmp_path / 'x'}/"
    )
    assert not out.exists()  # no directory named x.png
    line = usage_error(capsys, "run", str(indir), str(files["style.png"]), "-o", str(files["a-file"]))
    assert "is a file; CONTENT is a batch of 3 images, so -o must be a directory" in line


def test_version_of_both_commands():
    proc = run_cli("--version")
    assert proc.returncode == EXIT_OK and proc.stdout.strip().startswith("stylize ")
    assert proc.stdout.strip().endswith("(stylize-grpc)")
    server = subprocess.run([*server_command(), "--version"], capture_output=True, text=True, timeout=60, env=cli_env())
    assert server.returncode == 0 and server.stdout.strip().startswith("stylize-server ")
    assert server.stdout.split()[1] == proc.stdout.split()[1]  # one version for the distribution
