"""The source registry: every collector the pipeline knows, by name.

A source is one folder under ``pipeline/sources/`` exposing two functions:

- ``collect(app, run)`` — incremental collection; commits its own short transactions (raw
  response, parsed rows and cursor together) and adds to ``run.requests`` / ``run.rows``;
  raises :class:`pipeline.http.SourceError` subclasses when the source cannot deliver;
- ``aggregate(app)`` — rebuilds the source's derived rows (``framework_share`` …) from what is
  stored, without network; returns the number of rows written.

Modules are imported only when a source runs, so ``trends --help`` stays fast.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from importlib import import_module
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from pipeline.app import App
    from pipeline.config import Settings
    from pipeline.runlog import RunRecord


@dataclass(frozen=True)
class Source:
    name: str
    module: str  # the module holding collect() and aggregate()
    share_source: str  # the framework_share.source it feeds
    enabled: Callable[[Settings], bool]
    schedule: Callable[[Settings], str]

    def _function(self, name: str) -> Callable[..., Any]:
        return getattr(import_module(self.module), name)

    def collect(self, app: App, run: RunRecord) -> None:
        self._function("collect")(app, run)

    def aggregate(self, app: App) -> int:
        return self._function("aggregate")(app)


SOURCES: dict[str, Source] = {}


def register(source: Source) -> None:
    SOURCES[source.name] = source


def enabled_sources(settings: Settings) -> list[Source]:
    return [source for source in SOURCES.values() if source.enabled(settings)]


register(
    Source(
        name="gtrends",
        module="pipeline.sources.gtrends.collector",
        share_source="gtrends",
        enabled=lambda settings: settings.gtrends.enabled,
        schedule=lambda settings: settings.gtrends.schedule,
    )
)

register(
    Source(
        name="pwc-archive",
        module="pipeline.sources.pwc.archive_source",
        share_source="pwc",
        enabled=lambda settings: settings.pwc.archive_enabled,
        schedule=lambda settings: settings.pwc.archive_schedule,
    )
)
register(
    Source(
        name="pwc-api",
        module="pipeline.sources.pwc.api_source",
        share_source="pwc-api",
        enabled=lambda settings: settings.pwc.api_enabled,
        schedule=lambda settings: settings.pwc.api_schedule,
    )
)
