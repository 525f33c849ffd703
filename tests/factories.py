"""Builders for test data: a ``Directory`` in a few readable lines."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from pimlico.domain.model import (
    Assignment,
    AssignmentKind,
    Directory,
    Group,
    Membership,
    PrincipalRef,
    PrincipalType,
    Relation,
    Role,
    ServiceAccount,
    Target,
    User,
)

T0 = datetime(2026, 3, 1, 9, 0, tzinfo=UTC)
HOUR = timedelta(hours=1)


class DirectoryBuilder:
    """Names double as ids, so tests read as sentences: ``d.member("alex", "sp-pim")``."""

    def __init__(self) -> None:
        self.directory = Directory()
        self._n = 0

    def _next(self, prefix: str) -> str:
        self._n += 1
        return f"{prefix}-{self._n}"

    def user(self, name: str, *, enabled: bool = True) -> str:
        self.directory.users[name] = User(name, name, name.title(), enabled=enabled)
        return name

    def service_account(self, name: str, *, enabled: bool = True) -> str:
        self.directory.service_accounts[name] = ServiceAccount(name, name, name, enabled=enabled)
        return name

    def group(self, name: str) -> str:
        self.directory.groups[name] = Group(name, name, name)
        return name

    def role(self, name: str, *permissions: str) -> str:
        self.directory.roles[name] = Role(name, name, permissions=permissions)
        return name

    def _ref(self, principal_id: str) -> PrincipalRef:
        if principal_id in self.directory.groups:
            return PrincipalRef(PrincipalType.GROUP, principal_id)
        if principal_id in self.directory.service_accounts:
            return PrincipalRef(PrincipalType.SERVICE_ACCOUNT, principal_id)
        return PrincipalRef(PrincipalType.USER, principal_id)

    def member(
        self,
        group: str,
        member: str,
        *,
        since: datetime = T0 - 1000 * HOUR,
        ended_at: datetime | None = None,
        relation: Relation = Relation.MEMBER,
    ) -> Membership:
        m = Membership(
            self._next("m"), group, self._ref(member), relation, since, ended_at=ended_at
        )
        self.directory.memberships.append(m)
        return m

    def assign(
        self,
        principal: str,
        target: Target,
        *,
        kind: AssignmentKind = AssignmentKind.ACTIVE,
        start: datetime = T0 - 1000 * HOUR,
        end: datetime | None = None,
        ended_at: datetime | None = None,
    ) -> Assignment:
        a = Assignment(
            self._next("a"),
            kind,
            self._ref(principal),
            target,
            start,
            end,
            created_at=start,
            ended_at=ended_at,
        )
        self.directory.assignments.append(a)
        return a
