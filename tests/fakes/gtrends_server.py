"""A faithful fake of the Google Trends endpoints that pytrends 4.9.2 uses, on 127.0.0.1.

How to read this file (top to bottom):

1. ``KeywordProfile`` / ``GroundTruth`` — the seeded "true" daily search share of every keyword
   (a smooth trend, weekly seasonality and noise). Tests compare stitched series against it.
2. ``google_transform`` — what Google does to the truth for one request: mean per bucket
   (day/week/month), optional per-fetch sampling noise, joint max-normalisation to 100 and
   round-half-up, "<1" for 0 < x < 1, ``isPartial`` on the last bucket inside the data lag.
3. ``Fault`` — one-shot failures queued per endpoint (429 with/without Retry-After, 5xx, an
   HTML page served as 200, a 302 to a CAPTCHA page that answers 429, truncated JSON, a slow
   answer) and a "429 storm" that refuses everything until cleared.
4. ``FakeGoogleTrends`` — the HTTP server (``ThreadingHTTPServer`` in a thread; a context
   manager). Its handler speaks the wire format recorded in the real cassettes:

   * ``GET  /trends/explore/``  → 404 HTML + ``Set-Cookie: NID=…`` (the cookie step)
   * ``POST /trends/api/explore?hl&tz&req`` → ``)]}'\\n`` + ``{"widgets": [...]}``; the
     TIMESERIES widget carries the resolved request and a token = HMAC of that request
   * ``GET  /trends/api/widgetdata/multiline?req&token&tz`` → ``)]}',\\n`` + timeline JSON;
     a token that does not match the request → 401

Every request is logged (``server.requests``) so tests can count data requests and check that
no request carried more than 5 keywords. Geo, category and property are validated and echoed
but do not change the data. Only absolute ``YYYY-MM-DD YYYY-MM-DD`` timeframes plus
``today N-y|m|d`` and ``all`` are understood; hourly ("now …") windows are not simulated.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import math
import threading
import time
from collections import defaultdict, deque
from dataclasses import dataclass, field, replace
from datetime import UTC, date, datetime, timedelta
from enum import Enum
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

import numpy as np
import pandas as pd

FIRST_DAY = date(2004, 1, 1)  # Google Trends data start
COOKIE, EXPLORE, MULTILINE = "cookie", "explore", "multiline"
ENDPOINTS = (COOKIE, EXPLORE, MULTILINE)
MAX_KEYWORDS = 5
DAILY_MAX_DAYS = 269  # inclusive day counts, see research/google_trends.md §1.4
WEEKLY_MAX_DAYS = 1883
AXIS_NOTES = {
    date(2016, 1, 1): "An improvement to our data collection system was applied from 1/1/16.",
    date(2022, 1, 1): "An improvement to our data collection system was applied from 1/1/22.",
}
MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")
THIN = "\u2009"  # Google puts thin spaces around the dash of week labels


# --- 1. Ground truth ----------------------------------------------------------------------


@dataclass(frozen=True)
class KeywordProfile:
    """The true daily search share of one keyword (arbitrary units; only ratios matter).

    ``levels`` maps a year to the share on 1 January of that year; days in between are
    interpolated in log space. ``launch``: no searches at all before that day.
    """

    levels: dict[int, float]
    weekly_amplitude: float = 0.15  # weekday/weekend swing (tech searches peak mid-week)
    noise: float = 0.05  # sd of the day-to-day log noise (half slow AR(1), half white)
    launch: date | None = None


# Plausible shapes for the default frameworks: PyTorch ≫ MXNet, a few tiny terms.
FRAMEWORK_PROFILES: dict[str, KeywordProfile] = {
    "pytorch": KeywordProfile(
        {2016: 0.01, 2017: 0.08, 2018: 0.3, 2019: 0.55, 2020: 0.75, 2022: 0.95, 2027: 1.05}
    ),
    "tensorflow": KeywordProfile(
        {2015: 0.05, 2016: 0.35, 2017: 0.7, 2018: 0.95, 2019: 0.9, 2022: 0.6, 2027: 0.35}
    ),
    "jax": KeywordProfile({2015: 0.3, 2020: 0.32, 2023: 0.4, 2027: 0.45}, weekly_amplitude=0.05),
    "mxnet": KeywordProfile({2015: 0.03, 2017: 0.1, 2018: 0.12, 2021: 0.07, 2027: 0.02}),
    "paddlepaddle": KeywordProfile({2016: 0.04, 2017: 0.08, 2019: 0.12, 2021: 0.15, 2027: 0.12}),
    "mindspore": KeywordProfile(
        {2020: 0.02, 2021: 0.04, 2023: 0.05, 2027: 0.04}, launch=date(2020, 3, 28)
    ),
    "caffe2": KeywordProfile({2016: 0.005, 2017: 0.06, 2018: 0.05, 2021: 0.015, 2027: 0.008}),
}


def _stable_int(*parts: object) -> int:
    """A seed that is the same in every process (``hash()`` is salted per process)."""
    digest = hashlib.sha256("|".join(map(str, parts)).encode()).digest()
    return int.from_bytes(digest[:8], "big")


def _random_profile(keyword: str, seed: int) -> KeywordProfile:
    """Any other keyword gets a seeded flat-ish profile between 1% and 100% of the top."""
    rng = np.random.default_rng(_stable_int(seed, "profile", keyword))
    level = 10 ** rng.uniform(-2, 0)
    drift = rng.uniform(-0.2, 0.2)  # log change per year
    return KeywordProfile(
        {2004: level * math.exp(-12 * drift), 2016: level, 2030: level * math.exp(14 * drift)}
    )


class GroundTruth:
    """Seeded true daily shares for 2004-01-01 .. ``last_day``, computed once per keyword."""

    def __init__(self, seed: int, last_day: date, profiles: dict[str, KeywordProfile]):
        self.seed = seed
        self.last_day = last_day
        self.profiles = profiles
        self._series: dict[str, np.ndarray] = {}
        self._lock = threading.Lock()

    def profile(self, keyword: str) -> KeywordProfile:
        return self.profiles.get(keyword) or _random_profile(keyword, self.seed)

    def daily(self, keyword: str) -> np.ndarray:
        """Share per day; index 0 is 2004-01-01."""
        with self._lock:
            if keyword not in self._series:
                self._series[keyword] = self._generate(keyword)
            return self._series[keyword]

    def _generate(self, keyword: str) -> np.ndarray:
        profile = self.profile(keyword)
        days = (self.last_day - FIRST_DAY).days + 1
        ordinals = FIRST_DAY.toordinal() + np.arange(days)
        years = sorted(profile.levels)
        levels = [profile.levels[year] for year in years]
        # Before the first known year the term fades out (×1/1000 over two years).
        years, levels = [years[0] - 2, *years], [levels[0] / 1000, *levels]
        knots = [date(year, 1, 1).toordinal() for year in years]
        trend = np.interp(ordinals, knots, np.log(levels))
        weekday = (ordinals - 1) % 7  # date.toordinal() 1 is a Monday → 0 = Monday
        seasonal = np.log1p(profile.weekly_amplitude * np.cos(2 * np.pi * (weekday - 2) / 7))
        rng = np.random.default_rng(_stable_int(self.seed, "truth", keyword))
        white = rng.normal(0, profile.noise / 2, days)
        shocks = rng.normal(0, profile.noise / 2 * math.sqrt(1 - 0.97**2), days)
        slow = np.empty(days)
        slow[0] = shocks[0]
        for i in range(1, days):  # AR(1): slow wander around the trend
            slow[i] = 0.97 * slow[i - 1] + shocks[i]
        share = np.exp(trend + seasonal + white + slow)
        if profile.launch is not None:
            share[: max(0, (profile.launch - FIRST_DAY).days)] = 0.0
        return share

    def value(self, keyword: str, day: date) -> float:
        if not FIRST_DAY <= day <= self.last_day:
            raise ValueError(f"{day} is outside {FIRST_DAY}..{self.last_day}")
        return float(self.daily(keyword)[(day - FIRST_DAY).days])

    def frame(self, keywords: list[str], start: date, end: date) -> pd.DataFrame:
        first, last = (start - FIRST_DAY).days, (end - FIRST_DAY).days + 1
        index = pd.date_range(start, end, freq="D", name="day")
        return pd.DataFrame({k: self.daily(k)[first:last] for k in keywords}, index=index)


# --- 2. What Google does to the truth for one request --------------------------------------


@dataclass(frozen=True)
class Bucket:
    start: date
    days: list[date]  # the days with data that this bucket averages
    resolution: str

    @property
    def last(self) -> date:
        """Last calendar day the bucket stands for (whether or not data exists yet)."""
        if self.resolution == "day":
            return self.start
        if self.resolution == "week":
            return self.start + timedelta(days=6)
        next_month = (self.start.replace(day=28) + timedelta(days=4)).replace(day=1)
        return next_month - timedelta(days=1)


def resolution_for(start: date, end: date) -> str:
    days = (end - start).days + 1
    return "DAY" if days <= DAILY_MAX_DAYS else "WEEK" if days <= WEEKLY_MAX_DAYS else "MONTH"


def buckets_for(start: date, end: date, resolution: str, latest_day: date) -> list[Bucket]:
    """Buckets Google returns for a window; buckets starting after ``latest_day`` are absent."""
    last_data_day = min(end, latest_day)

    def days_between(first: date, last: date) -> list[date]:
        return [
            first + timedelta(days=i) for i in range((min(last, last_data_day) - first).days + 1)
        ]

    buckets = []
    if resolution == "DAY":
        for offset in range((last_data_day - start).days + 1):
            day = start + timedelta(days=offset)
            buckets.append(Bucket(day, [day], "day"))
    elif resolution == "WEEK":  # Sunday-start weeks lying wholly inside [start, end]
        sunday = start + timedelta(days=(6 - start.weekday()) % 7)
        while sunday + timedelta(days=6) <= end and sunday <= last_data_day:
            buckets.append(Bucket(sunday, days_between(sunday, sunday + timedelta(days=6)), "week"))
            sunday += timedelta(days=7)
    else:  # months overlapping the window, averaged over the window's days in them
        month = start.replace(day=1)
        while month <= last_data_day:
            bucket = Bucket(month, [], "month")
            days = days_between(max(month, start), bucket.last)
            buckets.append(Bucket(month, days, "month"))
            month = bucket.last + timedelta(days=1)
    return buckets


def round_half_up(x: np.ndarray) -> np.ndarray:
    return np.floor(x + 0.5).astype(int)


def google_transform(
    truth: GroundTruth,
    keywords: list[str],
    buckets: list[Bucket],
    rng: np.random.Generator | None = None,
    sample_noise: float = 0.0,
) -> tuple[np.ndarray, np.ndarray]:
    """(values 0..100 as ints, raw shares) with shape (buckets, keywords)."""
    shares = np.zeros((len(buckets), len(keywords)))
    for j, keyword in enumerate(keywords):
        daily = truth.daily(keyword)
        for i, bucket in enumerate(buckets):
            shares[i, j] = np.mean([daily[(d - FIRST_DAY).days] for d in bucket.days])
    if sample_noise > 0 and rng is not None:
        shares *= np.exp(rng.normal(0, sample_noise, shares.shape))
    peak = shares.max() if shares.size else 0.0
    if peak <= 0:
        return np.zeros(shares.shape, dtype=int), shares
    return round_half_up(100 * shares / peak), shares


def _month_day(day: date) -> str:
    return f"{MONTHS[day.month - 1]} {day.day}"


def formatted_time(bucket: Bucket) -> tuple[str, str]:
    """(formattedTime, formattedAxisTime) in Google's en-US style."""
    start, last = bucket.start, bucket.last
    axis = f"{_month_day(start)}, {start.year}"
    if bucket.resolution == "day":
        return axis, axis
    if bucket.resolution == "month":
        label = f"{MONTHS[start.month - 1]} {start.year}"
        return label, label
    if start.year != last.year:
        return f"{axis}{THIN}–{THIN}{_month_day(last)}, {last.year}", axis
    tail = str(last.day) if start.month == last.month else _month_day(last)
    return f"{_month_day(start)}{THIN}–{THIN}{tail}, {last.year}", axis


