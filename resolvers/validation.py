"""Input checks shared by the operations; each failure names the offending field."""

from __future__ import annotations

import re
import uuid

from resolvers.errors import BadUserInput

# Deliberately simple: one @, a dot in the domain, no spaces. Deliverability is
# the ATS's business; this catches typos and garbage.
_EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")


def text(field: str, value: str, *, max_length: int, allow_empty: bool = False) -> str:
    stripped = value.strip()
    if not stripped and not allow_empty:
        raise BadUserInput(field, "must not be empty")
    if len(value) > max_length:
        raise BadUserInput(field, f"must be at most {max_length} characters")
    if "\x00" in value:
        raise BadUserInput(field, "must not contain NUL characters")
    unicode_text(field, value)
    return stripped


def unicode_text(field: str, value: str) -> str:
    """JSON's "\\ud800" escapes decode to lone surrogates, which no UTF-8 (nor PostgreSQL) holds."""
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise BadUserInput(field, "must be valid Unicode text (no unpaired surrogates)") from None
    return value


def optional_text(field: str, value: str | None, *, max_length: int) -> str | None:
    if value is None:
        return None
    return text(field, value, max_length=max_length) or None


def email(field: str, value: str) -> str:
    value = text(field, value, max_length=320)
    if not _EMAIL.match(value):
        raise BadUserInput(field, "must be an email address")
    return value.lower()


def object_id(field: str, value: str) -> uuid.UUID:
    try:
        return uuid.UUID(value)
    except (ValueError, AttributeError, TypeError):
        raise BadUserInput(field, "is not a valid ID") from None


def int_range(field: str, value: int, *, low: int, high: int) -> int:
    if not low <= value <= high:
        raise BadUserInput(field, f"must be between {low} and {high}")
    return value
