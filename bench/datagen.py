"""A synthetic directory for the decision benchmark: seeded, streamed as plain tuples.

This module owns the shape of the benchmark's world (how many users, groups, roles and
assignments, how groups nest, what roles hold, which windows are in force) and the fixed list
of questions asked of it. It must stay deterministic (same seed and scale → same rows, in the
same order, on every pass) and cheap: rows are plain tuples yielded by generators, so the index
build measures the index and not a million dataclasses, and the generator never dominates a run.

Identifiers have the length of Pimlico's real ones (UUIDs, 36 characters) and every row
carries its own copies of them, as rows read from the database do: the index holds millions of
them, so their size and count are part of what the memory figure measures. They start with a
readable prefix (``u``, ``g``, ``r``, ``m``, ``a``) so disagreements can be read.
"""

from __future__ import annotations

import math
import random
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime

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
    Target,
    TargetType,
    User,
)

NOW = datetime(2026, 11, 22, 12, 0, tzinfo=UTC)
"""The instant every question is asked at (and the peers' snapshot is taken at)."""
NOW_TS = NOW.timestamp()
FOREVER = math.inf
HOUR = 3600.0
DAY = 24 * HOUR

# (id, enabled)
PrincipalRow = tuple[str, bool]
# (id, permission patterns)
RoleRow = tuple[str, tuple[str, ...]]
# (id, group, member, relation, start, end)
MembershipRow = tuple[str, str, str, str, float, float]
# (id, kind, principal, target type, target id, scope, start, end)
AssignmentRow = tuple[str, str, str, str, str, str, float, float]
# (principal, permission, scope, instant)
Question = tuple[str, str, str, datetime]

APPS: dict[str, tuple[str, ...]] = {
    "mail": ("read", "send", "purge", "export", "admin.read", "admin.write", "rules.write"),
    "defender": (
        "read",
        "alerts.read",
        "alerts.resolve",
        "devices.read",
        "devices.isolate",
        "devices.scan",
        "indicators.write",
    ),
    "security": ("read", "write", "incidents.read", "incidents.manage", "policies.write"),
    "sharepoint": ("read", "sites.create", "sites.delete", "permissions.write"),
    "teams": ("read", "channels.write", "meetings.admin", "policies.write"),
    "intune": ("devices.read", "devices.wipe", "apps.deploy", "policies.write"),
    "azure": (
        "vm.start",
        "vm.stop",
        "vm.delete",
        "storage.read",
        "storage.write",
        "keyvault.secrets.read",
        "keyvault.secrets.write",
        "network.write",
    ),
    "github": ("repo.read", "repo.admin", "actions.write", "secrets.write"),
    "hr": ("records.read", "records.write", "payroll.read", "payroll.approve"),
    "finance": ("ledger.read", "ledger.write", "payments.approve"),
    "pim": ("roles.read", "roles.write", "policies.write", "requests.approve", "audit.read"),
    "directory": ("users.read", "users.write", "groups.write", "passwords.reset"),
    "aws": ("ec2.start", "ec2.stop", "s3.read", "s3.write", "iam.roles.write", "billing.read"),
    "gcp": ("compute.start", "compute.stop", "storage.read", "iam.write"),
    "okta": ("users.read", "users.suspend", "apps.assign", "factors.reset"),
    "slack": ("channels.archive", "users.deactivate", "exports.run"),
    "jira": ("issues.read", "issues.write", "projects.admin", "workflows.write"),
    "confluence": ("pages.read", "pages.write", "spaces.admin"),
    "salesforce": ("accounts.read", "accounts.write", "reports.export", "setup.write"),
    "servicenow": ("incidents.read", "incidents.write", "changes.approve", "cmdb.write"),
}
# Each app's resource collection; scopes are /apps/<app>/<collection>/<unit>.
COLLECTIONS = {
    "mail": "mailboxes",
    "defender": "devicegroups",
    "security": "workspaces",
    "sharepoint": "sites",
    "teams": "teams",
    "intune": "devicegroups",
    "azure": "subscriptions",
    "github": "orgs",
    "hr": "countries",
    "finance": "entities",
    "pim": "tenants",
    "directory": "units",
    "aws": "accounts",
    "gcp": "projects",
    "okta": "orgs",
    "slack": "workspaces",
    "jira": "projects",
    "confluence": "spaces",
    "salesforce": "orgs",
    "servicenow": "instances",
}
UNITS = ("finance", "hr", "sales", "engineering", "legal", "it", "support", "emea", "apac", "amer")
PERMISSIONS = tuple(f"{app}.{action}" for app, actions in APPS.items() for action in actions)
SCOPES = (
    "/",
    *(f"/apps/{app}" for app in APPS),
    *(f"/apps/{app}/{COLLECTIONS[app]}" for app in APPS),
    *(f"/apps/{app}/{COLLECTIONS[app]}/{unit}" for app in APPS for unit in UNITS),
)
ROLE_GROUP_EVERY = 4
"""Every fourth group is role-assignable: only those hold assignments themselves."""
LEVEL_SHARES = (0.50, 0.25, 0.13, 0.08, 0.04)
"""Share of groups at each nesting level 1..5; a group only nests into a higher level."""


