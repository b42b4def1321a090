"""``source_state``: small facts a source keeps between runs (the archive's fingerprint, when a
source last blocked us, notes about incomplete periods), one value per (source, key).

Notes are keys ``note:SHARE_SOURCE:GRANULARITY`` (``framework_share.source`` and granularity);
``trends shares`` prints them under the tables they are about."""

from __future__ import annotations

from sqlalchemy import Connection, Engine, delete, select

from pipeline.runlog import utc_now
from storage.models import SourceState
from storage.upsert import upsert


def read_state(connection: Connection, source: str, key: str) -> str | None:
    return connection.execute(
        select(SourceState.value).where(SourceState.source == source, SourceState.key == key)
    ).scalar()


def write_state(connection: Connection, source: str, values: dict[str, str]) -> None:
    """Set each key of ``values`` for ``source`` (inside the caller's transaction)."""
    rows = [
        {"source": source, "key": key, "value": value, "updated_at": utc_now()}
        for key, value in values.items()
    ]
    upsert(connection, SourceState, rows, ["source", "key"])


def replace_notes(
    connection: Connection, state_source: str, share_source: str, notes: dict[str, str]
) -> None:
    """Make ``state_source``'s notes about ``share_source``'s periods (by granularity, e.g. an
    incomplete last quarter; shown by ``trends shares``) exactly ``notes``. They are kept as
    ``source_state`` keys ``note:SHARE_SOURCE:GRANULARITY`` and rewritten only when they
    changed, so a rebuild with nothing new changes nothing."""
    prefix = f"note:{share_source}:"
    mine = (SourceState.source == state_source, SourceState.key.like(f"{prefix}%"))
    wanted = {f"{prefix}{granularity}": note for granularity, note in notes.items()}
    stored = dict(connection.execute(select(SourceState.key, SourceState.value).where(*mine)).all())
    if stored == wanted:
        return
    connection.execute(delete(SourceState).where(*mine))
    write_state(connection, state_source, wanted)


def period_notes(engine: Engine) -> dict[tuple[str, str], str]:
    """Notes sources leave about their data, e.g. an incomplete last quarter, by
    (framework_share.source, granularity). Stored as ``source_state`` keys ``note:SOURCE:GRAN``."""
    with engine.connect() as connection:
        rows = connection.execute(
            select(SourceState.key, SourceState.value).where(SourceState.key.like("note:%"))
        ).all()
    notes = {}
    for key, value in rows:
        _, source, granularity = key.split(":", 2)
        notes[source, granularity] = value
    return notes
