"""Credentials never leave the program: URLs and messages with their secrets replaced.

Kept free of heavy imports: the CLI's error lines and log handlers use it on every command.
"""

from __future__ import annotations

import re
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

# Query parameters that carry credentials; they never reach logs or raw_responses.
SECRET_PARAMS = frozenset(
    {"token", "access_token", "api_key", "apikey", "key", "password", "secret", "signature"}
)
REDACTED = "REDACTED"


def redact_params(params: dict[str, str]) -> dict[str, str]:
    return {k: REDACTED if k.lower() in SECRET_PARAMS else v for k, v in params.items()}


def host_of(url: str) -> str:
    """``host[:port]`` of ``url``, without any user info."""
    return urlsplit(url).netloc.rsplit("@", 1)[-1]


def redact_url(url: str) -> tuple[str, dict[str, str]]:
    """``url`` with its user info (``user:password@``) and credential parameters replaced by
    ``REDACTED``, and its query parameters (redacted)."""
    parts = urlsplit(url)
    params = redact_params(dict(parse_qsl(parts.query, keep_blank_values=True)))
    if "@" in parts.netloc:
        parts = parts._replace(netloc=f"{REDACTED}@{host_of(url)}")
    return urlunsplit(parts._replace(query=urlencode(params))), params


_USER_INFO = re.compile(r"(?i)\b([a-z][a-z0-9+.-]*://)[^/\s@?#]+@")
_SECRET_QUERY = re.compile(rf"(?i)([?&](?:{'|'.join(sorted(SECRET_PARAMS))})=)[^&#\s'\"]+")


def redact_text(text: str) -> str:
    """``text`` (a log line, an error message) with the credentials of any URL in it replaced:
    user info and secret query parameters. Applied where text leaves the program: log
    handlers, ``Error:`` lines and ``runs.error``."""
    return _SECRET_QUERY.sub(rf"\1{REDACTED}", _USER_INFO.sub(rf"\1{REDACTED}@", text))
