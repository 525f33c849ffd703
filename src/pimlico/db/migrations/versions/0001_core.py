"""The core schema: principals, groups, roles, role settings, assignments, audit, state.

Revision ID: 0001
Revises:
Create Date: 2026-01-01 00:00:00

Seeds the single ``pim_state`` row (revision 0, an empty audit chain whose head is the genesis
hash) and the built-in roles. The seed values are written out literally: a released migration
must not change when ``pimlico.domain.catalogue`` changes later; a later change to a built-in
role is a new revision.
"""

from collections.abc import Sequence
from datetime import datetime

import sqlalchemy as sa
from alembic import op

revision: str = "0001"
down_revision: str | Sequence[str] | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

SEEDED_AT = datetime(2026, 1, 1, 0, 0, 0)  # noqa: DTZ001 - stored naive, as UTC
GENESIS_HASH = "0000000000000000000000000000000000000000000000000000000000000000"

ALL_READS = [
    "pim.users.read",
    "pim.groups.read",
    "pim.roles.read",
    "pim.policies.read",
    "pim.assignments.read",
    "pim.requests.read",
    "pim.decisions.read",
    "pim.audit.read",
]

BUILT_IN_ROLES = [
    {
        "id": "00000000-0000-4000-8000-000000000001",
        "name": "Global Administrator",
        "description": "Every Pimlico administrative permission. Keep at least one break-glass holder.",
        "permissions": ["pim.*"],
    },
    {
        "id": "00000000-0000-4000-8000-000000000002",
        "name": "Privileged Role Administrator",
        "description": "Manage roles, role settings, assignments, requests and role-assignable groups.",
        "permissions": [
            "pim.roles.*",
            "pim.policies.*",
            "pim.assignments.*",
            "pim.requests.*",
            "pim.role_assignable_groups.write",
            *ALL_READS,
        ],
    },
    {
        "id": "00000000-0000-4000-8000-000000000003",
        "name": "Groups Administrator",
        "description": "Manage groups that are not role-assignable, their members and group PIM.",
        "permissions": [
            "pim.groups.write",
            "pim.assignments.groups.write",
            "pim.users.read",
            "pim.groups.read",
            "pim.assignments.read",
            "pim.policies.read",
            "pim.requests.read",
        ],
    },
    {
        "id": "00000000-0000-4000-8000-000000000004",
        "name": "Security Reader",
        "description": "Read everything in Pimlico, the audit log included; change nothing.",
        "permissions": [*ALL_READS, "security.read"],
    },
    {
        "id": "00000000-0000-4000-8000-000000000005",
        "name": "Global Reader",
        "description": "Read everything in Pimlico; change nothing.",
        "permissions": ALL_READS,
    },
    {
        "id": "00000000-0000-4000-8000-000000000006",
        "name": "User Administrator",
        "description": "Create, change and disable users and service accounts.",
        "permissions": ["pim.users.read", "pim.users.write", "pim.groups.read"],
    },
]


