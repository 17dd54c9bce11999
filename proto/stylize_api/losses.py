"""The losses of one iteration, by term: one type for the server, the client
and the CLI, read from and written to the `Losses` message.

`terms` holds every loss term the job has, by the term's name, already
multiplied by its weight: in the engine's order where the engine made it,
by name where it came over the wire (a protobuf map has no order); `total`
is their sum. Nobody
here knows which terms exist: a new term on the server shows up in every
client and display by its name.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType

from google.protobuf.descriptor import FieldDescriptor

from stylize_api.v1 import stylize_pb2

# The fields of Losses from before `terms` (deprecated, filled one more
# release): every double field but total, found in the descriptor.
_LEGACY = tuple(
    fd.name
    for fd in stylize_pb2.Losses.DESCRIPTOR.fields
    if fd.type == FieldDescriptor.TYPE_DOUBLE and fd.name != "total"
)


@dataclass(frozen=True)
class Losses:
    """Weighted loss terms by name, and their total."""

    terms: Mapping[str, float] = field(default_factory=lambda: MappingProxyType({}))
    total: float = 0.0

    @classmethod
    def of(cls, values: Iterable[tuple[str, float]]) -> Losses:
        """From (name, value) pairs, in order; the total is their sum."""
        terms = dict(values)
        return cls(MappingProxyType(terms), float(sum(terms.values())))

    def __getattr__(self, name: str) -> float:
        # losses.content, losses.style, ...: a term by its name.
        terms = self.__dict__.get("terms")
        if terms is not None and name in terms:
            return float(terms[name])
        raise AttributeError(f"no loss term {name!r}; the job's terms are {list(terms or ())}")

    def __getitem__(self, name: str) -> float:
        return float(self.terms[name])

    def to_dict(self) -> dict[str, float]:
        return {**self.terms, "total": self.total}

    def to_proto(self) -> stylize_pb2.Losses:
        msg = stylize_pb2.Losses(total=self.total)
        for name, value in self.terms.items():
            msg.terms[name] = value
            if name in _LEGACY:  # the deprecated field of the same name, for older clients
                setattr(msg, name, value)
        return msg

    @classmethod
    def from_proto(cls, msg: stylize_pb2.Losses) -> Losses:
        if msg.terms:  # a protobuf map has no order: by name, so every display shows the same
            return cls(MappingProxyType(dict(sorted(msg.terms.items()))), msg.total)
        # A server from before `terms`: its terms are the legacy fields.
        return cls(MappingProxyType({name: getattr(msg, name) for name in _LEGACY}), msg.total)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Losses):
            return NotImplemented
        return dict(self.terms) == dict(other.terms) and self.total == other.total

    def __hash__(self) -> int:
        return hash((tuple(self.terms.items()), self.total))
