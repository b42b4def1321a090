"""Deterministic Google Trends request plans: keyword batches × date windows.

Google answers at most 5 keywords per request and normalises every answer on its own, so a
long series for many keywords is a grid of requests that must overlap to be put on one scale
(see ``scale.py``).

Batches. Up to 5 keywords form a single batch. With more, keywords are ordered by volume
(``volume_hint`` if given, else the configured order, which is taken as expected popularity,
largest first) and cut into chained batches: the first batch is the 5 largest keywords, every
later batch is the *smallest member of the previous batch* (the anchor) plus the next 4
keywords. The anchor therefore is the previous batch's term closest in size to the terms it
links: it is large enough to stay above the rounding floor in its new batch and small enough
not to crush the small terms there to 0/"<1" (a dominant anchor would). The scale of batch b
reaches batch 1 through the chain of anchors (G-TAB's anchor-bank idea, reduced to a chain).

Windows. Google picks the resolution from the window length, so windows are capped:
daily ≤ 269 days, weekly ≤ 1800 days (≈ 5 years), monthly one window. Neighbouring windows
overlap by at least 60 days (daily) or 1 year (weekly). Windows start on a fixed grid from
``start`` with step = length − overlap and the last window ends exactly at ``end``; extending
``end`` later keeps every earlier grid window unchanged, so a resumed or extended backfill
finds them already fetched (``PlannedRequest.key`` is the resume fingerprint). A window whose
days the stored windows already hold (final) is not asked either (:func:`unanswered`).
"""

from __future__ import annotations

import builtins
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import date, timedelta

MAX_KEYWORDS = 5
MAX_DAILY_DAYS = 269  # Google: 269 days → DAY, 270 → WEEK (inclusive day count, conservative)
DAILY_OVERLAP_DAYS = 60
MAX_WEEKLY_DAYS = 1799  # 257 whole weeks; Google stays weekly up to ~1883 days
MIN_WEEKLY_DAYS = 364  # shorter spans come back daily
WEEKLY_OVERLAP_DAYS = 371  # 53 weeks ≥ 1 year
MIN_MONTHLY_DAYS = 2100  # measured monthly from 2093 days; between ~1883 and 2093 is unknown

RESOLUTIONS = ("day", "week", "month")


@dataclass(frozen=True)
class PlannedRequest:
    """One Google Trends request: keywords × window × region/category/property."""

    keywords: tuple[str, ...]
    start: date
    end: date  # inclusive
    geo: str = ""
    category: int = 0
    property: str = ""  # "", "images", "news", "youtube" or "froogle"
    resolution: str = "day"

    # The field `property` shadows the builtin inside this class body.
    @builtins.property
    def timeframe(self) -> str:
        """The timeframe string Google (and pytrends) expect: ``YYYY-MM-DD YYYY-MM-DD``."""
        return f"{self.start.isoformat()} {self.end.isoformat()}"

    @builtins.property
    def key(self) -> str:
        """Stable fingerprint of the request (what a resumed run compares)."""
        return "|".join(
            (
                "gtrends",
                self.resolution,
                self.geo or "world",
                str(self.category),
                self.property or "web",
                self.timeframe,
                ",".join(self.keywords),
            )
        )


def _without_start(key: str) -> tuple[str, str]:
    """(the plan key with the window's start left out, the start); field 5 of
    :attr:`PlannedRequest.key` is the timeframe."""
    fields = key.split("|")
    start, end = fields[5].split()
    return "|".join([*fields[:5], end, *fields[6:]]), start


def series_of(key: str) -> str:
    """A plan key without its timeframe: the keywords, region and resolution it belongs to."""
    fields = key.split("|")
    return "|".join([*fields[:5], *fields[6:]])


def _holds(spans: list[tuple[date, date]], first: date, last: date) -> bool:
    """Whether the union of ``spans`` (sorted) contains every day of ``first..last``."""
    for start, end in spans:
        if start > first:
            return False
        if end >= first:
            first = end + timedelta(days=1)
        if first > last:
            return True
    return False


