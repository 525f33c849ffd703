"""The entities of Pimlico's core: principals, groups, roles, targets and assignments.

Pure data and the small rules that belong to one entity (is this window in force at ``t``?).
Nothing here does I/O or knows about the database; instants are aware UTC datetimes.
"""

from __future__ import annotations

import enum
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timedelta

MINIMUM_DURATION = timedelta(minutes=5)
"""No assignment may be shorter than this (as in Entra PIM)."""


def new_id() -> str:
    """A fresh, random identifier (UUID 4, canonical text form)."""
    return str(uuid.uuid4())


class PrincipalType(enum.StrEnum):
    USER = "user"
    GROUP = "group"
    SERVICE_ACCOUNT = "service_account"


class AssignmentKind(enum.StrEnum):
    """Eligible: may be activated by its holder. Active: in force, grants access."""

    ELIGIBLE = "eligible"
    ACTIVE = "active"


class TargetType(enum.StrEnum):
    """What an assignment grants: a role at a scope, or membership / ownership of a group."""

    ROLE = "role"
    GROUP_MEMBER = "group_member"
    GROUP_OWNER = "group_owner"


class Relation(enum.StrEnum):
    """How a principal belongs to a group."""

    MEMBER = "member"
    OWNER = "owner"


GROUP_SCOPE = "/"
"""Group targets carry this scope: a group membership is not scoped."""


@dataclass(frozen=True, slots=True)
class Target:
    """A role at a scope, or membership / ownership of a group (whose scope is always ``/``)."""

    type: TargetType
    object_id: str
    scope: str = GROUP_SCOPE

    @classmethod
    def role(cls, role_id: str, scope: str = "/") -> Target:
        return cls(TargetType.ROLE, role_id, scope)

    @classmethod
    def group_member(cls, group_id: str) -> Target:
        return cls(TargetType.GROUP_MEMBER, group_id)

    @classmethod
    def group_owner(cls, group_id: str) -> Target:
        return cls(TargetType.GROUP_OWNER, group_id)

    @property
    def is_group(self) -> bool:
        return self.type is not TargetType.ROLE

    @property
    def relation(self) -> Relation | None:
        if self.type is TargetType.GROUP_MEMBER:
            return Relation.MEMBER
        if self.type is TargetType.GROUP_OWNER:
            return Relation.OWNER
        return None

    def __str__(self) -> str:
        if self.type is TargetType.ROLE:
            return f"role {self.object_id} at {self.scope}"
        return f"{self.type.value.replace('_', ' ')} of {self.object_id}"


@dataclass(frozen=True, slots=True)
class PrincipalRef:
    """Who holds something: a user, a group or a service account, by id."""

    type: PrincipalType
    id: str

    def __str__(self) -> str:
        return f"{self.type.value}:{self.id}"


@dataclass(slots=True)
class User:
    """A person. A disabled user holds nothing, whatever their assignments say."""

    id: str
    user_name: str
    display_name: str
    email: str | None = None
    enabled: bool = True
    manager_id: str | None = None
    created_at: datetime | None = None


@dataclass(slots=True)
class ServiceAccount:
    """A non-human principal (a script, a pipeline). It may hold active assignments only."""

    id: str
    name: str
    display_name: str
    description: str = ""
    enabled: bool = True
    created_at: datetime | None = None


@dataclass(slots=True)
class Group:
    """A security group. ``role_assignable`` is fixed at creation and never changes."""

    id: str
    name: str
    display_name: str
    description: str = ""
    role_assignable: bool = False
    pim_enabled: bool = False
    created_at: datetime | None = None


@dataclass(slots=True)
class Membership:
    """A static (non-PIM) membership or ownership of a group. Ended, never deleted."""

    id: str
    group_id: str
    member: PrincipalRef
    relation: Relation
    created_at: datetime
    created_by: str | None = None
    ended_at: datetime | None = None
    ended_by: str | None = None
    end_reason: str | None = None

    def in_force(self, at: datetime) -> bool:
        return self.created_at <= at and (self.ended_at is None or at < self.ended_at)


@dataclass(slots=True)
class Role:
    """A named set of permission patterns (``mail.purge``, ``mail.*``)."""

    id: str
    name: str
    description: str = ""
    permissions: tuple[str, ...] = ()
    built_in: bool = False
    created_at: datetime | None = None


@dataclass(slots=True)
class Assignment:
    """A principal holds a target, eligibly or actively, for ``[start, end)``.

    ``end`` of ``None`` means permanent. An ended assignment keeps its row: ``ended_at`` says
    when it stopped being in force (which may be before ``end``), ``ended_by`` and
    ``end_reason`` say who ended it and why.
    """

    id: str
    kind: AssignmentKind
    principal: PrincipalRef
    target: Target
    start: datetime
    end: datetime | None
    created_at: datetime
    created_by: str | None = None
    justification: str | None = None
    activated_from: str | None = None
    """For an activation: the eligible assignment it was made from."""
    request_id: str | None = None
    ended_at: datetime | None = None
    ended_by: str | None = None
    end_reason: str | None = None

    @property
    def effective_end(self) -> datetime | None:
        """When the assignment stops being in force: its end, or when it was ended if sooner."""
        if self.ended_at is None:
            return self.end
        if self.end is None:
            return self.ended_at
        return min(self.end, self.ended_at)

    @property
    def permanent(self) -> bool:
        return self.end is None

    def in_force(self, at: datetime) -> bool:
        end = self.effective_end
        return self.start <= at and (end is None or at < end)

    def is_current_or_future(self, at: datetime) -> bool:
        """Not ended yet and not past its end: in force now or scheduled to be."""
        end = self.effective_end
        return end is None or at < end


@dataclass(frozen=True, slots=True)
class Window:
    """A half-open interval ``[start, end)``; ``end`` of ``None`` is open-ended."""

    start: datetime
    end: datetime | None = None

    def contains(self, at: datetime) -> bool:
        return self.start <= at and (self.end is None or at < self.end)


@dataclass(slots=True)
class Directory:
    """A whole snapshot of the core's state, for building the decision index and for tests."""

    users: dict[str, User] = field(default_factory=dict)
    service_accounts: dict[str, ServiceAccount] = field(default_factory=dict)
    groups: dict[str, Group] = field(default_factory=dict)
    roles: dict[str, Role] = field(default_factory=dict)
    memberships: list[Membership] = field(default_factory=list)
    assignments: list[Assignment] = field(default_factory=list)
