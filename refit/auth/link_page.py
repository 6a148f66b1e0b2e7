"""What a person sees after opening the email-confirmation link: a small HTML page, chosen by
the request's Accept header (a browser ranks text/html first; an API client asks for JSON,
or for anything, and keeps getting JSON)."""

from __future__ import annotations

import html

from fastapi.responses import HTMLResponse

# A link opened from a mail client: no scripts, no outside resources, nothing to load.
_PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="referrer" content="no-referrer">
<title>{title} · ReFit</title></head>
<body style="font-family:system-ui,sans-serif;max-width:32rem;margin:4rem auto;padding:0 1rem;
line-height:1.5">
<h1 style="font-size:1.5rem">{title}</h1>
<p>{detail}</p>
<p style="color:#555">{hint}</p>
</body></html>
"""
# The URL carries the token: no cache keeps the page, and the answer varies with Accept.
_HEADERS = {"Cache-Control": "no-store", "Vary": "Accept"}

# What a person can do about each refusal, by its problem code.
_FAILURES = {
    "email_token_expired": (
        "This link has expired",
        "Ask for a new confirmation email from your account in the ReFit app.",
    ),
    "email_token_used": (
        "This link was already used",
        "If your email shows as verified in the app, there is nothing left to do.",
    ),
    "email_token_invalid": (
        "This link is not valid",
        "Open the link from the latest confirmation email, whole, or ask for a new one.",
    ),
    "email_taken": (
        "This email belongs to another account",
        "Use another address, or sign in with the wallet that verified this one.",
    ),
}
_OTHER_FAILURE = ("This link did not work", "Try again in a minute, or ask for a new email.")


def prefers_html(accept: str | None) -> bool:
    """Whether the Accept header ranks text/html above application/json (RFC 9110 12.5.1: the
    most specific range that matches a type gives its weight). No header, `*/*` alone or a
    tie is an API client's: JSON."""
    html_q = _weight(accept or "", "text", "html")
    return html_q > 0 and html_q > _weight(accept or "", "application", "json")


def _weight(accept: str, kind: str, subtype: str) -> float:
    best: tuple[int, float] = (-1, 0.0)  # (specificity, q) of the most specific match
    for item in accept.split(","):
        media, *params = (p.strip() for p in item.split(";"))
        if "/" not in media:
            continue
        m_kind, m_sub = (part.strip().lower() for part in media.split("/", 1))
        if m_kind == kind and m_sub == subtype:
            specificity = 2
        elif m_kind == kind and m_sub == "*":
            specificity = 1
        elif m_kind == "*" and m_sub == "*":
            specificity = 0
        else:
            continue
        q = 1.0
        for param in params:
            name, _, value = param.partition("=")
            if name.strip().lower() == "q":
                try:
                    q = min(1.0, max(0.0, float(value)))
                except ValueError:
                    q = 0.0
        if specificity > best[0]:
            best = (specificity, q)
    return best[1]


def verified_page(email: str | None) -> HTMLResponse:
    detail = f"{html.escape(email or 'Your email')} is now verified."
    return _page(200, "Your email is verified", detail, "You can close this page.")


def failure_page(status: int, code: str, detail: str) -> HTMLResponse:
    title, hint = _FAILURES.get(code, _OTHER_FAILURE)
    return _page(status, title, html.escape(detail), hint)


def _page(status: int, title: str, detail: str, hint: str) -> HTMLResponse:
    body = _PAGE.format(title=html.escape(title), detail=detail, hint=html.escape(hint))
    return HTMLResponse(body, status_code=status, headers=_HEADERS)