def unanswered(
    plan: Sequence[PlannedRequest],
    fetched_keys: Iterable[str],
    final_days: Mapping[str, list[tuple[str, date, date]]] | None = None,
) -> list[PlannedRequest]:
    """The requests of ``plan`` whose data is not stored yet.

    A request is answered when it was fetched, or when a fetched request for the same keywords,
    region and resolution ends on the same day (so its last, possibly partial, day is as fresh)
    and starts no later, or when stored windows of its series that are not in ``plan`` together
    hold final data for every one of its days (``final_days``: per :func:`series_of`, each
    stored window's key and first and last final day). The last rule keeps a backfill that
    starts earlier than the stored history from fetching that history again: its windows lie
    on another grid, and only those reaching new days are asked; they overlap the stored ones,
    which ties the scales. Windows of the plan itself never count, so a plan stopped part-way
    and resumed asks exactly what it would have asked without the stop.
    """
    earliest: dict[str, str] = {}
    for key in fetched_keys:
        rest, start = _without_start(key)
        earliest[rest] = min(start, earliest.get(rest, start))
    planned = {request.key for request in plan}
    spans = {
        series: sorted((first, last) for key, first, last in windows if key not in planned)
        for series, windows in (final_days or {}).items()
    }
    todo = []
    for request in plan:
        rest, start = _without_start(request.key)
        if rest in earliest and start >= earliest[rest]:  # ISO dates compare as text
            continue
        if _holds(spans.get(series_of(request.key), []), request.start, request.end):
            continue
        todo.append(request)
    return todo


def keyword_batches(
    keywords: Sequence[str], volume_hint: Mapping[str, float] | None = None
) -> list[tuple[str, ...]]:
    """Batches of ≤ 5 keywords; with more than 5, chained through one shared anchor each."""
    unique = list(dict.fromkeys(keywords))
    if len(unique) != len(keywords):
        raise ValueError("keywords contain duplicates")
    if not unique:
        raise ValueError("no keywords to plan")
    if len(unique) <= MAX_KEYWORDS:
        return [tuple(unique)]
    if volume_hint:
        missing = [keyword for keyword in unique if keyword not in volume_hint]
        if missing:
            raise ValueError(f"volume_hint has no value for {', '.join(missing)}")
        # Stable sort: ties keep the configured order.
        unique.sort(key=lambda keyword: -volume_hint[keyword])
    step = MAX_KEYWORDS - 1  # each later batch spends one slot on the anchor
    return [
        tuple(unique[first : first + MAX_KEYWORDS]) for first in range(0, len(unique) - 1, step)
    ]


def _window_spec(resolution: str) -> tuple[int, int]:
    """(maximum length, minimum overlap) in days for a resolution."""
    if resolution == "day":
        return MAX_DAILY_DAYS, DAILY_OVERLAP_DAYS
    if resolution == "week":
        return MAX_WEEKLY_DAYS, WEEKLY_OVERLAP_DAYS
    raise ValueError(f"resolution must be one of {RESOLUTIONS}, got {resolution!r}")


def _widen(start: date, end: date, resolution: str) -> tuple[date, date]:
    """Stretch the range so Google answers in the wanted resolution with whole buckets."""
    if resolution == "week":
        start -= timedelta(days=(start.weekday() + 1) % 7)  # back to Sunday
        end += timedelta(days=(5 - end.weekday()) % 7)  # on to Saturday
        minimum = MIN_WEEKLY_DAYS
    elif resolution == "month":
        start = start.replace(day=1)
        minimum = MIN_MONTHLY_DAYS
    else:
        return start, end
    if (end - start).days + 1 < minimum:
        start, _ = _widen(end - timedelta(days=minimum - 1), end, resolution)
    return start, end


