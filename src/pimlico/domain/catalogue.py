"""Pimlico's own permissions and the built-in admin roles that hold them.

Pimlico guards itself with itself: every administrative operation needs a ``pim.*``
permission, held through one of these roles by an (ideally eligible, activated) assignment.
The role ids are fixed so that every installation, migration and test agrees on them.
"""

from __future__ import annotations

from dataclasses import dataclass


class Perm:
    """The ``pim.*`` permissions. One per operation family; reads and writes apart."""

    USERS_READ = "pim.users.read"
    USERS_WRITE = "pim.users.write"
    GROUPS_READ = "pim.groups.read"
    GROUPS_WRITE = "pim.groups.write"
    """Create and change groups that are not role-assignable, and their static members."""
    ROLE_ASSIGNABLE_GROUPS_WRITE = "pim.role_assignable_groups.write"
    """Create role-assignable groups and change their members and owners."""
    ROLES_READ = "pim.roles.read"
    ROLES_WRITE = "pim.roles.write"
    POLICIES_READ = "pim.policies.read"
    POLICIES_WRITE = "pim.policies.write"
    ASSIGNMENTS_READ = "pim.assignments.read"
    ROLE_ASSIGNMENTS_WRITE = "pim.assignments.roles.write"
    GROUP_ASSIGNMENTS_WRITE = "pim.assignments.groups.write"
    REQUESTS_READ = "pim.requests.read"
    REQUESTS_APPROVE = "pim.requests.approve"
    DECISIONS_READ = "pim.decisions.read"
    """Ask what another principal may do (checking one's own access needs nothing)."""
    AUDIT_READ = "pim.audit.read"
    CONNECTORS_READ = "pim.connectors.read"
    """See connectors, their mappings and provisioning states (never their secrets)."""
    CONNECTORS_WRITE = "pim.connectors.write"
    """Configure connectors and mappings, and run reconciliation."""


ALL_READS: tuple[str, ...] = (
    Perm.USERS_READ,
    Perm.GROUPS_READ,
    Perm.ROLES_READ,
    Perm.POLICIES_READ,
    Perm.ASSIGNMENTS_READ,
    Perm.REQUESTS_READ,
    Perm.DECISIONS_READ,
    Perm.AUDIT_READ,
    Perm.CONNECTORS_READ,
)


@dataclass(frozen=True, slots=True)
class BuiltInRole:
    id: str
    name: str
    description: str
    permissions: tuple[str, ...]


GLOBAL_ADMINISTRATOR = BuiltInRole(
    id="00000000-0000-4000-8000-000000000001",
    name="Global Administrator",
    description="Every Pimlico administrative permission. Keep at least one break-glass holder.",
    permissions=("pim.*",),
)
PRIVILEGED_ROLE_ADMINISTRATOR = BuiltInRole(
    id="00000000-0000-4000-8000-000000000002",
    name="Privileged Role Administrator",
    description="Manage roles, role settings, assignments, requests and role-assignable groups.",
    permissions=(
        "pim.roles.*",
        "pim.connectors.*",
        "pim.policies.*",
        "pim.assignments.*",
        "pim.requests.*",
        Perm.ROLE_ASSIGNABLE_GROUPS_WRITE,
        *ALL_READS,
    ),
)
GROUPS_ADMINISTRATOR = BuiltInRole(
    id="00000000-0000-4000-8000-000000000003",
    name="Groups Administrator",
    description="Manage groups that are not role-assignable, their members and group PIM.",
    permissions=(
        Perm.GROUPS_WRITE,
        Perm.GROUP_ASSIGNMENTS_WRITE,
        Perm.USERS_READ,
        Perm.GROUPS_READ,
        Perm.ASSIGNMENTS_READ,
        Perm.POLICIES_READ,
        Perm.REQUESTS_READ,
    ),
)
SECURITY_READER = BuiltInRole(
    id="00000000-0000-4000-8000-000000000004",
    name="Security Reader",
    description="Read everything in Pimlico, the audit log included; change nothing.",
    permissions=(*ALL_READS, "security.read"),
)
GLOBAL_READER = BuiltInRole(
    id="00000000-0000-4000-8000-000000000005",
    name="Global Reader",
    description="Read everything in Pimlico; change nothing.",
    permissions=ALL_READS,
)
USER_ADMINISTRATOR = BuiltInRole(
    id="00000000-0000-4000-8000-000000000006",
    name="User Administrator",
    description="Create, change and disable users and service accounts.",
    permissions=(Perm.USERS_READ, Perm.USERS_WRITE, Perm.GROUPS_READ),
)

BUILT_IN_ROLES: tuple[BuiltInRole, ...] = (
    GLOBAL_ADMINISTRATOR,
    PRIVILEGED_ROLE_ADMINISTRATOR,
    GROUPS_ADMINISTRATOR,
    SECURITY_READER,
    GLOBAL_READER,
    USER_ADMINISTRATOR,
)
BUILT_IN_ROLE_IDS = frozenset(r.id for r in BUILT_IN_ROLES)
