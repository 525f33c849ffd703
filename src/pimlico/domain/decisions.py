"""Decisions: may principal P use permission X at scope S at instant t — and why.

The engine is pure: it is fed the directory (principals, groups, memberships, roles and
assignments) and answers from memory, never from the store. Time is evaluated when the
question is asked, so a grant whose window is ``[start, end)`` answers "no" at exactly ``end``
without any background job.

For speed the index keeps, for every holder (a principal or group with active role
assignments), its grants by permission pattern; for every user and service account, the groups
it reaches (each with the time window of that path and a link back along the chain, for the
explanation) and a table of every pattern it may hold, through itself or a group, saying where
that pattern's grants are. A decision looks up the principal, then each pattern that matches
the permission (``mail.purge``, ``mail.*``, ``*``) in that one table, and checks scopes and
windows only of the grants it finds. Every window is still checked when the question is asked:
the table says where to look, never whether a grant is in force.

Groups' grants stay with the group: a table names the group (by its place in the principal's
view), so a group's grant that is added, ended or changed is seen by everyone below it at
once. Only a pattern new to the group is added to the tables below it, and only a group's
first grant adds it to the views below it.

Where the install built it, ``decide`` is C (``_decide.c``): it walks a packed copy of each
principal's view, kept beside the view and made again whenever the view changes, and hands
anything it does not know to the pure-Python ``_decide``, which gives the same answers.

Instants inside the index are POSIX timestamps (floats): ``datetime.timestamp()`` maps equal
instants to equal floats, so ``start <= t < end`` keeps its meaning at the boundaries.
"""

from __future__ import annotations

import gc
import math
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from sys import intern
from typing import TYPE_CHECKING, Any

from pimlico.domain.permissions import candidate_patterns, matches
from pimlico.domain.scopes import ancestors

if TYPE_CHECKING:
    from pimlico.domain._decide import PackedMap

try:  # the hot path in C, built when a C compiler was there (see _decide.c)
    from pimlico.domain import _decide as _native
except ImportError:  # pragma: no cover - a build without a compiler decides in pure Python
    _native = None  # type: ignore[assignment]

NATIVE_AVAILABLE = _native is not None
"""Whether this installation has the C decision path (``DecisionIndex(native=False)`` still
chooses the pure-Python one)."""

FOREVER = math.inf
GRANTED = "granted"
NOT_GRANTED = "no active assignment grants this permission at this scope"


def ts(at: datetime | None, default: float = FOREVER) -> float:
    """An aware datetime as the index's float timestamp (``None`` → ``default``)."""
    return default if at is None else at.timestamp()


def from_ts(value: float) -> datetime | None:
    return None if value == FOREVER or value == -FOREVER else datetime.fromtimestamp(value, UTC)


@dataclass(frozen=True, slots=True)
class Step:
    """One link of a chain: ``member`` belongs to ``group_id`` through a static membership
    (``via == "membership"``) or an active PIM assignment (``via == "assignment"``)."""

    member_id: str
    group_id: str
    via: str
    via_id: str
    start: float
    end: float


# A path from a principal up to a group: (start, end, step, rest). ``rest`` is the path from
# the step's group onwards (None when the step reaches the group directly). Tuples, not
# objects: there are millions of these in a large directory.
Path = tuple[float, float, Step, "Path | None"]


# An active role grant inside the index: (scope, start, end, assignment_id, role_id).
_RoleGrant = tuple[str, float, float, str, str]
# A principal's table: every permission pattern it may hold, any time, at any scope → where
# to look. A source is one of the principal's own grants of that pattern, or (an int) the
# position in its view of a group it reaches that holds the pattern.
_Table = dict[str, tuple["_RoleGrant | int", ...]]
# A principal's view: (enabled, table, then for each group holder it reaches, at positions
# 2, 5, 8, …: that holder's pattern → grants dict, the principal's paths to it, its id).
# With the C path the table is None: packing makes its own from the principal's own grants
# and its holders' dicts, and the pure engine makes it on the rare question handed to it.
# One tuple, so that a decision touches as few distinct objects as it can: at this size
# each one it reads is likely a cache miss, and those misses are most of a decision's cost.
_View = tuple[Any, ...]
_new = object.__new__


def _interned_ancestors(scope: str) -> tuple[str, ...]:
    """``scope`` and the scopes above it, interned (for the C path: see ``_hold``)."""
    return tuple(intern(s) for s in ancestors(scope))


