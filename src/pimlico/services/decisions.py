"""Decisions for callers, answered from this process's in-memory index.

``DecisionFollower`` owns the index: it builds it from the store on first use (streaming the
rows, never holding them all), and follows the store's revisions by re-reading only the
entities the audit log says changed. ``check`` (whose answer carries its explanation) and
``effective_access`` are the use cases; a caller that has just written passes the write's
revision as ``at_least_revision`` and the follower catches up before answering.
"""

from __future__ import annotations

import threading
import time
from collections import defaultdict
from collections.abc import Callable, Iterable
from datetime import datetime
from typing import TYPE_CHECKING, Any, TypeVar

from sqlalchemy import select
from sqlalchemy.orm import Session

from pimlico.db import mappers
from pimlico.db.audit import changes_since, current_revision
from pimlico.db.tables import (
    AssignmentRow,
    GroupRow,
    MembershipRow,
    RoleRow,
    ServiceAccountRow,
    UserRow,
)
from pimlico.domain.catalogue import Perm
from pimlico.domain.decisions import Access, Decision, DecisionIndex
from pimlico.domain.index_feed import (
    feed_assignment,
    feed_group,
    feed_membership,
    feed_role,
    feed_user,
)
from pimlico.domain.permissions import validate_permission
from pimlico.domain.scopes import validate_scope
from pimlico.errors import InvalidInput, PermissionDenied

if TYPE_CHECKING:
    from pimlico.services.runtime import Actor, Pimlico

_Row = TypeVar("_Row")
_BATCH = 10_000
_IN_CHUNK = 5_000
"""Ids per ``IN (...)`` list: PostgreSQL takes at most 65,535 parameters a statement."""


def _stream(
    session: Session, table: type[_Row], ids: Iterable[str] | None = None
) -> Iterable[_Row]:
    query = select(table)
    if ids is not None:
        query = query.where(table.id.in_(list(ids)))  # type: ignore[attr-defined]
    yield from session.scalars(query.execution_options(yield_per=_BATCH))


_FEEDERS: dict[
    str, tuple[type[Any], Callable[[DecisionIndex, Any], None], Callable[[Any], Any]]
] = {
    "user": (UserRow, feed_user, mappers.user),
    "service_account": (ServiceAccountRow, feed_user, mappers.service_account),
    "group": (GroupRow, feed_group, mappers.group),
    "role": (RoleRow, feed_role, mappers.role),
    "membership": (MembershipRow, feed_membership, mappers.membership),
    "assignment": (AssignmentRow, feed_assignment, mappers.assignment),
}
"""Entity type (as the audit log names it) → its table, its feeder and its row mapper."""


class DecisionFollower:
    """This process's decision index, kept at or past the revision callers ask for."""

    def __init__(self, runtime: Pimlico) -> None:
        self._runtime = runtime
        self._index: DecisionIndex | None = None
        self._lock = threading.Lock()
        self._followed_at = 0.0

    @property
    def index(self) -> DecisionIndex:
        if self._index is None:
            with self._lock:
                if self._index is None:
                    self._index = self._build()
        return self._index

    def _build(self) -> DecisionIndex:
        index = DecisionIndex(max_depth=self._runtime.settings.max_nesting_depth)
        with self._runtime.reading() as session:
            # The revision first: whatever commits while we read is replayed by the follow.
            index.revision = current_revision(session)
            with index.bulk():
                for table, feed, to_entity in _FEEDERS.values():
                    for row in _stream(session, table):
                        feed(index, to_entity(row))
        self._follow(index)
        return index

    def follow(self) -> int:
        """Apply every change committed since the index's revision; return the new revision."""
        if self._index is None:
            return 0
        with self._lock:
            return self._follow(self._index)

    def current(self) -> DecisionIndex:
        """The index, caught up with every change committed so far (one small query when
        nothing changed). Authorization uses this: a revoked administrator is refused at once,
        whichever process revoked them."""
        index = self.index
        self.follow()
        return index

    def _follow(self, index: DecisionIndex) -> int:
        self._followed_at = time.monotonic()
        with self._runtime.reading() as session:
            head = current_revision(session)
            if head <= index.revision:
                return index.revision
            changed: dict[str, set[str]] = defaultdict(set)
            for _, target_type, target_id in changes_since(session, index.revision):
                if target_type in _FEEDERS:
                    changed[target_type].add(target_id)
            with index.bulk():
                # In the build's order (principals and groups before the edges between them),
                # whatever order the changes came in.
                for target_type, (table, feed, to_entity) in _FEEDERS.items():
                    ids = sorted(changed.get(target_type, ()))
                    for start in range(0, len(ids), _IN_CHUNK):
                        for row in _stream(session, table, ids[start : start + _IN_CHUNK]):
                            feed(index, to_entity(row))
            index.revision = head
        return head

    def at_least(self, revision: int | None) -> DecisionIndex:
        """The index at or past ``revision``; without one, at most the configured staleness
        behind the store (``PIMLICO_DECISION_MAX_STALENESS``)."""
        index = self.index
        if revision is None:
            if time.monotonic() - self._followed_at > self._runtime.settings.decision_max_staleness:
                self.follow()
            return index
        if revision > index.revision:
            reached = self.follow()
            if reached < revision:
                raise InvalidInput(
                    f"at_least_revision {revision} is ahead of the store (at {reached})"
                )
        return index


def _may_ask_about(runtime: Pimlico, actor: Actor | None, principal_id: str) -> None:
    """Anyone may ask about themselves; asking about others takes ``pim.decisions.read``."""
    if actor is not None and actor.principal_id != principal_id:
        authorize(runtime, actor, Perm.DECISIONS_READ)


def check(
    runtime: Pimlico,
    *,
    actor: Actor | None,
    principal_id: str,
    permission: str,
    scope: str,
    at: datetime | None = None,
    at_least_revision: int | None = None,
) -> Decision:
    """May ``principal_id`` use ``permission`` at ``scope`` at ``at`` (default: now)?

    ``actor`` is who asks; ``None`` is Pimlico itself (an embedded caller such as the
    example application's policy point, which has no identity of its own to check).
    """
    validate_permission(permission)
    validate_scope(scope)
    _may_ask_about(runtime, actor, principal_id)
    index = runtime.decisions.at_least(at_least_revision)
    return index.decide(principal_id, permission, scope, at or runtime.clock.now())


def effective_access(
    runtime: Pimlico,
    *,
    actor: Actor | None,
    principal_id: str,
    at: datetime | None = None,
    at_least_revision: int | None = None,
) -> Access:
    """Everything ``principal_id`` holds at ``at`` (default: now), with the chains."""
    _may_ask_about(runtime, actor, principal_id)
    index = runtime.decisions.at_least(at_least_revision)
    return index.effective_access(principal_id, at or runtime.clock.now())


def authorize(runtime: Pimlico, actor: Actor, permission: str, scope: str = "/") -> None:
    """Raise ``PermissionDenied`` unless ``actor`` holds ``permission`` at ``scope`` now.

    Pimlico guards itself with itself: the answer comes from the same decision index as every
    other decision, so an administrator's power lasts exactly as long as their activation.
    """
    if actor.system:
        return
    if actor.principal_id is None:
        raise PermissionDenied(f"{permission} is needed at {scope}")
    decision = runtime.decisions.current().decide(
        actor.principal_id, permission, scope, runtime.clock.now()
    )
    if not decision.allowed:
        raise PermissionDenied(f"{permission} is needed at {scope}")
