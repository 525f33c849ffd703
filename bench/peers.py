"""The peers the decision benchmark compares Pimlico with: pycasbin and cedarpy.

This module owns what each peer is told and how it is asked. Neither peer has time windows on
memberships or grants, so both are given a snapshot of the facts in force at the question
instant (``snapshot``), and the same questions are asked at that instant. Each adapter makes
the same decision as ``DecisionIndex.decide(...).allowed``: a user may use permission X at scope
S if, through a chain of in-force group memberships, it holds an in-force active assignment of
a role with a pattern matching X at S or an ancestor of S; disabled users hold nothing.

It must not tune a peer in ways that change its answers; every departure from a peer's plain
configuration is named in ``Peer.notes`` and printed with the results.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any, Protocol

from bench.datagen import PERMISSIONS, SCOPES, AssignmentRow, MembershipRow, wildcards_of


@dataclass(slots=True)
class Snapshot:
    """The directory's facts in force at one instant, without their windows."""

    users: list[str]
    groups: list[str]
    roles: dict[str, tuple[str, ...]]
    edges: list[tuple[str, str]] = field(default_factory=list)
    """(member, group): static memberships and active PIM group memberships."""
    grants: list[tuple[str, str, str]] = field(default_factory=list)
    """(holder, role, scope): active role assignments."""


def snapshot(
    users: Iterable[tuple[str, bool]],
    groups: list[str],
    roles: Iterable[tuple[str, tuple[str, ...]]],
    memberships: Iterable[MembershipRow],
    assignments: Iterable[AssignmentRow],
    at: float,
) -> Snapshot:
    """What a peer without time windows is told: facts in force at ``at``; a disabled user's
    memberships and grants are left out (Pimlico ignores them when that user asks)."""
    enabled = dict(users)
    snap = Snapshot(list(enabled), groups, dict(roles))
    for _, group, member, relation, start, end in memberships:
        if relation == "member" and start <= at < end and enabled.get(member, True):
            snap.edges.append((member, group))
    for _, kind, holder, target_type, target, scope, start, end in assignments:
        if kind != "active" or not start <= at < end or not enabled.get(holder, True):
            continue
        if target_type == "role":
            snap.grants.append((holder, target, scope))
        elif target_type == "group_member":
            snap.edges.append((holder, target))
    return snap


class Peer(Protocol):
    """An engine asked the same questions as Pimlico."""

    name: str
    notes: tuple[str, ...]

    def load(self, snap: Snapshot, scopes: Iterable[str]) -> None:
        """Take in ``snap``; ``scopes`` are the scopes questions will name (for warm-up)."""

    def allowed(self, user: str, permission: str, scope: str) -> bool: ...


CASBIN_MODEL = """
[request_definition]
r = sub, dom, act

[policy_definition]
p = sub, act

[role_definition]
g = _, _, _

[policy_effect]
e = some(where (p.eft == allow))

[matchers]
m = keyMatch(r.act, p.act) && g(r.sub, p.sub, r.dom)
"""


def scope_covers(requested: str, stored: str) -> bool:
    """Casbin domain matching: a link stored at scope ``stored`` applies at ``requested``."""
    return stored == "/" or requested == stored or requested.startswith(stored + "/")


class CasbinPeer:
    """pycasbin, RBAC with domains: ``g(member, group, "/")`` for memberships and nesting,
    ``g(holder, role, scope)`` for role assignments, ``p(role, pattern)`` for role contents."""

    name: str = "casbin"
    notes: tuple[str, ...] = (
        "RBAC with domains, domain = scope: g(user|group, group, '/') for memberships and "
        "nesting, g(holder, role, scope) for active role assignments, p(role, pattern); matcher "
        "keyMatch(r.act, p.act) && g(r.sub, p.sub, r.dom) (keyMatch does the trailing wildcards)",
        "scope inheritance: a custom domain-matching function (stored scope is '/' or an "
        "ancestor); built-in keyMatch on domains would also match siblings (/apps/mail* → "
        "/apps/mailbox)",
        "tuned: the domain manager's default name-matching function (plain equality) is "
        "removed; with it every add_link scans all roles and warming even 1% did not finish "
        "in 5 minutes; answers are unchanged",
        "load includes warm-up: pycasbin builds one role graph per requested scope (holding "
        "every membership link), one call per distinct question scope",
        "no time windows (ConditionalRoleManager could add them per link): given the facts in "
        "force at the question instant",
    )

    def __init__(self) -> None:
        self._enforcer: Any = None

    def load(self, snap: Snapshot, scopes: Iterable[str]) -> None:
        import casbin

        model = casbin.Enforcer.new_model(text=CASBIN_MODEL)
        enforcer = casbin.Enforcer(model)
        enforcer.add_named_domain_matching_func("g", scope_covers)
        enforcer.get_role_manager().matching_func = None
        enforcer.add_policies([[role, p] for role, ps in snap.roles.items() for p in ps])
        links = [[member, group, "/"] for member, group in snap.edges]
        links.extend([holder, role, scope] for holder, role, scope in snap.grants)
        enforcer.add_grouping_policies(links)
        # Build each requested scope's role graph now, not inside the first timed question.
        roles = enforcer.get_role_manager()
        any_user, any_role = snap.users[0], next(iter(snap.roles))
        for scope in scopes:
            roles.has_link(any_user, any_role, scope)
        self._enforcer = enforcer

    def allowed(self, user: str, permission: str, scope: str) -> bool:
        return bool(self._enforcer.enforce(user, scope, permission))


