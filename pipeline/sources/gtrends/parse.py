"""Parse a stored Google Trends ``widgetdata/multiline`` body into observations.

The body is what Google sent, byte for byte (the collector stores it before parsing). Parsing is
strict: any surprise raises :class:`UnexpectedResponse` with a one-line message, so nothing
half-parsed is ever written.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime
from typing import Any

from pipeline.http import SourceError

RESOLUTIONS = ("day", "week", "month")
XSSI_PREFIX = b")]}'"


class UnexpectedResponse(SourceError):
    """Google answered, but not with the data shape we know; the raw body is kept for study."""


@dataclass(frozen=True)
class Observation:
    """One keyword in one bucket of one response, as Google reported it (0..100 scale)."""

    keyword: str
    period_start: date
    value: int
    has_data: bool
    below_one: bool  # formattedValue "<1": 0 < share < 1% of the request's peak
    is_partial: bool  # the bucket is not complete yet (last row of a window reaching "today")


@dataclass(frozen=True)
class Timeline:
    observations: list[Observation]
    resolution: str  # "day", "week" or "month"


def strip_xssi(body: bytes) -> bytes:
    """Drop Google's anti-XSSI line (``)]}'`` or ``)]}',``) if present."""
    if body.startswith(XSSI_PREFIX):
        newline = body.find(b"\n")
        # Without a newline the prefix is glued to the JSON; drop the optional comma as well.
        return body[newline + 1 :] if newline >= 0 else body[len(XSSI_PREFIX) :].lstrip(b",")
    return body


def _load_json(body: bytes) -> Any:
    try:
        text = strip_xssi(body).decode("utf-8").strip()
    except UnicodeDecodeError as error:
        raise UnexpectedResponse(f"body is not UTF-8 text: {error.reason}") from None
    if text[:1] == "<":
        raise UnexpectedResponse("got an HTML page instead of JSON (CAPTCHA or error page)")
    try:
        return json.loads(text)
    except json.JSONDecodeError as error:
        raise UnexpectedResponse(f"body is not valid JSON (truncated?): {error.msg}") from None


def _bucket_start(row: dict[str, Any], index: int) -> date:
    raw = row.get("time")
    if not isinstance(raw, str) or not raw.isdigit():
        raise UnexpectedResponse(f"timelineData[{index}].time is {raw!r}, expected epoch seconds")
    return datetime.fromtimestamp(int(raw), tz=UTC).date()


def _list_field(row: dict[str, Any], key: str, index: int, length: int) -> list[Any]:
    values = row.get(key)
    if not isinstance(values, list) or len(values) != length:
        raise UnexpectedResponse(
            f"timelineData[{index}].{key} should be a list of {length} items, got {values!r}"
        )
    return values


def _resolution_from_spacing(starts: list[date]) -> str | None:
    """day/week/month from the gap between bucket starts; None if there is no gap to measure."""
    if len(starts) < 2:
        return None
    gaps = {(later - earlier).days for earlier, later in zip(starts, starts[1:], strict=False)}
    if gaps == {1}:
        return "day"
    if gaps == {7}:
        return "week"
    if gaps <= {28, 29, 30, 31} and all(start.day == 1 for start in starts):
        return "month"
    raise UnexpectedResponse(f"bucket spacing {sorted(gaps)} days is not daily, weekly or monthly")


def parse_multiline(
    body: bytes, keywords: Sequence[str], requested_resolution: str | None = None
) -> Timeline:
    """Observations of ``keywords`` (in request order) from a multiline response body.

    The resolution comes from the spacing of the buckets; when there are fewer than two
    buckets it cannot be measured and ``requested_resolution`` is used.
    """
    if not keywords:
        raise ValueError("keywords must not be empty")
    document = _load_json(body)
    default = document.get("default") if isinstance(document, dict) else None
    rows = default.get("timelineData") if isinstance(default, dict) else None
    if not isinstance(rows, list):
        raise UnexpectedResponse("JSON has no default.timelineData list")

    observations: list[Observation] = []
    starts: list[date] = []
    for index, row in enumerate(rows):
        if not isinstance(row, dict):
            raise UnexpectedResponse(f"timelineData[{index}] is not an object")
        start = _bucket_start(row, index)
        values = _list_field(row, "value", index, len(keywords))
        has_data = _list_field(row, "hasData", index, len(keywords))
        formatted = row.get("formattedValue")
        if formatted is not None:
            formatted = _list_field(row, "formattedValue", index, len(keywords))
        is_partial = row.get("isPartial", False)
        if not isinstance(is_partial, bool):
            raise UnexpectedResponse(f"timelineData[{index}].isPartial is {is_partial!r}")
        for position, keyword in enumerate(keywords):
            value, flag = values[position], has_data[position]
            # bool is an int subclass: reject it explicitly so `true` is not read as 1.
            if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= 100:
                raise UnexpectedResponse(f"timelineData[{index}].value[{position}] is {value!r}")
            if not isinstance(flag, bool):
                raise UnexpectedResponse(f"timelineData[{index}].hasData[{position}] is {flag!r}")
            shown = formatted[position] if formatted is not None else ""
            observations.append(
                Observation(
                    keyword=keyword,
                    period_start=start,
                    value=value,
                    has_data=flag,
                    below_one=value == 0 and isinstance(shown, str) and shown.startswith("<"),
                    is_partial=is_partial,
                )
            )
        starts.append(start)

    if any(later <= earlier for earlier, later in zip(starts, starts[1:], strict=False)):
        raise UnexpectedResponse("bucket times are not strictly increasing")
    if any(row.get("isPartial") for row in rows[:-1]):
        raise UnexpectedResponse("isPartial is set on a row that is not the last one")
    resolution = _resolution_from_spacing(starts) or requested_resolution
    if resolution not in RESOLUTIONS:
        raise UnexpectedResponse(
            f"cannot tell the resolution of {len(rows)} bucket(s) and none was requested"
        )
    if requested_resolution is not None and resolution != requested_resolution:
        raise UnexpectedResponse(f"asked for {requested_resolution} data, got {resolution} data")
    return Timeline(observations=observations, resolution=resolution)