def timeline_json(
    keywords: list[str],
    buckets: list[Bucket],
    values: np.ndarray,
    shares: np.ndarray,
    partial: bool,
) -> dict[str, Any]:
    rows = []
    for i, bucket in enumerate(buckets):
        label, axis = formatted_time(bucket)
        has_data = [bool(s > 0) for s in shares[i]]
        row: dict[str, Any] = {
            "time": str(
                int(
                    datetime(
                        bucket.start.year, bucket.start.month, bucket.start.day, tzinfo=UTC
                    ).timestamp()
                )
            ),
            "formattedTime": label,
            "formattedAxisTime": axis,
            "value": [int(v) for v in values[i]],
            "hasData": has_data,
            "formattedValue": [
                "<1" if v == 0 and flag else str(int(v))
                for v, flag in zip(values[i], has_data, strict=True)
            ],
        }
        note = next(
            (text for day, text in AXIS_NOTES.items() if bucket.start <= day <= bucket.last), None
        )
        if note:
            row["axisNote"] = {"text": note}
        if partial and i == len(buckets) - 1:
            row["isPartial"] = True
        rows.append(row)
    averages = (
        []
        if len(keywords) == 1 or not rows
        else [int(a) for a in round_half_up(values.mean(axis=0))]
    )
    return {"default": {"timelineData": rows, "averages": averages}}


