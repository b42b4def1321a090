"""Shared HTTP behaviour for every source: pacing, a per-run request budget and retries.

Collectors never hand-roll retries. They either use :class:`HttpClient` (plain ``requests``)
or wrap a third-party call (pytrends) in :meth:`HttpPolicy.call`, raising
:class:`TransientError` for anything worth retrying (429, 5xx, connection errors).
"""

from __future__ import annotations

import email.utils
import logging
import random
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, TypeVar
from urllib.parse import urlsplit

from pipeline.redact import host_of

if TYPE_CHECKING:
    import requests
    import tenacity

log = logging.getLogger(__name__)

T = TypeVar("T")

RETRYABLE_STATUS = frozenset({429, 500, 502, 503, 504})


class SourceError(Exception):
    """A source could not deliver; the run ends as failed or partial with this message."""


class SourceUnavailable(SourceError):
    """The source refused us (CAPTCHA page, repeated 429s, budget spent): stop, resume later."""


class SourceBlocked(SourceUnavailable):
    """The source blocked us (Google's CAPTCHA page). Asking again soon prolongs the block, so
    scheduled runs (``collect --due``, ``trends schedule``) leave the source alone for a while."""


class BudgetExhausted(SourceUnavailable):
    """The per-run request budget is spent."""


class StopRequested(SourceUnavailable):
    """The process was asked to stop (``trends schedule`` got SIGINT/SIGTERM)."""


# Set by the scheduler's signal handler: a source stops before its next request or in the
# middle of a backoff wait (up to [http] backoff_max), rather than finishing its plan, so a
# service manager's stop timeout is met. What was committed stays; the next run continues.
STOP_REQUESTED = threading.Event()
STOPPED_MESSAGE = "stopped on request before finishing (run again to continue)"


def sleep_unless_stopped(seconds: float) -> None:
    """``time.sleep`` that ends at once, raising :class:`StopRequested`, when a stop is asked."""
    if STOP_REQUESTED.wait(seconds):
        raise StopRequested(STOPPED_MESSAGE)


class TransientError(SourceError):
    """A failure worth retrying; ``retry_after`` is the server's hint in seconds, if any."""

    def __init__(
        self, message: str, *, status: int | None = None, retry_after: float | None = None
    ):
        super().__init__(message)
        self.status = status
        self.retry_after = retry_after


def broken_transfer() -> tuple[type[BaseException], ...]:
    """A connection that failed, timed out or broke off in the middle of a body: worth
    retrying. (Without streaming, requests reads the body inside ``get``: a cut-off body
    raises ChunkedEncodingError there, which is not a ConnectionError.)

    A function so that ``requests`` (0.04 s) is imported only by commands that go online.
    """
    import requests

    return (requests.ConnectionError, requests.Timeout, requests.exceptions.ChunkedEncodingError)


def describe_connection_error(error: BaseException) -> str:
    """A short reason for a failed connection, instead of urllib3's nested repr."""
    text = str(error)
    for marker, reason in (
        ("NameResolutionError", "host name could not be resolved (no network?)"),
        ("Name or service not known", "host name could not be resolved (no network?)"),
        ("Connection refused", "connection refused"),
        ("timed out", "timed out"),
        ("Read timed out", "timed out"),
        ("IncompleteRead", "connection broke off in the middle of the answer"),
        ("Connection broken", "connection broke off in the middle of the answer"),
    ):
        if marker in text:
            return reason
    return type(error).__name__