def date_windows(start: date, end: date, resolution: str) -> list[tuple[date, date]]:
    """Inclusive windows covering ``start..end`` (see the module docstring for the layout)."""
    if end < start:
        raise ValueError(f"end {end} is before start {start}")
    if resolution not in RESOLUTIONS:
        raise ValueError(f"resolution must be one of {RESOLUTIONS}, got {resolution!r}")
    start, end = _widen(start, end, resolution)
    if resolution == "month":
        return [(start, end)]
    length, overlap = _window_spec(resolution)
    span = (end - start).days + 1
    if span <= length:
        return [(start, end)]
    step = length - overlap
    grid_windows = math.ceil((span - length) / step)
    windows = [
        (start + timedelta(days=i * step), start + timedelta(days=i * step + length - 1))
        for i in range(grid_windows)
    ]
    # Last window ends at `end`; it overlaps the last grid window by ≥ `overlap` because
    # the next grid window would already have reached `end`.
    windows.append((end - timedelta(days=length - 1), end))
    return windows


def _requests(
    batches: list[tuple[str, ...]],
    windows: list[tuple[date, date]],
    resolution: str,
    geo: str,
    category: int,
    property: str,
) -> list[PlannedRequest]:
    # Window-major order: a run stopped half-way has every batch of the early windows,
    # which the anchors need to link the batches.
    return [
        PlannedRequest(batch, first, last, geo, category, property, resolution)
        for first, last in windows
        for batch in batches
    ]


def build_plan(
    keywords: Sequence[str],
    start: date,
    end: date,
    resolution: str,
    geo: str = "",
    category: int = 0,
    property: str = "",
    volume_hint: Mapping[str, float] | None = None,
) -> list[PlannedRequest]:
    """Every request needed for ``keywords`` over ``start..end`` at ``resolution``."""
    return _requests(
        keyword_batches(keywords, volume_hint),
        date_windows(start, end, resolution),
        resolution,
        geo,
        category,
        property,
    )


def minimum_requests(keywords: Sequence[str], start: date, end: date, resolution: str) -> int:
    """Lower bound for any plan with these limits: ⌈batches⌉ × ⌈windows⌉ (benchmark yardstick)."""
    count = len(keywords)
    batches = 1 if count <= MAX_KEYWORDS else math.ceil((count - 1) / (MAX_KEYWORDS - 1))
    if resolution == "month":
        return batches
    length, overlap = _window_spec(resolution)
    span = (end - start).days + 1
    windows = 1 if span <= length else math.ceil((span - length) / (length - overlap)) + 1
    return batches * windows


def incremental_requests(
    keywords: Sequence[str],
    stored_until: date | None,
    latest_day: date,
    geo: str = "",
    category: int = 0,
    property: str = "",
    volume_hint: Mapping[str, float] | None = None,
    history_start: date | None = None,
) -> list[PlannedRequest]:
    """Daily requests that bring a stored daily series up to ``latest_day``.

    With nothing stored: the regular daily plan from ``history_start`` (default: the latest 269
    days, one window per batch); a run that stops part-way (429s) leaves a stored series that
    the next run continues. Otherwise windows from 60 days before ``stored_until`` (the overlap
    that ties them to the stored series) to ``latest_day``: one window of ~62 days for a daily
    cron, the regular daily plan after a gap of more than 209 days.

    The windows are kept short on purpose: every fetched window stays in the joint fit, and a
    full 269-day window each day would cover each day ~270 times, making the rebuild 3x slower
    after a year of daily collects (docs/BENCHMARKS.md). A second run on the same day plans a
    window inside the one already fetched, which :func:`unanswered` leaves out.
    """
    batches = keyword_batches(keywords, volume_hint)
    if stored_until is None:
        start = history_start or latest_day - timedelta(days=MAX_DAILY_DAYS - 1)
        start = min(start, latest_day)
    elif stored_until >= latest_day:
        return []  # final up to the latest day Google has
    else:
        start = stored_until - timedelta(days=DAILY_OVERLAP_DAYS - 1)
    windows = date_windows(start, latest_day, "day")
    return _requests(batches, windows, "day", geo, category, property)
