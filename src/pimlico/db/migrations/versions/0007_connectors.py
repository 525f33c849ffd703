"""Connectors, their mappings, and the provisioning state of each (mapping, principal).

Revision ID: 0007
Revises: 0006
Create Date: 2026-11-22 12:00:00

Three new tables; the built-in roles gain ``pim.connectors.*`` (Privileged Role
Administrator) and ``pim.connectors.read`` (every role that reads everything).
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0007"
down_revision: str | Sequence[str] | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

OLD_READS = [
    "pim.users.read",
    "pim.groups.read",
    "pim.roles.read",
    "pim.policies.read",
    "pim.assignments.read",
    "pim.requests.read",
    "pim.decisions.read",
    "pim.audit.read",
]
NEW_READS = [*OLD_READS, "pim.connectors.read"]
PRA_HEAD = ["pim.roles.*"]
PRA_TAIL = [
    "pim.policies.*",
    "pim.assignments.*",
    "pim.requests.*",
    "pim.role_assignable_groups.write",
]
PERMISSIONS = {
    # role id: (before, after)
    "00000000-0000-4000-8000-000000000002": (
        [*PRA_HEAD, *PRA_TAIL, *OLD_READS],
        [*PRA_HEAD, "pim.connectors.*", *PRA_TAIL, *NEW_READS],
    ),
    "00000000-0000-4000-8000-000000000004": (
        [*OLD_READS, "security.read"],
        [*NEW_READS, "security.read"],
    ),
    "00000000-0000-4000-8000-000000000005": (OLD_READS, NEW_READS),
}

_roles = sa.table("roles", sa.column("id", sa.String()), sa.column("permissions", sa.JSON()))


def upgrade() -> None:
    op.create_table(
        "connectors",
        sa.Column("id", sa.String(length=36), nullable=False),
        sa.Column("name", sa.String(length=128), nullable=False),
        sa.Column("kind", sa.String(length=32), nullable=False),
        sa.Column("config", sa.JSON(), nullable=False),
        sa.Column("secret", sa.Text(), nullable=True),
        sa.Column("mode", sa.String(length=16), nullable=False),
        sa.Column("enabled", sa.Boolean(), nullable=False),
        sa.Column("config_version", sa.Integer(), nullable=False),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.Column("created_by", sa.String(length=256), nullable=False),
        sa.Column("updated_at", sa.DateTime(), nullable=False),
        sa.Column("updated_by", sa.String(length=256), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_connectors"),
        sa.UniqueConstraint("name", name="uq_connectors_name"),
    )
    op.create_table(
        "connector_mappings",
        sa.Column("id", sa.String(length=36), nullable=False),
        sa.Column("connector_id", sa.String(length=36), nullable=False),
        sa.Column("target_type", sa.String(length=32), nullable=False),
        sa.Column("object_id", sa.String(length=36), nullable=False),
        sa.Column("scope", sa.String(length=1024), nullable=False),
        sa.Column("downstream_object", sa.String(length=1024), nullable=False),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.Column("created_by", sa.String(length=256), nullable=False),
        sa.Column("ended_at", sa.DateTime(), nullable=True),
        sa.Column("ended_by", sa.String(length=256), nullable=True),
        sa.Column("end_reason", sa.Text(), nullable=True),
        sa.ForeignKeyConstraint(
            ["connector_id"],
            ["connectors.id"],
            name="fk_connector_mappings_connector_id_connectors",
        ),
        sa.PrimaryKeyConstraint("id", name="pk_connector_mappings"),
    )
    op.create_index(
        "ix_connector_mappings_connector", "connector_mappings", ["connector_id", "ended_at"]
    )
    op.create_table(
        "provisioning",
        sa.Column("id", sa.String(length=36), nullable=False),
        sa.Column("mapping_id", sa.String(length=36), nullable=False),
        sa.Column("principal_id", sa.String(length=36), nullable=False),
        sa.Column("present", sa.Boolean(), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("generation", sa.Integer(), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("due_at", sa.DateTime(), nullable=False),
        sa.Column("claimed_by", sa.String(length=128), nullable=True),
        sa.Column("claimed_until", sa.DateTime(), nullable=True),
        sa.Column("identity", sa.String(length=1024), nullable=True),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.Column("recheck_at", sa.DateTime(), nullable=True),
        sa.Column("updated_at", sa.DateTime(), nullable=False),
        sa.ForeignKeyConstraint(
            ["mapping_id"],
            ["connector_mappings.id"],
            name="fk_provisioning_mapping_id_connector_mappings",
        ),
        sa.PrimaryKeyConstraint("id", name="pk_provisioning"),
        sa.UniqueConstraint("mapping_id", "principal_id", name="uq_provisioning_mapping_id"),
    )
    op.create_index("ix_provisioning_status", "provisioning", ["status", "due_at"])
    op.create_index("ix_provisioning_principal", "provisioning", ["principal_id"])
    op.create_index("ix_provisioning_recheck_at", "provisioning", ["recheck_at"])
    _set_permissions(after=True)


def downgrade() -> None:
    _set_permissions(after=False)
    op.drop_index("ix_provisioning_recheck_at", table_name="provisioning")
    op.drop_index("ix_provisioning_principal", table_name="provisioning")
    op.drop_index("ix_provisioning_status", table_name="provisioning")
    op.drop_table("provisioning")
    op.drop_index("ix_connector_mappings_connector", table_name="connector_mappings")
    op.drop_table("connector_mappings")
    op.drop_table("connectors")


def _set_permissions(*, after: bool) -> None:
    for role_id, (before, later) in PERMISSIONS.items():
        op.execute(
            _roles.update()
            .where(_roles.c.id == role_id)
            .values(permissions=later if after else before)
        )