def parse_retry_after(value: str | None) -> float | None:
    """Seconds from a ``Retry-After`` header (delta-seconds or an HTTP date)."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - datetime.now(UTC)).total_seconds())


@dataclass
class HttpSettings:
    """The ``[http]`` configuration section."""

    request_delay: float = 2.0  # seconds between two requests to one host
    timeout: float = 30.0  # connect and read timeout of every call
    max_attempts: int = 5  # tries per request, the first one included
    backoff_base: float = 2.0  # first backoff in seconds, doubled per retry
    backoff_max: float = 300.0  # longest single wait (also caps Retry-After)
    request_budget: int = 500  # requests one run may send to one source
    user_agent: str = "framework-trends/0.1 (+https://github.com/framework-trends)"


@dataclass
class HttpPolicy:
    """Pacing, budget and retry state for one source during one run."""

    settings: HttpSettings
    sleep: Callable[[float], None] = sleep_unless_stopped
    requests_sent: int = 0
    _last_request: dict[str, float] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def before_request(self, url: str) -> None:
        """Spend one request of the budget and wait out the polite delay for the host."""
        if STOP_REQUESTED.is_set():
            raise StopRequested(STOPPED_MESSAGE)
        if self.requests_sent >= self.settings.request_budget:
            raise BudgetExhausted(
                f"request budget of {self.settings.request_budget} spent "
                "(raise [http] request_budget or run again to continue)"
            )
        host = urlsplit(url).netloc
        with self._lock:
            last = self._last_request.get(host)
            if last is not None:
                wait = self.settings.request_delay - (time.monotonic() - last)
                if wait > 0:
                    self.sleep(wait)
            self._last_request[host] = time.monotonic()
            self.requests_sent += 1

    def _wait(self, state: tenacity.RetryCallState) -> float:
        error = state.outcome.exception() if state.outcome else None
        hint = getattr(error, "retry_after", None)
        if hint is not None:
            return min(float(hint), self.settings.backoff_max)
        ceiling = self.settings.backoff_base * 2 ** (state.attempt_number - 1)
        # "Full jitter": spread retries of concurrent clients instead of synchronising them.
        return min(self.settings.backoff_max, random.uniform(ceiling / 2, ceiling))

    def call(self, fn: Callable[[], T], *, what: str) -> T:
        """Run ``fn`` and retry it on :class:`TransientError` with backoff and jitter.

        After the last attempt the transient error becomes :class:`SourceUnavailable`,
        so a storm of 429s ends the source's run as partial instead of crashing it.
        """

        import tenacity

        def log_retry(state: tenacity.RetryCallState) -> None:
            error = state.outcome.exception() if state.outcome else None
            log.warning(
                "%s: %s; retry %d/%d in %.1fs",
                what,
                error,
                state.attempt_number,
                self.settings.max_attempts - 1,
                state.upcoming_sleep,
            )

        retrying = tenacity.Retrying(
            stop=tenacity.stop_after_attempt(max(1, self.settings.max_attempts)),
            wait=self._wait,
            retry=tenacity.retry_if_exception_type(TransientError),
            sleep=self.sleep,
            before_sleep=log_retry,
            reraise=True,
        )
        try:
            return retrying(fn)
        except TransientError as error:
            raise SourceUnavailable(
                f"{what}: gave up after {self.settings.max_attempts} attempts ({error})"
            ) from error


@dataclass
class HttpResponse:
    """What a collector keeps of a response: enough to store it raw and parse it."""

    url: str
    status: int
    headers: dict[str, str]
    body: bytes

    @property
    def content_type(self) -> str:
        return self.headers.get("Content-Type", self.headers.get("content-type", ""))


class HttpClient:
    """A ``requests`` session with the shared policy: paced, budgeted, retried, timed out."""

    def __init__(self, policy: HttpPolicy, session: requests.Session | None = None):
        self.policy = policy
        self._session = session
        if session is not None:
            session.headers.setdefault("User-Agent", policy.settings.user_agent)

    @property
    def session(self) -> requests.Session:
        """Made on first use: a run that reads local files only never imports ``requests``."""
        if self._session is None:
            import requests

            self._session = requests.Session()
            self._session.headers["User-Agent"] = self.policy.settings.user_agent
        return self._session

    def get(
        self,
        url: str,
        *,
        params: dict[str, str] | None = None,
        headers: dict[str, str] | Callable[[], dict[str, str]] | None = None,
        stream_to: Callable[[requests.Response], None] | None = None,
        ok_statuses: frozenset[int] = frozenset({200}),
        on_response: Callable[[HttpResponse], None] | None = None,
    ) -> HttpResponse:
        """GET ``url``; 429/5xx/connection errors are retried, other statuses are returned.

        With ``stream_to``, the body is handed to that callable as a stream (for large
        downloads) and ``HttpResponse.body`` is empty. Otherwise ``on_response`` gets every
        response received, the retried ones included (to store them raw), before it is judged.
        ``headers`` may be a callable, asked before every attempt (a download resumes a file
        the previous attempt left cut off).
        """

        def attempt() -> HttpResponse:
            self.policy.before_request(url)
            try:
                response = self.session.get(
                    url,
                    params=params,
                    headers=headers() if callable(headers) else headers,
                    timeout=self.policy.settings.timeout,
                    stream=stream_to is not None,
                )
            except broken_transfer() as error:
                raise TransientError(
                    f"{host_of(url)}: {describe_connection_error(error)}"
                ) from error
            with response:
                body = b""
                if stream_to is not None and response.status_code in ok_statuses:
                    try:
                        stream_to(response)
                    except broken_transfer() as error:
                        raise TransientError(f"download from {url} broke off: {error}") from error
                elif stream_to is None or response.status_code not in RETRYABLE_STATUS:
                    try:
                        body = response.content
                    except broken_transfer() as error:
                        raise TransientError(f"body from {url} broke off: {error}") from error
                received = HttpResponse(
                    response.url, response.status_code, dict(response.headers), body
                )
                if on_response is not None and stream_to is None:
                    on_response(received)
                if response.status_code in RETRYABLE_STATUS:
                    raise TransientError(
                        f"HTTP {response.status_code} from {url}",
                        status=response.status_code,
                        retry_after=parse_retry_after(response.headers.get("Retry-After")),
                    )
                return received

        return self.policy.call(attempt, what=f"GET {_short(url)}")


def _short(url: str, limit: int = 80) -> str:
    """URLs in messages: without the query string, shortened in the middle when long."""
    parts = urlsplit(url)
    text = f"{parts.scheme}://{host_of(url)}{parts.path}"
    return text if len(text) <= limit else f"{text[: limit // 2]}…{text[-limit // 2 :]}"
