"""``GET /reports/{token}``: the server-rendered session report an ATS links to.

No API token: the link's own token opens it (``resolvers.report_links``). A wrong,
expired or revoked token gets the same bare 404 page, whatever the reason.

Everything shown is escaped: Jinja2 autoescapes, and the code is highlighted by
Pygments, which escapes what it emits. The page has no script at all, and its
Content-Security-Policy allows none: its one stylesheet is inline and allowed by its
SHA-256, nothing else loads (no images, fonts, frames, forms), nothing may frame it,
it sends no referrer (the token is in the URL) and asks not to be indexed or cached.
"""

from __future__ import annotations

import base64
import hashlib
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import jinja2
from markupsafe import Markup
from pygments import highlight
from pygments.formatters import HtmlFormatter
from pygments.lexer import Lexer
from pygments.lexers import TextLexer, get_lexer_for_filename
from pygments.util import ClassNotFound
from starlette.requests import Request
from starlette.responses import HTMLResponse, Response
from starlette.routing import Route

from gql.settings import Settings
from gql.types.report import report_config
from resolvers.report import export_status
from resolvers.report_content import CodeFile, report_content
from resolvers.report_links import REPORT_PATH, open_link

TEMPLATES = Path(__file__).parent / "templates"
# Highlighting is CPU work on the event loop: beyond this, a file is shown plain.
MAX_HIGHLIGHT_CHARS = 200_000


def _when(value: datetime | None) -> str:
    return value.astimezone(UTC).strftime("%Y-%m-%d %H:%M UTC") if value else "\u2013"


def _clock(value: datetime) -> str:
    return value.astimezone(UTC).strftime("%H:%M:%S")


def _duration(seconds: int | None) -> str:
    if seconds is None:
        return "\u2013"
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours} h {minutes:02d} min" if hours else f"{minutes} min {secs:02d} s"


def _lexer(path: str, text: str) -> Lexer:
    plain: Lexer = TextLexer()
    if len(text) > MAX_HIGHLIGHT_CHARS:
        return plain
    try:
        found: Lexer = get_lexer_for_filename(path, stripnl=False, ensurenl=False)
    except ClassNotFound:
        return plain
    return found


@dataclass(frozen=True)
class ReportPages:
    settings: Settings
    env: jinja2.Environment
    css: str
    formatter: HtmlFormatter[str]

    @classmethod
    def of(cls, settings: Settings) -> ReportPages:
        formatter: HtmlFormatter[str] = HtmlFormatter(
            cssclass="code", linenos="inline", wrapcode=True
        )
        styles: str = formatter.get_style_defs(".code")  # type: ignore[no-untyped-call]
        css = (TEMPLATES / "report.css").read_text() + styles
        env = jinja2.Environment(
            loader=jinja2.FileSystemLoader(TEMPLATES),
            autoescape=True,
            undefined=jinja2.StrictUndefined,
        )
        env.filters.update(when=_when, clock=_clock, duration=_duration)
        return cls(settings, env, css, formatter)

    @property
    def headers(self) -> dict[str, str]:
        style = base64.b64encode(hashlib.sha256(self.css.encode()).digest()).decode()
        return {
            "Content-Security-Policy": (
                f"default-src 'none'; style-src 'sha256-{style}'; base-uri 'none';"
                " form-action 'none'; frame-ancestors 'none'"
            ),
            "Referrer-Policy": "no-referrer",
            "X-Robots-Tag": "noindex, nofollow, noarchive",
            "X-Frame-Options": "DENY",
            "X-Content-Type-Options": "nosniff",
            "Cross-Origin-Opener-Policy": "same-origin",
            "Cross-Origin-Resource-Policy": "same-origin",
            "Cache-Control": "no-store",
        }

    def render(self, template: str, status: int, **context: Any) -> HTMLResponse:
        html = self.env.get_template(template).render(css=Markup(self.css), **context)  # noqa: S704 - our own stylesheet
        return HTMLResponse(html, status_code=status, headers=self.headers)

    def highlighted(self, file: CodeFile) -> Markup | None:
        if file.text is None:
            return None
        # Pygments escapes everything it emits; the markup is its spans around that.
        return Markup(highlight(file.text, _lexer(file.path, file.text), self.formatter))  # noqa: S704

    async def page(self, request: Request) -> Response:
        link = await open_link(str(request.path_params["token"]))
        if link is None:
            return self.render("report_missing.html", 404)
        content = await report_content(link.session, pricing=report_config(self.settings).pricing)
        return self.render(
            "report.html",
            200,
            c=content,
            s=content.session,
            r=content.report,
            code=[(f, self.highlighted(f)) for f in content.code],
            scorecards=content.report.scorecards,
            export=await export_status(content.session.id),
            expires_at=link.expires_at,
            now=datetime.now(UTC),
        )


def report_routes(settings: Settings) -> list[Route]:
    pages = ReportPages.of(settings)
    return [Route(REPORT_PATH + "{token}", pages.page, methods=["GET"])]