def wildcards_of(permission: str) -> tuple[str, ...]:
    """The wildcard patterns that match ``permission`` (``a.b.c`` → ``a.b.*``, ``a.*``, ``*``)."""
    parts = permission.split(".")
    return (*(".".join(parts[:i]) + ".*" for i in range(len(parts) - 1, 0, -1)), "*")


def scopes_under(scope: str) -> tuple[str, ...]:
    """The vocabulary scopes a grant at ``scope`` covers (itself included)."""
    if scope == "/":
        return SCOPES
    return tuple(s for s in SCOPES if s == scope or s.startswith(scope + "/"))


def _ident(prefix: str, n: int) -> str:
    return f"{prefix}{n:07d}-0000-4000-8000-000000000000"


@dataclass(frozen=True, slots=True)
class Sizes:
    """How big a generated directory is; ``Sizes.at(1.0)`` is the size the issue asks for."""

    users: int
    groups: int
    roles: int
    assignments: int

    @classmethod
    def at(cls, scale: float) -> Sizes:
        return cls(
            users=max(100, round(100_000 * scale)),
            groups=max(20, round(10_000 * scale)),
            roles=max(10, round(1_000 * scale)),
            assignments=max(1_000, round(1_000_000 * scale)),
        )


@dataclass(slots=True)
class Synthetic:
    """A seeded directory. Each ``*_rows`` method starts its own seeded stream, so every pass
    yields the same rows; only the small catalogues (ids, levels, roles) are kept in memory."""

    sizes: Sizes
    seed: int = 7
    users: list[str] = field(init=False)
    groups: list[str] = field(init=False)
    levels: list[tuple[int, int]] = field(init=False)
    """Per level 1..5 (index 0..4), the range of indexes into ``groups`` at that level."""
    roles: list[RoleRow] = field(init=False)
    role_apps: list[str] = field(init=False)

    def __post_init__(self) -> None:
        self.users = [_ident("u", i) for i in range(self.sizes.users)]
        self.groups = [_ident("g", i) for i in range(self.sizes.groups)]
        self.levels = []
        lo = 0
        for level, share in enumerate(LEVEL_SHARES):
            left = len(LEVEL_SHARES) - level - 1  # keep at least one group per higher level
            hi = min(self.sizes.groups - left, max(lo + 1, lo + round(self.sizes.groups * share)))
            if level == len(LEVEL_SHARES) - 1:
                hi = self.sizes.groups
            self.levels.append((lo, hi))
            lo = hi
        self.roles, self.role_apps = _roles(self.sizes.roles, random.Random(f"{self.seed}:roles"))

    def level_of(self, group_index: int) -> int:
        for level, (lo, hi) in enumerate(self.levels, start=1):
            if lo <= group_index < hi:
                return level
        raise IndexError(group_index)

    def _group_at(self, rng: random.Random, level: int) -> int:
        lo, hi = self.levels[level - 1]
        # Skewed: some groups are much bigger than others.
        return lo + int((hi - lo) * rng.random() ** 1.5)

    def principal_rows(self) -> Iterator[PrincipalRow]:
        rng = random.Random(f"{self.seed}:principals")
        for user in self.users:
            yield user, rng.random() >= 0.01

    def role_rows(self) -> Iterator[RoleRow]:
        yield from self.roles

    def membership_rows(self) -> Iterator[MembershipRow]:
        """Users in a few groups each, groups nested upwards only, a few owners per group."""
        rng = random.Random(f"{self.seed}:memberships")
        rand = rng.random
        n = 0
        for u in range(self.sizes.users):
            seen: set[int] = set()
            for _ in range((1, 2, 2, 3, 3, 3, 4, 5)[int(rand() * 8)]):
                r = rand()
                level = 1 if r < 0.75 else 2 if r < 0.90 else 3 if r < 0.97 else 4
                g = self._group_at(rng, level)
                if g in seen:
                    continue
                seen.add(g)
                start = NOW_TS - float(int(rand() * 3 * 365 * DAY) + HOUR)
                # 4% were ended at some point before now.
                end = start + float(int((NOW_TS - start) * rand())) if rand() < 0.04 else FOREVER
                n += 1
                yield _ident("m", n), _ident("g", g), _ident("u", u), "member", start, end
        for level in range(1, 5):
            lo, hi = self.levels[level - 1]
            for g in range(lo, hi):
                for _ in range((0, 0, 0, 0, 1, 1, 1, 1, 1, 2)[int(rand() * 10)]):
                    up = level + 1 if rand() < 0.7 else level + 1 + int(rand() * (5 - level))
                    start = NOW_TS - float(int(rand() * 3 * 365 * DAY) + HOUR)
                    parent = _ident("g", self._group_at(rng, up))
                    n += 1
                    yield _ident("m", n), parent, _ident("g", g), "member", start, FOREVER
        for g in range(self.sizes.groups):
            for _ in range((0, 1, 1, 2)[int(rand() * 4)]):
                owner = _ident("u", int(rand() * self.sizes.users))
                n += 1
                yield _ident("m", n), _ident("g", g), owner, "owner", NOW_TS - 30 * DAY, FOREVER

    def assignment_rows(self) -> Iterator[AssignmentRow]:
        """Eligible and active, permanent and time-bound (expired, current, future), mostly to
        users, mostly of roles at a scope, some PIM group memberships and ownerships."""
        rng = random.Random(f"{self.seed}:assignments")
        rand = rng.random
        n_users, n_groups, n_roles = self.sizes.users, self.sizes.groups, self.sizes.roles
        n_role_groups = (n_groups + ROLE_GROUP_EVERY - 1) // ROLE_GROUP_EVERY
        for n in range(1, self.sizes.assignments + 1):
            if rand() < 0.95:
                principal, level = _ident("u", int(rand() * n_users)), 0
            else:
                g = ROLE_GROUP_EVERY * int(rand() * n_role_groups)
                principal, level = _ident("g", g), self.level_of(g)
            r = rand()
            if r < 0.84 or (r < 0.97 and level == 5):
                role = int(n_roles * rand() ** 2)  # a few roles are assigned very often
                scope = _scope(rng, self.role_apps[role])
                target_type, target = "role", _ident("r", role)
            elif r < 0.97:
                up = max(level + 1, 1 + int(rand() * 5))
                target = _ident("g", self._group_at(rng, up))
                target_type, scope = "group_member", "/"
            else:
                target_type, target = "group_owner", _ident("g", int(rand() * n_groups))
                scope = "/"
            kind = "eligible" if rand() < 0.6 else "active"
            start, end = _window(rand, kind)
            yield _ident("a", n), kind, principal, target_type, target, scope, start, end


