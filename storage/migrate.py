"""Schema migrations (Alembic), applied by ``trends db upgrade`` and before every command."""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Connection, Engine

MIGRATIONS = Path(__file__).parent / "migrations"


def alembic_config(connection: Connection | None = None) -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    config.attributes["connection"] = connection
    return config


def _scripts() -> ScriptDirectory:
    return ScriptDirectory.from_config(alembic_config())


def head_revision() -> str:
    return _scripts().get_current_head() or ""


class UnknownRevision(RuntimeError):
    """The database is at a schema revision this version does not know (a newer version)."""


def current_revision(connection: Connection) -> str | None:
    """The database's revision (None before the first migration); UnknownRevision when it is
    not one of ours, which Alembic would only report as "Can't locate revision"."""
    revision = MigrationContext.configure(connection).get_current_revision()
    if revision is not None and revision not in _known_revisions():
        raise UnknownRevision(
            f"the database is at schema revision {revision!r}, which this version of "
            f"framework-trends does not know (its newest is {head_revision()!r}): it was "
            "written by a newer version; upgrade framework-trends to use it"
        )
    return revision


def _known_revisions() -> set[str]:
    return {script.revision for script in _scripts().walk_revisions()}


def pending(engine: Engine) -> bool:
    with engine.connect() as connection:
        return current_revision(connection) != head_revision()


def upgrade(engine: Engine) -> tuple[str | None, str]:
    """Apply pending migrations in one transaction; returns (revision before, revision after)."""
    with engine.begin() as connection:
        before = current_revision(connection)
        if before != head_revision():
            command.upgrade(alembic_config(connection), "head")
        return before, head_revision()
