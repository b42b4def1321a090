"""SQLAlchemy models.

Public (documented in the README, stable): ``framework_share``, ``gtrends_series``, ``runs``,
``raw_responses``. Everything else is internal to the collectors and may change.

Dates and timestamps are ISO-8601 text (``YYYY-MM-DD``, ``YYYY-MM-DDTHH:MM:SSZ``) so that people
querying the SQLite file see readable values and comparisons sort correctly on every backend.
"""

from __future__ import annotations

from sqlalchemy import (
    Boolean,
    Float,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

# Named constraints let Alembic's batch mode drop and recreate them on SQLite.
NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)


# --- public tables ------------------------------------------------------------------------


class Run(Base):
    """One row per command run: what ran, how it ended, how much it did."""

    __tablename__ = "runs"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    command: Mapped[str] = mapped_column(String(40))
    source: Mapped[str | None] = mapped_column(String(40))
    status: Mapped[str] = mapped_column(String(10))  # running | ok | partial | failed
    started_at: Mapped[str] = mapped_column(String(20))
    finished_at: Mapped[str | None] = mapped_column(String(20))
    requests: Mapped[int] = mapped_column(Integer, default=0)
    rows: Mapped[int] = mapped_column(Integer, default=0)
    error: Mapped[str | None] = mapped_column(Text)

    __table_args__ = (Index("ix_runs_source_status", "source", "status"),)


class RawResponse(Base):
    """Every HTTP response a collector received, before it was parsed."""

    __tablename__ = "raw_responses"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    run_id: Mapped[int | None] = mapped_column(ForeignKey("runs.id"), index=True)
    source: Mapped[str] = mapped_column(String(40))
    method: Mapped[str] = mapped_column(String(10))
    url: Mapped[str] = mapped_column(Text)  # without query string
    params: Mapped[str] = mapped_column(Text)  # JSON object of query parameters, secrets removed
    status: Mapped[int] = mapped_column(Integer)
    content_type: Mapped[str | None] = mapped_column(String(200))
    fetched_at: Mapped[str] = mapped_column(String(20))
    body: Mapped[str | None] = mapped_column(Text)  # NULL for archive files kept on disk
    body_sha256: Mapped[str | None] = mapped_column(String(64))
    body_bytes: Mapped[int] = mapped_column(Integer, default=0)


class FrameworkShare(Base):
    """The product's main output: each framework's share per source, variant and period."""

    __tablename__ = "framework_share"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    source: Mapped[str] = mapped_column(String(40))
    variant: Mapped[str] = mapped_column(String(40))
    granularity: Mapped[str] = mapped_column(String(10))
    period_start: Mapped[str] = mapped_column(String(10))
    framework: Mapped[str] = mapped_column(String(40))
    value: Mapped[float] = mapped_column(Float)
    share: Mapped[float] = mapped_column(Float)

    __table_args__ = (
        UniqueConstraint(
            "source",
            "variant",
            "granularity",
            "period_start",
            "framework",
            name="uq_framework_share_key",
        ),
    )


class GtrendsSeries(Base):
    """Google Trends interest on one consistent scale (the series' largest value is 100)."""

    __tablename__ = "gtrends_series"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    framework: Mapped[str] = mapped_column(String(40))
    geo: Mapped[str] = mapped_column(String(20))
    category: Mapped[int] = mapped_column(Integer)
    property: Mapped[str] = mapped_column(String(20))
    resolution: Mapped[str] = mapped_column(String(10))
    period_start: Mapped[str] = mapped_column(String(10))
    value: Mapped[float] = mapped_column(Float)
    observations: Mapped[int] = mapped_column(Integer)

    __table_args__ = (
        UniqueConstraint(
            "framework",
            "geo",
            "category",
            "property",
            "resolution",
            "period_start",
            name="uq_gtrends_series_key",
        ),
    )


# --- internal tables ----------------------------------------------------------------------


class GtrendsFetch(Base):
    """One completed Google Trends data request (a planned window of up to 5 keywords)."""

    __tablename__ = "gtrends_fetches"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    plan_key: Mapped[str] = mapped_column(String(300), index=True)
    keywords: Mapped[str] = mapped_column(Text)  # JSON list of framework keys, request order
    geo: Mapped[str] = mapped_column(String(20))
    category: Mapped[int] = mapped_column(Integer)
    property: Mapped[str] = mapped_column(String(20))
    resolution: Mapped[str] = mapped_column(String(10))
    window_start: Mapped[str] = mapped_column(String(10))
    window_end: Mapped[str] = mapped_column(String(10))
    has_partial: Mapped[bool] = mapped_column(Boolean, default=False)
    raw_response_id: Mapped[int] = mapped_column(ForeignKey("raw_responses.id"))
    run_id: Mapped[int | None] = mapped_column(ForeignKey("runs.id"))
    fetched_at: Mapped[str] = mapped_column(String(20))


class GtrendsCell(Base):
    """One value of one fetched window, as Google returned it (0-100, per-request scale)."""

    __tablename__ = "gtrends_cells"

    fetch_id: Mapped[int] = mapped_column(
        ForeignKey("gtrends_fetches.id", ondelete="CASCADE"), primary_key=True
    )
    framework: Mapped[str] = mapped_column(String(40), primary_key=True)
    period_start: Mapped[str] = mapped_column(String(10), primary_key=True)
    value: Mapped[int] = mapped_column(Integer)
    has_data: Mapped[bool] = mapped_column(Boolean)
    below_one: Mapped[bool] = mapped_column(Boolean)
    is_partial: Mapped[bool] = mapped_column(Boolean)


class PwcLinkCount(Base):
    """How many Papers-with-Code archive links (paper implementations, one per paper and
    normalised repository) have a given paper publication date, framework code and official
    flag. ``published`` is NULL for links whose paper is missing from the papers file or
    undated: they are counted here but in no period."""

    __tablename__ = "pwc_link_counts"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    published: Mapped[str | None] = mapped_column(String(10))
    framework: Mapped[str] = mapped_column(String(20))  # PwC code: pytorch, tf, …, none
    is_official: Mapped[bool] = mapped_column(Boolean)
    links: Mapped[int] = mapped_column(Integer)


class PwcApiCount(Base):
    """A count snapshot from a v1-compatible Papers-with-Code API."""

    __tablename__ = "pwc_api_counts"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    snapshot_date: Mapped[str] = mapped_column(String(10))
    endpoint: Mapped[str] = mapped_column(String(20))  # repositories | papers
    framework: Mapped[str] = mapped_column(String(40))
    period_start: Mapped[str] = mapped_column(String(10))  # "" for all-time repository counts
    period_end: Mapped[str] = mapped_column(String(10))
    count: Mapped[int] = mapped_column(Integer)
    raw_response_id: Mapped[int | None] = mapped_column(ForeignKey("raw_responses.id"))
    run_id: Mapped[int | None] = mapped_column(ForeignKey("runs.id"))

    __table_args__ = (
        UniqueConstraint(
            "snapshot_date", "endpoint", "framework", "period_start", name="uq_pwc_api_counts_key"
        ),
    )


class SourceState(Base):
    """Small per-source facts that must survive runs (archive file fingerprints, …)."""

    __tablename__ = "source_state"

    source: Mapped[str] = mapped_column(String(40), primary_key=True)
    key: Mapped[str] = mapped_column(String(100), primary_key=True)
    value: Mapped[str] = mapped_column(Text)
    updated_at: Mapped[str] = mapped_column(String(20))
