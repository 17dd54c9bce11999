"""`make demo STATISTICS=1`: the style statistics and the iterate average of
issue 18 through the real server and the `stylize` CLI, drawn into one
picture (docs/statistics.png).

Four jobs on the sample pair: the Gram loss and the Wasserstein-2 loss
(`--style-loss mean_cov`), each without and with the iterate EMA
(`--iterate-average ema`). The picture shows the content, the style and the
four results, labelled, and says so when the server's weights are random.
"""

from __future__ import annotations

from pathlib import Path

from demo_controls import DemoJob, compose

JOBS = (
    ("gram", "gram", ("--style-loss", "gram")),
    ("mean-cov", "mean_cov (W2)", ("--style-loss", "mean_cov")),
    ("gram-ema", "gram + EMA", ("--style-loss", "gram", "--iterate-average", "ema")),
    ("mean-cov-ema", "mean_cov + EMA", ("--style-loss", "mean_cov", "--iterate-average", "ema")),
)
# Its results lie in the same folder as the controls demo's: out/statistics-<name>.png.
RESULT_PREFIX = "statistics-"


def statistics_jobs(content: Path, style: Path) -> list[DemoJob]:
    """The four jobs, for `demo_controls.run_jobs` (with RESULT_PREFIX)."""
    return [DemoJob(name, label, (str(content), str(style)), flags) for name, label, flags in JOBS]


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
