"""The docs as a reader meets them: README.md and docs/*.md.

* Every relative link resolves: its file exists, and a `#fragment` names a
  heading of the target page by GitHub's anchor rules.
* Every code block is either run here or fenced as `text` (the rule is stated
  in docs/README.md). The `python` and `sh` blocks of a page run in order, as
  written, in one scratch directory that sees the checkout, against a real
  `stylize-server` subprocess with random weights: what
  `make run WEIGHTS=random:0` starts, on a free port, whose address replaces
  `localhost:50051` in the blocks and is `STYLIZE_SERVER` in their environment.
* Every `stylize` command line of any block parses with the CLI's own parser.
"""

from __future__ import annotations

import os
import pathlib
import re
import shlex
import subprocess
import sys
import time
import unicodedata
from collections.abc import Iterator
from dataclasses import dataclass

import pytest

from tests.support.process import ServerProcess, server_process

ROOT = pathlib.Path(__file__).resolve().parent.parent
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
RUN = {"python", "sh"}
SHOWN = {"text"}
BLOCK_TIMEOUT = 120  # seconds; a block that hangs fails, with its output

FENCE = re.compile(r"^(?P<indent> *)(?P<fence>```+)(?P<info>.*)$")
HEADING = re.compile(r"^(#{1,6})\s+(.*?)\s*#*\s*$")
LINK = re.compile(r"!?\[(?:[^\[\]]|\[[^\]]*\])*\]\(<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\)")
WORD = {"Lu", "Ll", "Lt", "Lm", "Lo", "Mn", "Mc", "Me", "Nd", "Nl", "Pc"}  # Ruby's \p{Word}
INLINE_CODE = re.compile(r"(`+).+?\1")
HTML_ANCHOR = re.compile(r"<a\s+(?:name|id)=\"([^\"]+)\"")


@dataclass(frozen=True)
class Block:
    page: pathlib.Path
    line: int  # of the opening fence, 1-based
    lang: str
    text: str

    @property
    def where(self) -> str:
        return f"{self.page.relative_to(ROOT)}:{self.line}"


def split_page(page: pathlib.Path) -> tuple[list[Block], list[str]]:
    """The page's fenced blocks, and its lines outside them ('' in their place)."""
    blocks: list[Block] = []
    prose: list[str] = []
    opened: tuple[int, str, str, str] | None = None  # line, indent, fence, lang
    body: list[str] = []
    for number, line in enumerate(page.read_text().splitlines(), 1):
        match = FENCE.match(line)
        if opened is None:
            if match:
                opened = (number, match["indent"], match["fence"], match["info"].strip().split(" ")[0])
                body = []
                prose.append("")
            else:
                prose.append(line)
            continue
        prose.append("")
        start, indent, fence, lang = opened
        if match and match["fence"].startswith(fence) and not match["info"].strip():
            blocks.append(Block(page, start, lang, "\n".join(body) + "\n"))
            opened = None
        else:
            body.append(line.removeprefix(indent))
    assert opened is None, f"{page.relative_to(ROOT)}:{opened[0]}: a code block is never closed"
    return blocks, prose


def all_blocks() -> list[Block]:
    return [block for page in PAGES for block in split_page(page)[0]]


# -- links -------------------------------------------------------------------


def github_anchor(heading: str) -> str:
    """GitHub's id for a heading: the rendered text in lower case, less every
    character outside Ruby's `[\\p{Word}\\- ]` (letters, marks, decimal and
    letter numbers, connector punctuation such as '_'; '-'; ' '), with each
    space turned into '-'."""
    text = re.sub(r"!?\[((?:[^\[\]]|\[[^\]]*\])*)\]\([^)]*\)", r"\1", heading)  # a link shows its text
    text = re.sub(r"<[^>]+>", "", text).strip().lower()
    return "".join(c for c in text if c in " -" or unicodedata.category(c) in WORD).replace(" ", "-")


def anchors(page: pathlib.Path) -> set[str]:
    """Every fragment a link to this page may name (duplicates get -1, -2, ...)."""
    seen: dict[str, int] = {}
    found: set[str] = set()
    for line in split_page(page)[1]:
        found.update(HTML_ANCHOR.findall(line))
        match = HEADING.match(line)
        if not match:
            continue
        slug = github_anchor(match[2])
        count = seen.get(slug, 0)
        seen[slug] = count + 1
        found.add(slug if count == 0 else f"{slug}-{count}")
    return found


