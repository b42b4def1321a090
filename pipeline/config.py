"""Configuration: the packaged ``config/trends.toml``, a user file on top, then the environment.

Precedence (highest first): ``TRENDS_<SECTION>_<KEY>`` environment variables, the file given by
``--config`` / ``TRENDS_CONFIG``, the defaults shipped in the package. A user file only needs the
keys it changes; a ``[frameworks]`` table in it replaces the default framework list as a whole.
"""

from __future__ import annotations

import builtins
import dataclasses
import difflib
import logging
import math
import os
import re
import tomllib
import warnings
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from datetime import time as dt_time
from importlib import resources
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pipeline.errors import ConfigError
from pipeline.http import HttpSettings
from pipeline.redact import redact_url

log = logging.getLogger(__name__)

PACKAGED_CONFIG = "trends.toml"
PACKAGED_ORIGIN = "packaged config/trends.toml"
ENV_CONFIG = "TRENDS_CONFIG"
PWC_CODES = ("pytorch", "tf", "jax", "mxnet", "paddle", "mindspore", "caffe2", "torch", "none")
FRAMEWORK_KEY = re.compile(r"^[a-z][a-z0-9_]*$")
# Google search properties pytrends accepts (`gprop`); the same list as
# pipeline.sources.gtrends.client.PROPERTIES, kept here so loading does not import pytrends.
GTRENDS_PROPERTIES = ("", "images", "news", "youtube", "froogle")
GTRENDS_FIRST_DAY = date(2004, 1, 1)  # Google Trends data begins in 2004
DATABASE_BACKENDS = ("sqlite", "postgresql")  # the backends the storage layer is tested on
DAY_SECONDS = 86_400.0


@dataclass
class DatabaseSettings:
    url: str = "sqlite:///data/trends.db"
    lock_path: str = ""


@dataclass
class GtrendsSettings:
    enabled: bool = True
    base_url: str = "https://trends.google.com/trends"
    geo: str = ""
    category: int = 0
    property: str = ""
    history_start: str = "2016-01-01"
    threshold: int = 5
    data_lag_days: int = 3
    schedule: str = "0 6 * * *"

    @builtins.property  # the field "property" (Google's search property) shadows the builtin
    def variant(self) -> str:
        """The ``framework_share.variant`` of the configured geo, category and property.

        The geo (``world`` when worldwide), then ``/<property>`` unless web search and
        ``/cat<category>`` unless all categories: ``world``, ``US``, ``world/news``,
        ``US/cat5``. The default combination keeps its plain geo, so existing rows and queries
        stay valid, and every other combination gets a variant of its own, so rebuilding one
        never replaces another.
        """
        parts = [self.geo or "world"]
        if self.property:
            parts.append(self.property)
        if self.category:
            parts.append(f"cat{self.category}")
        return "/".join(parts)


@dataclass
class PwcSettings:
    archive_enabled: bool = True
    api_enabled: bool = True
    api_url: str = "https://paperswithcode.co/api/v1"
    links_url: str = ""
    papers_url: str = ""
    cache_dir: str = "data/cache"
    api_start: str = "2025-07-01"
    archive_schedule: str = "0 4 * * 1"
    api_schedule: str = "0 5 * * 1"

    @property
    def papers_locations(self) -> list[str]:
        return self.papers_url.split()


@dataclass
class SchedulerSettings:
    timezone: str = "UTC"  # the zone cron expressions are read in
    misfire_grace_hours: float = 6.0  # `trends schedule` still runs a job this late


@dataclass(frozen=True)
class Framework:
    key: str
    name: str
    gtrends: str | None = None
    pwc: str | None = None
    color: str | None = None


