"""A small client over real pytrends: one planned request in, the raw multiline body out.

pytrends does all Google HTTP (cookie → explore → multiline). This module only points it at a
base URL, hands every HTTP response it receives to a callback (so the collector stores it raw
before anything is parsed), and turns pytrends' failures into the shared HTTP layer's errors so
that retries, backoff and ``Retry-After`` come from :class:`pipeline.http.HttpPolicy`.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any
from urllib.parse import urlsplit

import pytrends.request
import requests
from pytrends.exceptions import ResponseError, TooManyRequestsError
from pytrends.request import TrendReq

from pipeline.http import (
    HttpPolicy,
    HttpResponse,
    SourceBlocked,
    SourceError,
    TransientError,
    broken_transfer,
    describe_connection_error,
    parse_retry_after,
)
from pipeline.redact import host_of, redact_url
from pipeline.sources.gtrends.parse import UnexpectedResponse
from pipeline.sources.gtrends.plan import MAX_KEYWORDS, PlannedRequest

GOOGLE_TRENDS_URL = "https://trends.google.com/trends"
CAPTCHA_MESSAGE = (
    "Google served a CAPTCHA or block page instead of data; scheduled runs (--due, "
    "trends schedule) wait 20 h before asking again; run the same command later to continue"
)
DROPPED_HEADERS = frozenset({"set-cookie"})  # the NID cookie never reaches storage

# pytrends builds these class attributes from BASE_TRENDS_URL when the module is imported.
_URL_PATHS = {
    name: getattr(TrendReq, name).removeprefix(pytrends.request.BASE_TRENDS_URL)
    for name in dir(TrendReq)
    if name.endswith("_URL")
    and getattr(TrendReq, name).startswith(pytrends.request.BASE_TRENDS_URL)
}
PROPERTIES = ("", "images", "news", "youtube", "froogle")

OnResponse = Callable[[HttpResponse, dict[str, Any]], None]


def redirect_pytrends(base_url: str) -> None:
    """Point pytrends at ``base_url`` (e.g. ``http://127.0.0.1:8080/trends``).

    pytrends has no base-URL option: the cookie request reads the module constant and the
    endpoints read ``TrendReq.<NAME>_URL`` by class name, so ``TrendReq`` itself is patched.
    """
    base_url = base_url.rstrip("/")
    pytrends.request.BASE_TRENDS_URL = base_url
    for name, path in _URL_PATHS.items():
        setattr(TrendReq, name, base_url + path)


class PytrendsClient:
    """Fetches planned requests through one reused ``TrendReq`` (built on first use)."""

    def __init__(
        self,
        base_url: str,
        policy: HttpPolicy,
        on_response: OnResponse,
        hl: str = "en-US",
        tz: int = 0,
        timeout: tuple[float, float] | None = None,
    ):
        self.base_url = base_url.rstrip("/")
        self.policy = policy
        self.on_response = on_response
        self.hl = hl
        self.tz = tz
        seconds = policy.settings.timeout
        self.timeout = timeout or (min(10.0, seconds), seconds)
        self._trendreq: TrendReq | None = None
        self._received: list[requests.Response] = []  # responses of the current attempt

    def fetch(self, request: PlannedRequest) -> bytes:
        """The raw ``widgetdata/multiline`` body for ``request`` (parse it with ``parse.py``)."""
        if not 1 <= len(request.keywords) <= MAX_KEYWORDS:
            raise ValueError(
                f"a Google Trends request takes 1 to {MAX_KEYWORDS} keywords, "
                f"got {len(request.keywords)}"
            )
        if request.property not in PROPERTIES:
            raise ValueError(f"property must be one of {PROPERTIES}, got {request.property!r}")
        span = f"{request.start}..{request.end}"
        what = f"Google Trends {request.resolution} {span} ({len(request.keywords)} terms)"

        def attempt() -> bytes:
            # Every attempt, retries included, spends budget and keeps the polite delay:
            # a 429 with "Retry-After: 0" must not turn into a burst.
            self.policy.before_request(self.base_url + "/api/explore")
            return self._attempt(request)

        return self.policy.call(attempt, what=what)

    def _capture(self, response: requests.Response, *args: Any, **kwargs: Any) -> None:
        """``requests`` response hook: every response pytrends gets, raw, before it parses."""
        self._received.append(response)
        url, params = redact_url(response.url)  # widget tokens are credentials for 24 h
        headers = {k: v for k, v in response.headers.items() if k.lower() not in DROPPED_HEADERS}
        method = response.request.method if response.request is not None else "GET"
        self.on_response(
            HttpResponse(
                url=url, status=response.status_code, headers=headers, body=response.content
            ),
            {"method": method, "url": url, "params": params},
        )

    def _client(self) -> TrendReq:
        if self._trendreq is None:
            # Never pass retries/backoff_factor: pytrends' Retry(method_whitelist=…) crashes on
            # urllib3 2. The constructor sends the cookie request.
            self._trendreq = TrendReq(
                hl=self.hl,
                tz=self.tz,
                timeout=self.timeout,
                requests_args={"hooks": {"response": [self._capture]}},
            )
        return self._trendreq

    def _attempt(self, request: PlannedRequest) -> bytes:
        self._received = []
        redirect_pytrends(self.base_url)  # class-level state: re-assert for this client
        try:
            client = self._client()
            # pytrends keeps the previous widget if a new explore answer lacks one; forget it
            # so a stale token can never fetch another request's data.
            client.interest_over_time_widget = {}
            client.build_payload(
                list(request.keywords),
                cat=request.category,
                timeframe=request.timeframe,
                geo=request.geo,
                gprop=request.property,
            )
            client.interest_over_time()
        except TooManyRequestsError as error:
            if "/sorry/" in urlsplit(error.response.url).path:
                # Google's block: a 302 to its CAPTCHA page, which answers 429. Retrying
                # within seconds only prolongs the block.
                raise SourceBlocked(CAPTCHA_MESSAGE) from error
            raise TransientError(
                "Google answered 429 Too Many Requests",
                status=429,
                retry_after=parse_retry_after(error.response.headers.get("Retry-After")),
            ) from error
        except ResponseError as error:
            raise self._translate_status(error.response) from error
        except broken_transfer() as error:
            reason = describe_connection_error(error)
            raise TransientError(f"{host_of(self.base_url)}: {reason}") from error
        except json.JSONDecodeError as error:
            # A body cut short in transfer: the raw bytes were stored; asking again is cheap.
            raise TransientError(f"{self._last_endpoint()} sent invalid JSON: {error}") from error
        except (KeyError, IndexError, TypeError, ValueError) as error:
            # pytrends could not digest a well-formed answer. If it was the data itself,
            # return it: parse.py rejects it with a precise message.
            body = self._multiline_body()
            if body is not None:
                return body
            raise UnexpectedResponse(
                f"{self._last_endpoint()} answered in an unexpected shape "
                f"({type(error).__name__}: {error})"
            ) from error
        body = self._multiline_body()
        if body is None:
            raise UnexpectedResponse("pytrends returned without a multiline response")
        return body

    def _translate_status(self, response: requests.Response) -> SourceError:
        status = response.status_code
        if status == 200:  # 200 but not JSON: Google's CAPTCHA/block page
            return SourceBlocked(CAPTCHA_MESSAGE)
        if status >= 500:
            return TransientError(f"Google answered HTTP {status}", status=status)
        return SourceError(f"Google answered HTTP {status} to {urlsplit(response.url).path}")

    def _multiline_body(self) -> bytes | None:
        for response in reversed(self._received):
            if urlsplit(response.url).path.endswith("/widgetdata/multiline"):
                return response.content if response.status_code == 200 else None
        return None

    def _last_endpoint(self) -> str:
        if not self._received:
            return "Google Trends"
        return urlsplit(self._received[-1].url).path.rsplit("/trends", 1)[-1] or "/"
