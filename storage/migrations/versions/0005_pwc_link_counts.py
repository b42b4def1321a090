"""pwc_links replaced by daily counts, pwc_link_counts

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-28 02:00:00

The per-link table cost most of the archive import's time: 300k rows written, then read back
only to be aggregated, while the shares need nothing finer than how many links a paper
publication date, framework and official flag have. ``pwc_link_counts`` keeps just that, one
row per (published, framework, is_official); existing links are counted into it. The links
themselves stay in the cached archive files. The archive fingerprint in ``source_state``, by
which an import skips an unchanged archive, is forgotten, so the next import reads the
archive again and also dates the links whose paper only its arXiv id finds (new with this
revision). Both tables are internal.

Downgrade recreates ``pwc_links`` as 0003 left it, but empty: links cannot be rebuilt from
counts. It too forgets the archive fingerprint, so the next import refills ``pwc_links``.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None

COUNTED = "published, framework, is_official"
FORGET_FINGERPRINT = (
    "DELETE FROM source_state WHERE source = 'pwc-archive' AND key = 'archive_fingerprint'"
)


def upgrade() -> None:
    op.create_table(
        "pwc_link_counts",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("published", sa.String(length=10), nullable=True),
        sa.Column("framework", sa.String(length=20), nullable=False),
        sa.Column("is_official", sa.Boolean(), nullable=False),
        sa.Column("links", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_pwc_link_counts")),
    )
    op.execute(
        f"INSERT INTO pwc_link_counts ({COUNTED}, links) "
        f"SELECT {COUNTED}, count(*) FROM pwc_links GROUP BY {COUNTED}"
    )
    op.drop_table("pwc_links")
    op.execute(FORGET_FINGERPRINT)


def downgrade() -> None:
    op.create_table(
        "pwc_links",
        sa.Column("paper_url", sa.Text(), nullable=False),
        sa.Column("repo_url", sa.Text(), nullable=False),
        sa.Column("arxiv_id", sa.String(length=40), nullable=True),
        sa.Column("is_official", sa.Boolean(), nullable=False),
        sa.Column("framework", sa.String(length=20), nullable=False),
        sa.Column("published", sa.String(length=10), nullable=True),
        sa.PrimaryKeyConstraint("paper_url", "repo_url", name=op.f("pk_pwc_links")),
        sqlite_with_rowid=False,
    )
    op.drop_table("pwc_link_counts")
    op.execute(FORGET_FINGERPRINT)