@dataclass
class Settings:
    """The whole configuration, validated. ``origin`` names the file it came from."""

    origin: str
    database: DatabaseSettings = field(default_factory=DatabaseSettings)
    http: HttpSettings = field(default_factory=HttpSettings)
    gtrends: GtrendsSettings = field(default_factory=GtrendsSettings)
    pwc: PwcSettings = field(default_factory=PwcSettings)
    scheduler: SchedulerSettings = field(default_factory=SchedulerSettings)
    frameworks: dict[str, Framework] = field(default_factory=dict)

    def gtrends_frameworks(self) -> list[Framework]:
        return [f for f in self.frameworks.values() if f.gtrends]

    def pwc_frameworks(self) -> list[Framework]:
        return [f for f in self.frameworks.values() if f.pwc]

    def framework_for_pwc_code(self) -> dict[str, str]:
        return {f.pwc: f.key for f in self.pwc_frameworks() if f.pwc}

    @property
    def lock_path(self) -> Path:
        if self.database.lock_path:
            return Path(self.database.lock_path)
        from storage.db import sqlite_file  # local import: storage imports config types

        db_file = sqlite_file(self.database.url)
        return Path(f"{db_file}.lock") if db_file else Path("data/trends.lock")


SECTIONS: dict[str, type] = {
    "database": DatabaseSettings,
    "http": HttpSettings,
    "gtrends": GtrendsSettings,
    "pwc": PwcSettings,
    "scheduler": SchedulerSettings,
}
FRAMEWORK_FIELDS = {"name": str, "gtrends": str, "pwc": str, "color": str}


def _read_toml(text: str, origin: str) -> dict[str, Any]:
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as error:
        raise ConfigError(origin, "file", f"not valid TOML ({error})") from None


def _packaged_defaults() -> dict[str, Any]:
    text = resources.files("config").joinpath(PACKAGED_CONFIG).read_text(encoding="utf-8")
    return _read_toml(text, PACKAGED_ORIGIN)


def _type_name(kind: type) -> str:
    return {str: "a string", int: "an integer", float: "a number", bool: "true or false"}[kind]


def _check_type(value: Any, kind: type, origin: str, key: str) -> Any:
    if kind is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if kind is int and isinstance(value, bool) or not isinstance(value, kind):
        raise ConfigError(origin, key, f"expected {_type_name(kind)}, got {_toml_shown(value)}")
    return value


def _toml_shown(value: Any) -> str:
    """A value as it was written in TOML (not as a Python repr)."""
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, date | dt_time):  # datetime is a date
        return f"the TOML date {value.isoformat()} (put it in quotes)"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, dict):
        return "a table"
    return repr(value)


def _from_env(raw: str, kind: type, origin: str, key: str) -> Any:
    try:
        if kind is bool:
            lowered = raw.strip().lower()
            if lowered in ("1", "true", "yes", "on"):
                return True
            if lowered in ("0", "false", "no", "off"):
                return False
            raise ValueError
        return kind(raw)
    except ValueError:
        raise ConfigError(origin, key, f"expected {_type_name(kind)}, got {raw!r}") from None


def _section_values(
    name: str,
    schema: type,
    base: dict[str, Any],
    user: dict[str, Any],
    origin: str,
    origins: dict[str, str],
) -> dict[str, Any]:
    """The section's values, later sources winning; ``origins`` learns where each key came
    from (file or environment variable), so a bad value is blamed on the right place."""
    kinds = {f.name: f.type for f in dataclasses.fields(schema)}
    kinds = {k: {"str": str, "int": int, "float": float, "bool": bool}[v] for k, v in kinds.items()}
    values: dict[str, Any] = {}
    for source, origin_name in ((base, PACKAGED_ORIGIN), (user, origin)):
        for key, value in source.items():
            if key not in kinds:
                raise ConfigError(origin_name, f"[{name}] {key}", "unknown key")
            values[key] = _check_type(value, kinds[key], origin_name, f"[{name}] {key}")
            origins[f"[{name}] {key}"] = origin_name
    for key, kind in kinds.items():
        env_name = f"TRENDS_{name}_{key}".upper()
        if env_name in os.environ:
            values[key] = _from_env(os.environ[env_name], kind, env_name, f"[{name}] {key}")
            origins[f"[{name}] {key}"] = env_name
    return values


