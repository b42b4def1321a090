"""Configuration: the packaged ``config/trends.toml``, a user file on top, then the environment.

Precedence (highest first): ``TRENDS_<SECTION>_<KEY>`` environment variables, the file given by
``--config`` / ``TRENDS_CONFIG``, the defaults shipped in the package. A user file only needs the
keys it changes; a ``[frameworks]`` table in it replaces the default framework list as a whole.
"""

from __future__ import annotations

import builtins
import dataclasses
import os
import re
import tomllib
from dataclasses import dataclass, field
from datetime import date
from importlib import resources
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pipeline.errors import ConfigError
from pipeline.http import HttpSettings

PACKAGED_CONFIG = "trends.toml"
ENV_CONFIG = "TRENDS_CONFIG"
PWC_CODES = ("pytorch", "tf", "jax", "mxnet", "paddle", "mindspore", "caffe2", "torch", "none")
FRAMEWORK_KEY = re.compile(r"^[a-z][a-z0-9_]*$")


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
        """The ``framework_share.variant`` of this geo: ``world`` when worldwide."""
        return self.geo or "world"


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
    return _read_toml(text, "packaged config/trends.toml")


def _type_name(kind: type) -> str:
    return {str: "a string", int: "an integer", float: "a number", bool: "true or false"}[kind]


def _check_type(value: Any, kind: type, origin: str, key: str) -> Any:
    if kind is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if kind is int and isinstance(value, bool) or not isinstance(value, kind):
        raise ConfigError(origin, key, f"expected {_type_name(kind)}, got {value!r}")
    return value


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
    name: str, schema: type, base: dict[str, Any], user: dict[str, Any], origin: str
) -> dict[str, Any]:
    kinds = {f.name: f.type for f in dataclasses.fields(schema)}
    kinds = {k: {"str": str, "int": int, "float": float, "bool": bool}[v] for k, v in kinds.items()}
    values: dict[str, Any] = {}
    for source, origin_name in ((base, "packaged config/trends.toml"), (user, origin)):
        for key, value in source.items():
            if key not in kinds:
                raise ConfigError(origin_name, f"[{name}] {key}", "unknown key")
            values[key] = _check_type(value, kinds[key], origin_name, f"[{name}] {key}")
    for key, kind in kinds.items():
        env_name = f"TRENDS_{name}_{key}".upper()
        if env_name in os.environ:
            values[key] = _from_env(os.environ[env_name], kind, env_name, f"[{name}] {key}")
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


def _check_semantics(settings: Settings) -> None:
    from pipeline.schedule import trigger  # local import: schedule imports config types

    checks = [
        ("[gtrends] schedule", settings.gtrends.schedule),
        ("[pwc] archive_schedule", settings.pwc.archive_schedule),
        ("[pwc] api_schedule", settings.pwc.api_schedule),
    ]
    try:
        ZoneInfo(settings.scheduler.timezone)
    except (ZoneInfoNotFoundError, ValueError):
        raise ConfigError(
            settings.origin,
            "[scheduler] timezone",
            f"unknown time zone {settings.scheduler.timezone!r}",
        ) from None
    for key, expression in checks:
        try:
            trigger(expression, settings.scheduler.timezone)
        except ValueError as error:
            raise ConfigError(settings.origin, key, f"not a cron expression ({error})") from None
    for key, text in (
        ("[gtrends] history_start", settings.gtrends.history_start),
        ("[pwc] api_start", settings.pwc.api_start),
    ):
        try:
            date.fromisoformat(text)
        except ValueError:
            raise ConfigError(
                settings.origin, key, f"expected a date YYYY-MM-DD, got {text!r}"
            ) from None
    for key, number in (
        ("[http] request_delay", settings.http.request_delay),
        ("[http] timeout", settings.http.timeout),
        ("[http] max_attempts", settings.http.max_attempts),
        ("[http] request_budget", settings.http.request_budget),
    ):
        if number < 0 or (key != "[http] request_delay" and number == 0):
            raise ConfigError(settings.origin, key, f"must be positive, got {number}")
    if "://" not in settings.database.url:
        raise ConfigError(
            settings.origin, "[database] url", f"not a database URL: {settings.database.url!r}"
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
    origin = "packaged config/trends.toml"
    if file is not None:
        origin = str(file)
        try:
            text = file.read_text(encoding="utf-8")
        except OSError as error:
            raise ConfigError(origin, "file", f"cannot be read ({error.strerror})") from None
        user = _read_toml(text, origin)
        for name in user:
            if name not in SECTIONS and name != "frameworks":
                raise ConfigError(origin, f"[{name}]", "unknown section")
            if not isinstance(user[name], dict):
                raise ConfigError(origin, f"[{name}]", "expected a table")
    sections = {
        name: schema(
            **_section_values(name, schema, base.get(name, {}), user.get(name, {}), origin)
        )
        for name, schema in SECTIONS.items()
    }
    frameworks_table = user["frameworks"] if "frameworks" in user else base["frameworks"]
    settings = Settings(origin=origin, frameworks=_frameworks(frameworks_table, origin), **sections)
    _check_semantics(settings)
    return settings