class CedarPeer:
    """cedarpy: users and groups with group parents, one ``Grant`` entity per (role, scope) in
    force whose members are the holders, one policy per such pair; scopes and actions are entity
    hierarchies (``Action::"mail.purge"`` in ``Action::"mail.*"`` in ``Action::"*"``)."""

    name: str = "cedar"
    notes: tuple[str, ...] = (
        'one policy per (role, scope) pair in force: permit(principal in Grant::"role@scope", '
        'action in [the role\'s patterns], resource in Scope::"scope"); holders are members of '
        "the Grant (one policy per assignment instead was 25 times slower at scale 0.1)",
        "scope inheritance: Scope entities with parent scopes; group nesting: entity parents",
        "trailing wildcards: Cedar cannot match a pattern against an action name, so every "
        "permission of the vocabulary is an Action whose parents are its wildcard patterns: "
        "it answers only for permissions declared in advance",
        "no time windows on entity parents: given the facts in force at the question instant",
        "asked one request at a time with cedarpy.is_authorized (PolicySet and Entities parsed "
        "once)",
    )

    def __init__(self) -> None:
        self._policies: Any = None
        self._entities: Any = None

    def load(self, snap: Snapshot, scopes: Iterable[str]) -> None:
        import cedarpy

        parents: dict[str, list[dict[str, str]]] = {}
        for member, group in snap.edges:
            parents.setdefault(member, []).append({"type": "Group", "id": group})
        pairs: dict[str, tuple[str, str]] = {}
        for holder, role, scope in snap.grants:
            grant = f"{role}@{scope}"
            pairs[grant] = (role, scope)
            parents.setdefault(holder, []).append({"type": "Grant", "id": grant})
        policies = [
            f'permit(principal in Grant::"{grant}", action in [{_actions(snap.roles[role])}], '
            f'resource in Scope::"{scope}");'
            for grant, (role, scope) in pairs.items()
        ]
        entities = [_entity("User", user, parents.get(user, [])) for user in snap.users]
        entities += [_entity("Group", group, parents.get(group, [])) for group in snap.groups]
        entities += [_entity("Grant", grant, []) for grant in pairs]
        entities += [
            _entity("Scope", scope, _parent_scope(scope)) for scope in _with_ancestors(SCOPES)
        ]
        entities += [
            _entity("Action", p, [{"type": "Action", "id": w} for w in wildcards_of(p)])
            for p in PERMISSIONS
        ]
        self._policies = cedarpy.PolicySet.from_str("\n".join(policies))
        self._entities = cedarpy.Entities.from_json_str(json.dumps(entities))

    def allowed(self, user: str, permission: str, scope: str) -> bool:
        import cedarpy

        request = {
            "principal": {"type": "User", "id": user},
            "action": {"type": "Action", "id": permission},
            "resource": {"type": "Scope", "id": scope},
        }
        return bool(cedarpy.is_authorized(request, self._policies, self._entities).allowed)


def _actions(patterns: tuple[str, ...]) -> str:
    return ", ".join(f'Action::"{p}"' for p in patterns)


def _entity(kind: str, uid: str, parents: list[dict[str, str]]) -> dict[str, Any]:
    return {"uid": {"type": kind, "id": uid}, "attrs": {}, "parents": parents}


def _with_ancestors(scopes: Iterable[str]) -> set[str]:
    """``scopes`` and every scope above them (``/apps`` for ``/apps/mail``): Cedar needs each
    link of the chain as an entity."""
    found: set[str] = set()
    for scope in scopes:
        while scope not in found:
            found.add(scope)
            scope = scope.rsplit("/", 1)[0] or "/"
    return found


def _parent_scope(scope: str) -> list[dict[str, str]]:
    if scope == "/":
        return []
    return [{"type": "Scope", "id": scope.rsplit("/", 1)[0] or "/"}]


def available() -> str | None:
    """``None`` when both peers can be imported, else what to install."""
    try:
        import casbin  # noqa: F401
        import cedarpy  # noqa: F401
    except ImportError as error:
        return f"{error.name} is not installed: run `uv sync --group bench` (or `make bench`)"
    return None


def all_peers() -> list[Peer]:
    return [CasbinPeer(), CedarPeer()]