# --- 3. Fault injection ---------------------------------------------------------------------


class FaultKind(Enum):
    TOO_MANY_REQUESTS = "429"
    SERVER_ERROR = "5xx"
    HTML_PAGE = "html-200"  # CAPTCHA-like page served with status 200
    CAPTCHA_REDIRECT = "302-sorry"  # Google's block: 302 to /sorry/index, which is HTML 429
    TRUNCATED_JSON = "truncated-json"
    BROKEN_BODY = "broken-body"  # Content-Length of the whole answer, half of it sent, closed
    SLOW = "slow"  # answer after a delay (for client timeouts)


@dataclass(frozen=True)
class Fault:
    kind: FaultKind
    status: int = 200
    retry_after: str | None = None
    delay: float = 0.0

    @classmethod
    def too_many_requests(cls, retry_after: str | int | None = None) -> Fault:
        return cls(
            FaultKind.TOO_MANY_REQUESTS, 429, None if retry_after is None else str(retry_after)
        )

    @classmethod
    def server_error(cls, status: int = 500) -> Fault:
        return cls(FaultKind.SERVER_ERROR, status)

    @classmethod
    def html_page(cls) -> Fault:
        return cls(FaultKind.HTML_PAGE)

    @classmethod
    def captcha_redirect(cls) -> Fault:
        return cls(FaultKind.CAPTCHA_REDIRECT, 302)

    @classmethod
    def truncated_json(cls) -> Fault:
        return cls(FaultKind.TRUNCATED_JSON)

    @classmethod
    def broken_body(cls) -> Fault:
        return cls(FaultKind.BROKEN_BODY)

    @classmethod
    def slow(cls, seconds: float) -> Fault:
        return cls(FaultKind.SLOW, delay=seconds)