def upgrade() -> None:
    op.create_table(
        "users",
        sa.Column("id", sa.String(length=36), nullable=False),
        sa.Column("user_name", sa.String(length=256), nullable=False),
        sa.Column("user_name_key", sa.String(length=256), nullable=False),
        sa.Column("display_name", sa.String(length=256), nullable=False),
        sa.Column("email", sa.String(length=320), nullable=True),
        sa.Column("enabled", sa.Boolean(), nullable=False),
        sa.Column("manager_id", sa.String(length=36), nullable=True),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.Column("updated_at", sa.DateTime(), nullable=False),
        sa.ForeignKeyConstraint(["manager_id"], ["users.id"], name="fk_users_manager_id_users"),
        sa.PrimaryKeyConstraint("id", name="pk_users"),
        sa.UniqueConstraint("user_name_key", name="uq_users_user_name_key"),
    )
    op.create_table(
        "service_accounts",
        sa.Column("id", sa.String(length=36), nullable=False),
        sa.Column("name", sa.String(length=256), nullable=False),
        sa.Column("display_name", sa.String(length=256), nullable=False),
        sa.Column("description", sa.Text(), nullable=False),
        sa.Column("enabled", sa.Boolean(), nullable=False),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.Column("updated_at", sa.DateTime(), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_service_accounts"),
        sa.UniqueConstraint("name", name="uq_service_accounts_name"),
    )
    op.create_table(
        "groups",
        sa.Column("id", sa.String(length=36), nullable=False),
        sa.Column("name", sa.String(length=256), nullable=False),
        sa.Column("display_name", sa.String(length=256), nullable=False),
        sa.Column("description", sa.Text(), nullable=False),
        sa.Column("role_assignable", sa.Boolean(), nullable=False),
        sa.Column("pim_enabled", sa.Boolean(), nullable=False),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.Column("updated_at", sa.DateTime(), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_groups"),
        sa.UniqueConstraint("name", name="uq_groups_name"),
    )
    op.create_table(
        "memberships",
        sa.Column("id", sa.String(length=36), nullable=False),
        sa.Column("group_id", sa.String(length=36), nullable=False),
        sa.Column("member_type", sa.String(length=32), nullable=False),
        sa.Column("member_id", sa.String(length=36), nullable=False),
        sa.Column("relation", sa.String(length=16), nullable=False),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.Column("created_by", sa.String(length=36), nullable=True),
        sa.Column("ended_at", sa.DateTime(), nullable=True),
        sa.Column("ended_by", sa.String(length=36), nullable=True),
        sa.Column("end_reason", sa.Text(), nullable=True),
        sa.ForeignKeyConstraint(["group_id"], ["groups.id"], name="fk_memberships_group_id_groups"),
        sa.PrimaryKeyConstraint("id", name="pk_memberships"),
    )
    op.create_index("ix_memberships_group_open", "memberships", ["group_id", "ended_at"])
    op.create_index("ix_memberships_member", "memberships", ["member_type", "member_id"])

    roles = op.create_table(
        "roles",
        sa.Column("id", sa.String(length=36), nullable=False),
        sa.Column("name", sa.String(length=256), nullable=False),
        sa.Column("description", sa.Text(), nullable=False),
        sa.Column("permissions", sa.JSON(), nullable=False),
        sa.Column("built_in", sa.Boolean(), nullable=False),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.Column("updated_at", sa.DateTime(), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_roles"),
        sa.UniqueConstraint("name", name="uq_roles_name"),
    )
    op.create_table(
        "role_settings",
        sa.Column("id", sa.String(length=36), nullable=False),
        sa.Column("target_type", sa.String(length=32), nullable=False),
        sa.Column("object_id", sa.String(length=36), nullable=False),
        sa.Column("settings", sa.JSON(), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("updated_at", sa.DateTime(), nullable=False),
        sa.Column("updated_by", sa.String(length=36), nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_role_settings"),
        # Named after its first column by the naming convention; it covers both.
        sa.UniqueConstraint("target_type", "object_id", name="uq_role_settings_target_type"),
    )
    op.create_table(
        "assignments",
        sa.Column("id", sa.String(length=36), nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("principal_type", sa.String(length=32), nullable=False),
        sa.Column("principal_id", sa.String(length=36), nullable=False),
        sa.Column("target_type", sa.String(length=32), nullable=False),
        sa.Column("target_id", sa.String(length=36), nullable=False),
        sa.Column("scope", sa.String(length=1024), nullable=False),
        sa.Column("start_at", sa.DateTime(), nullable=False),
        sa.Column("end_at", sa.DateTime(), nullable=True),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.Column("created_by", sa.String(length=36), nullable=True),
        sa.Column("justification", sa.Text(), nullable=True),
        sa.Column("activated_from", sa.String(length=36), nullable=True),
        sa.Column("request_id", sa.String(length=36), nullable=True),
        sa.Column("ended_at", sa.DateTime(), nullable=True),
        sa.Column("ended_by", sa.String(length=36), nullable=True),
        sa.Column("end_reason", sa.Text(), nullable=True),
        sa.ForeignKeyConstraint(
            ["activated_from"],
            ["assignments.id"],
            name="fk_assignments_activated_from_assignments",
        ),
        sa.PrimaryKeyConstraint("id", name="pk_assignments"),
    )
    op.create_index("ix_assignments_principal", "assignments", ["principal_type", "principal_id"])
    op.create_index("ix_assignments_target", "assignments", ["target_type", "target_id", "scope"])
    op.create_index("ix_assignments_ended_at", "assignments", ["ended_at"])

    op.create_table(
        "audit_events",
        sa.Column("sequence", sa.BigInteger(), autoincrement=False, nullable=False),
        sa.Column("revision", sa.BigInteger(), nullable=False),
        sa.Column("occurred_at", sa.DateTime(), nullable=False),
        sa.Column("actor", sa.String(length=256), nullable=True),
        sa.Column("action", sa.String(length=128), nullable=False),
        sa.Column("target_type", sa.String(length=32), nullable=False),
        sa.Column("target_id", sa.String(length=256), nullable=False),
        sa.Column("before", sa.Text(), nullable=True),
        sa.Column("after", sa.Text(), nullable=True),
        sa.Column("reason", sa.Text(), nullable=True),
        sa.Column("request_id", sa.String(length=64), nullable=True),
        sa.Column("prev_hash", sa.String(length=64), nullable=False),
        sa.Column("hash", sa.String(length=64), nullable=False),
        sa.PrimaryKeyConstraint("sequence", name="pk_audit_events"),
    )
    op.create_index("ix_audit_events_occurred_at", "audit_events", ["occurred_at"])
    op.create_index("ix_audit_events_actor", "audit_events", ["actor"])
    op.create_index("ix_audit_events_target", "audit_events", ["target_type", "target_id"])
    op.create_index("ix_audit_events_revision", "audit_events", ["revision"])

    pim_state = op.create_table(
        "pim_state",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("revision", sa.BigInteger(), nullable=False),
        sa.Column("audit_sequence", sa.BigInteger(), nullable=False),
        sa.Column("audit_hash", sa.String(length=64), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_pim_state"),
    )

    op.bulk_insert(
        pim_state, [{"id": 1, "revision": 0, "audit_sequence": 0, "audit_hash": GENESIS_HASH}]
    )
    op.bulk_insert(
        roles,
        [
            {**role, "built_in": True, "created_at": SEEDED_AT, "updated_at": SEEDED_AT}
            for role in BUILT_IN_ROLES
        ],
    )


def downgrade() -> None:
    op.drop_table("pim_state")
    op.drop_table("audit_events")
    op.drop_table("assignments")
    op.drop_table("role_settings")
    op.drop_table("roles")
    op.drop_table("memberships")
    op.drop_table("groups")
    op.drop_table("service_accounts")
    op.drop_table("users")
