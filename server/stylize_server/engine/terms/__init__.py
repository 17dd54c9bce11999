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
from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType

from stylize_server.engine.terms.base import TargetContext, Term, View
from stylize_server.job.cost import TermCost
from stylize_server.job.errors import InvalidArgument
from stylize_server.job.options import JobOptions, TermValue

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


@dataclass(frozen=True)
class _Cost:
    """A term class as the cost model sees it (job.cost.TermCost)."""

    term: type[Term]

    def active(self, options: JobOptions) -> bool:
        return self.term.active(options)

    def state_values_per_pixel(self, options: JobOptions, regions: int) -> float:
        return self.term.state_values_per_pixel(options, regions)

    def macs_per_pixel(self, options: JobOptions, regions: int) -> float:
        return self.term.macs_per_pixel(options, regions)

    def working_values_per_pixel(self, options: JobOptions, regions: int, first_block: int, last_block: int) -> float:
        return self.term.working_values_per_pixel(options, regions, first_block, last_block)

    def fixed_values(self, options: JobOptions, regions: int) -> float:
        return self.term.fixed_values(options, regions)

    def fixed_macs(self, options: JobOptions, regions: int) -> float:
        return self.term.fixed_macs(options, regions)


def costs() -> tuple[TermCost, ...]:
    """Every term's share of the cost model."""
    return tuple(_Cost(cls) for cls in catalogue())


def option_defaults() -> Mapping[str, TermValue]:
    """Every term option of the catalogue with its default."""
    merged: dict[str, TermValue] = {}
    for cls in catalogue():
        merged.update(cls.option_defaults)  # type: ignore[arg-type]
    return MappingProxyType(merged)


def check_options(options: JobOptions) -> None:
    """Refuse a term option no term owns, then let each active term check its own."""
    known = option_defaults()
    for name, _ in options.term_options:
        if name not in known:
            raise InvalidArgument(name, "is not an option of any loss term of this server")
    for cls in active(options):
        cls.check(options)