def _interned_candidates(permission: str) -> tuple[str, ...]:
    """``candidate_patterns``, interned: the tables' keys are, so a look-up finds its key by
    address without reading the key's string."""
    return tuple(intern(p) for p in candidate_patterns(permission))


def chain_of(path: Path | None) -> tuple[Step, ...]:
    steps: list[Step] = []
    while path is not None:
        steps.append(path[2])
        path = path[3]
    return tuple(steps)


class Grant:
    """Why something is allowed: which assignment, held by whom, reached through which chain.

    Built on the hot path of every allowed decision, so it keeps the index's own grant tuple
    and path, and works out the chain and the instants only when they are read.
    """

    __slots__ = ("_grant", "_path", "holder_id", "pattern")

    def __init__(
        self,
        assignment_id: str,
        role_id: str,
        scope: str,
        pattern: str,
        holder_id: str,
        path: Path | None,
        start: float,
        end: float,
    ) -> None:
        self._grant: _RoleGrant = (scope, start, end, assignment_id, role_id)
        self.pattern = pattern
        self.holder_id = holder_id
        self._path = path  # None: held directly

    @property
    def assignment_id(self) -> str:
        return self._grant[3]

    @property
    def role_id(self) -> str:
        return self._grant[4]

    @property
    def scope(self) -> str:
        return self._grant[0]

    @property
    def chain(self) -> tuple[Step, ...]:
        """The links from the principal up to the holder (empty when held directly)."""
        return () if self._path is None else _chain(self._path)

    @property
    def start(self) -> datetime | None:
        start = self._grant[1]
        return from_ts(start if self._path is None else max(start, self._path[0]))

    @property
    def end(self) -> datetime | None:
        """When this grant stops applying along this chain (``None``: never)."""
        end = self._grant[2]
        return from_ts(end if self._path is None else min(end, self._path[1]))

    def __repr__(self) -> str:
        return (
            f"Grant({self.assignment_id!r}, role={self.role_id!r}, scope={self.scope!r}, "
            f"pattern={self.pattern!r}, holder={self.holder_id!r})"
        )


def _found(grant: _RoleGrant, pattern: str, holder_id: str, path: Path | None) -> Grant:
    """The explanation of an allowed decision, made on the hot path from the index's own
    tuples (without the constructor's eight arguments and the tuple it builds)."""
    found = _new(Grant)
    found._grant = grant
    found.pattern = pattern
    found.holder_id = holder_id
    found._path = path
    return found


@dataclass(slots=True)
class Decision:
    """The answer to one question. (Not frozen: one is made for every decision, and a frozen
    dataclass costs several times more to build. Treat it as read-only.)"""

    allowed: bool
    principal_id: str
    permission: str
    scope: str
    at: datetime
    reason: str
    grant: Grant | None = None
    revision: int = 0


@dataclass(frozen=True, slots=True)
class HeldGroup:
    group_id: str
    relation: str
    chain: tuple[Step, ...]
    end: datetime | None


@dataclass(frozen=True, slots=True)
class HeldAssignment:
    assignment_id: str
    kind: str
    target_type: str
    target_id: str
    scope: str
    holder_id: str
    chain: tuple[Step, ...]
    start: datetime | None
    end: datetime | None


@dataclass(frozen=True, slots=True)
class Access:
    """Everything a principal holds at one instant."""

    principal_id: str
    at: datetime
    roles: tuple[Grant, ...] = ()
    """One entry per active role assignment in force (``pattern`` is empty here)."""
    groups: tuple[HeldGroup, ...] = ()
    eligible: tuple[HeldAssignment, ...] = ()
    permissions: frozenset[tuple[str, str]] = field(default_factory=frozenset)
    """(permission pattern, scope) pairs the principal holds."""