def _frameworks(table: Any, origin: str) -> dict[str, Framework]:
    if not isinstance(table, dict) or not table:
        raise ConfigError(origin, "[frameworks]", "expected a table of frameworks")
    frameworks: dict[str, Framework] = {}
    seen_pwc: dict[str, str] = {}
    for key, entry in table.items():
        where = f"[frameworks.{key}]"
        if not FRAMEWORK_KEY.match(key):
            raise ConfigError(origin, where, "framework keys are lower-case identifiers")
        if not isinstance(entry, dict):
            raise ConfigError(origin, where, "expected a table")
        for item, value in entry.items():
            if item not in FRAMEWORK_FIELDS:
                raise ConfigError(origin, f"{where} {item}", "unknown key")
            _check_type(value, FRAMEWORK_FIELDS[item], origin, f"{where} {item}")
        pwc = entry.get("pwc")
        if pwc is not None:
            if pwc not in PWC_CODES:
                raise ConfigError(
                    origin, f"{where} pwc", f"unknown code {pwc!r} (one of {', '.join(PWC_CODES)})"
                )
            if pwc in seen_pwc:
                raise ConfigError(
                    origin, f"{where} pwc", f"{pwc!r} is already used by {seen_pwc[pwc]}"
                )
            seen_pwc[pwc] = key
        frameworks[key] = Framework(
            key=key,
            name=entry.get("name", key),
            gtrends=entry.get("gtrends") or None,
            pwc=pwc,
            color=entry.get("color"),
        )
    return frameworks


@dataclass(frozen=True)
class Bounds:
    """The values a numeric key may take; a float must also be finite."""

    least: float
    most: float = math.inf
    exclusive: bool = False  # ``least`` itself is not allowed (a timeout of 0 never waits)

    def problem(self, number: float) -> str | None:
        """What is wrong with ``number``, or None when it is in range."""
        if not math.isfinite(number):
            return f"must be a finite number, got {number}"
        if self.exclusive and number <= self.least:
            return f"must be more than {self.least:g}, got {number}"
        if number < self.least:
            return f"must be {self.least:g} or more, got {number}"
        if number > self.most:
            return f"must be at most {self.most:g}, got {number}"
        return None


# Every numeric key's range. Seconds stop at a day and hours at a year: more is a typo, and
# would overflow sleeps and timedeltas.
NUMBER_BOUNDS: dict[tuple[str, str], Bounds] = {
    ("http", "request_delay"): Bounds(0, DAY_SECONDS),
    ("http", "timeout"): Bounds(0, DAY_SECONDS, exclusive=True),
    ("http", "max_attempts"): Bounds(1, 100),
    ("http", "backoff_base"): Bounds(0, DAY_SECONDS),
    ("http", "backoff_max"): Bounds(0, DAY_SECONDS),
    ("http", "request_budget"): Bounds(1),
    ("gtrends", "category"): Bounds(0),  # Google's category ids; 0 is all categories
    ("gtrends", "threshold"): Bounds(0, 100),  # Google Trends values run from 0 to 100
    ("gtrends", "data_lag_days"): Bounds(0, 60),
    ("scheduler", "misfire_grace_hours"): Bounds(0, 366 * 24),
}