def _roles(count: int, rng: random.Random) -> tuple[list[RoleRow], list[str]]:
    apps = list(APPS)
    rows: list[RoleRow] = []
    role_apps: list[str] = []
    for i in range(count):
        app = rng.choice(apps)
        pool = [app, rng.choice(apps)] if rng.random() < 0.25 else [app]
        patterns: list[str] = []
        for _ in range(rng.randint(1, 8)):
            a = rng.choice(pool)
            permission = f"{a}.{rng.choice(APPS[a])}"
            r = rng.random()
            if r < 0.01:
                pattern = "*"
            elif r < 0.20:
                pattern = rng.choice(wildcards_of(permission)[:-1])
            else:
                pattern = permission
            if pattern not in patterns:
                patterns.append(pattern)
        rows.append((_ident("r", i), tuple(patterns)))
        role_apps.append(app)
    return rows, role_apps


def _scope(rng: random.Random, app: str) -> str:
    r = rng.random()
    if r < 0.20:
        return "/"
    if r < 0.55:
        return f"/apps/{app}"
    if r < 0.65:
        return f"/apps/{app}/{COLLECTIONS[app]}"
    return f"/apps/{app}/{COLLECTIONS[app]}/{rng.choice(UNITS)}"


def _span(rand: Callable[[], float], low: float, high: float) -> float:
    """A whole number of seconds in [low, high): whole seconds survive datetime round trips."""
    return float(int(low + (high - low) * rand()))


def _window(rand: Callable[[], float], kind: str) -> tuple[float, float]:
    r = rand()
    if kind == "active" and r < 0.40:  # a JIT activation: a few hours, some already over
        start = NOW_TS - _span(rand, 0, 12 * HOUR)
        return start, start + _span(rand, HOUR, 8 * HOUR)
    if r < 0.70 if kind == "active" else r < 0.45:
        return NOW_TS - _span(rand, DAY, 730 * DAY), FOREVER
    if r < 0.85 if kind == "active" else r < 0.80:
        return NOW_TS - _span(rand, HOUR, 180 * DAY), NOW_TS + _span(rand, DAY, 365 * DAY)
    if r < 0.95 if kind == "active" else r < 0.92:  # expired
        end = NOW_TS - _span(rand, HOUR, 365 * DAY)
        return end - _span(rand, DAY, 365 * DAY), end
    start = NOW_TS + _span(rand, HOUR, 30 * DAY)  # scheduled for later
    return start, start + _span(rand, DAY, 365 * DAY)


