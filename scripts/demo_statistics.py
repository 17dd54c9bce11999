"""`make demo STATISTICS=1`: the style statistics and the iterate average of
issue 18 through the real server and the `stylize` CLI, drawn into one
picture (docs/statistics.png).

Four jobs on the sample pair: the Gram loss and the Wasserstein-2 loss
(`--style-loss mean_cov`), each without and with the iterate EMA
(`--iterate-average ema`). The picture shows the content, the style and the
four results, labelled, and says so when the server's weights are random.
"""

from __future__ import annotations

import subprocess
from collections.abc import Callable, Sequence
from pathlib import Path

from demo_controls import compose

JOBS = (
    ("gram", "gram", ("--style-loss", "gram")),
    ("mean-cov", "mean_cov (W2)", ("--style-loss", "mean_cov")),
    ("gram-ema", "gram + EMA", ("--style-loss", "gram", "--iterate-average", "ema")),
    ("mean-cov-ema", "mean_cov + EMA", ("--style-loss", "mean_cov", "--iterate-average", "ema")),
)


def run_statistics_jobs(
    cli: Sequence[str],
    address: str,
    content: Path,
    style: Path,
    out: Path,
    size: int,
    iterations: int,
    say: Callable[[str], None],
) -> dict[str, Path]:
    """Run the four jobs with the CLI; the result file of each. Raises
    RuntimeError naming the job when the CLI fails."""
    results = {}
    for name, label, flags in JOBS:
        result = out / f"statistics-{name}.png"
        command = [*cli, "run", str(content), str(style), "-o", str(result), "--server", address]
        command += ["--size", str(size), "--iterations", str(iterations), *flags, "--quiet"]
        say(f"{label}: {' '.join(command[len(cli) :])}")
        code = subprocess.call(command)
        if code != 0:
            raise RuntimeError(f"the stylize CLI failed on the {label!r} job (exit code {code})")
        results[name] = result
    return results


def draw_statistics(
    content: Path, style: Path, results: dict[str, Path], path: Path, weights: str, random_weights: bool
) -> Path:
    labels = {name: label for name, label, _ in JOBS}
    rows = [
        [("content", content), ("style", style), *((labels[n], results[n]) for n in ("gram", "mean-cov"))],
        [(labels[n], results[n]) for n in ("gram-ema", "mean-cov-ema")],
    ]
    title = "stylize: Gram vs Wasserstein-2 (mean + covariance) style statistics, without and with the iterate EMA"
    warning = None
    if random_weights:
        warning = f"Made with RANDOM weights ({weights}): the network is untrained, so these are not paintings."
    return compose(rows, title, warning, path)
