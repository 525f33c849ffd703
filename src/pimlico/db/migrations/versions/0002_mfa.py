"""Multi-factor authentication: TOTP factors, recovery codes, verifications.

Revision ID: 0002
Revises: 0001
Create Date: 2026-01-02 00:00:00

Three new tables; nothing existing changes. Secrets are stored encrypted (a Fernet token in
``mfa_factors.secret``) and recovery codes hashed (argon2): this revision holds no data.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0002"
down_revision: str | Sequence[str] | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "mfa_factors",
        sa.Column("id", sa.String(length=36), nullable=False),
        sa.Column("user_id", sa.String(length=36), nullable=False),
        sa.Column("method", sa.String(length=16), nullable=False),
        sa.Column("secret", sa.Text(), nullable=False),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.Column("created_by", sa.String(length=256), nullable=True),
        sa.Column("confirmed_at", sa.DateTime(), nullable=True),
        sa.Column("last_used_step", sa.BigInteger(), nullable=True),
        sa.Column("failed_attempts", sa.Integer(), nullable=False),
        sa.Column("failures_since", sa.DateTime(), nullable=True),
        sa.Column("removed_at", sa.DateTime(), nullable=True),
        sa.Column("removed_by", sa.String(length=256), nullable=True),
        sa.Column("remove_reason", sa.Text(), nullable=True),
        sa.ForeignKeyConstraint(["user_id"], ["users.id"], name="fk_mfa_factors_user_id_users"),
        sa.PrimaryKeyConstraint("id", name="pk_mfa_factors"),
    )
    op.create_index("ix_mfa_factors_user_live", "mfa_factors", ["user_id", "removed_at"])

    op.create_table(
        "mfa_recovery_codes",
        sa.Column("id", sa.String(length=36), nullable=False),
        sa.Column("user_id", sa.String(length=36), nullable=False),
        sa.Column("factor_id", sa.String(length=36), nullable=False),
        sa.Column("code_hash", sa.String(length=256), nullable=False),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.Column("used_at", sa.DateTime(), nullable=True),
        sa.ForeignKeyConstraint(
            ["factor_id"], ["mfa_factors.id"], name="fk_mfa_recovery_codes_factor_id_mfa_factors"
        ),
        sa.ForeignKeyConstraint(
            ["user_id"], ["users.id"], name="fk_mfa_recovery_codes_user_id_users"
        ),
        sa.PrimaryKeyConstraint("id", name="pk_mfa_recovery_codes"),
    )
    op.create_index("ix_mfa_recovery_codes_factor", "mfa_recovery_codes", ["factor_id", "used_at"])

    op.create_table(
        "mfa_verifications",
        sa.Column("id", sa.String(length=36), nullable=False),
        sa.Column("user_id", sa.String(length=36), nullable=False),
        sa.Column("factor_id", sa.String(length=36), nullable=False),
        sa.Column("method", sa.String(length=16), nullable=False),
        sa.Column("verified_at", sa.DateTime(), nullable=False),
        sa.ForeignKeyConstraint(
            ["factor_id"], ["mfa_factors.id"], name="fk_mfa_verifications_factor_id_mfa_factors"
        ),
        sa.ForeignKeyConstraint(
            ["user_id"], ["users.id"], name="fk_mfa_verifications_user_id_users"
        ),
        sa.PrimaryKeyConstraint("id", name="pk_mfa_verifications"),
    )
    op.create_index("ix_mfa_verifications_user", "mfa_verifications", ["user_id", "verified_at"])


def downgrade() -> None:
    op.drop_table("mfa_verifications")
    op.drop_table("mfa_recovery_codes")
    op.drop_table("mfa_factors")
