"""What the CLI makes of one job's events besides the result file: numbered
preview frames, the time-lapse GIF and the loss plot.

`JobRecorder` watches the events of one job; after the result it writes the
GIF and the plot. matplotlib is imported only when a plot is asked for (it is
the optional `plot` extra); `require_matplotlib` lets the CLI fail before the
job starts rather than after it finished.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path

from ..events import Event, Losses, Progress, Result, Started
from ..images import decode

GIF_FRAME_MS = 100
GIF_LAST_FRAME_MS = 2000
GIF_MAX_SIDE = 512
# A long run with --save-every 1 would otherwise hold every preview in memory:
# past this many frames the time-lapse keeps every other one (and so on).
GIF_MAX_FRAMES = 240


class MissingExtra(RuntimeError):
    """An optional dependency is not installed; the message says how to get it."""


def require_matplotlib() -> None:
    import importlib.util

    if importlib.util.find_spec("matplotlib") is None:
        raise MissingExtra(
            "--loss-plot needs matplotlib, which is not installed: pip install 'stylize-grpc[plot]' "
            "(or pip install matplotlib)"
        )


@dataclass
class LossHistory:
    """Every term's weighted loss by iteration, under the term's name (the
    job's terms as the server reports them), and the total."""

    iterations: list[int] = field(default_factory=list)
    terms: dict[str, list[float]] = field(default_factory=dict)
    total: list[float] = field(default_factory=list)
    scale_starts: list[int] = field(default_factory=list)  # first iteration of each later scale

    def add(self, iteration: int, losses: Losses) -> None:
        for name, value in losses.terms.items():
            # a term first seen late (it cannot be, today) starts with gaps
            self.terms.setdefault(name, [math.nan] * len(self.iterations)).append(value)
        self.iterations.append(iteration)
        self.total.append(losses.total)


@dataclass
class JobRecorder:
    """Collects previews and losses of one job and writes frames, GIF and plot.

    frames_dir:  save previews there as frame_<iteration>.png (frame_0020.png is iteration 20)
    save_every:  keep previews of iterations that are multiples of this (and the last)
    timelapse:   path of the animated GIF, ending on the result
    loss_plot:   path of the loss-curve PNG
    """

    frames_dir: Path | None = None
    save_every: int | None = None
    timelapse: Path | None = None
    loss_plot: Path | None = None
    frames: list[Path] = field(default_factory=list)
    history: LossHistory = field(default_factory=LossHistory)
    timelapse_frames: int = 0
    _previews: list[bytes] = field(default_factory=list)
    _stride: int = 1  # keep every _stride-th preview for the time-lapse
    _seen: int = 0
    _last_scale: int = 0
    _digits: int = 4

    @property
    def wants_previews(self) -> bool:
        return self.frames_dir is not None or self.timelapse is not None

    def on_event(self, event: Event) -> str | None:
        """Record one event; returns the path of a frame saved for it, if any."""
        if isinstance(event, Started):
            if not event.reattached:  # the same job, seen again after a lost connection: keep going
                self.history = LossHistory()
                self._previews.clear()
                self._stride, self._seen = 1, 0
                self.frames.clear()
            self._digits = max(4, len(str(event.total_iterations)))
            return None
        if not isinstance(event, Progress):
            return None
        h = self.history
        if event.scale_index != self._last_scale and h.iterations:
            h.scale_starts.append(event.iteration)
        self._last_scale = event.scale_index
        h.add(event.iteration, event.losses)
        if event.preview is None:
            return None
        last = event.iteration >= event.total_iterations
        if self.save_every and not last and event.iteration % self.save_every:
            return None
        # The last iteration's preview is the result itself; the GIF ends on the result.
        if not last and self.timelapse is not None:
            self._keep_for_timelapse(event.preview)
        if self.frames_dir is not None:
            self.frames_dir.mkdir(parents=True, exist_ok=True)
            # Named by iteration, so a frame says where in the run it was taken.
            path = self.frames_dir / f"frame_{event.iteration:0{self._digits}d}.png"
            path.write_bytes(event.preview)
            if path not in self.frames:
                self.frames.append(path)
            return str(path)
        return None

    def _keep_for_timelapse(self, preview: bytes) -> None:
        self._seen += 1
        if (self._seen - 1) % self._stride:
            return
        self._previews.append(preview)
        if len(self._previews) >= GIF_MAX_FRAMES:  # thin out evenly: memory stays bounded
            self._previews = self._previews[::2]
            self._stride *= 2

    def finish(self, result: Result) -> None:
        """Write the GIF and the plot (when asked for) once the result is in."""
        if self.timelapse is not None:
            self.timelapse_frames = write_timelapse(self.timelapse, self._previews, result.image)
        if self.loss_plot is not None:
            write_loss_plot(self.loss_plot, self.history)


def write_timelapse(path: Path, previews: list[bytes], final_image: bytes) -> int:
    """An animated GIF of `previews` then the final image, all at the final
    image's aspect (longest side <= GIF_MAX_SIDE); returns its frame count."""
    from PIL import Image

    final = decode(final_image, "result").convert("RGB")
    scale = min(1.0, GIF_MAX_SIDE / max(final.size))
    size = (max(1, round(final.width * scale)), max(1, round(final.height * scale)))
    frames = []
    for i, data in enumerate(previews):
        with decode(data, f"preview {i + 1}") as im:
            frames.append(im.convert("RGB").resize(size, Image.Resampling.LANCZOS))
    frames.append(final.resize(size, Image.Resampling.LANCZOS) if final.size != size else final)
    durations = [GIF_FRAME_MS] * (len(frames) - 1) + [GIF_LAST_FRAME_MS]
    path.parent.mkdir(parents=True, exist_ok=True)
    frames[0].save(path, format="GIF", save_all=True, append_images=frames[1:], duration=durations, loop=0)
    with Image.open(path) as gif:
        # Pillow folds a frame identical to the one before into it; count what was written.
        return getattr(gif, "n_frames", 1)


def write_loss_plot(path: Path, history: LossHistory) -> None:
    """The total and every term's loss against iteration, log scale."""
    require_matplotlib()
    import matplotlib

    matplotlib.use("Agg")  # no display needed, and no GUI toolkit
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8, 5), dpi=100)
    try:
        for name, values in [("total", history.total), *history.terms.items()]:
            # A log axis cannot show zero (e.g. tv_weight=0); leave such points out.
            ys = [v if v > 0 and math.isfinite(v) else float("nan") for v in values]
            if any(not math.isnan(y) for y in ys):
                ax.plot(history.iterations, ys, label=name, linewidth=2 if name == "total" else 1.2)
        for start in history.scale_starts:
            ax.axvline(start, color="grey", linestyle=":", linewidth=1)
        ax.set_yscale("log")
        ax.set_xlabel("iteration")
        ax.set_ylabel("weighted loss")
        # A single-scale run has no scale boundary to explain.
        title = "stylize: losses" + (" (dotted lines: next scale)" if history.scale_starts else "")
        ax.set_title(title)
        ax.grid(True, which="both", alpha=0.3)
        ax.legend()
        path.parent.mkdir(parents=True, exist_ok=True)
        fig.tight_layout()
        fig.savefig(path, format="png", metadata={"Title": title})  # the title, machine-readable too
    finally:
        plt.close(fig)
