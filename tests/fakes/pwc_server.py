"""Fake Papers-with-Code servers on 127.0.0.1: an archive file host and a v1-compatible API.

Both run a stdlib ``ThreadingHTTPServer`` on port 0 in a background thread, are context
managers, log every request, and can be told to misbehave for the next requests
(:meth:`FakeServer.fail_next`): an HTML page served as 200, a truncated body, 429/503.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import email.utils
import hashlib
import json
import threading
from collections import deque
from collections.abc import Collection, Iterable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit

import pandas as pd

from pipeline.http import HttpClient, HttpPolicy, HttpSettings

Params = dict[str, str]  # query parameters or request headers

HTML_PAGE = (
    b"<!DOCTYPE html>\n<html><head><title>Just a moment...</title></head>"
    b"<body><p>Please complete the security check to continue.</p></body></html>\n"
)


@dataclass(frozen=True)
class Fault:
    """How to answer one request instead of the normal response."""

    status: int = 200
    body: bytes = HTML_PAGE
    content_type: str = "text/html; charset=utf-8"
    headers: dict[str, str] = field(default_factory=dict)
    truncate: bool = False  # serve the normal response but cut its body off halfway


def html_page() -> Fault:
    """A CAPTCHA/error page served with status 200, as CDNs do."""
    return Fault()


def status(code: int, retry_after: int | None = None) -> Fault:
    headers = {"Retry-After": str(retry_after)} if retry_after is not None else {}
    return Fault(status=code, body=b"busy\n", content_type="text/plain", headers=headers)


def truncated() -> Fault:
    return Fault(truncate=True)


def json_body(payload: Any, code: int = 200) -> Fault:
    """An arbitrary JSON reply (for unexpected shapes)."""
    return Fault(status=code, body=json.dumps(payload).encode(), content_type="application/json")


@dataclass
class LoggedRequest:
    method: str
    path: str
    query: dict[str, str]
    headers: dict[str, str]
    status: int = 0
    body_bytes: int = 0  # body bytes actually sent


@dataclass
class Reply:
    status: int
    headers: dict[str, str]
    body: bytes | Path = b""
    start: int = 0  # for a Path body: byte range to send
    length: int | None = None


class FakeServer:
    """Base: threading, request log and fault queue; subclasses implement :meth:`respond`."""

    def __init__(self) -> None:
        self.requests: list[LoggedRequest] = []
        self._faults: deque[Fault] = deque()
        self._lock = threading.Lock()
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None
        self._port: int | None = None  # kept after stop, so URLs can still be compared

    # lifecycle
    def start(self) -> FakeServer:
        handler = type("Handler", (_Handler,), {"fake": self})
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self._server.daemon_threads = True
        self._port = self._server.server_address[1]
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def origin(self) -> str:
        assert self._port is not None, "server not started"
        return f"http://127.0.0.1:{self._port}"

    @property
    def base_url(self) -> str:
        return self.origin

    # faults and log
    def fail_next(self, *faults: Fault) -> None:
        """Answer the next requests with these faults, one each, in order."""
        with self._lock:
            self._faults.extend(faults)

    def _next_fault(self) -> Fault | None:
        with self._lock:
            return self._faults.popleft() if self._faults else None

    def _log(self, entry: LoggedRequest) -> None:
        with self._lock:
            self.requests.append(entry)

    def requests_to(self, path: str, method: str | None = None) -> list[LoggedRequest]:
        with self._lock:
            return [
                r
                for r in self.requests
                if r.path == path and (method is None or r.method == method)
            ]

    def respond(
        self, method: str, path: str, query: dict[str, str], headers: dict[str, str]
    ) -> Reply:
        raise NotImplementedError


class _Handler(BaseHTTPRequestHandler):
    fake: FakeServer
    protocol_version = "HTTP/1.0"  # one request per connection: a cut body ends the connection

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - stdlib signature
        pass

    def do_GET(self) -> None:
        self._handle("GET")

    def do_HEAD(self) -> None:
        self._handle("HEAD")

    def _handle(self, method: str) -> None:
        split = urlsplit(self.path)
        query = dict(parse_qsl(split.query, keep_blank_values=True))
        headers = {k: v for k, v in self.headers.items()}
        entry = LoggedRequest(method, split.path, query, headers)
        self.fake._log(entry)
        fault = self.fake._next_fault()
        if fault is not None and not fault.truncate:
            reply = Reply(
                fault.status,
                {"Content-Type": fault.content_type, **fault.headers},
                fault.body,
            )
        else:
            reply = self.fake.respond(method, split.path, query, headers)
        entry.status = reply.status
        cut = fault is not None and fault.truncate
        # The client may stop reading (e.g. it already has this file).
        with contextlib.suppress(BrokenPipeError, ConnectionResetError):
            entry.body_bytes = self._send(reply, method, cut)

    def _send(self, reply: Reply, method: str, cut: bool) -> int:
        body = reply.body
        if isinstance(body, Path):
            length = reply.length if reply.length is not None else body.stat().st_size
        else:
            length = len(body)
        self.send_response(reply.status)
        for name, value in reply.headers.items():
            self.send_header(name, value)
        if reply.status != 304:
            self.send_header("Content-Length", str(length))
        self.end_headers()
        if method == "HEAD" or reply.status == 304:
            return 0
        to_send = length // 2 if cut else length
        if isinstance(body, bytes):
            self.wfile.write(body[:to_send])
            return to_send
        sent = 0
        with body.open("rb") as file:
            file.seek(reply.start)
            while sent < to_send:
                chunk = file.read(min(1 << 20, to_send - sent))
                if not chunk:
                    break
                self.wfile.write(chunk)
                sent += len(chunk)
        return sent


# ---------------------------------------------------------------------------------------------
# Archive file host


@dataclass
class _HostedFile:
    content: bytes | Path
    size: int
    etag: str
    last_modified: dt.datetime


class ArchiveFileServer(FakeServer):
    """Serves archive files with ETag, Last-Modified, conditional GET, HEAD and Range."""

    FIRST_MODIFIED = dt.datetime(2025, 7, 28, 23, 45, 9, tzinfo=dt.UTC)

    def __init__(
        self,
        files: dict[str, bytes | Path] | None = None,
        *,
        conditional: bool = True,  # False: ignore If-None-Match/If-Modified-Since (send 200)
        ranges: bool = True,
        validators: bool = True,  # False: send neither ETag nor Last-Modified
        if_range: bool = True,  # False: serve a Range even when If-Range no longer matches
    ) -> None:
        super().__init__()
        self.conditional = conditional
        self.ranges = ranges
        self.if_range = if_range
        self.validators = validators
        self._files: dict[str, _HostedFile] = {}
        self._versions = 0
        for name, content in (files or {}).items():
            self.put(name, content)

    def put(self, name: str, content: bytes | Path) -> None:
        """Publish (or replace) ``/name``; each version gets a new ETag and Last-Modified."""
        if isinstance(content, Path):
            stat = content.stat()
            size = stat.st_size
            digest = f"{size:x}-{stat.st_mtime_ns:x}"
        else:
            size = len(content)
            digest = hashlib.sha256(content).hexdigest()[:20]
        modified = self.FIRST_MODIFIED + dt.timedelta(days=self._versions)
        self._versions += 1
        self._files["/" + name.lstrip("/")] = _HostedFile(content, size, f'"{digest}"', modified)

    def url(self, name: str) -> str:
        return f"{self.origin}/{name.lstrip('/')}"

    def full_downloads(self, name: str) -> int:
        """GETs of ``name`` answered with a body (200 or 206)."""
        return sum(
            1 for r in self.requests_to("/" + name.lstrip("/"), "GET") if r.status in (200, 206)
        )

    def respond(
        self, method: str, path: str, query: dict[str, str], headers: dict[str, str]
    ) -> Reply:
        hosted = self._files.get(path)
        if hosted is None:
            return Reply(404, {"Content-Type": "text/plain"}, b"not found\n")
        last_modified = email.utils.format_datetime(hosted.last_modified, usegmt=True)
        base = {"Content-Type": "application/octet-stream"}
        if self.validators:
            base |= {"ETag": hosted.etag, "Last-Modified": last_modified}
        if self.ranges:
            base["Accept-Ranges"] = "bytes"
        if self.conditional and self._not_modified(hosted, headers):
            return Reply(304, base)
        wanted = headers.get("Range")
        holds = not self.if_range or self._if_range_holds(hosted, last_modified, headers)
        if self.ranges and wanted and holds:
            return self._partial(hosted, wanted, base)
        return Reply(200, base, hosted.content)

    @staticmethod
    def _not_modified(hosted: _HostedFile, headers: dict[str, str]) -> bool:
        if_none_match = headers.get("If-None-Match")
        if if_none_match is not None:
            tags = {t.strip() for t in if_none_match.split(",")}
            return "*" in tags or hosted.etag in tags
        since = headers.get("If-Modified-Since")
        if since:
            try:
                return hosted.last_modified <= email.utils.parsedate_to_datetime(since)
            except (TypeError, ValueError):
                return False
        return False

    @staticmethod
    def _if_range_holds(hosted: _HostedFile, last_modified: str, headers: dict[str, str]) -> bool:
        if_range = headers.get("If-Range")
        return if_range is None or if_range in (hosted.etag, last_modified)

    @staticmethod
    def _partial(hosted: _HostedFile, wanted: str, base: dict[str, str]) -> Reply:
        unit, _, spec = wanted.partition("=")
        first, _, last = spec.partition("-")
        if unit.strip() != "bytes" or not first.isdigit() or "," in spec:
            return Reply(200, base, hosted.content)  # unsupported forms: whole file
        start = int(first)
        end = min(int(last), hosted.size - 1) if last.isdigit() else hosted.size - 1
        if start >= hosted.size or start > end:
            return Reply(416, base | {"Content-Range": f"bytes */{hosted.size}"}, b"")
        headers = base | {"Content-Range": f"bytes {start}-{end}/{hosted.size}"}
        length = end - start + 1
        if isinstance(hosted.content, bytes):
            return Reply(206, headers, hosted.content[start : end + 1])
        return Reply(206, headers, hosted.content, start=start, length=length)


# ---------------------------------------------------------------------------------------------
# v1-compatible API


class FakePwcApi(FakeServer):
    """``/repositories/`` and ``/papers/`` of a v1-compatible API, computed from a dataset.

    - ``/repositories/?framework=X`` counts distinct ``repo_url`` values linked with framework X;
    - ``/papers/?framework=X&start_date=…&end_date=…`` counts distinct papers with a link of
      framework X whose paper date lies in the range (both ends inclusive) and echoes the
      filters it applied in ``applied_filters``.

    Modes: ``ignore_filters`` (an older server: no ``applied_filters``, count = all papers or
    all repositories), ``same_count`` (the framework filter is ignored but still echoed),
    ``echo_filters`` (echo only these filter names); ``endpoints`` lists the endpoints served
    (the relaunched catalogue's own client uses ``papers/`` only; others answer 404).
    """

    def __init__(
        self,
        links: pd.DataFrame | Iterable[dict[str, Any]],
        papers: pd.DataFrame | Iterable[dict[str, Any]],
        *,
        ignore_filters: bool = False,
        same_count: bool = False,
        echo_filters: Collection[str] | None = None,
        endpoints: Collection[str] = ("repositories", "papers"),
        prefix: str = "/api/v1",
    ) -> None:
        super().__init__()
        links = links if isinstance(links, pd.DataFrame) else pd.DataFrame(list(links))
        papers = papers if isinstance(papers, pd.DataFrame) else pd.DataFrame(list(papers))
        dated = papers[["paper_url", "date"]].assign(
            date=pd.to_datetime(papers["date"], errors="coerce", format="ISO8601")
        )
        self._links = links[["paper_url", "repo_url", "framework", "paper_title"]].merge(
            dated, on="paper_url", how="left"
        )
        self._papers = dated
        self.ignore_filters = ignore_filters
        self.same_count = same_count
        self.echo_filters = echo_filters
        self.endpoints = frozenset(endpoints)
        self.prefix = prefix.rstrip("/")

    @property
    def base_url(self) -> str:
        return self.origin + self.prefix

    def respond(
        self, method: str, path: str, query: dict[str, str], headers: dict[str, str]
    ) -> Reply:
        endpoint = path.removeprefix(self.prefix).strip("/")
        if endpoint == "repositories" and endpoint in self.endpoints:
            return self._repositories(query)
        if endpoint == "papers" and endpoint in self.endpoints:
            return self._papers_page(query)
        return _json_reply(404, {"detail": "Not found."})

    def _repositories(self, query: dict[str, str]) -> Reply:
        try:
            per_page = int(query.get("items_per_page", "50"))
            page = int(query.get("page", "1"))
        except ValueError:
            return _json_reply(400, {"detail": "items_per_page and page must be integers"})
        rows = self._links
        framework = query.get("framework")
        if framework and not (self.ignore_filters or self.same_count):
            rows = rows[rows["framework"] == framework]
        repos = rows.drop_duplicates("repo_url")
        count = len(repos)
        chunk = repos.iloc[(page - 1) * per_page : page * per_page]
        results = [_repository(r.repo_url, r.framework) for r in chunk.itertuples()]
        more = page * per_page < count
        next_query = {**query, "page": str(page + 1)}
        payload = {
            "count": count,
            "next": f"{self.base_url}/repositories/?{urlencode(next_query)}" if more else None,
            "previous": None
            if page == 1
            else f"{self.base_url}/repositories/?{urlencode({**query, 'page': str(page - 1)})}",
            "results": results,
        }
        return _json_reply(200, payload)

    def _papers_page(self, query: dict[str, str]) -> Reply:
        try:
            page_size = int(query.get("page_size", "20"))
            start = _date_param(query.get("start_date"))
            end = _date_param(query.get("end_date"))
        except ValueError as error:
            return _json_reply(422, {"detail": str(error)})
        if not 1 <= page_size <= 100:
            return _json_reply(422, {"detail": "page_size must be between 1 and 100"})
        applied: dict[str, str] = {}
        if self.ignore_filters:
            papers = self._papers
        else:
            rows = self._links
            framework = query.get("framework")
            if framework:
                applied["framework"] = framework
                if not self.same_count:
                    rows = rows[rows["framework"] == framework]
            if start is not None:
                applied["start_date"] = query["start_date"]
                rows = rows[rows["date"] >= start]
            if end is not None:
                applied["end_date"] = query["end_date"]
                rows = rows[rows["date"] <= end]
            papers = rows.drop_duplicates("paper_url")
        payload: dict[str, Any] = {
            "count": len(papers),
            "results": [_paper(r.paper_url, r.date) for r in papers.head(page_size).itertuples()],
        }
        if not self.ignore_filters:
            if self.echo_filters is not None:
                applied = {k: v for k, v in applied.items() if k in self.echo_filters}
            payload["applied_filters"] = applied
        return _json_reply(200, payload)


def _date_param(value: str | None) -> pd.Timestamp | None:
    if not value:
        return None
    try:
        return pd.Timestamp(dt.date.fromisoformat(value))
    except ValueError:
        raise ValueError(f"invalid date {value!r}, expected YYYY-MM-DD") from None


def _repository(url: str, framework: str) -> dict[str, Any]:
    owner, _, name = url.rstrip("/").split("/", 3)[-1].partition("/")
    return {
        "url": url,
        "owner": owner,
        "name": name,
        "description": "",
        "stars": 0,
        "framework": framework,
    }


def _paper(paper_url: str, date: Any) -> dict[str, Any]:
    return {
        "id": paper_url.rsplit("/", 1)[-1],
        "published": None if pd.isna(date) else date.date().isoformat(),
    }


def _json_reply(code: int, payload: Any) -> Reply:
    return Reply(code, {"Content-Type": "application/json"}, json.dumps(payload).encode())


# ---------------------------------------------------------------------------------------------
# Client side


@dataclass
class FastHttp:
    """An :class:`HttpClient` for tests: no pacing, and sleeps are recorded, not slept."""

    max_attempts: int = 3
    sleeps: list[float] = field(default_factory=list)

    def client(self) -> HttpClient:
        settings = HttpSettings(request_delay=0, timeout=5, max_attempts=self.max_attempts)
        return HttpClient(HttpPolicy(settings, sleep=self.sleeps.append))
