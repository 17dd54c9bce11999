"""The loss terms: every module in this package that registers a `Term`
class (with `@register`) is part of the catalogue, found at import. A new
term is one new module here; nothing else lists terms.

The catalogue's order (each class's `order`, then its name) is the order of
the terms in a compiled objective, in `Losses.terms` and on every display.
"""

from __future__ import annotations

import importlib
import pkgutil
import threading
from collections.abc import Sequence

from stylize_server.engine.terms.base import TargetContext, Term, View
from stylize_server.job.options import JobOptions

__all__ = ["TargetContext", "Term", "View", "active", "by_name", "catalogue", "register", "unregister"]

_registry: dict[str, type[Term]] = {}
_lock = threading.Lock()
_discovered = False


def register(cls: type[Term]) -> type[Term]:
    """Add a term class to the catalogue (a class decorator). A name already
    taken by another class is refused: two terms must not share a key."""
    with _lock:
        other = _registry.get(cls.name)
        if other is not None and other is not cls:
            raise ValueError(f"a loss term named {cls.name!r} is already registered ({other.__module__})")
        _registry[cls.name] = cls
    return cls


def unregister(name: str) -> None:
    """Remove a term from the catalogue (tests that register their own)."""
    with _lock:
        _registry.pop(name, None)


def _discover() -> None:
    global _discovered
    if _discovered:
        return
    for module in pkgutil.iter_modules(__path__):
        if module.name != "base":
            importlib.import_module(f"{__name__}.{module.name}")
    _discovered = True


def catalogue() -> tuple[type[Term], ...]:
    """Every registered term, in objective order."""
    _discover()
    with _lock:
        classes = list(_registry.values())
    return tuple(sorted(classes, key=lambda c: (getattr(c, "order", 100), c.name)))


def by_name(name: str) -> type[Term]:
    _discover()
    with _lock:
        return _registry[name]


def active(options: JobOptions) -> tuple[type[Term], ...]:
    """The terms a job with these options has, in objective order."""
    return tuple(cls for cls in catalogue() if cls.active(options))


def names(classes: Sequence[type[Term]]) -> tuple[str, ...]:
    return tuple(c.name for c in classes)