def relative_links(page: pathlib.Path) -> Iterator[tuple[int, str]]:
    for number, line in enumerate(split_page(page)[1], 1):
        for target in LINK.findall(INLINE_CODE.sub("", line)):
            if not re.match(r"^[a-z][a-z0-9+.-]*:", target):  # http:, https:, mailto:, ...
                yield number, target


def test_anchor_rules_match_githubs() -> None:
    # Code spans keep their text, punctuation and symbols go, spaces become '-'
    # (so "a — b" gives "a--b"), '_' stays, and so do letters of any script.
    assert github_anchor("Metrics (`:9090/metrics`)") == "metrics-9090metrics"
    assert github_anchor("Limits, and why these defaults") == "limits-and-why-these-defaults"
    assert github_anchor("Network policy, auth and TLS") == "network-policy-auth-and-tls"
    assert github_anchor("Print size: the exact tiled objective") == "print-size-the-exact-tiled-objective"
    assert github_anchor("See [the API](api.md) — errors") == "see-the-api--errors"
    assert github_anchor("max_job_seconds × 2") == "max_job_seconds--2"
    assert github_anchor("Größe ½ MP") == "größe--mp"


def test_every_relative_link_resolves() -> None:
    assert len(PAGES) >= 9, "the manual is README.md plus its pages in docs/"
    broken = []
    checked = 0
    for page in PAGES:
        for number, target in relative_links(page):
            checked += 1
            path_part, _, fragment = target.partition("#")
            where = f"{page.relative_to(ROOT)}:{number}: {target}"
            resolved = (page.parent / path_part).resolve() if path_part else page
            if not resolved.exists():
                broken.append(f"{where}: no such file")
            elif fragment and resolved.suffix == ".md" and fragment not in anchors(resolved):
                broken.append(f"{where}: no heading with id {fragment!r} in {resolved.relative_to(ROOT)}")
    assert not broken, "broken links:\n" + "\n".join(broken)
    assert checked >= 30


def test_readme_links_every_page_of_the_manual() -> None:
    readme_targets = {target.partition("#")[0] for _, target in relative_links(ROOT / "README.md")}
    pages = {f"docs/{page.name}" for page in PAGES[1:]}
    assert pages <= readme_targets, f"pages the README does not link: {sorted(pages - readme_targets)}"


def test_the_link_checker_finds_broken_links(tmp_path: pathlib.Path) -> None:
    page = tmp_path / "page.md"
    page.write_text("# Title\n\n## A `code` heading\n\n[ok](#a-code-heading) [bad](#nowhere) `[not](a-link)`\n")
    assert anchors(page) == {"title", "a-code-heading"}
    assert [t for _, t in relative_links(page)] == ["#a-code-heading", "#nowhere"]


# -- code blocks ---------------------------------------------------------------


def test_every_code_block_is_run_or_marked_as_text() -> None:
    blocks = all_blocks()
    unmarked = [f"{b.where}: ```{b.lang}" for b in blocks if b.lang not in RUN | SHOWN]
    assert not unmarked, (
        "a code block is either run (```python, ```sh) or shown (```text); see docs/README.md:\n" + "\n".join(unmarked)
    )
    assert sum(b.lang == "python" for b in blocks) >= 3 and sum(b.lang == "sh" for b in blocks) >= 2


def cli_commands() -> list[tuple[str, list[str]]]:
    """Every `stylize ...` command line of the shell and text blocks
    (continuations joined, comments and pipes cut)."""
    commands = []
    for block in all_blocks():
        if block.lang == "python":
            continue
        for line in block.text.replace("\\\n", " ").splitlines():
            if not re.match(r"^\s*(\S*/)?stylize\s", line):
                continue
            words = shlex.split(line, comments=True)
            if "|" in words:
                words = words[: words.index("|")]
            commands.append((block.where, words[1:]))
    return commands


def test_every_cli_example_parses() -> None:
    from stylize.cli import build_parser

    commands = cli_commands()
    assert len(commands) >= 10 and any(argv[0] == "run" for _, argv in commands)
    parser = build_parser()
    for where, argv in commands:
        args = parser.parse_args(argv)  # raises (one line) on an unknown or malformed flag
        assert callable(args.func), f"{where}: {argv}"


