"""Storing every HTTP response a collector receives, before it is parsed (``raw_responses``).

Each response is committed on its own, so a response that later fails to parse is still there
to study, and derived tables can be rebuilt from stored responses without the network.
Secrets never reach the table: query parameters that carry credentials are redacted.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from sqlalchemy import Engine, insert

from pipeline.http import HttpResponse
from pipeline.redact import redact_params, redact_url
from pipeline.runlog import utc_now
from storage.models import RawResponse


def split_url(url: str) -> tuple[str, dict[str, str]]:
    """The URL without its query string, and the query parameters with secrets redacted."""
    redacted, params = redact_url(url)
    return urlunsplit(urlsplit(redacted)._replace(query="", fragment="")), params


def store_response(
    engine: Engine,
    run_id: int | None,
    source: str,
    response: HttpResponse,
    request: dict[str, Any] | None = None,
    *,
    keep_body: bool = True,
) -> int:
    """Commit one response; returns its ``raw_responses.id``.

    ``request`` may carry ``method``, ``url`` and ``params`` of what was asked (defaults: GET and
    the response URL). ``keep_body=False`` stores only size and hash (large archive files).
    """
    request = request or {}
    url, params = split_url(request.get("url") or response.url)
    params.update(redact_params(request.get("params", {})))
    body_text = response.body.decode("utf-8", errors="replace") if keep_body else None
    with engine.begin() as connection:
        return connection.execute(
            insert(RawResponse)
            .values(
                run_id=run_id,
                source=source,
                method=request.get("method", "GET"),
                url=url,
                params=json.dumps(params, sort_keys=True),
                status=response.status,
                content_type=response.content_type or None,
                fetched_at=utc_now(),
                body=body_text,
                body_sha256=hashlib.sha256(response.body).hexdigest() if response.body else None,
                body_bytes=len(response.body),
            )
            .returning(RawResponse.id)
        ).scalar_one()