class DecisionIndex:
    """The in-memory decision index. Feed it with the ``put_*``/``end_*`` methods (at build
    time and when following the store), then ask ``decide`` and ``effective_access``.

    Not thread-safe for writers: one owner applies changes. Readers may ask concurrently with
    each other and with that owner: a change replaces what it changes or adds to it (one
    dict assignment at a time, never in what a reader may be walking), so a reader sees the
    index as it was or partly changed, and the change whole once the call that makes it
    returns (inside ``bulk()``: once the block ends).
    """

    decide: Callable[[str, str, str, datetime], Decision]
    """``decide(principal_id, permission, scope, at)``: the decision, with its explanation.

    The C path when this installation has it (``native``): the same walk as the pure-Python
    ``_decide``, over a packed copy of each view (``_set_view``), with the same answers (the
    tests ask both); else ``_decide`` itself."""

    def __init__(self, max_depth: int = 8, *, native: bool = True) -> None:
        self.max_depth = max_depth
        self.revision = 0
        self._enabled: dict[str, bool] = {}  # users and service accounts
        self._groups: set[str] = set()
        # Group membership edges, up and down: member → {edge id: (group, start, end, step)}.
        self._up: dict[str, dict[str, tuple[str, float, float, Step]]] = {}
        self._down: dict[str, set[str]] = {}
        self._owners: dict[str, dict[str, tuple[str, float, float, Step]]] = {}
        # Active role assignments and the role catalogue.
        self._role_perms: dict[str, tuple[str, ...]] = {}
        self._role_grants: dict[str, set[str]] = {}
        self._grants: dict[str, tuple[str, str, str, float, float]] = {}
        # Who holds which pattern: holder → pattern → its grants (small dicts, one per holder;
        # the views below a group hold its dict, so a group keeps it for good, even empty;
        # the tuples are replaced, never changed in place).
        self._held: dict[str, dict[str, tuple[_RoleGrant, ...]]] = {}
        self._by_principal: dict[str, set[str]] = {}
        # Eligible assignments (any target): principal → {id: (type, target, scope, s, e)}.
        self._eligible: dict[str, dict[str, tuple[str, str, str, float, float]]] = {}
        # Derived: every group each principal reaches, with the windows of the paths, and
        # per user or service account its view (see ``_View``): all a decision needs, reached
        # in one look-up. What changed since the views were last settled: principals whose
        # own grants changed (and holders not known as groups: their views, and those below
        # them, are rebuilt), groups that hold grants for the first time, and patterns new
        # to a group (both added to the views below).
        self._views: dict[str, _View] = {}
        self._dirty_holders: set[str] = set()
        self._new_holders: set[str] = set()
        self._grown: dict[str, set[str]] = {}
        self._shared_sources: dict[tuple[_RoleGrant | int, ...], tuple[_RoleGrant | int, ...]] = {}
        self._closure: dict[str, dict[str, tuple[Path, ...]]] = {}
        self._paths: dict[str, dict[str, tuple[Path, ...]]] = {}
        self._dirty_groups: set[str] = set()
        self._dirty_principals: set[str] = set()
        self._in_progress: set[str] = set()
        self._building = False
        # Inside the ``bulk()`` block of a first build: the assignment ids fed so far.
        self._fed: set[str] | None = None
        # With the C path, each view is also kept packed (``_decide.pack``), for it to read.
        self._packed: PackedMap | None = None
        self.native = native and _native is not None
        if native and _native is not None:
            self._packed = _native.PackedMap()
            self.decide = _native.Decider(
                self,
                self._packed,
                self._decide,
                _interned_ancestors,
                _interned_candidates,
                Decision,
                Grant,
                GRANTED,
                NOT_GRANTED,
            )
        else:
            self.decide = self._decide

    # -- feeding --------------------------------------------------------------------------

    def bulk(self) -> _Bulk:
        """Defer derived-state work until the ``with`` block ends (for builds and refreshes)."""
        return _Bulk(self)

    # Ids arrive as fresh strings in every row that names them; interning them keeps one
    # copy of each (a few hundred MB at a million assignments).

    def put_principal(self, principal_id: str, *, enabled: bool) -> None:
        principal_id = intern(principal_id)
        self._enabled[principal_id] = enabled
        self._dirty_principals.add(principal_id)
        self._settle()

    def put_group(self, group_id: str) -> None:
        group_id = intern(group_id)
        if group_id not in self._groups:
            self._groups.add(group_id)
            # Edges fed before the group was known filed it as a user: forget those paths.
            self._paths.pop(group_id, None)
            self._views.pop(group_id, None)
            if self._packed is not None:
                self._packed.pop(group_id)
            self._dirty_principals.discard(group_id)
            self._dirty_groups.add(group_id)
            self._settle()

    def put_role(self, role_id: str, permissions: Iterable[str]) -> None:
        role_id = intern(role_id)
        perms = tuple(intern(p) for p in permissions)
        old = self._role_perms.get(role_id, ())
        self._role_perms[role_id] = perms
        if old != perms:
            for aid in list(self._role_grants.get(role_id, ())):
                pid, _, scope, start, end = self._grants[aid]
                self._unhold(aid, pid, old)
                self._hold(aid, pid, role_id, scope, start, end)
        self._settle()

    def put_membership(
        self,
        membership_id: str,
        *,
        group_id: str,
        member_id: str,
        relation: str,
        start: float,
        end: float,
    ) -> None:
        """A static membership (``relation`` ``member`` or ``owner``) in force for [start, end)."""
        group_id, member_id = intern(group_id), intern(member_id)
        self._put_edge(membership_id, "membership", group_id, member_id, relation, start, end)

    def end_edge(self, edge_id: str, member_id: str) -> None:
        """Forget a membership or group assignment (ended ones are put with their end)."""
        self._forget_edge(edge_id, member_id)
        self._settle()

    def _forget_edge(self, edge_id: str, member_id: str) -> None:
        for table in (self._up, self._owners):
            edges = table.get(member_id)
            if edges and edge_id in edges:
                group_id = edges.pop(edge_id)[0]
                still_linked = any(e[0] == group_id for e in edges.values())
                if table is self._up and not still_linked:
                    self._down.get(group_id, set()).discard(member_id)
                self._touch(member_id)

    def put_assignment(
        self,
        assignment_id: str,
        *,
        kind: str,
        principal_id: str,
        target_type: str,
        target_id: str,
        scope: str,
        start: float,
        end: float,
    ) -> None:
        """An assignment with its effective window (its end, or when it was ended if sooner)."""
        principal_id, target_id, scope = intern(principal_id), intern(target_id), intern(scope)
        fed = self._fed
        if fed is None or assignment_id in fed:
            self._forget(assignment_id, principal_id)
        else:  # new in a first build: nothing to forget (a third of a large build's feeding)
            fed.add(assignment_id)
        if kind == "eligible":
            self._eligible.setdefault(principal_id, {})[assignment_id] = (
                target_type,
                target_id,
                scope,
                start,
                end,
            )
        elif target_type == "role":
            self._grants[assignment_id] = (principal_id, target_id, scope, start, end)
            self._role_grants.setdefault(target_id, set()).add(assignment_id)
            self._by_principal.setdefault(principal_id, set()).add(assignment_id)
            self._hold(assignment_id, principal_id, target_id, scope, start, end)
        else:
            relation = "member" if target_type == "group_member" else "owner"
            self._put_edge(
                assignment_id, "assignment", target_id, principal_id, relation, start, end
            )
        self._settle()  # once, for what it was before and what it is now

    def drop_assignment(self, assignment_id: str, principal_id: str) -> None:
        self._forget(assignment_id, principal_id)
        self._settle()

    def _forget(self, assignment_id: str, principal_id: str) -> None:
        """Drop whatever ``assignment_id`` is now (eligible, a role grant or a group edge);
        the caller settles, once, after what it does next."""
        eligible = self._eligible.get(principal_id)
        if eligible is not None:
            eligible.pop(assignment_id, None)
        grant = self._grants.pop(assignment_id, None)
        if grant is not None:
            pid, role_id = grant[0], grant[1]
            self._role_grants[role_id].discard(assignment_id)
            self._by_principal[pid].discard(assignment_id)
            self._unhold(assignment_id, pid, self._role_perms.get(role_id, ()))
        self._forget_edge(assignment_id, principal_id)

    # -- asking ---------------------------------------------------------------------------

    def _decide(self, principal_id: str, permission: str, scope: str, at: datetime) -> Decision:
        """The pure-Python decision (see ``decide``; the C path's fallback and twin)."""
        t = at.timestamp()
        view = self._views.get(principal_id)
        if view is None:  # a group asked about directly (rare: worked out on the spot)
            paths = self._closure_paths(principal_id)
            if paths is None:
                return Decision(
                    False,
                    principal_id,
                    permission,
                    scope,
                    at,
                    "unknown principal",
                    None,
                    self.revision,
                )
            view = self._view_of(principal_id, True, paths)
        if not view[0]:
            return Decision(
                False,
                principal_id,
                permission,
                scope,
                at,
                "principal is disabled",
                None,
                self.revision,
            )
        table: _Table | None = view[1]
        if table is None:  # packed for the C path, which handed this question over
            table = self._table_of(principal_id, view)
        scopes = ancestors(scope)
        for pattern in candidate_patterns(permission):
            sources = table.get(pattern)
            if sources is None:
                continue
            for source in sources:
                if isinstance(source, int):  # a group holder, at this position in the view
                    grants = view[source].get(pattern)
                    if grants is None:  # the group no longer holds it
                        continue
                    for grant in grants:
                        if grant[0] in scopes and grant[1] <= t < grant[2]:
                            for path in view[source + 1]:
                                if path[0] <= t < path[1]:
                                    return Decision(
                                        True,
                                        principal_id,
                                        permission,
                                        scope,
                                        at,
                                        GRANTED,
                                        _found(grant, pattern, view[source + 2], path),
                                        self.revision,
                                    )
                elif source[0] in scopes and source[1] <= t < source[2]:
                    return Decision(
                        True,
                        principal_id,
                        permission,
                        scope,
                        at,
                        GRANTED,
                        _found(source, pattern, principal_id, None),
                        self.revision,
                    )
        return Decision(
            False,
            principal_id,
            permission,
            scope,
            at,
            NOT_GRANTED,
            None,
            self.revision,
        )

    def effective_access(self, principal_id: str, at: datetime) -> Access:
        t = at.timestamp()
        paths = self._paths.get(principal_id) or self._closure_paths(principal_id)
        if paths is None or not self._enabled.get(principal_id, True):
            return Access(principal_id, at)
        roles: list[Grant] = []
        groups: list[HeldGroup] = []
        eligible: list[HeldAssignment] = []
        perms: set[tuple[str, str]] = set()
        for pid, pid_paths in paths.items():
            path = _first_in_force(pid_paths, t)
            if path is None:
                continue
            if path[2].via != "self":
                groups.append(HeldGroup(pid, "member", chain_of(path), from_ts(path[1])))
            for aid in sorted(self._by_principal.get(pid, ())):
                held_grant = self._grants.get(aid)
                if held_grant is None:  # dropped by a follow still in progress: not held now
                    continue
                _, role_id, g_scope, g_start, g_end = held_grant
                if g_start <= t < g_end:
                    roles.append(self._grant(aid, role_id, g_scope, "", pid, path, g_start, g_end))
                    perms.update((p, g_scope) for p in self._role_perms.get(role_id, ()))
            for aid, (tt, target, g_scope, e_start, e_end) in sorted(
                self._eligible.get(pid, {}).items()
            ):
                if e_start <= t < e_end:
                    eligible.append(
                        HeldAssignment(
                            aid,
                            "eligible",
                            tt,
                            target,
                            g_scope,
                            pid,
                            _chain(path),
                            from_ts(e_start),
                            from_ts(min(e_end, path[1])),
                        )
                    )
            for _, (group_id, o_start, o_end, step) in sorted(self._owners.get(pid, {}).items()):
                if o_start <= t < o_end:
                    groups.append(
                        HeldGroup(group_id, "owner", (*_chain(path), step), from_ts(o_end))
                    )
        return Access(
            principal_id, at, tuple(roles), tuple(groups), tuple(eligible), frozenset(perms)
        )

    def eligible_for(self, principal_id: str, at: datetime) -> tuple[HeldAssignment, ...]:
        return self.effective_access(principal_id, at).eligible

    def holds(
        self, principal_id: str, target_type: str, target_id: str, scope: str, at: datetime
    ) -> bool:
        """Does ``principal_id`` effectively hold the target at ``at`` — a role at a scope its
        grant covers, or membership / ownership of a group — through any assignment, static
        membership or nested group? (What provisioning keeps downstream.)"""
        access = self.effective_access(principal_id, at)
        if target_type == "role":
            covering = ancestors(scope)
            return any(g.role_id == target_id and g.scope in covering for g in access.roles)
        relation = "member" if target_type == "group_member" else "owner"
        return any(h.group_id == target_id and h.relation == relation for h in access.groups)

    def holders(self, target_type: str, target_id: str, scope: str, at: datetime) -> set[str]:
        """The users and service accounts that ``holds`` the target at ``at``."""
        if target_type == "role":
            direct = {self._grants[aid][0] for aid in self._role_grants.get(target_id, ())}
        elif target_type == "group_member":
            direct = {target_id}
        else:
            direct = {
                m
                for m, edges in self._owners.items()
                if any(e[0] == target_id for e in edges.values())
            }
        groups = {p for p in direct if p in self._groups}
        candidates = (direct - groups) | self._principals_below(groups)
        return {p for p in candidates if self.holds(p, target_type, target_id, scope, at)}

    # -- internals ------------------------------------------------------------------------

    def _grant(
        self,
        aid: str,
        role_id: str,
        scope: str,
        pattern: str,
        holder: str,
        path: Path,
        g_start: float,
        g_end: float,
    ) -> Grant:
        return Grant(aid, role_id, scope, pattern, holder, path, g_start, g_end)

    def _closure_paths(self, principal_id: str) -> dict[str, tuple[Path, ...]] | None:
        if principal_id in self._groups:
            own: dict[str, tuple[Path, ...]] = {principal_id: (_self_path(principal_id),)}
            own.update(self._closure.get(principal_id, {}))
            return own
        return None

    def _put_edge(
        self,
        edge_id: str,
        via: str,
        group_id: str,
        member_id: str,
        relation: str,
        start: float,
        end: float,
    ) -> None:
        step = Step(member_id, group_id, via, edge_id, start, end)
        if relation == "owner":
            self._owners.setdefault(member_id, {})[edge_id] = (group_id, start, end, step)
            return
        self._up.setdefault(member_id, {})[edge_id] = (group_id, start, end, step)
        self._down.setdefault(group_id, set()).add(member_id)
        self._touch(member_id)
        self._settle()

    def _touch(self, member_id: str) -> None:
        if member_id in self._groups:
            self._dirty_groups.add(member_id)
        else:
            self._dirty_principals.add(member_id)

    def _hold(self, aid: str, pid: str, role_id: str, scope: str, start: float, end: float) -> None:
        # Every grant's scope is interned: the C path compares scopes by address.
        entry: _RoleGrant = (intern(scope), start, end, aid, role_id)
        group = pid in self._groups
        held = self._held.get(pid)
        if held is None:
            held = self._held[pid] = {}
            if group:  # the views below must reach it
                self._new_holders.add(pid)
        for pattern in self._role_perms.get(role_id, ()):
            grants = held.get(pattern)
            if grants is None:
                held[pattern] = (entry,)
                if group:  # the tables below must list it
                    self._grown.setdefault(pid, set()).add(pattern)
            else:
                held[pattern] = (*grants, entry)
        if not group:
            self._dirty_holders.add(pid)  # its table holds its own tuples: rebuild it

    def _unhold(self, aid: str, pid: str, patterns: Iterable[str]) -> None:
        """Drop grant ``aid`` of ``pid``. A group keeps its dict, even empty, and a pattern it
        no longer holds may stay listed in the tables below it: a decision finds nothing
        there and moves on, and the views below need no change."""
        held = self._held.get(pid)
        if held is None:
            return
        for pattern in patterns:
            grants = held.get(pattern)
            if grants is None:
                continue
            kept = tuple(g for g in grants if g[3] != aid)
            if kept:
                held[pattern] = kept
            else:
                del held[pattern]
        if pid in self._groups:
            return
        if not held:
            del self._held[pid]
        self._dirty_holders.add(pid)

    def _settle(self) -> None:
        """Recompute the derived closures that changes made stale (unless in a bulk block)."""
        if self._building or not (
            self._dirty_groups
            or self._dirty_principals
            or self._dirty_holders
            or self._new_holders
            or self._grown
        ):
            return
        groups = set(self._descendant_groups(self._dirty_groups))
        for group_id in groups:
            self._closure.pop(group_id, None)
        for group_id in groups:
            self._group_closure(group_id)
        principals = set(self._dirty_principals)
        for group_id in groups:
            principals.update(m for m in self._down.get(group_id, ()) if m not in self._groups)
        principals -= self._groups
        for pid in principals:
            self._paths[pid] = self._principal_paths(pid)
        principals.update(h for h in self._dirty_holders if h not in self._groups)
        # (A holder not known as a group may still have members: one put before its group.)
        principals.update(self._principals_below(self._dirty_holders))
        for pid in principals:
            paths = self._paths.get(pid)
            if paths is None:  # a holder never put nor linked: its paths are just itself
                paths = self._paths[pid] = self._principal_paths(pid)
            self._set_view(pid, self._view_of(pid, self._enabled.get(pid, True), paths))
        if self._new_holders or self._grown:
            for pid in self._principals_below(self._new_holders | self._grown.keys()) - principals:
                self._add_to_view(pid)
        self._dirty_groups.clear()
        self._dirty_principals.clear()
        self._dirty_holders.clear()
        self._new_holders.clear()
        self._grown.clear()

    def _principals_below(self, groups: Iterable[str]) -> set[str]:
        """Users and service accounts inside any of ``groups``, at any depth, at any time."""
        return {
            m
            for g in self._descendant_groups(groups)
            for m in self._down.get(g, ())
            if m not in self._groups
        }

    def _view_of(self, pid: str, enabled: bool, paths: dict[str, tuple[Path, ...]]) -> _View:
        """``pid``'s view: its table of patterns, then each group holder it reaches."""
        held = self._held
        view: list[Any] = [enabled, None]
        for holder, holder_paths in paths.items():
            by_pattern = held.get(holder)
            if by_pattern is not None and holder != pid:
                view += (by_pattern, holder_paths, holder)
        if self._packed is None:  # (with the C path, packing makes its own table)
            view[1] = self._table_of(pid, view)
        return tuple(view)

    def _table_of(self, pid: str, view: _View | list[Any]) -> _Table:
        """The table of ``pid``'s view: each pattern it may hold → its own grants of it,
        then the positions of the group holders in the view that hold it."""
        shared = self._shared_sources
        table: _Table = {}
        for position in range(2, len(view), 3):
            by_pattern = view[position]
            here = self._position(position)
            if not table:
                table.update(dict.fromkeys(by_pattern, here))
                continue
            for pattern in by_pattern:  # (a hot loop of the build: ``_sources`` inlined)
                found = table.get(pattern)
                if found is None:
                    table[pattern] = here
                else:
                    both = found + here
                    table[pattern] = shared.setdefault(both, both)
        own = self._held.get(pid)
        if own is not None:  # its own grants first: they are checked first
            for pattern, grants in own.items():
                found = table.get(pattern)
                table[pattern] = grants if found is None else (*grants, *found)
        return table

    def _add_to_view(self, pid: str) -> None:
        """Add to ``pid``'s view the groups it reaches that hold grants for the first time (a
        new view, with a copy of the table), then list in its table the patterns new to the
        groups it reaches (in place: one dict assignment each, which a reader sees done or
        not yet). Cheaper than ``_view_of`` by the groups that did not change."""
        view = self._views.get(pid)
        paths = self._paths.get(pid)
        if view is None or paths is None:
            return
        if view[1] is None:  # packed: its table was not kept, so make the view again
            self._set_view(pid, self._view_of(pid, view[0], paths))
            return
        reached = view[4::3]
        added = [g for g in paths if g in self._new_holders and g not in reached]
        changed = bool(added)
        if added:
            table = dict(view[1])
            extended = [view[0], table, *view[2:]]
            for group in added:
                by_pattern = self._held[group]
                here = self._position(len(extended))
                extended += (by_pattern, paths[group], group)
                for pattern in by_pattern:
                    found = table.get(pattern)
                    table[pattern] = here if found is None else self._sources(found, here)
            view = self._views[pid] = tuple(extended)
        table = view[1]
        for position in range(2, len(view), 3):
            patterns = self._grown.get(view[position + 2])
            if not patterns:
                continue
            here = self._position(position)
            for pattern in patterns:
                found = table.get(pattern)
                if found is None:
                    table[pattern] = here
                    changed = True
                elif position not in found:
                    table[pattern] = self._sources(found, here)
                    changed = True
        if changed:
            self._set_view(pid, view)

    def _set_view(self, pid: str, view: _View) -> None:
        """``pid``'s view is now ``view`` (its table may be left to make: ``None``). With the C
        path it is packed, table and all, and kept without its table (the pure engine makes
        it again on the rare question the C path hands over; ``_add_to_view`` makes the
        whole view again)."""
        packed_map = self._packed
        if packed_map is not None:
            packed = _native.pack(pid, view, self._held.get(pid))
            if packed is not None:
                self._views[pid] = view if view[1] is None else (view[0], None, *view[2:])
                packed_map.put(packed)
                return
            packed_map.pop(pid)  # a shape the C path does not know: the pure engine decides
        if view[1] is None:
            view = (view[0], self._table_of(pid, view), *view[2:])
        self._views[pid] = view

    # Most principals reach their groups' patterns through the same few positions: those
    # tuples are shared (millions of them otherwise).

    def _position(self, position: int) -> tuple[_RoleGrant | int, ...]:
        here = (position,)
        return self._shared_sources.setdefault(here, here)

    def _sources(
        self, found: tuple[_RoleGrant | int, ...], here: tuple[_RoleGrant | int, ...]
    ) -> tuple[_RoleGrant | int, ...]:
        """``found`` and then ``here``; shared unless it starts with own grants (they come
        first, so a tuple that starts with a position holds only positions)."""
        both = found + here
        return self._shared_sources.setdefault(both, both) if isinstance(found[0], int) else both

    def _descendant_groups(self, roots: Iterable[str]) -> Iterator[str]:
        seen: set[str] = set()
        stack = list(roots)
        while stack:
            group_id = stack.pop()
            if group_id in seen:
                continue
            seen.add(group_id)
            yield group_id
            stack.extend(m for m in self._down.get(group_id, ()) if m in self._groups)

    def _group_closure(self, group_id: str) -> dict[str, tuple[Path, ...]]:
        """Every group ``group_id`` reaches, with each path's window, paths ≤ ``max_depth``."""
        return self._closure_of(group_id)[0]

    def _closure_of(self, group_id: str) -> tuple[dict[str, tuple[Path, ...]], frozenset[str]]:
        """The closure, and the groups on the current walk it had to stop at.

        Links are cycle-free at any one time (the store refuses cycles), but not across time:
        g1 may have been in g2 last month and g2 be in g1 now. So a walk stops at a group it
        is already inside, and a closure that had to stop somewhere other than at itself is
        right only for this walk: it is not cached.
        """
        cached = self._closure.get(group_id)
        if cached is not None:
            return cached, frozenset()
        self._in_progress.add(group_id)
        blocked: set[str] = set()
        found: dict[str, list[Path]] = {}
        for parent, start, end, step in self._up.get(group_id, {}).values():
            if parent in self._in_progress:
                blocked.add(parent)
                continue
            _add_path(found, parent, (start, end, step, None), 1)
            above, above_blocked = self._closure_of(parent)
            blocked |= above_blocked
            for ancestor, paths in above.items():
                if ancestor == group_id:
                    continue  # back to where we started: a cycle across time
                for p in paths:
                    depth = _depth(p)
                    if depth < self.max_depth:
                        path = (max(start, p[0]), min(end, p[1]), step, p)
                        _add_path(found, ancestor, path, depth + 1)
        self._in_progress.discard(group_id)
        blocked.discard(group_id)
        closure = {g: tuple(ps) for g, ps in found.items()}
        if not blocked:
            self._closure[group_id] = closure
        return closure, frozenset(blocked)

    def _principal_paths(self, pid: str) -> dict[str, tuple[Path, ...]]:
        found: dict[str, list[Path]] = {pid: [_self_path(pid)]}
        for group_id, start, end, step in self._up.get(pid, {}).values():
            _add_path(found, group_id, (start, end, step, None), 1)
            for ancestor, paths in self._group_closure(group_id).items():
                for p in paths:
                    depth = _depth(p)
                    if depth < self.max_depth:
                        path = (max(start, p[0]), min(end, p[1]), step, p)
                        _add_path(found, ancestor, path, depth + 1)
        return {g: tuple(ps) for g, ps in found.items()}


