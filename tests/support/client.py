"""Client-side test helpers shared by the client and CLI tests."""

from __future__ import annotations

import threading
from typing import Any

from stylize import Started, StyleTransferClient


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