def html_page(title: str) -> bytes:
    return f"<!DOCTYPE html><html lang=en><title>{title}</title><p>{title}</p></html>".encode()


# --- 4. The server --------------------------------------------------------------------------


@dataclass(frozen=True)
class ReceivedRequest:
    """What the fake saw: for assertions on batching, budgets and retries."""

    endpoint: str  # "cookie", "explore", "multiline" or "other"
    method: str
    path: str
    status: int
    keywords: tuple[str, ...] = ()
    timeframe: str | None = None  # as sent (explore) or as resolved (multiline)
    geo: str | None = None


class BadRequest(Exception):
    def __init__(self, status: int, message: str, record: ReceivedRequest | None = None):
        super().__init__(message)
        self.status = status
        self.record = record  # what could be read of the request, for the log


@dataclass
class FakeGoogleTrends:
    """The fake server. ``with FakeGoogleTrends() as server: TrendReq-against(server.base_url)``."""

    seed: int = 2024
    today: date = date(2026, 11, 27)
    lag_days: int = 3  # data exists up to latest_day = today - lag_days (itself incomplete)
    sample_noise: float = 0.0  # sd of per-fetch log noise (Google's sampling); 0 = exact
    cookie_status: int = 404  # 2023 Google: 404; 2026 Google: 429 (both carry the cookie)
    profiles: dict[str, KeywordProfile] = field(default_factory=lambda: dict(FRAMEWORK_PROFILES))
    requests: list[ReceivedRequest] = field(default_factory=list, init=False)

    def __post_init__(self) -> None:
        self.ground_truth = GroundTruth(self.seed, self.today, self.profiles)
        self._secret = _stable_int(self.seed, "token-secret").to_bytes(8, "big")
        self._faults: dict[str, deque[Fault]] = {name: deque() for name in ENDPOINTS}
        self._storm = False
        self._fetches: dict[str, int] = defaultdict(int)
        self._lock = threading.Lock()
        self._httpd: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    # lifecycle
    def start(self) -> FakeGoogleTrends:
        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
        self._httpd.daemon_threads = True
        self._httpd.fake = self  # type: ignore[attr-defined]
        self._thread = threading.Thread(
            target=self._httpd.serve_forever,
            kwargs={"poll_interval": 0.05},
            name="fake-gtrends",
            daemon=True,
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._httpd is not None:
            self._httpd.shutdown()
            self._httpd.server_close()
            self._httpd = None

    def __enter__(self) -> FakeGoogleTrends:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    @property
    def base_url(self) -> str:
        if self._httpd is None:
            raise RuntimeError("server is not running")
        return f"http://127.0.0.1:{self._httpd.server_address[1]}/trends"

    @property
    def latest_day(self) -> date:
        return self.today - timedelta(days=self.lag_days)

    # ground truth
    def truth(self, keyword: str, day: date) -> float:
        return self.ground_truth.value(keyword, day)

    def truth_frame(self, keywords: list[str], start: date, end: date) -> pd.DataFrame:
        """True daily shares, one column per keyword, indexed by day."""
        return self.ground_truth.frame(keywords, start, end)

    # faults
    def inject(self, endpoint: str, *faults: Fault) -> None:
        """Queue faults; each is used up by the next request to ``endpoint``."""
        if endpoint not in ENDPOINTS:
            raise ValueError(f"endpoint must be one of {ENDPOINTS}")
        with self._lock:
            self._faults[endpoint].extend(faults)

    def pending_faults(self, endpoint: str) -> int:
        with self._lock:
            return len(self._faults[endpoint])

    def start_storm(self) -> None:
        """Every request gets 429 (no Retry-After) until :meth:`stop_storm`."""
        self._storm = True

    def stop_storm(self) -> None:
        self._storm = False

    def _next_fault(self, endpoint: str) -> Fault | None:
        if self._storm:
            return Fault.too_many_requests()
        with self._lock:
            queue = self._faults[endpoint]
            return queue.popleft() if queue else None

    # request log
    def requests_to(self, endpoint: str) -> list[ReceivedRequest]:
        with self._lock:
            return [r for r in self.requests if r.endpoint == endpoint]

    @property
    def data_requests(self) -> list[ReceivedRequest]:
        """Multiline requests answered with data."""
        return [r for r in self.requests_to(MULTILINE) if r.status == 200]

    def _log(self, record: ReceivedRequest) -> None:
        with self._lock:
            self.requests.append(record)

    # tokens
    def sign(self, widget_request: dict[str, Any]) -> str:
        canonical = json.dumps(widget_request, sort_keys=True, separators=(",", ":")).encode()
        digest = hmac.new(self._secret, canonical, hashlib.sha256).digest()
        return "APP6_UEAAAAA" + base64.urlsafe_b64encode(digest).decode()[:32]

    # endpoint logic: query parameters in, (JSON document, log record) out; BadRequest → 4xx
    def resolve_timeframe(self, timeframe: str) -> tuple[date, date]:
        if timeframe == "all":
            return FIRST_DAY, self.today
        if timeframe.startswith("today "):
            amount, _, unit = timeframe[len("today ") :].partition("-")
            if not amount.isdigit() or unit not in {"y", "m", "d"}:
                raise BadRequest(400, f"unsupported timeframe {timeframe!r}")
            n = int(amount)
            if unit == "d":
                return self.today - timedelta(days=n), self.today
            months = n * 12 if unit == "y" else n
            year, month = divmod(self.today.year * 12 + self.today.month - 1 - months, 12)
            return self.today.replace(
                year=year, month=month + 1, day=min(self.today.day, 28)
            ), self.today
        try:
            first, last = (date.fromisoformat(part) for part in timeframe.split(" "))
        except ValueError:
            raise BadRequest(
                400, f"unsupported timeframe {timeframe!r} (fake: no hourly data)"
            ) from None
        return first, last

    def explore(self, params: dict[str, str]) -> tuple[dict[str, Any], ReceivedRequest]:
        try:
            payload = json.loads(params["req"])
            items = payload["comparisonItem"]
        except (KeyError, ValueError, TypeError):
            raise BadRequest(400, "req is missing or not JSON") from None
        keywords = tuple(str(item.get("keyword", "")) for item in items)
        timeframes = {item.get("time") for item in items}
        record = ReceivedRequest(
            EXPLORE,
            "POST",
            "/trends/api/explore",
            200,
            keywords,
            ",".join(map(str, timeframes)),
            str(items[0].get("geo", "")) if items else None,
        )
        if not 1 <= len(items) <= MAX_KEYWORDS:
            raise BadRequest(400, f"{len(items)} comparison items (1..{MAX_KEYWORDS})", record)
        if len(timeframes) != 1:
            raise BadRequest(400, "fake: multirange requests are not simulated", record)
        try:
            start, end = self.resolve_timeframe(str(timeframes.pop()))
        except BadRequest as error:
            raise BadRequest(error.status, str(error), record) from None
        if end < start or start < FIRST_DAY or start > self.today:
            raise BadRequest(400, f"bad time range {start}..{end}", record)
        resolution = resolution_for(start, end)
        hl = params.get("hl", "en-US")
        category, prop = payload.get("category", 0), payload.get("property", "")

        def restriction(keyword: str) -> dict[str, Any]:
            kind = "ENTITY" if keyword.startswith(("/m/", "/g/")) else "BROAD"
            return {"keyword": [{"type": kind, "value": keyword}]}

        def geo_object(geo: str) -> dict[str, str]:
            return {} if not geo else {"region": geo} if "-" in geo else {"country": geo}

        options = {"property": prop, "backend": "IZG", "category": category}
        user = {"userType": "USER_TYPE_SCRAPER"}
        timeseries_request = {
            "time": f"{start.isoformat()} {end.isoformat()}",
            "resolution": resolution,
            "locale": hl,
            "comparisonItem": [
                {
                    "geo": geo_object(item.get("geo", "")),
                    "complexKeywordsRestriction": restriction(item["keyword"]),
                }
                for item in items
            ],
            "requestOptions": options,
            "userConfig": user,
        }
        time_range = timeseries_request["time"]
        geo_request = {
            "geo": geo_object(items[0].get("geo", "")),
            "comparisonItem": [
                {"time": time_range, "complexKeywordsRestriction": restriction(item["keyword"])}
                for item in items
            ],
            "resolution": "COUNTRY",
            "locale": hl,
            "requestOptions": options,
            "userConfig": user,
        }
        related = {"restriction": {"geo": geo_request["geo"], "time": time_range}}
        # Widget lists as recorded: 1 keyword → 4 widgets; N keywords → 2 + 3N widgets.
        widgets = [self._widget(timeseries_request, "TIMESERIES", "fe_line_chart")]
        if len(items) == 1:
            widgets += [
                self._widget(geo_request, "GEO_MAP", "fe_geo_chart_explore"),
                self._widget(
                    dict(related, keywordType="ENTITY"), "RELATED_TOPICS", "fe_related_searches"
                ),
                self._widget(
                    dict(related, keywordType="QUERY"), "RELATED_QUERIES", "fe_related_searches"
                ),
            ]
        else:
            multi = dict(geo_request, dataMode="PERCENTAGES")
            widgets.append(self._widget(multi, "GEO_MAP", "fe_multi_heat_map"))
            for i, item in enumerate(items):
                single = dict(geo_request, comparisonItem=[geo_request["comparisonItem"][i]])
                query = dict(related, keywordType="QUERY", term=item["keyword"])
                widgets += [
                    {"text": {"text": item["keyword"]}, "id": f"TITLE_{i}", "type": "fe_text"},
                    self._widget(single, f"GEO_MAP_{i}", "fe_geo_chart_explore"),
                    self._widget(query, f"RELATED_QUERIES_{i}", "fe_related_searches"),
                ]
        return {"widgets": widgets}, record

    def _widget(self, request: dict[str, Any], widget_id: str, widget_type: str) -> dict[str, Any]:
        return {
            "request": request,
            "token": self.sign(request),
            "id": widget_id,
            "type": widget_type,
        }

    def multiline(self, params: dict[str, str]) -> tuple[dict[str, Any], ReceivedRequest]:
        try:
            widget_request = json.loads(params["req"])
            token = params["token"]
            items = widget_request["comparisonItem"]
            keywords = [item["complexKeywordsRestriction"]["keyword"][0]["value"] for item in items]
            start, end = (date.fromisoformat(part) for part in widget_request["time"].split(" "))
            resolution = widget_request["resolution"]
        except (KeyError, ValueError, TypeError, IndexError):
            raise BadRequest(400, "req/token missing or malformed") from None
        record = ReceivedRequest(
            MULTILINE,
            "GET",
            "/trends/api/widgetdata/multiline",
            200,
            tuple(keywords),
            widget_request["time"],
        )
        if not hmac.compare_digest(token, self.sign(widget_request)):
            raise BadRequest(401, "token does not match the request", record)
        buckets, values, shares, partial = self.answer(keywords, start, end, resolution)
        return timeline_json(keywords, buckets, values, shares, partial), record

    def answer(
        self, keywords: list[str], start: date, end: date, resolution: str | None = None
    ) -> tuple[list[Bucket], np.ndarray, np.ndarray, bool]:
        """What one fetch returns: (buckets, values, shares, last bucket partial?).

        The HTTP endpoint uses this too; tests of the maths may call it directly (no HTTP).
        Every call is a new "fetch" (a new sampling-noise draw when ``sample_noise`` > 0).
        """
        resolution = resolution or resolution_for(start, end)
        buckets = buckets_for(start, end, resolution, self.latest_day)
        key = f"{','.join(keywords)}|{start}|{end}|{resolution}"
        with self._lock:
            self._fetches[key] += 1
            draw = self._fetches[key]
        rng = np.random.default_rng(_stable_int(self.seed, "sample", key, draw))
        values, shares = google_transform(
            self.ground_truth, keywords, buckets, rng, self.sample_noise
        )
        # The bucket holding the latest (still incomplete) day is partial.
        partial = bool(buckets) and buckets[-1].start <= self.latest_day <= buckets[-1].last
        return buckets, values, shares, partial

    def answer_cells(
        self, request_id: object, keywords: list[str], start: date, end: date
    ) -> pd.DataFrame:
        """:meth:`answer` as scale.py input cells (request_id, keyword, period_start, …)."""
        buckets, values, shares, partial = self.answer(keywords, start, end)
        rows = [
            {
                "request_id": request_id,
                "keyword": keyword,
                "period_start": bucket.start,
                "value": int(values[i, j]),
                "below_one": bool(values[i, j] == 0 and shares[i, j] > 0),
                "is_partial": partial and i == len(buckets) - 1,
            }
            for i, bucket in enumerate(buckets)
            for j, keyword in enumerate(keywords)
        ]
        return pd.DataFrame(rows)


class _Handler(BaseHTTPRequestHandler):
    server_version = "ESF"  # what Google's frontends call themselves
    sys_version = ""

    @property
    def fake(self) -> FakeGoogleTrends:
        return self.server.fake  # type: ignore[attr-defined]

    def log_message(self, format: str, *args: Any) -> None:  # keep test output clean
        pass

    def do_GET(self) -> None:
        self._dispatch("GET")

    def do_POST(self) -> None:
        self._dispatch("POST")

    def _send(
        self, status: int, content_type: str, body: bytes, headers: dict[str, str] | None = None
    ) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(body)

    def _send_html(self, status: int, headers: dict[str, str] | None = None) -> None:
        title = f"Error {status} ({HTTPStatus(status).phrase})!!1" if status != 200 else "Sorry..."
        self._send(status, "text/html; charset=UTF-8", html_page(title), headers)

    def _dispatch(self, method: str) -> None:
        url = urlsplit(self.path)
        params = {key: values[0] for key, values in parse_qs(url.query).items()}
        endpoint = {
            ("GET", "/trends/explore/"): COOKIE,
            ("GET", "/trends/explore"): COOKIE,
            ("POST", "/trends/api/explore"): EXPLORE,
            ("GET", "/trends/api/widgetdata/multiline"): MULTILINE,
        }.get((method, url.path))
        if url.path.startswith("/sorry/"):  # where the CAPTCHA redirect lands: a 429 page
            self.fake._log(ReceivedRequest("other", method, url.path, 429))
            return self._send_html(429)
        if endpoint is None:
            self.fake._log(ReceivedRequest("other", method, url.path, 404))
            return self._send_html(404)
        fault = self.fake._next_fault(endpoint)
        if fault is not None and fault.kind is FaultKind.SLOW:
            time.sleep(fault.delay)
            fault = None
        if endpoint == COOKIE:
            return self._cookie(fault)
        handler = self.fake.explore if endpoint == EXPLORE else self.fake.multiline
        try:
            document, record = handler(params)
        except BadRequest as error:
            record = error.record or ReceivedRequest(endpoint, method, url.path, error.status)
            self.fake._log(replace(record, status=error.status))
            return self._send_html(error.status)
        prefix = b")]}'\n" if endpoint == EXPLORE else b")]}',\n"
        body = prefix + json.dumps(document, separators=(",", ":")).encode()
        self.fake._log(replace(record, status=fault.status if fault is not None else 200))
        if fault is None:
            return self._send(200, "application/json; charset=utf-8", body)
        if fault.kind is FaultKind.TRUNCATED_JSON:
            return self._send(200, "application/json; charset=utf-8", body[: len(body) // 2])
        if fault.kind is FaultKind.BROKEN_BODY:
            self.send_response(200)
            self.send_header("Content-Type", "application/json; charset=utf-8")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body[: len(body) // 2])
            self.close_connection = True
            return None
        if fault.kind is FaultKind.CAPTCHA_REDIRECT:
            location = f"http://{self.headers.get('Host')}/sorry/index?continue=x"
            return self._send(
                302, "text/html; charset=UTF-8", html_page("302 Moved"), {"Location": location}
            )
        headers = {"Retry-After": fault.retry_after} if fault.retry_after else None
        return self._send_html(fault.status, headers)

    def _cookie(self, fault: Fault | None) -> None:
        status = (
            fault.status if fault is not None and fault.status != 200 else self.fake.cookie_status
        )
        self.fake._log(ReceivedRequest(COOKIE, "GET", "/trends/explore/", status))
        nid = base64.urlsafe_b64encode(
            hashlib.sha256(str(time.time_ns()).encode()).digest()
        ).decode()
        self._send_html(status, {"Set-Cookie": f"NID=511={nid}; path=/; HttpOnly"})
