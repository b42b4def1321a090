"""pwc_links keyed by (paper_url, repo_url), WITHOUT ROWID on SQLite

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-27 19:15:00

The surrogate ``id`` and the unique index on (paper_url, repo_url) become one primary key; on
SQLite the table is stored WITHOUT ROWID, so each link is written once instead of twice (table
row plus index entry). ``pwc_links`` is internal; its rows are copied over unchanged.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

COLUMNS = "paper_url, repo_url, arxiv_id, is_official, framework, published"


def _data_columns() -> list[sa.Column]:
    return [
        sa.Column("arxiv_id", sa.String(length=40), nullable=True),
        sa.Column("is_official", sa.Boolean(), nullable=False),
        sa.Column("framework", sa.String(length=20), nullable=False),
        sa.Column("published", sa.String(length=10), nullable=True),
    ]


def _set_aside_old_table(constraints: list[str]) -> None:
    """Rename pwc_links to pwc_links_old. PostgreSQL constraint (index) names are unique per
    schema, so the old table's constraints are renamed too before the new table takes them."""
    op.rename_table("pwc_links", "pwc_links_old")
    if op.get_bind().dialect.name == "postgresql":
        for name in constraints:
            op.execute(f"ALTER TABLE pwc_links_old RENAME CONSTRAINT {name} TO {name}_old")


def upgrade() -> None:
    _set_aside_old_table(["pk_pwc_links", "uq_pwc_links_key"])
    op.create_table(
        "pwc_links",
        sa.Column("paper_url", sa.Text(), nullable=False),
        sa.Column("repo_url", sa.Text(), nullable=False),
        *_data_columns(),
        sa.PrimaryKeyConstraint("paper_url", "repo_url", name=op.f("pk_pwc_links")),
        sqlite_with_rowid=False,
    )
    op.execute(f"INSERT INTO pwc_links ({COLUMNS}) SELECT {COLUMNS} FROM pwc_links_old")
    op.drop_table("pwc_links_old")


def downgrade() -> None:
    _set_aside_old_table(["pk_pwc_links"])
    op.create_table(
        "pwc_links",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("paper_url", sa.Text(), nullable=False),
        sa.Column("repo_url", sa.Text(), nullable=False),
        *_data_columns(),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_pwc_links")),
        sa.UniqueConstraint("paper_url", "repo_url", name="uq_pwc_links_key"),
    )
    op.execute(f"INSERT INTO pwc_links ({COLUMNS}) SELECT {COLUMNS} FROM pwc_links_old")
    op.drop_table("pwc_links_old")