def scratch_checkout(path: pathlib.Path) -> pathlib.Path:
    """A directory that looks like the checkout's root: its tracked top-level
    entries (and .venv) linked, so that a block reads `scripts/...` and writes
    files of its own here, never into the checkout (not even into an untracked
    `samples/` or `out/` a developer made there)."""
    listed = subprocess.run(["git", "ls-files"], cwd=ROOT, capture_output=True, text=True, check=False)
    if listed.returncode == 0:
        names = {line.split("/", 1)[0] for line in listed.stdout.splitlines()} | {".venv"}
    else:  # not a git checkout (an unpacked archive): everything but what the blocks write
        names = {entry.name for entry in ROOT.iterdir()} - {".git", "samples", "out"}
    path.mkdir()
    for name in sorted(names):
        if (ROOT / name).exists():
            (path / name).symlink_to(ROOT / name)
    return path


@pytest.fixture(scope="module")
def docs_server() -> Iterator[ServerProcess]:
    with server_process() as proc:  # random:0, as `make run WEIGHTS=random:0`
        yield proc


def run_block(block: Block, cwd: pathlib.Path, server: ServerProcess) -> float:
    source = block.text
    for host in ("localhost", "127.0.0.1"):
        source = source.replace(f"{host}:50051", server.address)
        source = source.replace(f"{host}:9090", f"127.0.0.1:{server.metrics_port}")
    env = dict(os.environ, STYLIZE_SERVER=server.address, PYTHONUNBUFFERED="1")
    env["PATH"] = f"{pathlib.Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"  # the venv, activated
    env.pop("STYLIZE_TOKEN_FILE", None)
    if block.lang == "python":
        script = cwd / f"block_{block.line}.py"
        script.write_text(source)
        command = [sys.executable, script.name]
    else:
        command = ["bash", "-euo", "pipefail", "-c", source]
    started = time.monotonic()
    try:
        proc = subprocess.run(
            command, cwd=cwd, env=env, capture_output=True, text=True, timeout=BLOCK_TIMEOUT, check=False
        )
    except subprocess.TimeoutExpired as exc:
        pytest.fail(f"{block.where}: still running after {BLOCK_TIMEOUT} s:\n{source}\n{exc.stdout}\n{exc.stderr}")
    output = f"--- stdout\n{proc.stdout[-3000:]}\n--- stderr\n{proc.stderr[-3000:]}"
    assert proc.returncode == 0, f"{block.where} exited {proc.returncode}:\n{source}\n{output}"
    return time.monotonic() - started


def test_the_block_runner_fails_a_failing_block_and_points_blocks_at_the_server(tmp_path: pathlib.Path) -> None:
    stand_in = ServerProcess(popen=None, port=1, metrics_port=2)  # type: ignore[arg-type]  # no server needed
    page = ROOT / "docs" / "page.md"
    # The server's address replaces the docs' one, and is STYLIZE_SERVER; `stylize` is the venv's.
    checks = 'test "$STYLIZE_SERVER" = 127.0.0.1:1\n'
    checks += 'echo localhost:50051 127.0.0.1:9090 | grep -qx "127.0.0.1:1 127.0.0.1:2"\n'
    run_block(Block(page, 1, "sh", checks + "command -v stylize\n"), tmp_path, stand_in)
    with pytest.raises(AssertionError, match=r"docs/page\.md:7 exited 3"):
        run_block(Block(page, 7, "sh", "true\nexit 3\n"), tmp_path, stand_in)
    with pytest.raises(AssertionError, match="ZeroDivisionError"):
        run_block(Block(page, 9, "python", "print(1 / 0)\n"), tmp_path, stand_in)


RUNNABLE_PAGES = [page for page in PAGES if any(b.lang in RUN for b in split_page(page)[0])]


@pytest.mark.parametrize("page", RUNNABLE_PAGES, ids=[str(p.relative_to(ROOT)) for p in RUNNABLE_PAGES])
def test_the_code_blocks_of_a_page_run_as_written(
    page: pathlib.Path, docs_server: ServerProcess, tmp_path: pathlib.Path
) -> None:
    cwd = scratch_checkout(tmp_path / "checkout")
    for block in split_page(page)[0]:
        if block.lang in RUN:
            run_block(block, cwd, docs_server)
    assert docs_server.popen.poll() is None, "the server is still up"
