"""Client for a Papers-with-Code v1-compatible API (framework counts).

Two counts are read, each with a one-item page: repositories per framework
(``/repositories/?framework=X``, no time axis) and papers per framework and date range
(``/papers/?framework=X&start_date=…&end_date=…``, the relaunched API). Servers that ignore a
filter answer with an unfiltered count, so a reply is only trusted when ``applied_filters``
echoes every filter, and a set of per-framework counts is refused when they are all equal.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Callable, Mapping
from typing import Any

from pipeline.http import HttpClient, HttpResponse, SourceError, SourceUnavailable

ResponseCallback = Callable[[HttpResponse, dict[str, Any]], None]


class UnexpectedResponse(SourceError):
    """The reply is not the JSON shape the API documents (HTML page, missing count, …)."""


class BlockPage(UnexpectedResponse, SourceUnavailable):
    """An HTML page instead of JSON: a CAPTCHA or block page, so the run ends ``partial``
    (DESIGN §6) and the next run tries again."""


class EndpointMissing(UnexpectedResponse):
    """The server has no such endpoint (HTTP 404): an older server without ``papers/``."""


class FiltersNotApplied(SourceError):
    """The server did not confirm that it applied every requested filter."""


class FrameworkFilterIgnored(FiltersNotApplied):
    """Every framework got the same count: the server ignores the framework filter."""


class PwcApiClient:
    """Counts from a v1-compatible API; every response goes to ``on_response`` before parsing,
    so the collector can store it raw even when it is then rejected."""

    def __init__(
        self, api_url: str, http: HttpClient, on_response: ResponseCallback | None = None
    ) -> None:
        self.api_url = api_url.rstrip("/")
        self.http = http
        self.on_response = on_response

    def repository_count(self, framework_code: str) -> int:
        """Repositories whose framework is ``framework_code`` (all time, no date axis)."""
        params = {"framework": framework_code, "items_per_page": "1"}
        payload = self._get_json("repositories", params)
        return _count(payload, self._url("repositories"))

    def paper_count(self, framework: str, start: dt.date, end: dt.date) -> int:
        """Papers with code in ``framework`` published from ``start`` to ``end`` (inclusive).

        Raises :class:`FiltersNotApplied` unless ``applied_filters`` echoes every filter.
        """
        if end < start:
            raise ValueError(f"end {end} is before start {start}")
        filters = {
            "framework": framework,
            "start_date": start.isoformat(),
            "end_date": end.isoformat(),
        }
        url = self._url("papers")
        payload = self._get_json("papers", {**filters, "page_size": "1"})
        count = _count(payload, url)
        _check_echo(payload, filters, url)
        return count

    @staticmethod
    def check_distinct(counts: Mapping[str, int]) -> None:
        """Refuse per-framework counts that are all equal (and non-zero) for ≥ 2 frameworks.

        All zero is allowed: an early quarter can truly have no papers for any framework.
        """
        values = set(counts.values())
        if len(counts) >= 2 and len(values) == 1 and next(iter(values)) > 0:
            raise FrameworkFilterIgnored(
                f"every framework ({', '.join(sorted(counts))}) got the same count "
                f"{next(iter(values))}: the server ignores the framework filter"
            )

    def _url(self, endpoint: str) -> str:
        return f"{self.api_url}/{endpoint}/"

    def _get_json(self, endpoint: str, params: dict[str, str]) -> Any:
        url = self._url(endpoint)
        request = {"endpoint": endpoint, "url": url, "params": dict(params)}

        def store(response: HttpResponse) -> None:  # every response, retried ones included
            if self.on_response is not None:
                self.on_response(response, request)

        response = self.http.get(
            url, params=params, ok_statuses=frozenset({200}), on_response=store
        )
        if response.status == 404:
            raise EndpointMissing(f"{response.url}: HTTP 404 (the server has no {endpoint}/)")
        if response.status != 200:
            raise UnexpectedResponse(f"{response.url}: HTTP {response.status}")
        head = response.body[:512].lstrip().lower()
        if "html" in response.content_type.lower() or head.startswith((b"<!doctype", b"<html")):
            raise BlockPage(f"{response.url}: HTML page instead of JSON")
        try:
            return json.loads(response.body)
        except ValueError as error:
            raise UnexpectedResponse(f"{response.url}: invalid JSON ({error})") from None


def _count(payload: Any, url: str) -> int:
    if not isinstance(payload, dict):
        raise UnexpectedResponse(f"{url}: expected a JSON object, got {type(payload).__name__}")
    key = "count" if "count" in payload else "total" if "total" in payload else None
    if key is None:
        raise UnexpectedResponse(f"{url}: reply has no 'count' (keys: {', '.join(payload)})")
    value = payload[key]
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise UnexpectedResponse(f"{url}: '{key}' is {value!r}, not a count")
    return value


def _echoes(applied: Any, wanted: str) -> bool:
    """Does an ``applied_filters`` value confirm the requested one? Servers may echo a
    framework as its slug, name or id, or as an object carrying those."""
    if isinstance(applied, dict):
        return any(_echoes(applied.get(k), wanted) for k in ("slug", "name", "id", "value"))
    if applied is None or isinstance(applied, list | bool):
        return False
    return str(applied).strip().lower() == wanted.lower()


def _check_echo(payload: dict[str, Any], filters: dict[str, str], url: str) -> None:
    applied = payload.get("applied_filters")
    if not isinstance(applied, dict):
        raise FiltersNotApplied(
            f"{url}: reply has no applied_filters; the server may ignore "
            f"{', '.join(filters)} and return an unfiltered count"
        )
    missing = [f"{k}={v}" for k, v in filters.items() if not _echoes(applied.get(k), v)]
    if missing:
        raise FiltersNotApplied(
            f"{url}: server did not confirm filter(s) {', '.join(missing)} "
            f"(applied_filters: {json.dumps(applied)})"
        )