class _Bulk:
    """Feeding in bulk: derived state is settled once at the end, and the cyclic garbage
    collector is paused meanwhile (the index's millions of tuples hold no cycles, and
    collection passes over them would take about half of a large build)."""

    def __init__(self, index: DecisionIndex) -> None:
        self.index = index
        self._collecting = False

    def __enter__(self) -> DecisionIndex:
        self._collecting = gc.isenabled()
        gc.disable()
        index = self.index
        index._building = True
        if not (index._grants or index._eligible or index._up or index._owners):
            index._fed = set()  # a first build: only ids fed in this block can be known
        return index

    def __exit__(self, *exc: object) -> None:
        try:
            self.index._building = False
            self.index._fed = None
            self.index._settle()
        finally:
            if self._collecting:
                gc.enable()


def _self_path(pid: str) -> Path:
    return (-FOREVER, FOREVER, Step(pid, pid, "self", pid, -FOREVER, FOREVER), None)


def _chain(path: Path) -> tuple[Step, ...]:
    return () if path[2].via == "self" else chain_of(path)


def _depth(path: Path | None) -> int:
    depth = 0
    while path is not None:
        depth += 1
        path = path[3]
    return depth


def _add_path(found: dict[str, list[Path]], group_id: str, path: Path, depth: int) -> None:
    """Keep ``path`` (``depth`` links long) unless it is empty or a known path no longer than
    it covers its window.

    (A longer path covering a shorter one does not make it redundant: the shorter one may
    still be extended further up before the depth cap.)
    """
    start, end = path[0], path[1]
    if start >= end:
        return
    known = found.get(group_id)
    if known is None:
        found[group_id] = [path]
        return
    for other in known:
        if other[0] <= start and end <= other[1] and _depth(other) <= depth:
            return
    known.append(path)


def _first_in_force(paths: tuple[Path, ...], t: float) -> Path | None:
    for path in paths:
        if path[0] <= t < path[1]:
            return path
    return None


def permission_matches(pattern: str, permission: str) -> bool:
    return matches(pattern, permission)