_MATCHING: dict[str, tuple[str, ...]] = {}
for _permission in PERMISSIONS:
    _MATCHING[_permission] = (_permission,)
    for _wildcard in wildcards_of(_permission):
        _MATCHING[_wildcard] = (*_MATCHING.get(_wildcard, ()), _permission)
_UNDER = {scope: scopes_under(scope) for scope in SCOPES}


def questions(
    data: Synthetic,
    memberships: Iterable[MembershipRow],
    assignments: Iterable[AssignmentRow],
    *,
    count: int,
    held_share: float = 0.7,
) -> list[Question]:
    """A fixed list of questions, all at ``NOW``: mostly (``held_share``) a permission and a
    scope the user was given through some chain of groups (whether or not every link of it is in
    force now), the rest a random permission at a random scope. Users only."""
    rng = random.Random(f"{data.seed}:questions")
    rand = rng.random
    up: dict[str, list[str]] = {}
    for _, group, member, relation, _, _ in memberships:
        if relation == "member":
            up.setdefault(member, []).append(group)
    patterns = {role_id: role_patterns for role_id, role_patterns in data.roles}
    grants: dict[str, list[tuple[str, str]]] = {}
    for _, kind, principal, target_type, target, scope, _, _ in assignments:
        if kind != "active":
            continue
        if target_type == "role":
            grants.setdefault(principal, []).append((target, scope))
        elif target_type == "group_member":
            up.setdefault(principal, []).append(target)
    found: list[Question] = []
    users = data.users
    while len(found) < count:
        user = users[int(rand() * len(users))]
        question = _held(rng, user, up, grants, patterns) if rand() < held_share else None
        if question is None:
            question = user, rng.choice(PERMISSIONS), rng.choice(SCOPES), NOW
        found.append(question)
    return found


def _held(
    rng: random.Random,
    user: str,
    up: dict[str, list[str]],
    grants: dict[str, list[tuple[str, str]]],
    patterns: dict[str, tuple[str, ...]],
) -> Question | None:
    """A question about something ``user`` was granted along one random chain upwards."""
    holders: list[str] = []
    holder: str | None = user
    for _ in range(6):
        if holder is None:
            break
        if holder in grants:
            holders.append(holder)
        parents = up.get(holder)
        holder = rng.choice(parents) if parents else None
    if not holders:
        return None
    role_id, scope = rng.choice(grants[rng.choice(holders)])
    permission = rng.choice(_MATCHING[rng.choice(patterns[role_id])])
    return user, permission, rng.choice(_UNDER[scope]), NOW


@dataclass(slots=True)
class World:
    """One generated directory with its rows in memory (for a timed build that excludes
    generation, and for the peers) and its questions."""

    data: Synthetic
    principals: list[PrincipalRow]
    memberships: list[MembershipRow]
    assignments: list[AssignmentRow]
    questions: list[Question]
    generate_seconds: float
    question_seconds: float


def world(scale: float, *, seed: int, question_count: int) -> World:
    started = time.perf_counter()
    data = Synthetic(Sizes.at(scale), seed)
    principals = list(data.principal_rows())
    memberships = list(data.membership_rows())
    assignments = list(data.assignment_rows())
    generated = time.perf_counter()
    asked = questions(data, memberships, assignments, count=question_count)
    return World(
        data,
        principals,
        memberships,
        assignments,
        asked,
        generated - started,
        time.perf_counter() - generated,
    )


def directory_of(w: World) -> Directory:
    """The rows as a domain ``Directory``, for the naive reference evaluator (small sizes)."""
    directory = Directory()
    for user_id, enabled in w.principals:
        directory.users[user_id] = User(user_id, user_id, user_id, enabled=enabled)
    for group_id in w.data.groups:
        directory.groups[group_id] = Group(group_id, group_id, group_id)
    for role_id, patterns in w.data.roles:
        directory.roles[role_id] = Role(role_id, role_id, permissions=patterns)

    def ref(principal_id: str) -> PrincipalRef:
        kind = PrincipalType.GROUP if principal_id in directory.groups else PrincipalType.USER
        return PrincipalRef(kind, principal_id)

    for mid, group_id, member_id, relation, start, end in w.memberships:
        directory.memberships.append(
            Membership(
                mid, group_id, ref(member_id), Relation(relation), _at(start), ended_at=_until(end)
            )
        )
    for aid, kind, principal_id, target_type, target_id, scope, start, end in w.assignments:
        directory.assignments.append(
            Assignment(
                aid,
                AssignmentKind(kind),
                ref(principal_id),
                Target(TargetType(target_type), target_id, scope),
                _at(start),
                _until(end),
                created_at=_at(start),
            )
        )
    return directory


def _at(ts: float) -> datetime:
    return datetime.fromtimestamp(ts, UTC)


def _until(ts: float) -> datetime | None:
    return None if ts == FOREVER else datetime.fromtimestamp(ts, UTC)