def _database_url_problem(url: str) -> str | None:
    """Why ``url`` cannot be opened by the storage layer (None when it can), checked now so a
    typo or a missing driver is a configuration error, not a failure half-way through a run.
    A password in the URL is never shown."""
    from sqlalchemy.engine import make_url  # local import: keep `trends --help` light
    from sqlalchemy.exc import ArgumentError, NoSuchModuleError

    try:
        parsed = make_url(url)
    except ArgumentError:
        shown = url if "@" not in url else "***@" + url.rsplit("@", 1)[1]
        return f"not a database URL: {shown!r}"
    shown = parsed.render_as_string(hide_password=True)
    backend = parsed.get_backend_name()
    if backend not in DATABASE_BACKENDS:
        return (
            f"unsupported database {backend!r} in {shown!r} "
            "(use sqlite:///PATH or postgresql+psycopg://…)"
        )
    try:
        dialect = parsed.get_dialect()
        dialect.import_dbapi()
        with warnings.catch_warnings():  # the engine warns about ignored arguments later
            warnings.simplefilter("ignore")
            dialect().create_connect_args(parsed)  # e.g. "sqlite://host/x.db" is refused
    except NoSuchModuleError:
        return f"unknown driver {parsed.drivername!r} in {shown!r}"
    except ArgumentError as error:
        return str(error).splitlines()[0].replace(url, shown)
    except ImportError as error:
        return f"driver of {parsed.drivername!r} is not installed ({error})"
    if backend == "sqlite" and parsed.database in (None, "", ":memory:"):
        return f"{shown!r} is an in-memory database, which keeps nothing: give a file path"
    if backend == "sqlite" and parsed.database and Path(parsed.database).is_dir():
        return f"{parsed.database} is a directory, not a database file"
    return None


def _check_semantics(settings: Settings, origins: dict[str, str]) -> None:
    """Values that have the right type but no meaning; ``origins`` maps each ``[section] key``
    to the file or environment variable it came from."""
    from pipeline.schedule import trigger  # local import: schedule imports config types

    def fail(key: str, problem: str) -> ConfigError:
        return ConfigError(origins.get(key, PACKAGED_ORIGIN), key, problem)

    for (section, name), bounds in NUMBER_BOUNDS.items():
        problem = bounds.problem(getattr(getattr(settings, section), name))
        if problem:
            raise fail(f"[{section}] {name}", problem)
    if settings.gtrends.property not in GTRENDS_PROPERTIES:
        choices = ", ".join(repr(p) for p in GTRENDS_PROPERTIES)
        raise fail(
            "[gtrends] property", f"unknown {settings.gtrends.property!r} (one of {choices})"
        )
    try:
        ZoneInfo(settings.scheduler.timezone)
    except (ZoneInfoNotFoundError, ValueError):
        raise fail(
            "[scheduler] timezone", f"unknown time zone {settings.scheduler.timezone!r}"
        ) from None
    for key, expression in (
        ("[gtrends] schedule", settings.gtrends.schedule),
        ("[pwc] archive_schedule", settings.pwc.archive_schedule),
        ("[pwc] api_schedule", settings.pwc.api_schedule),
    ):
        try:
            schedule = trigger(expression, settings.scheduler.timezone)
        except ValueError as error:
            raise fail(key, f"not a cron expression ({error})") from None
        # "0 0 30 2 *" parses but never fires: status and --due would have no next fire time.
        if schedule.get_next_fire_time(None, datetime.now(UTC)) is None:
            raise fail(key, f"{expression!r} never fires (no such date)")
    for key, text in (
        ("[gtrends] history_start", settings.gtrends.history_start),
        ("[pwc] api_start", settings.pwc.api_start),
    ):
        try:
            date.fromisoformat(text)
        except ValueError:
            raise fail(key, f"expected a date YYYY-MM-DD, got {text!r}") from None
    for key, url, used in (
        ("[gtrends] base_url", settings.gtrends.base_url, settings.gtrends.enabled),
        ("[pwc] api_url", settings.pwc.api_url, settings.pwc.api_enabled),
    ):
        parts = urlsplit(url)
        # Checked when set, or when the source is on (an empty URL of a source that is off is
        # fine: `backfill gtrends` still uses [gtrends] base_url when gtrends is off).
        if (used or url) and (parts.scheme not in ("http", "https") or not parts.netloc):
            raise fail(key, f"expected an http:// or https:// URL, got {redact_url(url)[0]!r}")
    problem = _database_url_problem(settings.database.url)
    if problem:
        raise fail("[database] url", problem)
    if settings.lock_path.is_dir():
        key = "[database] lock_path" if settings.database.lock_path else "[database] url"
        raise fail(key, f"the lock file {settings.lock_path} is a directory")
    cache = Path(settings.pwc.cache_dir)
    if cache.exists() and not cache.is_dir():
        raise fail("[pwc] cache_dir", f"{cache} is a file, not a directory")
    pretend = os.environ.get("TRENDS_TODAY")
    today = datetime.now(UTC).date()
    if pretend:
        try:
            today = date.fromisoformat(pretend)
        except ValueError:
            raise ConfigError(
                "TRENDS_TODAY", "the day to pretend", f"expected YYYY-MM-DD, got {pretend!r}"
            ) from None
    history_start = date.fromisoformat(settings.gtrends.history_start)
    if not GTRENDS_FIRST_DAY <= history_start <= today:
        raise fail(
            "[gtrends] history_start",
            f"{history_start} is outside Google Trends data ({GTRENDS_FIRST_DAY} to today)",
        )


