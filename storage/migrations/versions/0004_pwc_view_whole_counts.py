"""quarterly_pwc_shares: implementation counts as whole numbers

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-27 23:00:00

``framework_share.value`` is a float (Google Trends interest needs one), so on SQLite the view's
counts read 167.0. They are implementation counts: the view now casts them to integers, on
both backends. Same columns, same rows.
"""

from __future__ import annotations

import importlib

from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None

VIEW = "quarterly_pwc_shares"
WHOLE_COUNTS = """
    SELECT period_start AS quarter_start, framework,
           CAST(MAX(CASE WHEN variant = 'all' THEN value END) AS INTEGER) AS implementations,
           MAX(CASE WHEN variant = 'all' THEN share END) AS share,
           CAST(MAX(CASE WHEN variant = 'official' THEN value END) AS INTEGER)
               AS official_implementations,
           MAX(CASE WHEN variant = 'official' THEN share END) AS official_share
    FROM framework_share
    WHERE source = 'pwc' AND granularity = 'quarter'
    GROUP BY period_start, framework
"""


def upgrade() -> None:
    op.execute(f"DROP VIEW IF EXISTS {VIEW}")
    op.execute(f"CREATE VIEW {VIEW} AS {WHOLE_COUNTS.strip()}")


def downgrade() -> None:
    # Module names start with a digit: import 0002's definition by name.
    previous = importlib.import_module("storage.migrations.versions.0002_views").VIEWS[VIEW]
    op.execute(f"DROP VIEW IF EXISTS {VIEW}")
    op.execute(f"CREATE VIEW {VIEW} AS {previous.strip()}")
