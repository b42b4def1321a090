"""Reading the archive files with DuckDB: only the needed columns, normalised in SQL.

Each file is scanned once by DuckDB (Parquet with column projection, ``.json.gz`` as a
streamed top-level array) into a table of normalised values in an in-memory database:

- ``links``: seq, paper_url, arxiv_id, repo_url, is_official, framework, official_invalid
- ``papers``: seq, paper_url, arxiv_id, published (DATE), date_invalid

``seq`` numbers the rows in file order (shards in name order): Parquet's own row numbers, and
for JSON ``row_number() OVER ()`` on the scan, which DuckDB documents as the file's order. It
tells which row came last.

Values in the simple forms that make up nearly all of the archive (a plain
``http(s)://host/path`` URL, a ``YYYY-MM-DD`` date, an epoch number, a plain arXiv id) are
normalised in SQL; every other distinct value is passed to the scalar function of
:mod:`.archive` afterwards, so the results are exactly what the scalar functions give.
DuckDB's errors become one-line :class:`ArchiveError`\\ s naming the file.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import gzip
import re
import zlib
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import duckdb

from pipeline.sources.pwc.archive import (
    BLANKS,
    FALSE_WORDS,
    KNOWN_FRAMEWORKS,
    LINK_SOURCE_COLUMNS,
    PAPER_OPTIONAL_COLUMNS,
    PAPER_SOURCE_COLUMNS,
    TRUE_WORDS,
    ArchiveError,
    ArchiveFormat,
    ReadStats,
    archive_files,
    normalize_repo_url,
    one_line,
    parse_date,
    sniff_format,
)

# What Python's str.strip() removes (str.isspace), as an RE2 class: DuckDB's trim() only
# removes spaces.
_SPACE = (
    r"[\t\n\x0b\x0c\r\x1c-\x1f \x{85}\x{a0}\x{1680}\x{2000}-\x{200a}"
    r"\x{2028}\x{2029}\x{202f}\x{205f}\x{3000}]"
)
# A printable-ASCII http(s) URL whose host has no user, port or IPv6 brackets and whose path
# has no %-escapes: what urlsplit + unquote do to it is plain string slicing. ("%" is 0x25.)
_PLAIN_URL = r"^[Hh][Tt][Tt][Pp][Ss]?://[A-Za-z0-9.-]+(?:[/?#][!-$&-~]*)?$"
_ISO_DAY = r"^[1-9][0-9]{3}-[0-9]{2}-[0-9]{2}$"  # fromisoformat rejects year 0
_NUMBER = r"^-?[0-9]+(?:\.[0-9]+)?(?:[eE][-+]?[0-9]+)?$"  # as JSON writes numbers


def _words(words: frozenset[str]) -> str:
    return "(" + ", ".join(f"'{word}'" for word in sorted(words)) + ")"


def _list(words: frozenset[str]) -> str:
    return "[" + ", ".join(f"'{word}'" for word in sorted(words)) + "]"


def _literal(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def _file_literal(path: Path) -> str:
    """``path`` as a DuckDB file name: quoted, and its glob characters (``*?[``) made literal,
    since DuckDB reads every file a pattern matches."""
    return _literal(re.sub(r"([*?\[])", r"[\1]", str(path)))


# Macros: the SQL counterparts of the scalar functions in .archive, for the simple forms.
_MACROS = f"""
CREATE MACRO py_strip(s) AS CASE WHEN s[1] BETWEEN '!' AND '~' AND s[-1] BETWEEN '!' AND '~'
    THEN s ELSE regexp_replace(s, '^{_SPACE}+|{_SPACE}+$', '', 'g') END;
CREATE MACRO blank_to_null(s, blanks) AS CASE WHEN list_contains(blanks, lower(s)) THEN NULL
    ELSE s END;
CREATE MACRO utc_day(seconds) AS CASE WHEN isfinite(seconds)
    AND floor(seconds / 86400) BETWEEN -719162 AND 2932896
    THEN DATE '1970-01-01' + CAST(floor(seconds / 86400) AS INTEGER) END;
CREATE MACRO epoch_seconds(x) AS x / CASE WHEN abs(x) < 1e11 THEN 1 WHEN abs(x) < 1e14
    THEN 1e3 WHEN abs(x) < 1e17 THEN 1e6 ELSE 1e9 END;
CREATE MACRO epoch_date(x) AS utc_day(epoch_seconds(x));
CREATE MACRO epoch_invalid(x) AS isfinite(x) AND epoch_date(x) IS NULL;
CREATE MACRO in_python_range(d) AS d BETWEEN DATE '0001-01-01' AND DATE '9999-12-31';
CREATE MACRO arxiv_id(s) AS CASE WHEN regexp_full_match(s, '[0-9]+\\.[0-9]+') THEN s
    WHEN NOT list_contains({_list(BLANKS)}, lower(py_strip(s)))
    THEN nullif(regexp_replace(regexp_replace(py_strip(s), '^(?i:arxiv:){_SPACE}*', ''),
    '(?i:v)[0-9]+$', ''), '') END;
"""


def connect() -> duckdb.DuckDBPyConnection:
    """An in-memory DuckDB with the normalisation macros and the two tables.

    ``repo_raw`` and ``date_raw`` hold the values SQL does not normalise (NULL elsewhere);
    :func:`_normalise_the_rest` fills in their columns with the scalar functions.
    """
    # Rows carry their file position (seq), so nothing relies on DuckDB keeping row order
    # except the numbering of JSON rows (see _reading); without it inserts run in parallel.
    db = duckdb.connect(":memory:", config={"preserve_insertion_order": False})
    # No progress bar: on a terminal DuckDB would draw it over the CLI's output. (Its polling
    # would also notice Ctrl-C mid-query, but only while drawing; without it DuckDB reports
    # the interrupt when the running query ends, a few seconds at most on the full archive.)
    db.execute("SET enable_progress_bar = false")
    for statement in filter(str.strip, _MACROS.split(";")):
        db.execute(statement)
    db.execute(
        "CREATE TABLE links (seq BIGINT, paper_url VARCHAR, arxiv_id VARCHAR, repo_url VARCHAR,"
        " is_official BOOLEAN, framework VARCHAR, official_invalid BOOLEAN, repo_raw VARCHAR)"
    )
    db.execute(
        "CREATE TABLE papers (seq BIGINT, paper_url VARCHAR, arxiv_id VARCHAR, published DATE,"
        " date_invalid BOOLEAN, date_raw VARCHAR)"
    )
    return db


def _rows_in(db: duckdb.DuckDBPyConnection, table: str) -> int:
    return db.execute(f"SELECT count(*) FROM {table}").fetchone()[0]


def _normalise_the_rest(
    db: duckdb.DuckDBPyConnection,
    table: str,
    raw: str,
    convert: Callable[[str], tuple],
    columns: Sequence[str],
) -> None:
    """Set ``columns`` of the rows whose ``raw`` value SQL left alone to ``convert(raw)``,
    computed once per distinct value and sent back as lists (no per-row round trips)."""
    values = [value for (value,) in db.execute(
        f"SELECT DISTINCT {raw} FROM {table} WHERE {raw} IS NOT NULL"
    ).fetchall()]  # fmt: skip
    if not values:
        return
    converted = list(zip(*(convert(value) for value in values), strict=True))
    assignments = ", ".join(f"{column} = m.{column}" for column in columns)
    lists = ", ".join(f"unnest(${column}) AS {column}" for column in columns)
    db.execute(
        f"UPDATE {table} SET {assignments} FROM (SELECT unnest($raw) AS raw, {lists}) m "
        f"WHERE {table}.{raw} = m.raw",
        {"raw": values, **{c: list(v) for c, v in zip(columns, converted, strict=True)}},
    )


# --- scanning one file ------------------------------------------------------------------------


@contextlib.contextmanager
def interruptible() -> Iterator[None]:
    """Ctrl-C or SIGTERM during a DuckDB query as KeyboardInterrupt: DuckDB stops the query
    and raises ``RuntimeError("Query interrupted")`` in its place."""
    try:
        yield
    except (RuntimeError, duckdb.InterruptException) as error:
        if isinstance(error, duckdb.InterruptException) or "interrupted" in str(error).lower():
            raise KeyboardInterrupt from None
        raise


@contextlib.contextmanager
def _errors_named(path: Path, fmt: ArchiveFormat) -> Iterator[None]:
    """DuckDB's errors while reading ``path`` as one line naming the file and what is wrong."""
    try:
        with interruptible():
            yield
    except duckdb.Error as error:
        message = one_line(error)
        if fmt == "parquet":
            raise ArchiveError(f"{path}: damaged Parquet file ({message})") from None
        if "gzip" in message.lower():
            raise ArchiveError(f"{path}: damaged gzip file ({message})") from None
        if "maximum_object_size" in message:  # raising it makes every read buffer that big
            raise ArchiveError(f"{path}: a JSON record is over 16 MiB ({message})") from None
        if "Expected OBJECT" in message:
            raise ArchiveError(f"{path}: an array element is not an object ({message})") from None
        raise ArchiveError(f"{path}: damaged JSON ({message})") from None


@dataclass(frozen=True)
class _Scan:
    """How to read one file: a subquery of the needed columns plus ``seq``, their types."""

    path: Path
    sql: str
    kinds: dict[str, str]
    numbered_in_order: bool  # seq comes from row_number() OVER (): row order must be kept


@contextlib.contextmanager
def _reading(db: duckdb.DuckDBPyConnection, scan: _Scan) -> Iterator[None]:
    """Errors named (:func:`_errors_named`) while ``scan`` is read; if its rows are numbered
    by ``row_number() OVER ()``, DuckDB keeps the file's row order meanwhile."""
    if scan.numbered_in_order:
        db.execute("SET preserve_insertion_order = true")
    try:
        with _errors_named(scan.path, sniff_format(scan.path)):
            yield
    finally:
        if scan.numbered_in_order:
            db.execute("SET preserve_insertion_order = false")


def _check_json_array(path: Path) -> None:
    """A clear message for a gzip that does not hold a JSON array (DuckDB's would name
    options of its own), read from the first decompressed bytes only."""
    try:
        with gzip.open(path, "rb") as stream:
            head = stream.read(256)
    except (OSError, EOFError, zlib.error) as error:
        raise ArchiveError(f"{path}: damaged gzip file ({one_line(error)})") from None
    if head.strip() and not head.lstrip().startswith(b"["):
        start = head.lstrip()[:12].decode("utf-8", "replace")
        raise ArchiveError(f"{path}: not a JSON array (starts with {start!r})")


def _scan(
    db: duckdb.DuckDBPyConnection,
    path: Path,
    columns: Sequence[str],
    optional: Sequence[str] = (),
) -> _Scan:
    """How to read ``columns`` (and those of ``optional`` the file has) of ``path``.

    Parquet columns keep their types; JSON values are read as text (numbers and booleans as
    they are written), so every row takes the same way through the normalisation.
    """
    fmt = sniff_format(path)
    source = _file_literal(path)
    with _errors_named(path, fmt):
        if fmt == "parquet":
            described = db.execute(f"DESCRIBE SELECT * FROM read_parquet({source})").fetchall()
            found = {name: kind for name, kind, *_ in described}
            present = list(found)
            what = "Parquet file lacks column(s)"
            numbered_by_file = "file_row_number" not in found  # else it names a real column
            option = ", file_row_number = true" if numbered_by_file else ""
            read_sql = f"read_parquet({source}{option})"
        else:
            _check_json_array(path)
            sample = f"read_json({source}, format = 'array')"
            described = db.execute(f"DESCRIBE SELECT * FROM {sample}").fetchall()
            found = dict.fromkeys((name for name, *_ in described), "VARCHAR")
            present = list(found)
            what = "JSON records lack field(s)"
            # Optional fields are read even if the first records lack them (NULL there).
            found.update(dict.fromkeys(optional, "VARCHAR"))
            spec = ", ".join(f"{name}: 'VARCHAR'" for name in (*columns, *optional))
            read_sql = f"read_json({source}, format = 'array', columns = {{{spec}}})"
            numbered_by_file = False
    missing = [c for c in columns if c not in found]
    if missing:
        raise ArchiveError(f"{path}: {what} {', '.join(missing)} (has {', '.join(present[:12])})")
    kinds = {name: found[name] for name in (*columns, *optional) if name in found}
    for name, kind in kinds.items():
        if kind.endswith("]") or kind.startswith(("STRUCT", "MAP", "UNION")):
            raise ArchiveError(f"{path}: column {name} holds {kind} values, not single values")
    names = ", ".join(kinds)
    if numbered_by_file:
        sql = f"(SELECT {names}, file_row_number + 1 AS seq FROM {read_sql})"
    else:  # a gzip stream is read by one thread anyway, so numbering costs little
        sql = f"(SELECT {names}, row_number() OVER () AS seq FROM {read_sql})"
    return _Scan(path, sql, kinds, numbered_in_order=not numbered_by_file)


def _text(column: str, kind: str) -> str:
    return column if kind == "VARCHAR" else f"CAST({column} AS VARCHAR)"


def _official(kind: str) -> tuple[str, str]:
    """(value, is-invalid) SQL for is_official read as ``kind`` (parse_is_official)."""
    if kind == "BOOLEAN":
        return "is_official", "false"
    word = "lower(py_strip(" + _text("is_official", kind) + "))"
    known = _words(TRUE_WORDS | FALSE_WORDS | BLANKS)
    value = f"CASE WHEN {word} IN {_words(TRUE_WORDS)} THEN true "
    value += f"WHEN {word} IN {_words(FALSE_WORDS)} THEN false END"
    return value, f"coalesce({word} NOT IN {known}, false)"


def _typed_date(kind: str) -> tuple[str, str] | None:
    """(DATE, is-invalid) SQL for a date column of a non-text type (parse_date), or None
    for text."""
    if kind == "DATE":
        return "CASE WHEN in_python_range(date) THEN date END", (
            "coalesce(NOT in_python_range(date), false)"
        )
    if kind.startswith("TIMESTAMP"):
        # The UTC day, whatever the host's time zone (a cast would use it for zoned values).
        return "utc_day(epoch(date))", "date IS NOT NULL AND utc_day(epoch(date)) IS NULL"
    if kind == "BOOLEAN":
        return "NULL::DATE", "date IS NOT NULL"
    if kind in _NUMERIC:
        number = "CAST(date AS DOUBLE)"
        return f"epoch_date({number})", f"coalesce(epoch_invalid({number}), false)"
    return None


def _papers_select(scan: str, kinds: dict[str, str], offset: int) -> str:
    """SELECT seq, paper_url, arxiv_id, published, date_invalid, date_raw from ``scan``, whose
    rows follow ``offset`` rows of earlier files.

    Text dates are classified once (blank, ISO day, epoch number, other); "other" values
    are kept in ``date_raw`` for :func:`parse_date`.
    """
    arxiv = f"arxiv_id({_text('arxiv_id', kinds['arxiv_id'])})" if "arxiv_id" in kinds else "NULL"
    paper = f"nullif(py_strip({_text('paper_url', kinds['paper_url'])}), '')"
    typed = _typed_date(kinds["date"])
    if typed is not None:
        return f"SELECT seq + {offset}, {paper}, {arxiv}, {typed[0]}, {typed[1]}, NULL FROM {scan}"
    raw = _text("date", kinds["date"])
    return f"""
        WITH raw AS (
            SELECT seq + {offset} AS seq, {paper} AS paper_url, {arxiv} AS arxiv_id, {raw} AS raw,
                   py_strip({raw}) AS text
            FROM {scan}),
        kinds AS (
            SELECT *, text IS NULL OR lower(text) IN {_words(BLANKS)} AS blank,
                   regexp_full_match(text, '{_ISO_DAY}') AS iso,
                   regexp_full_match(text, '{_NUMBER}') AS number
            FROM raw),
        parsed AS (
            SELECT *, CASE WHEN iso THEN try_cast(text AS DATE) END AS day,
                   CASE WHEN number THEN CAST(text AS DOUBLE) END AS epoch,
            FROM kinds)
        SELECT seq, paper_url, arxiv_id,
               CASE WHEN iso THEN day WHEN number THEN epoch_date(epoch) END,
               CASE WHEN iso THEN day IS NULL
                    WHEN number THEN coalesce(epoch_invalid(epoch), false) ELSE false END,
               CASE WHEN NOT (blank OR iso OR number) THEN raw END
        FROM parsed"""


_NUMERIC = frozenset(
    {"TINYINT", "SMALLINT", "INTEGER", "BIGINT", "HUGEINT", "UTINYINT", "USMALLINT",
     "UINTEGER", "UBIGINT", "FLOAT", "DOUBLE"}
)  # fmt: skip


def load_links(db: duckdb.DuckDBPyConnection, path: Path, stats: ReadStats) -> None:
    """Append the normalised rows of the links file (or directory of files) ``path``.

    The repository URL follows :func:`normalize_repo_url` step by step for plain URLs (each
    step a column, so every regex runs once per row); the function itself takes the others.
    """
    stats.path = str(path)
    for file in archive_files(path):
        scan = _scan(db, file, LINK_SOURCE_COLUMNS)
        official, official_invalid = _official(scan.kinds["is_official"])
        text = {name: _text(name, scan.kinds[name]) for name in LINK_SOURCE_COLUMNS}
        with _reading(db, scan):
            offset = _rows_in(db, "links")
            db.execute(
                f"""INSERT INTO links
                WITH raw AS (
                    SELECT seq + {offset} AS seq, {text["paper_url"]} AS paper_url,
                           {text["paper_arxiv_id"]} AS paper_arxiv_id,
                           {text["repo_url"]} AS repo_text, py_strip({text["repo_url"]}) AS repo,
                           {official} AS is_official, {official_invalid} AS official_invalid,
                           {text["framework"]} AS framework
                    FROM {scan.sql}),
                split AS (
                    SELECT *, regexp_full_match(repo, '{_PLAIN_URL}') AS plain,
                           substr(lower(repo), strpos(repo, '://') + 3) AS rest
                    FROM raw),
                host AS (
                    SELECT *, regexp_extract(rest, '^[^/?#]*') AS authority FROM split),
                cut AS (
                    SELECT *,
                           CASE WHEN starts_with(authority, 'www.') THEN substr(authority, 5)
                                ELSE authority END AS host,
                           split_part(split_part(substr(rest, length(authority) + 1), '?', 1),
                                      '#', 1) AS path
                    FROM host),
                inside AS (
                    SELECT *, CASE WHEN contains(path, '/tree') OR contains(path, '/blob')
                                   THEN regexp_replace(path, '/(?:-/)?(?:tree|blob)(?:/.*)?$', '')
                                   ELSE path END AS repo_path
                    FROM cut),
                trimmed AS (
                    SELECT *, CASE WHEN suffix(repo_path, '/') OR suffix(repo_path, '.git')
                                   THEN regexp_replace(repo_path, '/*(?:\\.git)?/*$', '')
                                   ELSE repo_path END AS repo_dir
                    FROM inside),
                kept AS (
                    SELECT *, CASE WHEN host = 'github.com'
                                   THEN regexp_extract(repo_dir, '^((?:/[^/]*){{0,2}})', 1)
                                   ELSE repo_dir END AS repo_key
                    FROM trimmed)
                SELECT seq, nullif(py_strip(paper_url), ''), arxiv_id(paper_arxiv_id),
                       CASE WHEN plain AND host <> '' AND trim(repo_key, '/') <> ''
                            THEN 'https://' || host || repo_key END,
                       is_official,
                       blank_to_null(lower(py_strip(framework)), {_list(BLANKS - {"none"})}),
                       official_invalid, CASE WHEN NOT plain THEN repo_text END
                FROM kept"""
            )
    _normalise_the_rest(
        db, "links", "repo_raw", lambda url: (normalize_repo_url(url),), ["repo_url"]
    )
    _link_stats(db, stats)


def _link_stats(db: duckdb.DuckDBPyConnection, stats: ReadStats) -> None:
    counts = db.execute(
        "SELECT count(*), count(*) - count(paper_url), count(*) - count(repo_url), "
        "count(*) - count(framework), count(*) FILTER (official_invalid) FROM links"
    ).fetchone()
    (stats.rows, stats.missing_paper_urls, stats.missing_repo_urls, stats.missing_frameworks,
     stats.invalid_is_official) = counts  # fmt: skip
    unknown = db.execute(
        f"SELECT framework, count(*) FROM links WHERE framework NOT IN {_words(KNOWN_FRAMEWORKS)}"
        " GROUP BY framework ORDER BY count(*) DESC, framework"
    ).fetchall()
    stats.unknown_frameworks.update(dict(unknown))


def load_papers(db: duckdb.DuckDBPyConnection, paths: Sequence[Path], stats: ReadStats) -> None:
    """Append the paper URLs, arXiv ids and dates of the papers file(s) ``paths``."""
    stats.path = ", ".join(str(path) for path in paths)
    for file in (file for path in paths for file in archive_files(path)):
        scan = _scan(db, file, PAPER_SOURCE_COLUMNS, PAPER_OPTIONAL_COLUMNS)
        with _reading(db, scan):
            offset = _rows_in(db, "papers")
            db.execute(f"INSERT INTO papers {_papers_select(scan.sql, scan.kinds, offset)}")
    _normalise_the_rest(db, "papers", "date_raw", _parse_or_invalid, ["published", "date_invalid"])
    counts = db.execute(
        "SELECT count(*), count(*) - count(paper_url), count(*) FILTER (date_invalid), "
        "count(*) FILTER (published IS NULL AND NOT date_invalid) FROM papers"
    ).fetchone()
    stats.rows, stats.missing_paper_urls, stats.invalid_dates, stats.null_dates = counts


def _parse_or_invalid(value: str) -> tuple[dt.date | None, bool]:
    """(:func:`parse_date` of ``value``, whether it rejected it)."""
    try:
        return parse_date(value), False
    except (ValueError, OverflowError):
        return None, True


# --- conveniences (tests, inspection) ---------------------------------------------------------


def read_links(path: Path | str, stats: ReadStats | None = None) -> list[dict]:
    """The normalised link rows of a file in file order: paper_url, arxiv_id, repo_url,
    is_official, framework."""
    with contextlib.closing(connect()) as db:
        load_links(db, Path(path), stats if stats is not None else ReadStats())
        return _rows(db, "SELECT paper_url, arxiv_id, repo_url, is_official, framework FROM links")


def read_papers(path: Path | str, stats: ReadStats | None = None) -> list[dict]:
    """The papers of a file (or directory of shards) in file order: paper_url, arxiv_id, date
    (a ``datetime.date`` or None)."""
    with contextlib.closing(connect()) as db:
        load_papers(db, [Path(path)], stats if stats is not None else ReadStats())
        return _rows(db, "SELECT paper_url, arxiv_id, published AS date FROM papers")


def _rows(db: duckdb.DuckDBPyConnection, query: str) -> list[dict]:
    cursor = db.execute(query + " ORDER BY seq")
    names = [column[0] for column in cursor.description]
    return [dict(zip(names, row, strict=True)) for row in cursor.fetchall()]
