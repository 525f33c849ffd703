"""Requests remember their escalated stages; the request history is indexed by target and time.

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-22 00:00:00

Adds ``requests.escalated`` (the approval stages whose escalation approvers were asked, so an
escalation is recorded once; existing rows get ``[]``) and two indexes for history queries.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0005"
down_revision: str | Sequence[str] | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("requests") as batch:
        batch.add_column(
            sa.Column("escalated", sa.JSON(), server_default=sa.text("'[]'"), nullable=False)
        )
        batch.create_index("ix_requests_target", ["target_type", "target_id"])
        batch.create_index("ix_requests_requested_at", ["requested_at"])


def downgrade() -> None:
    with op.batch_alter_table("requests") as batch:
        batch.drop_index("ix_requests_requested_at")
        batch.drop_index("ix_requests_target")
        batch.drop_column("escalated")
