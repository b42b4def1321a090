"""The frozen Papers-with-Code archive: fetch its files, normalise its values.

The archive (links 300,161 rows, papers 576,261 rows, July 2025) is published as Parquet and as
the original ``.json.gz`` arrays. Fetching (with a cache, conditional requests and resumed
downloads) and the scalar normalisation rules are here; :mod:`.reader` reads the files with
DuckDB, applying these rules in SQL and calling these functions for the values SQL leaves.
The functions are the definition: tests check the SQL against each of them value by value.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import math
import re
from collections import Counter
from dataclasses import asdict, dataclass, field
from hashlib import sha256
from pathlib import Path
from typing import TYPE_CHECKING, Any, BinaryIO, Literal
from urllib.parse import unquote, urlsplit

from pipeline.http import HttpClient, SourceError, TransientError
from pipeline.redact import redact_url

if TYPE_CHECKING:
    import requests

log = logging.getLogger(__name__)

KNOWN_FRAMEWORKS = frozenset(
    {"pytorch", "tf", "jax", "mxnet", "paddle", "mindspore", "caffe2", "torch", "none"}
)
# Columns read from each file (archive names); a papers file without arxiv_id is read too.
LINK_SOURCE_COLUMNS = ("paper_url", "paper_arxiv_id", "repo_url", "is_official", "framework")
PAPER_SOURCE_COLUMNS = ("paper_url", "date")
PAPER_OPTIONAL_COLUMNS = ("arxiv_id",)
DOWNLOAD_CHUNK = 1 << 20

ArchiveFormat = Literal["parquet", "json.gz"]


class ArchiveError(SourceError):
    """An archive file is missing, damaged or not what it should be (one-line message)."""


def one_line(error: BaseException) -> str:
    text = str(error).strip().splitlines()
    return text[0].strip() if text else type(error).__name__


# ---------------------------------------------------------------------------------------------
# Normalisation (pure functions)

_VERSION_SUFFIX = re.compile(r"v[0-9]+$", re.IGNORECASE)
BLANKS = frozenset({"", "none", "null", "nan", "n/a"})
TRUE_WORDS = frozenset({"true", "t", "1", "yes", "y"})
FALSE_WORDS = frozenset({"false", "f", "0", "no", "n"})
# "/tree/<ref>/…", "/blob/<ref>/…" and GitLab's "/-/tree/…" point inside a repository.
_INSIDE_REPO = re.compile(r"/(?:-/)?(?:tree|blob)(?:/.*)?$")
_SSH_REMOTE = re.compile(r"^[\w.-]+@([\w.-]+):(.*)$")


def _is_null(value: object) -> bool:
    if value is None:
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
    if url.lower() in BLANKS:
        return None
    ssh = _SSH_REMOTE.match(url)
    if ssh:
        url = f"https://{ssh.group(1)}/{ssh.group(2)}"
    elif "://" not in url:
        url = "https://" + url
    try:
        parts = urlsplit(url)
        host = parts.hostname or ""
    except ValueError:  # e.g. an unclosed IPv6 bracket: no usable repository
        return None
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
    if text.lower() in BLANKS:
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
    if isinstance(value, bool):
        return bool(value)
    if isinstance(value, int) and value in (0, 1):
        return bool(value)
    if isinstance(value, str):
        text = value.strip().lower()
        if text in TRUE_WORDS:
            return True
        if text in FALSE_WORDS:
            return False
        if text in BLANKS:
            return None
    raise ValueError(f"is_official {value!r} is not a boolean")


def normalize_framework(value: object) -> str | None:
    """The framework code in lower case (known or not); blank gives None."""
    if _is_null(value):
        return None
    text = str(value).strip().lower()
    return None if text in BLANKS - {"none"} else text


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
    """A calendar date from an ISO string, a date/datetime, or epoch seconds/milliseconds
    (number or digit string); null gives None.

    Timezone-aware values keep the date as written in their own zone. Raises ValueError for
    anything else.
    """
    if _is_null(value):
        return None
    if isinstance(value, dt.datetime):
        return value.date()
    if isinstance(value, dt.date):
        return value
    if isinstance(value, bool):
        raise ValueError(f"date {value!r} is a boolean")
    if isinstance(value, int | float):
        if not math.isfinite(float(value)):
            return None
        days = math.floor(_epoch_seconds(float(value)) / 86_400)
        try:
            return _EPOCH + dt.timedelta(days=days)
        except OverflowError:
            raise ValueError(f"date {value!r} is out of range") from None
    if isinstance(value, str):
        text = value.strip()
        if text.lower() in BLANKS:
            return None
        if re.fullmatch(r"-?[0-9]+(\.[0-9]+)?([eE][-+]?[0-9]+)?", text):  # as JSON writes them
            return parse_date(float(text))
        try:
            if len(text) == 10:
                return dt.date.fromisoformat(text)
            return dt.datetime.fromisoformat(text).date()
        except ValueError:
            raise ValueError(f"date {value!r} is not an ISO date") from None
    raise ValueError(f"date {value!r} has unsupported type {type(value).__name__}")


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
        raise ArchiveError(f"{path}: cannot be read ({one_line(error)})") from None
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


def archive_files(path: Path) -> list[Path]:
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
    if not path.is_file():  # a FIFO or device would block or never end
        raise ArchiveError(f"{path}: not a regular file or directory")
    return [path]


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
        import requests  # here, not at the top: an import of local files needs no network code
        import urllib3

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
            raise TransientError(f"download of {self.url} broke off: {one_line(error)}") from error


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
    return sum(p.stat().st_size for p in archive_files(path))


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
