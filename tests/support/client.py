"""Client-side test helpers shared by the client and CLI tests: a small, fast
job (FAST options on the CONTENT and STYLE images), the kinds of a stream's
events, and a long job that holds a server's only slot."""

from __future__ import annotations

import threading
from typing import Any

from stylize import Started, StyleTransferClient

from .images import png_bytes

# Small, fast jobs; multiscale_min_size is given so that a test server with a
# small max_side accepts it whatever its default coarsest scale.
FAST = {"size": 32, "iterations": 4, "progress_interval": 1, "multiscale_min_size": 32}
CONTENT = png_bytes(40, 32, seed=1)
STYLE = png_bytes(32, 32, seed=2)


def kinds(events: Any) -> list[str]:
    return [type(e).__name__ for e in events]


def hold_slot(address: str, content: Any, style: Any, **options: Any):
    """Start a long job from a background thread and return once it runs.

    Returns (stream, thread, errors): `stream.cancel()` frees the slot; `errors`
    collects what the stream raised (a cancelled blocker ends with Cancelled).
    """
    client = StyleTransferClient(address, timeout=120)
    stream = client.stylize(content, style, **options)
    started = threading.Event()
    errors: list[BaseException] = []

    def run() -> None:
        try:
            for event in stream:
                if isinstance(event, Started):
                    started.set()
        except BaseException as exc:
            errors.append(exc)
        finally:
            started.set()
            client.close()

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    assert started.wait(60), "the blocking job never started"
    return stream, thread, errors
