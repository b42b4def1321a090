"""The frozen Papers-with-Code archive: fetch its files, read them in batches, normalise values.

The archive (links 300,161 rows, papers 576,261 rows, July 2025) is published as Parquet and as
the original ``.json.gz`` arrays. Readers take only the columns the pipeline needs, so the
~580 MB of abstracts are never loaded, and they work in batches so memory stays bounded.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import math
import re
from collections import Counter, deque
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field, fields
from hashlib import sha256
from pathlib import Path
from typing import Any, BinaryIO, Literal, TypeVar
from urllib.parse import unquote, urlsplit

import ijson
import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import requests
import urllib3
from isal import igzip_threaded, isal_zlib

from pipeline.http import HttpClient, SourceError, TransientError
from pipeline.redact import redact_url

log = logging.getLogger(__name__)

KNOWN_FRAMEWORKS = frozenset(
    {"pytorch", "tf", "jax", "mxnet", "paddle", "mindspore", "caffe2", "torch", "none"}
)
# Columns read from each file (archive names) and the columns of the frames the readers yield.
LINK_SOURCE_COLUMNS = ("paper_url", "paper_arxiv_id", "repo_url", "is_official", "framework")
LINK_COLUMNS = ("paper_url", "arxiv_id", "repo_url", "is_official", "framework")
PAPER_SOURCE_COLUMNS = ("paper_url", "date")
PAPER_COLUMNS = ("paper_url", "date")

DEFAULT_BATCH_SIZE = 50_000
# Arrow's string kernels release the GIL, so link batches are normalised on this many threads
# while the next batch is read (about 1.7x faster on 2 cores).
NORMALIZE_THREADS = 2
DOWNLOAD_CHUNK = 1 << 20

ArchiveFormat = Literal["parquet", "json.gz"]
_Item = TypeVar("_Item")
_Result = TypeVar("_Result")


class ArchiveError(SourceError):
    """An archive file is missing, damaged or not what it should be (one-line message)."""


def _one_line(error: BaseException) -> str:
    text = str(error).strip().splitlines()
    return text[0].strip() if text else type(error).__name__


# ---------------------------------------------------------------------------------------------
# Normalisation (pure functions)

_VERSION_SUFFIX = re.compile(r"v\d+$", re.IGNORECASE)
_BLANKS = frozenset({"", "none", "null", "nan", "n/a"})
_TRUE = frozenset({"true", "t", "1", "yes", "y"})
_FALSE = frozenset({"false", "f", "0", "no", "n"})
# "/tree/<ref>/…", "/blob/<ref>/…" and GitLab's "/-/tree/…" point inside a repository.
_INSIDE_REPO = re.compile(r"/(?:-/)?(?:tree|blob)(?:/.*)?$")
_SSH_REMOTE = re.compile(r"^[\w.-]+@([\w.-]+):(.*)$")


def _is_null(value: object) -> bool:
    if value is None or value is pd.NaT or value is pd.NA:
        return True
    return isinstance(value, float) and math.isnan(value)


def normalize_repo_url(value: object) -> str | None:
    """Canonical repository URL: ``https://host/owner/name`` in lower case.

    Strips ``/tree/…``, ``/blob/…``, ``.git``, a trailing ``/``, ``www.``, query and fragment;
    ``http`` becomes ``https``; SSH remotes (``git@github.com:o/n.git``) are converted. On
    github.com only owner/name are kept, as deeper paths (issues, wiki, …) name the same
    repository. Blank or host-less values give None.
    """
    if _is_null(value):
        return None
    url = str(value).strip()
    if url.lower() in _BLANKS:
        return None
    ssh = _SSH_REMOTE.match(url)
    if ssh:
        url = f"https://{ssh.group(1)}/{ssh.group(2)}"
    elif "://" not in url:
        url = "https://" + url
    parts = urlsplit(url)
    host = parts.hostname or ""
    host = host.lower().removeprefix("www.")
    path = unquote(parts.path).lower()
    path = _INSIDE_REPO.sub("", path).rstrip("/")
    path = path.removesuffix(".git").rstrip("/")
    if host == "github.com":
        path = "/".join(path.split("/")[:3])
    if not host or not path.strip("/"):
        return None
    return f"https://{host}{path}"


def normalize_arxiv_id(value: object) -> str | None:
    """arXiv id without ``arXiv:`` prefix and ``vN`` version suffix; blank gives None."""
    if _is_null(value):
        return None
    text = str(value).strip()
    if text.lower() in _BLANKS:
        return None
    if text.lower().startswith("arxiv:"):
        text = text[6:].strip()
    return _VERSION_SUFFIX.sub("", text) or None


def parse_is_official(value: object) -> bool | None:
    """A bool from a bool or its string forms ("true"/"false", as in CSV exports); null is None.

    Raises ValueError for anything else.
    """
    if _is_null(value):
        return None
    if isinstance(value, bool | np.bool_):
        return bool(value)
    if isinstance(value, int | np.integer) and value in (0, 1):
        return bool(value)
    if isinstance(value, str):
        text = value.strip().lower()
        if text in _TRUE:
            return True
        if text in _FALSE:
            return False
        if text in _BLANKS:
            return None
    raise ValueError(f"is_official {value!r} is not a boolean")


def normalize_framework(value: object) -> str | None:
    """The framework code in lower case (known or not); blank gives None."""
    if _is_null(value):
        return None
    text = str(value).strip().lower()
    return None if text in _BLANKS - {"none"} else text


def is_known_framework(code: str | None) -> bool:
    return code in KNOWN_FRAMEWORKS


def _epoch_seconds(number: float) -> float:
    """Epoch seconds from seconds, milliseconds, microseconds or nanoseconds, by magnitude.

    1e11 s is the year 5138 while 1e11 ms is 1973, so the ranges do not overlap for any
    plausible publication date.
    """
    magnitude = abs(number)
    if magnitude < 1e11:
        return number
    if magnitude < 1e14:
        return number / 1e3
    if magnitude < 1e17:
        return number / 1e6
    return number / 1e9


_EPOCH = dt.date(1970, 1, 1)


def parse_date(value: object) -> dt.date | None:
    """A calendar date from an ISO string, a date/datetime/Timestamp, numpy datetime64, or
    epoch seconds/milliseconds (number or digit string); null gives None.

    Timezone-aware values keep the date as written in their own zone. Raises ValueError for
    anything else.
    """
    if _is_null(value):
        return None
    if isinstance(value, pd.Timestamp):
        return value.date()
    if isinstance(value, dt.datetime):
        return value.date()
    if isinstance(value, dt.date):
        return value
    if isinstance(value, np.datetime64):
        if np.isnat(value):
            return None
        return pd.Timestamp(value).date()
    if isinstance(value, bool | np.bool_):
        raise ValueError(f"date {value!r} is a boolean")
    if isinstance(value, int | float | np.integer | np.floating):
        if not math.isfinite(float(value)):
            return None
        days = math.floor(_epoch_seconds(float(value)) / 86_400)
        return _EPOCH + dt.timedelta(days=days)
    if isinstance(value, str):
        text = value.strip()
        if text.lower() in _BLANKS:
            return None
        if re.fullmatch(r"-?\d+(\.\d+)?", text):
            return parse_date(float(text))
        try:
            if len(text) == 10:
                return dt.date.fromisoformat(text)
            return dt.datetime.fromisoformat(text).date()
        except ValueError:
            raise ValueError(f"date {value!r} is not an ISO date") from None
    raise ValueError(f"date {value!r} has unsupported type {type(value).__name__}")


# ---------------------------------------------------------------------------------------------
# Vectorised normalisation (Arrow compute, RE2). Each function gives exactly what its scalar
# counterpart above gives: values outside the simple forms the vectorised path handles are
# passed to the scalar function one by one.

# A printable-ASCII http(s) URL whose host has no user, port or IPv6 brackets and whose path
# has no %-escapes: what urlsplit + unquote do to it is plain string slicing. ("%" is 0x25.)
_PLAIN_URL = r"^[Hh][Tt][Tt][Pp][Ss]?://[A-Za-z0-9.-]+(?:[/?#][!-$&-~]*)?$"
_ISO_DAY = r"^[1-9][0-9]{3}-[0-9]{2}-[0-9]{2}$"  # fromisoformat rejects year 0


def _strings(values: pd.Series) -> pa.Array | None:
    """The column as an Arrow string array (nulls for None/NaN), or None if it holds
    non-strings (numbers or booleans in a JSON file), which then take the scalar path."""
    try:
        array = pa.array(values, from_pandas=True)
    except (pa.ArrowInvalid, pa.ArrowTypeError):
        return None
    if pa.types.is_null(array.type):
        return pa.nulls(len(array), pa.string())
    if pa.types.is_string(array.type) or pa.types.is_large_string(array.type):
        return array.cast(pa.string())  # one type for the kernels (batches are far below 2 GiB)
    return None


def _scalar(values: pd.Series, convert: Callable[[object], Any]) -> pa.Array:
    return pa.array([convert(v) for v in values.tolist()], pa.string())


def _null_where(array: pa.Array, condition: pa.Array) -> pa.Array:
    return pc.if_else(pc.fill_null(condition, False), pa.scalar(None, array.type), array)


def _is_blank(text: pa.Array, blanks: frozenset[str]) -> pa.Array:
    return pc.is_in(pc.utf8_lower(text), value_set=pa.array(sorted(blanks), text.type))


def normalize_repo_urls(values: pd.Series) -> pa.Array:
    """:func:`normalize_repo_url` of a column."""
    text = _strings(values)
    if text is None:
        return _scalar(values, normalize_repo_url)
    text = pc.utf8_trim_whitespace(text)
    plain = pc.fill_null(pc.match_substring_regex(text, _PLAIN_URL), False)
    parts = pc.extract_regex(pc.utf8_lower(text), r"^[a-z]+://(?P<host>[^/?#]*)(?P<path>[^?#]*)")
    host = pc.replace_substring_regex(parts.field("host"), r"^www\.", "", max_replacements=1)
    path = pc.replace_substring_regex(parts.field("path"), r"/(?:-/)?(?:tree|blob)(?:/.*)?$", "")
    # rstrip("/"), removesuffix(".git"), rstrip("/") in one: the longest such suffix.
    path = pc.replace_substring_regex(path, r"/*(?:\.git)?/*$", "", max_replacements=1)
    owner_name = pc.extract_regex(path, r"^(?P<g>(?:/[^/]*){0,2})").field("g")
    path = pc.if_else(pc.equal(host, "github.com"), owner_name, path)
    usable = pc.and_(pc.not_equal(host, ""), pc.not_equal(pc.utf8_trim(path, "/"), ""))
    fast = _null_where(pc.binary_join_element_wise("https://", host, path, ""), pc.invert(usable))
    return _merge_scalar(fast, plain, text, values, normalize_repo_url)


def _merge_scalar(
    fast: pa.Array,
    handled: pa.Array,
    text: pa.Array,
    values: pd.Series,
    convert: Callable[[object], Any],
) -> pa.Array:
    """``fast`` where ``handled``; elsewhere null for null input, else ``convert`` of the value."""
    rest = pc.and_(pc.invert(handled), pc.is_valid(text))
    if not pc.any(rest).as_py():
        return _null_where(fast, pc.invert(handled))
    positions = np.flatnonzero(rest.to_numpy(zero_copy_only=False))
    slow = [convert(values.iloc[i]) for i in positions.tolist()]
    result = _null_where(fast, pc.invert(handled))
    return pc.replace_with_mask(result, rest, pa.array(slow, fast.type))


def normalize_arxiv_ids(values: pd.Series) -> pa.Array:
    """:func:`normalize_arxiv_id` of a column."""
    text = _strings(values)
    if text is None:
        return _scalar(values, normalize_arxiv_id)
    text = pc.utf8_trim_whitespace(text)
    blank = _is_blank(text, _BLANKS)
    text = pc.replace_substring_regex(text, r"^(?i:arxiv:)\s*", "", max_replacements=1)
    text = pc.replace_substring_regex(text, r"(?i:v)[0-9]+$", "", max_replacements=1)
    return _null_where(text, pc.or_(blank, pc.equal(text, "")))


def normalize_frameworks(values: pd.Series) -> pa.Array:
    """:func:`normalize_framework` of a column."""
    text = _strings(values)
    if text is None:
        return _scalar(values, normalize_framework)
    text = pc.utf8_lower(pc.utf8_trim_whitespace(text))
    return _null_where(text, _is_blank(text, _BLANKS - {"none"}))


def normalize_paper_urls(values: pd.Series) -> pa.Array:
    """Paper URLs stripped of surrounding blanks; blank gives null."""
    text = _strings(values)
    if text is None:
        return _scalar(values, _paper_url)
    text = pc.utf8_trim_whitespace(text)
    return _null_where(text, pc.equal(text, ""))


def _paper_url(value: object) -> str | None:
    return None if _is_null(value) or not str(value).strip() else str(value).strip()


def parse_iso_dates(values: pd.Series) -> tuple[pd.Series, int]:
    """:func:`parse_date` of a string column as ``datetime64[s]``, and how many were invalid.

    ``YYYY-MM-DD`` (nearly all values) is parsed in Arrow; anything else goes through
    :func:`parse_date`.
    """
    text = _strings(values)
    if text is None:
        return _scalar_dates(values)
    text = pc.utf8_trim_whitespace(text)
    iso = pc.fill_null(pc.match_substring_regex(text, _ISO_DAY), False)
    parsed, valid = _iso_days(_null_where(text, pc.invert(iso)))
    invalid = int(pc.sum(pc.and_(iso, pc.invert(valid))).as_py() or 0)
    dates = _null_where(parsed, pc.invert(valid)).to_pandas().astype("datetime64[s]")
    rest = np.flatnonzero(pc.and_(pc.invert(iso), pc.is_valid(text)).to_numpy(zero_copy_only=False))
    if len(rest):
        slow, slow_invalid = _scalar_dates(values.iloc[rest])
        dates.iloc[rest] = slow.to_numpy()
        invalid += slow_invalid
    return dates, invalid


def _iso_days(text: pa.Array) -> tuple[pa.Array, pa.Array]:
    """Timestamps of ``YYYY-MM-DD`` strings (or nulls) and which of them are real days."""
    try:  # the strict cast refuses the whole batch if one day does not exist (2021-02-29)
        return pc.cast(pc.cast(text, pa.date32()), pa.timestamp("s")), pc.is_valid(text)
    except pa.ArrowInvalid:
        # strptime rolls 2021-02-29 over to March: keep the values that format back unchanged.
        parsed = pc.strptime(text, "%Y-%m-%d", "s", error_is_null=True)
        return parsed, pc.fill_null(pc.equal(pc.strftime(parsed, "%Y-%m-%d"), text), False)


def _scalar_dates(values: pd.Series) -> tuple[pd.Series, int]:
    dates, invalid = _map_counting(values, parse_date)
    return pd.Series(np.array(dates, dtype="datetime64[D]").astype("datetime64[s]")), invalid


# ---------------------------------------------------------------------------------------------
# Reading


@dataclass
class ReadStats:
    """What a reader saw; problems are counted and reported, rows are never dropped silently."""

    path: str = ""
    rows: int = 0
    unknown_frameworks: Counter[str] = field(default_factory=Counter)
    missing_frameworks: int = 0
    missing_paper_urls: int = 0
    missing_repo_urls: int = 0
    invalid_is_official: int = 0
    null_dates: int = 0
    invalid_dates: int = 0

    def add(self, other: ReadStats) -> None:
        """Add the counts of ``other`` (one batch's) to these."""
        for name in (f.name for f in fields(self) if f.name != "path"):
            setattr(self, name, getattr(self, name) + getattr(other, name))

    def problems(self) -> list[str]:
        found = []
        if self.unknown_frameworks:
            listed = ", ".join(f"{k!r}×{n}" for k, n in self.unknown_frameworks.most_common())
            found.append(f"unknown framework codes {listed}")
        for label, count in (
            ("rows without framework", self.missing_frameworks),
            ("rows without paper_url", self.missing_paper_urls),
            ("rows without usable repo_url", self.missing_repo_urls),
            ("invalid is_official values", self.invalid_is_official),
            ("invalid dates", self.invalid_dates),
        ):
            if count:
                found.append(f"{count} {label}")
        return found

    def summary(self) -> str:
        problems = self.problems()
        detail = "; ".join(problems) if problems else "no problems"
        nulls = f", {self.null_dates} without date" if self.null_dates else ""
        return f"{self.path}: {self.rows} rows{nulls}; {detail}"


def sniff_format(path: Path) -> ArchiveFormat:
    """Parquet or gzip from the file's magic bytes (the name alone can lie)."""
    try:
        with path.open("rb") as file:
            head = file.read(512)
    except FileNotFoundError:
        raise ArchiveError(f"{path}: archive file not found") from None
    except OSError as error:
        raise ArchiveError(f"{path}: cannot be read ({_one_line(error)})") from None
    if head.startswith(b"PAR1"):
        return "parquet"
    if head.startswith(b"\x1f\x8b"):
        return "json.gz"
    if not head:
        raise ArchiveError(f"{path}: file is empty")
    if _looks_like_html(head):
        raise ArchiveError(f"{path}: is an HTML page, not a Parquet or .json.gz file")
    raise ArchiveError(f"{path}: neither Parquet nor gzip (starts with {head[:8]!r})")


def _looks_like_html(head: bytes) -> bool:
    start = head.lstrip(b"\xef\xbb\xbf \t\r\n").lower()
    return start.startswith((b"<!doctype html", b"<html", b"<head", b"<body", b"<!--", b"<?xml"))


def _open_binary(path: Path) -> BinaryIO:
    """The one place archive files are opened (tests wrap it to count the bytes read)."""
    return path.open("rb")


def _archive_files(path: Path) -> list[Path]:
    """The file itself, or the data files of a directory (the papers Parquet comes in shards)."""
    if path.is_dir():
        files = sorted(
            p for p in path.iterdir() if p.name.endswith((".parquet", ".json.gz")) and p.is_file()
        )
        if not files:
            raise ArchiveError(f"{path}: directory holds no .parquet or .json.gz files")
        return files
    if not path.exists():
        raise ArchiveError(f"{path}: archive file not found")
    return [path]


def _raw_batches(path: Path, columns: Sequence[str], batch_size: int) -> Iterator[pd.DataFrame]:
    for file in _archive_files(path):
        if sniff_format(file) == "parquet":
            yield from _parquet_batches(file, columns, batch_size)
        else:
            yield from _json_batches(file, columns, batch_size)


def _parquet_batches(path: Path, columns: Sequence[str], batch_size: int) -> Iterator[pd.DataFrame]:
    with _open_binary(path) as source:
        try:
            parquet = pq.ParquetFile(source)
        except (pa.ArrowException, OSError) as error:
            raise ArchiveError(f"{path}: damaged Parquet file ({_one_line(error)})") from None
        present = parquet.schema_arrow.names
        missing = [c for c in columns if c not in present]
        if missing:
            raise ArchiveError(
                f"{path}: Parquet file lacks column(s) {', '.join(missing)} "
                f"(has {', '.join(present[:12])})"
            )
        batches = parquet.iter_batches(batch_size=batch_size, columns=list(columns))
        while True:
            try:
                batch = next(batches)
            except StopIteration:
                return
            except (pa.ArrowException, OSError) as error:
                raise ArchiveError(f"{path}: damaged Parquet file ({_one_line(error)})") from None
            yield batch.to_pandas()


_GZIP_ERRORS = (OSError, EOFError, isal_zlib.error)


def _json_batches(path: Path, columns: Sequence[str], batch_size: int) -> Iterator[pd.DataFrame]:
    """Stream one top-level JSON array; only ``columns`` of each object are kept.

    ISA-L decompresses on a background thread (it releases the GIL), so gunzip overlaps the
    JSON parsing: 2.2 s less for the 206 MB papers file (docs/BENCHMARKS.md).
    """
    with (
        _open_binary(path) as raw,
        igzip_threaded.open(raw, "rb", threads=1, block_size=DOWNLOAD_CHUNK) as stream,
    ):
        try:
            head = stream.peek(256)
        except _GZIP_ERRORS as error:
            raise ArchiveError(f"{path}: damaged gzip file ({_one_line(error)})") from None
        if head.strip() and not head.lstrip().startswith(b"["):
            start = head.lstrip()[:12].decode("utf-8", "replace")
            raise ArchiveError(f"{path}: not a JSON array (starts with {start!r})")
        kept: dict[str, list[Any]] = {c: [] for c in columns}
        rows = 0
        try:
            for item in ijson.items(stream, "item", use_float=True):
                if not isinstance(item, dict):
                    raise ArchiveError(f"{path}: array element {rows} is not an object")
                if rows == 0:
                    missing = [c for c in columns if c not in item]
                    if missing:
                        raise ArchiveError(
                            f"{path}: JSON records lack field(s) {', '.join(missing)} "
                            f"(have {', '.join(list(item)[:12])})"
                        )
                for column in columns:
                    kept[column].append(item.get(column))
                rows += 1
                if rows % batch_size == 0:
                    yield pd.DataFrame(kept)
                    kept = {c: [] for c in columns}
        except _GZIP_ERRORS as error:
            raise ArchiveError(f"{path}: damaged gzip file ({_one_line(error)})") from None
        except ijson.JSONError as error:
            raise ArchiveError(
                f"{path}: damaged JSON after {rows} records ({_one_line(error)})"
            ) from None
        if kept[columns[0]]:
            yield pd.DataFrame(kept)


def _map_counting(values: pd.Series, convert: Callable[[object], Any]) -> tuple[list[Any], int]:
    """Apply a scalar converter; values it rejects become None and are counted."""
    out: list[Any] = []
    invalid = 0
    for value in values.tolist():
        try:
            out.append(convert(value))
        except ValueError:
            out.append(None)
            invalid += 1
    return out, invalid


def _dates_column(values: pd.Series, stats: ReadStats) -> pd.Series:
    """Dates as ``datetime64[s]`` (midnight), NaT for null or invalid."""
    invalid = 0
    if pd.api.types.is_datetime64_any_dtype(values.dtype):
        if getattr(values.dt, "tz", None) is not None:
            values = values.dt.tz_localize(None)  # keep the date as written in its zone
        result = values.dt.floor("D").astype("datetime64[s]")
    elif pd.api.types.is_numeric_dtype(values.dtype) and not pd.api.types.is_bool_dtype(values):
        result = _epoch_dates(values.astype("float64").to_numpy(na_value=np.nan))
    else:
        result, invalid = parse_iso_dates(values.reset_index(drop=True))
    stats.invalid_dates += invalid
    stats.null_dates += int(result.isna().sum()) - invalid
    return result.reset_index(drop=True)


def _epoch_dates(numbers: np.ndarray) -> pd.Series:
    """Vectorised :func:`parse_date` for epoch numbers (same magnitude rule)."""
    valid = np.isfinite(numbers)
    magnitude = np.abs(np.where(valid, numbers, 0.0))
    divisor = np.select([magnitude < 1e11, magnitude < 1e14, magnitude < 1e17], [1, 1e3, 1e6], 1e9)
    days = np.floor(np.where(valid, numbers, 0.0) / divisor / 86_400).astype(np.int64)
    dates = days.astype("datetime64[D]").astype("datetime64[s]")
    dates[~valid] = np.datetime64("NaT")
    return pd.Series(dates)


def _links_frame(raw: pd.DataFrame, stats: ReadStats) -> pd.DataFrame:
    raw = raw.reset_index(drop=True)
    official_raw = raw["is_official"]
    if pd.api.types.is_bool_dtype(official_raw.dtype):
        official = official_raw.astype("boolean")
    else:
        values, invalid = _map_counting(official_raw, parse_is_official)
        stats.invalid_is_official += invalid
        official = pd.array(values, dtype="boolean")
    paper_urls = normalize_paper_urls(raw["paper_url"])
    repo_urls = normalize_repo_urls(raw["repo_url"])
    frameworks = normalize_frameworks(raw["framework"])
    _count_frameworks(frameworks, stats)
    stats.missing_repo_urls += repo_urls.null_count
    stats.missing_paper_urls += paper_urls.null_count
    stats.rows += len(raw)
    return pd.DataFrame(
        {
            "paper_url": paper_urls.to_pandas(),
            "arxiv_id": normalize_arxiv_ids(raw["paper_arxiv_id"]).to_pandas(),
            "repo_url": repo_urls.to_pandas(),
            "is_official": official,
            "framework": frameworks.to_pandas(),
        }
    )


def _count_frameworks(frameworks: pa.Array, stats: ReadStats) -> None:
    stats.missing_frameworks += frameworks.null_count
    unknown = pc.filter(frameworks, pc.invert(pc.is_in(frameworks, pa.array(KNOWN_FRAMEWORKS))))
    for entry in pc.value_counts(pc.drop_null(unknown)).to_pylist():
        stats.unknown_frameworks[entry["values"]] += entry["counts"]


def _finish(stats: ReadStats) -> None:
    if stats.problems():
        log.warning("%s", stats.summary())
    else:
        log.info("%s", stats.summary())


def read_links(
    path: Path | str, batch_size: int = DEFAULT_BATCH_SIZE, stats: ReadStats | None = None
) -> Iterator[pd.DataFrame]:
    """Normalised link rows in batches: paper_url, arxiv_id, repo_url, is_official, framework.

    ``path`` is a Parquet or ``.json.gz`` links file (or a directory of them). Every row is
    kept; unknown framework codes keep their value and are counted in ``stats`` (filter with
    :func:`is_known_framework`).
    """
    path = Path(path)
    stats = stats if stats is not None else ReadStats()
    stats.path = str(path)

    def normalised(raw: pd.DataFrame) -> tuple[pd.DataFrame, ReadStats]:
        batch_stats = ReadStats()  # one per batch: threads never share a counter
        return _links_frame(raw, batch_stats), batch_stats

    raw_batches = _raw_batches(path, LINK_SOURCE_COLUMNS, batch_size)
    for frame, batch_stats in _map_in_threads(normalised, raw_batches, NORMALIZE_THREADS):
        stats.add(batch_stats)
        yield frame
    _finish(stats)


def _map_in_threads(
    function: Callable[[_Item], _Result], items: Iterable[_Item], threads: int
) -> Iterator[_Result]:
    """``map(function, items)`` on ``threads`` worker threads, in order. Items are pulled from
    ``items`` (in the caller's thread) only ``threads`` ahead of the results, so memory stays
    bounded by a few batches."""
    with ThreadPoolExecutor(threads) as pool:
        pending: deque = deque()
        for item in items:
            pending.append(pool.submit(function, item))
            if len(pending) > threads:
                yield pending.popleft().result()
        while pending:
            yield pending.popleft().result()


def read_papers(
    path: Path | str, batch_size: int = DEFAULT_BATCH_SIZE, stats: ReadStats | None = None
) -> Iterator[pd.DataFrame]:
    """Paper dates in batches: paper_url, date (``datetime64[s]``, NaT when unknown)."""
    path = Path(path)
    stats = stats if stats is not None else ReadStats()
    stats.path = str(path)
    for raw in _raw_batches(path, PAPER_SOURCE_COLUMNS, batch_size):
        paper_urls = raw["paper_url"].astype("str")
        stats.missing_paper_urls += int(raw["paper_url"].isna().sum())
        stats.rows += len(raw)
        yield pd.DataFrame(
            {
                "paper_url": paper_urls.reset_index(drop=True),
                "date": _dates_column(raw["date"], stats),
            }
        )
    _finish(stats)


# ---------------------------------------------------------------------------------------------
# Fetching


@dataclass(frozen=True)
class Validators:
    """What identifies one version of a remote file."""

    etag: str | None = None
    last_modified: str | None = None
    size: int | None = None

    @classmethod
    def from_headers(cls, headers: Any) -> Validators:
        length = headers.get("Content-Length")
        return cls(
            etag=headers.get("ETag"),
            last_modified=headers.get("Last-Modified"),
            size=int(length) if length and length.isdigit() else None,
        )

    def same_version(self, other: Validators) -> bool:
        """No validator tells them apart (an ETag first, else Last-Modified)."""
        if self.etag and other.etag:
            return self.etag == other.etag
        if self.last_modified and other.last_modified:
            return self.last_modified == other.last_modified
        return True

    def same_file(self, other: Validators) -> bool:
        """Same size and the same ETag (or, without ETags, the same Last-Modified)."""
        if self.size is None or self.size != other.size:
            return False
        if self.etag and other.etag:
            return self.etag == other.etag
        return bool(self.last_modified) and self.last_modified == other.last_modified


@dataclass(frozen=True)
class FetchResult:
    path: Path
    downloaded: bool  # False: a local path, or the cached copy was still current
    size: int
    status: int | None = None  # last HTTP status (None for a local path)


def _cache_name(url: str) -> str:
    name = Path(urlsplit(url).path).name or "archive"
    name = re.sub(r"[^A-Za-z0-9._-]", "_", name)
    return f"{sha256(url.encode()).hexdigest()[:12]}-{name}"


def _load_json(path: Path) -> dict[str, Any] | None:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def _write_json(path: Path, data: dict[str, Any]) -> None:
    partial = path.with_name(path.name + ".tmp")
    partial.write_text(json.dumps(data, indent=2), encoding="utf-8")
    partial.replace(path)


def _validators(data: dict[str, Any] | None) -> Validators | None:
    if not data:
        return None
    return Validators(data.get("etag"), data.get("last_modified"), data.get("size"))


class _Download:
    """The ``stream_to`` callback: skips a current copy, resumes a partial one, rejects HTML."""

    def __init__(self, url: str, part: Path, cached: Validators | None):
        self.url = url
        self.part = part
        self.part_meta = part.with_name(part.name + ".json")
        self.cached = cached
        self.skipped = False
        self.validators = Validators()

    def __call__(self, response: requests.Response) -> None:
        if response.status_code == 304:  # the cached copy is current: nothing to write
            return
        served = Validators.from_headers(response.headers)
        if response.status_code == 200 and self.cached and self.cached.same_file(served):
            self.skipped = True  # the server ignored our conditional request: same file anyway
            return
        self.skipped = False
        if "html" in response.headers.get("Content-Type", "").lower():
            raise ArchiveError(f"{self.url}: server sent an HTML page instead of the archive file")
        if response.status_code == 206:
            started = _validators(_load_json(self.part_meta))
            if started and not started.same_version(served):
                # A server that ignores If-Range would splice two versions of the file.
                self.part.unlink(missing_ok=True)
                self.part_meta.unlink(missing_ok=True)
                raise TransientError(f"{self.url} changed during the download; starting over")
            start, total = _content_range(response.headers.get("Content-Range", ""), self.url)
            self.validators = Validators(served.etag, served.last_modified, total)
            mode = "r+b" if self.part.exists() else "wb"
        else:
            start = 0
            self.validators = served
            mode = "wb"
            _write_json(self.part_meta, asdict(served))  # lets a later run resume this file
        with self.part.open(mode) as out:
            out.truncate(start)
            out.seek(start)
            self._copy(response, out, first=start == 0)
            size = out.tell()
        expected = self.validators.size
        if expected is not None and size != expected:
            raise TransientError(f"download of {self.url} broke off at {size} of {expected} bytes")

    def _copy(self, response: requests.Response, out: BinaryIO, first: bool) -> None:
        try:
            # Raw bytes: a server may label .json.gz as Content-Encoding gzip; keep it compressed.
            for chunk in response.raw.stream(DOWNLOAD_CHUNK, decode_content=False):
                if first and _looks_like_html(chunk[:512]):
                    raise ArchiveError(
                        f"{self.url}: server sent an HTML page instead of the archive file"
                    )
                first = False
                out.write(chunk)
        except (urllib3.exceptions.HTTPError, requests.RequestException, OSError) as error:
            raise TransientError(f"download of {self.url} broke off: {_one_line(error)}") from error


def _content_range(header: str, url: str) -> tuple[int, int | None]:
    match = re.fullmatch(r"bytes (\d+)-\d+/(\d+|\*)", header.strip())
    if not match:
        raise ArchiveError(f"{url}: partial response with bad Content-Range {header!r}")
    total = None if match.group(2) == "*" else int(match.group(2))
    return int(match.group(1)), total


def fetch_archive(location: str | Path, cache_dir: Path, http: HttpClient) -> FetchResult:
    """Make an archive file available locally; see :func:`fetch_archive_file`."""
    text = str(location)
    scheme = re.match(r"^([a-z][a-z0-9+.-]*)://", text, re.IGNORECASE)
    if scheme and scheme.group(1).lower() not in ("http", "https", "file"):
        raise ArchiveError(f"{text}: unsupported URL scheme (http, https, file or a local path)")
    if not re.match(r"^https?://", text, re.IGNORECASE):
        path = Path(text.removeprefix("file://")).expanduser()
        if not path.exists():
            raise ArchiveError(f"{path}: archive file not found")
        return FetchResult(path, downloaded=False, size=_size(path))
    return _download(text, cache_dir, http)


def fetch_archive_file(location: str | Path, cache_dir: Path, http: HttpClient) -> Path:
    """The local path of an archive file given as an http(s) URL or a local path.

    URLs are downloaded into ``cache_dir`` (temp file, then atomic rename) with a JSON sidecar
    of ETag/Last-Modified/size; later calls send a conditional GET and keep the cached copy on
    304 or when the server's validators match. An interrupted download is resumed with Range.
    Use :func:`fetch_archive` to learn whether it downloaded.
    """
    return fetch_archive(location, cache_dir, http).path


def _size(path: Path) -> int:
    return sum(p.stat().st_size for p in _archive_files(path))


def _download(url: str, cache_dir: Path, http: HttpClient) -> FetchResult:
    cache_dir.mkdir(parents=True, exist_ok=True)
    target = cache_dir / _cache_name(url)
    meta_path = target.with_name(target.name + ".meta.json")
    part = target.with_name(target.name + ".part")
    cached = _validators(_load_json(meta_path)) if target.exists() else None
    if cached and cached.size != target.stat().st_size:
        cached = None  # the copy does not match its sidecar: fetch it again
    download = _Download(url, part, cached)
    sent: dict[str, str] = {}

    def request_headers() -> dict[str, str]:
        """Asked before every attempt: a retry resumes what the last attempt wrote."""
        sent.clear()
        if cached:
            if cached.etag:
                sent["If-None-Match"] = cached.etag
            if cached.last_modified:
                sent["If-Modified-Since"] = cached.last_modified
            return dict(sent)
        partial = _validators(_load_json(download.part_meta))
        validator = partial and (partial.etag or partial.last_modified)
        if validator and part.exists() and part.stat().st_size > 0:
            sent["Range"] = f"bytes={part.stat().st_size}-"
            sent["If-Range"] = validator  # a changed file comes back whole (200)
        return dict(sent)

    finished = None if cached else _validators(_load_json(download.part_meta))
    if finished and finished.size and part.exists() and part.stat().st_size == finished.size:
        # Whole already (a run stopped between the last byte and the rename): no request.
        download.validators, status = finished, None
    else:
        try:
            response = http.get(
                url,
                headers=request_headers,
                stream_to=download,
                ok_statuses=frozenset({200, 206, 304}),
            )
        except ArchiveError:
            part.unlink(missing_ok=True)
            download.part_meta.unlink(missing_ok=True)
            raise
        status = response.status
        if status == 304 or (status == 200 and download.skipped):
            if not cached:
                raise ArchiveError(f"{url}: server answered 304 but nothing is cached")
            log.info("%s: cached copy is current (%s)", url, target)
            return FetchResult(target, downloaded=False, size=target.stat().st_size, status=status)
        if status == 416 and sent.get("Range"):
            part.unlink(missing_ok=True)  # our partial file is longer than the remote one
            return _download(url, cache_dir, http)
        if status not in (200, 206):
            if _looks_like_html(response.body[:512]):
                raise ArchiveError(f"{url}: HTTP {status} with an HTML page")
            raise ArchiveError(f"{url}: HTTP {status}")

    try:
        sniff_format(part)
    except ArchiveError as error:
        part.unlink(missing_ok=True)
        download.part_meta.unlink(missing_ok=True)
        raise ArchiveError(f"{url}: {str(error).split(': ', 1)[1]}") from None
    part.replace(target)
    download.part_meta.unlink(missing_ok=True)
    stored = {"url": redact_url(url)[0], **asdict(download.validators), "size": _size(target)}
    _write_json(meta_path, stored)
    log.info("%s: downloaded %d bytes to %s", url, target.stat().st_size, target)
    return FetchResult(target, downloaded=True, size=target.stat().st_size, status=status)