def config_path(explicit: str | os.PathLike[str] | None = None) -> Path | None:
    """The user's configuration file: ``--config``, else ``TRENDS_CONFIG``, else none."""
    chosen = explicit or os.environ.get(ENV_CONFIG)
    return Path(chosen) if chosen else None


def load_settings(path: str | os.PathLike[str] | None = None) -> Settings:
    """Load and validate the configuration; raises :class:`ConfigError` with one clear line."""
    base = _packaged_defaults()
    user: dict[str, Any] = {}
    file = config_path(path)
    origin = PACKAGED_ORIGIN
    if file is not None:
        origin = str(file)
        try:
            text = file.read_text(encoding="utf-8")
        except OSError as error:
            raise ConfigError(origin, "file", f"cannot be read ({error.strerror})") from None
        except UnicodeDecodeError as error:
            raise ConfigError(
                origin,
                "file",
                f"not UTF-8 text (byte {error.object[error.start]:#04x} at offset {error.start})",
            ) from None
        user = _read_toml(text, origin)
        for name in user:
            if name not in SECTIONS and name != "frameworks":
                raise ConfigError(origin, f"[{name}]", "unknown section")
            if not isinstance(user[name], dict):
                raise ConfigError(origin, f"[{name}]", "expected a table")
    origins: dict[str, str] = {}
    sections = {
        name: schema(
            **_section_values(name, schema, base.get(name, {}), user.get(name, {}), origin, origins)
        )
        for name, schema in SECTIONS.items()
    }
    if "frameworks" in user:
        frameworks = _frameworks(user["frameworks"], origin)
    else:
        frameworks = _frameworks(base["frameworks"], PACKAGED_ORIGIN)
    settings = Settings(origin=origin, frameworks=frameworks, **sections)
    _check_semantics(settings, origins)
    _warn_unknown_environment()
    return settings


def environment_names() -> set[str]:
    """Every TRENDS_* variable the program reads."""
    settings = {
        f"TRENDS_{section}_{f.name}".upper()
        for section, schema in SECTIONS.items()
        for f in dataclasses.fields(schema)
    }
    return settings | {ENV_CONFIG, "TRENDS_TODAY"}


def _warn_unknown_environment() -> None:
    """A mistyped override (TRENDS_DATABSE_URL) would be ignored without a word; say so. Only a
    warning: other tools may use TRENDS_* names too. TRENDS_TEST_* belongs to the test suite."""
    known = environment_names()
    for name in sorted(os.environ):
        if name.startswith("TRENDS_") and name not in known and not name.startswith("TRENDS_TEST_"):
            close = difflib.get_close_matches(name, known, n=1)
            hint = f" (did you mean {close[0]}?)" if close else ""
            log.warning("%s is not a setting and is ignored%s", name, hint)
