"""friendly views over framework_share

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-27 18:00:00

Views are part of the public schema (docs/QUERYING.md lists their columns, and a test checks
the two agree). They are plain SQL that SQLite and PostgreSQL both accept; they are not in the
SQLAlchemy metadata, so autogenerate never sees them.

A later migration that batch-alters framework_share must drop these views first and create
them again afterwards: batch mode renames a copy of the table, and SQLite's RENAME re-checks
every view ("error in view latest_shares: no such table: main.framework_share").
"""

from __future__ import annotations

from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

VIEWS = {
    # Each series' most recent period (source, variant and granularity).
    "latest_shares": """
        SELECT s.source, s.variant, s.granularity, s.period_start, s.framework, s.value, s.share
        FROM framework_share AS s
        JOIN (
            SELECT source, variant, granularity, MAX(period_start) AS period_start
            FROM framework_share
            GROUP BY source, variant, granularity
        ) AS latest
          ON latest.source = s.source
         AND latest.variant = s.variant
         AND latest.granularity = s.granularity
         AND latest.period_start = s.period_start
    """,
    # The article's question, one row per period.
    "pytorch_vs_tensorflow": """
        SELECT source, variant, granularity, period_start,
               MAX(CASE WHEN framework = 'pytorch' THEN share END) AS pytorch_share,
               MAX(CASE WHEN framework = 'tensorflow' THEN share END) AS tensorflow_share,
               MAX(CASE WHEN framework = 'pytorch' THEN value END) AS pytorch_value,
               MAX(CASE WHEN framework = 'tensorflow' THEN value END) AS tensorflow_value
        FROM framework_share
        WHERE framework IN ('pytorch', 'tensorflow')
        GROUP BY source, variant, granularity, period_start
    """,
    # Papers with Code archive, per quarter: every implementation and official ones only.
    "quarterly_pwc_shares": """
        SELECT period_start AS quarter_start, framework,
               MAX(CASE WHEN variant = 'all' THEN value END) AS implementations,
               MAX(CASE WHEN variant = 'all' THEN share END) AS share,
               MAX(CASE WHEN variant = 'official' THEN value END) AS official_implementations,
               MAX(CASE WHEN variant = 'official' THEN share END) AS official_share
        FROM framework_share
        WHERE source = 'pwc' AND granularity = 'quarter'
        GROUP BY period_start, framework
    """,
    # Google Trends per week and geo (variant `world` is worldwide).
    "weekly_gtrends_shares": """
        SELECT period_start AS week_start, variant AS geo, framework,
               value AS interest, share
        FROM framework_share
        WHERE source = 'gtrends' AND granularity = 'week'
    """,
}


def upgrade() -> None:
    for name, query in VIEWS.items():
        op.execute(f"CREATE VIEW {name} AS {query.strip()}")


def downgrade() -> None:
    for name in reversed(list(VIEWS)):
        op.execute(f"DROP VIEW IF EXISTS {name}")
