"""Redaction of secrets in anything nbws shows: reprs, widget state, log lines, errors.

A notebook saves what it displays, so a URL shown with ``?token=...`` ends up in the
``.ipynb`` and wherever that file goes. Every place that shows a URL or a handshake header
passes it through here first: query values whose name says "secret" (``token``,
``password``, ``api_key``, ...), the password of a URL's userinfo, and the values of
credential headers (``Authorization``, ``Cookie``, ...) become :data:`REDACTED`.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from urllib.parse import urlsplit, urlunsplit

__all__ = [
    "REDACTED",
    "SECRET_HEADERS",
    "redact_header",
    "redact_headers",
    "redact_text",
    "redact_url",
    "secret_query_name",
]

REDACTED = "…"
"""What a secret is shown as."""

SECRET_HEADERS = frozenset(
    {"authorization", "proxy-authorization", "cookie", "set-cookie", "x-xsrftoken", "x-api-key"}
)
"""Header names (lower case) whose values are credentials."""

_SECRET_NAME = re.compile(
    r"(token|password|passwd|pwd|secret|api[_-]?key|apikey|auth|credential|signature|sig|session)",
    re.IGNORECASE,
)
# ``name=value`` pairs (query strings, form bodies, messages quoting them).
_PAIR = re.compile(r"(?P<name>[A-Za-z0-9_.\-]+)=(?P<value>[^&#\s'\"<>]*)")
# A URL embedded in free text.
_URL = re.compile(r"\b(?:wss?|https?)://[^\s'\"<>]+", re.IGNORECASE)
# ``Authorization: token abc`` / ``authorization: Bearer ...`` quoted in text.
_HEADER_LINE = re.compile(
    r"(?P<name>\b(?:authorization|proxy-authorization|cookie|set-cookie|x-xsrftoken|x-api-key))"
    r"(?P<sep>['\"]?\s*[:=,]\s*['\"]?)(?P<value>[^'\"\n]+)",
    re.IGNORECASE,
)


def secret_query_name(name: str) -> bool:
    """Whether a query (or form) parameter called ``name`` carries a secret."""
    return bool(_SECRET_NAME.search(name))


def _redact_pairs(query: str) -> str:
    def replace(match: re.Match[str]) -> str:
        name = match.group("name")
        if secret_query_name(name) and match.group("value"):
            return f"{name}={REDACTED}"
        return match.group(0)

    return _PAIR.sub(replace, query)


def redact_url(url: str) -> str:
    """``url`` with secret query values and the userinfo password replaced.

    Anything that does not parse as a URL is returned with ``name=secret`` pairs redacted,
    so a malformed URL in an error message is still safe to show.
    """
    try:
        parts = urlsplit(url)
    except ValueError:
        return _redact_pairs(url)
    netloc = parts.netloc
    if "@" in netloc:
        userinfo, _, host = netloc.rpartition("@")
        user, colon, password = userinfo.partition(":")
        if colon and password:
            netloc = f"{user}:{REDACTED}@{host}"
        elif not colon and parts.scheme and user:
            # ``https://TOKEN@host``: a bare userinfo is used as a credential too.
            netloc = f"{REDACTED}@{host}"
    query = _redact_pairs(parts.query) if parts.query else parts.query
    fragment = _redact_pairs(parts.fragment) if parts.fragment else parts.fragment
    return urlunsplit((parts.scheme, netloc, parts.path, query, fragment))


def redact_header(name: str, value: str) -> str:
    """The value of header ``name`` as it may be shown (a request line's target included)."""
    if name.lower() in SECRET_HEADERS:
        scheme, space, _credential = value.partition(" ")
        # Keep the scheme ("token", "Bearer", "Basic"): it says what was sent, not what.
        if space and name.lower() in ("authorization", "proxy-authorization"):
            return f"{scheme} {REDACTED}"
        return REDACTED
    return redact_text(value)


def redact_headers(headers: Iterable[tuple[str, str]]) -> list[tuple[str, str]]:
    """Handshake headers as they may be shown."""
    return [(name, redact_header(name, value)) for name, value in headers]


def redact_text(text: str) -> str:
    """Free text (a log line, an error message) with embedded URLs, ``name=secret``
    pairs and quoted credential headers redacted."""
    text = _URL.sub(lambda m: redact_url(m.group(0)), text)
    text = _HEADER_LINE.sub(lambda m: f"{m.group('name')}{m.group('sep')}{REDACTED}", text)
    return _redact_pairs(text)
