"""The machinery of typed event payloads: declare a kind, serialize it once, parse it back.

A payload is a frozen dataclass registered under its kind with ``@kind("x.y")``.
Its JSON is what the log has always stored: camelCase keys (``runId``), or the
field names themselves for kinds declared ``snake=True`` (the Claude transcript
kinds store the CLI's own names, ``tool_use_id``). ``None`` fields are left
out. Parsing is tolerant, because stored rows outlive the code that wrote them:
unknown keys are ignored, missing optional ones are ``None``, enums come back
as enums, and a row that does not fit its kind becomes ``Unknown`` (shown as a
generic event) rather than an error.

The kinds themselves are listed in ``resolvers.event_kinds``.
"""

from __future__ import annotations

import dataclasses
import enum
import types
import typing
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, ClassVar, TypeVar

JsonDict = dict[str, Any]
P = TypeVar("P", bound="Payload")


class Payload:
    """Base of every payload. Subclasses are frozen slots dataclasses."""

    __slots__ = ()
    KIND: ClassVar[str] = ""
    # What a candidate may not see: True for the whole event (interviewer notes).
    STAFF_ONLY: ClassVar[bool] = False
    # Computed once at registration: (attribute, JSON key) per field, JSON key ->
    # attribute, and the enum fields' decoders (parsing is on the live path).
    _FIELDS: ClassVar[tuple[tuple[str, str], ...]] = ()
    _ATTRS: ClassVar[dict[str, str]] = {}
    _DECODERS: ClassVar[tuple[tuple[str, Callable[[Any], Any]], ...]] = ()

    @property
    def kind(self) -> str:
        return self.KIND

    def to_json(self) -> JsonDict:
        out: JsonDict = {}
        for attr, key in self._FIELDS:
            value = getattr(self, attr)
            if value is not None:
                out[key] = value.value if isinstance(value, enum.Enum) else value
        return out

    def for_candidate(self) -> Payload | None:
        """What a candidate sees of this event: itself, a redacted copy, or nothing."""
        return None if self.STAFF_ONLY else self


@dataclass(frozen=True, slots=True)
class Unknown(Payload):
    """A stored row of a kind this code does not know, or that does not fit its kind."""

    stored_kind: str
    data: JsonDict

    @property
    def kind(self) -> str:
        return self.stored_kind

    def to_json(self) -> JsonDict:
        return self.data

    def for_candidate(self) -> Payload | None:
        # A row that did not parse is judged by what it says of itself, as before
        # payloads were typed: a staff-only kind stays hidden, and of a payload
        # marked hidden only its "public" part shows.
        known = KINDS.get(self.stored_kind)
        if known is not None and known.STAFF_ONLY:
            return None
        if self.data.get("hidden"):
            public = self.data.get("public")
            shown = public if isinstance(public, dict) else {}
            return Unknown(self.stored_kind, {"hidden": True, **shown})
        return self


KINDS: dict[str, type[Payload]] = {}


def _camel(name: str) -> str:
    head, *rest = name.split("_")
    return head + "".join(part.title() for part in rest)


def _decoder(hint: Any) -> Callable[[Any], Any] | None:
    """Enum fields are stored as their value: turn it back into the member."""
    options = typing.get_args(hint) if isinstance(hint, types.UnionType) else (hint,)
    for option in options:
        if isinstance(option, type) and issubclass(option, enum.Enum):
            return option
    return None


def kind(name: str, *, snake: bool = False) -> Callable[[type[P]], type[P]]:
    """Register a payload class as the one for event kind ``name``."""

    def register(cls: type[P]) -> type[P]:
        if name in KINDS:
            raise ValueError(f"event kind {name} declared twice")
        hints = typing.get_type_hints(cls)
        cls.KIND = name
        names = [f.name for f in dataclasses.fields(cls)]  # type: ignore[arg-type]
        cls._FIELDS = tuple(
            (name, name if snake and name != "run_id" else _camel(name)) for name in names
        )
        cls._ATTRS = {key: attr for attr, key in cls._FIELDS}
        cls._DECODERS = tuple(
            (name, decode) for name in names if (decode := _decoder(hints[name])) is not None
        )
        KINDS[name] = cls
        return cls

    return register


def parse(kind_name: str, data: JsonDict) -> Payload:
    """The typed payload of a stored event; ``Unknown`` when it does not fit."""
    cls = KINDS.get(kind_name)
    if cls is None or not isinstance(data, dict):
        return Unknown(kind_name, data if isinstance(data, dict) else {"value": data})
    attrs = cls._ATTRS
    values = {attrs[key]: value for key, value in data.items() if key in attrs}
    try:
        for attr, decode in cls._DECODERS:
            if values.get(attr) is not None:
                values[attr] = decode(values[attr])
        return cls(**values)
    except (TypeError, ValueError):  # a required field missing, an enum value unknown
        return Unknown(kind_name, data)
