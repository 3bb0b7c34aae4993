"""The few HTML pages the browser flow shows: minimal, escaped, never cached, never a token."""

from __future__ import annotations

import html

NO_STORE = {"Cache-Control": "no-store", "Pragma": "no-cache"}


def page(status: int, title: str, message: str, retry: str | None = None) -> tuple[int, str, dict[str, str]]:
    link = f'<p><a href="{html.escape(retry, quote=True)}">Try again</a></p>' if retry else ""
    body = (
        "<!doctype html><html><head><meta charset=\"utf-8\"><title>"
        + html.escape(title)
        + "</title></head><body><h1>"
        + html.escape(title)
        + "</h1><p>"
        + html.escape(message)
        + "</p>"
        + link
        + "</body></html>"
    )
    return status, body, {"Content-Type": "text/html; charset=utf-8", **NO_STORE}
