"""The languages a question can be solved in."""

from __future__ import annotations

from dataclasses import dataclass

from models.language import Language
from resolvers.errors import BadUserInput


@dataclass(frozen=True, slots=True)
class LanguageInfo:
    language: Language
    name: str
    extension: str


LANGUAGES: tuple[LanguageInfo, ...] = (
    LanguageInfo(Language.PYTHON, "Python 3", ".py"),
    LanguageInfo(Language.JAVASCRIPT, "JavaScript (Node.js)", ".js"),
    LanguageInfo(Language.TYPESCRIPT, "TypeScript", ".ts"),
    LanguageInfo(Language.GO, "Go", ".go"),
)
_BY_NAME = {info.language.value: info for info in LANGUAGES}


def language_info(field: str, name: str) -> LanguageInfo:
    info = _BY_NAME.get(name.upper())
    if info is None:
        raise BadUserInput(field, f"unknown language {name!r}; one of {', '.join(_BY_NAME)}")
    return info
