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
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from datetime import datetime
from typing import TYPE_CHECKING, Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from pimlico.db import mappers
from pimlico.db.audit import changes_since, current_revision
from pimlico.db.engine import make_engine, make_sessionmaker
from pimlico.db.tables import (
    AssignmentRow,
    Base,
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

_BATCH = 10_000
_IN_CHUNK = 5_000
"""Ids per ``IN (...)`` list: PostgreSQL takes at most 65,535 parameters a statement."""


def _stream(session: Session, table: type[Base], ids: Iterable[str] | None = None) -> Iterable[Any]:
    """The rows of ``table`` as plain column rows, which the mappers read by attribute name
    like entities (no ORM objects to build and track for rows that are only fed and dropped):
    every row, streamed in batches (a server-side cursor), or those of ``ids`` in one plain
    fetch (a cursor would cost three round trips for a few rows)."""
    columns = Base.metadata.tables[table.__tablename__]
    query = select(columns)
    if ids is None:
        yield from session.execute(query.execution_options(yield_per=_BATCH))
    else:
        yield from session.execute(query.where(columns.c.id.in_(list(ids))))


_FEEDERS: dict[
    str, tuple[type[Base], Callable[[DecisionIndex, Any], None], Callable[[Any], Any]]
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
    """This process's decision index, kept at or past the revision callers ask for.

    It reads the store through a connection of its own (its reads all run under its lock, so
    one is enough), never the runtime's pool: a write that holds the write lock may have to
    wait for the index to follow the write before it, and the writers queued behind the lock
    may hold every connection of the pool.
    """

    def __init__(self, runtime: Pimlico) -> None:
        self._runtime = runtime
        self.engine = make_engine(
            runtime.engine.url.render_as_string(hide_password=False), connections=1
        )
        self._sessions = make_sessionmaker(self.engine)
        self._index: DecisionIndex | None = None
        self._lock = threading.Lock()
        self._followed_at = 0.0

    def close(self) -> None:
        self.engine.dispose()

    @contextmanager
    def _reading(self) -> Iterator[Session]:
        with self._sessions() as session, session.begin():
            yield session

    @property
    def index(self) -> DecisionIndex:
        if self._index is None:
            with self._lock:
                if self._index is None:
                    self._index = self._build()
        return self._index

    def _build(self) -> DecisionIndex:
        index = DecisionIndex(max_depth=self._runtime.settings.max_nesting_depth)
        with self._reading() as session:
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

    def follow_write(
        self,
        revision: int,
        changes: Iterable[tuple[str, str]],
        stored: Mapping[tuple[str, str], Any] | None = None,
    ) -> int:
        """Apply the write of ``revision`` this process has just committed, whose audit
        events named ``changes``; return the index's revision.

        When the index stands right below it (the usual case: every write of this process
        follows itself), the write's own changes are all there is to apply, so only the
        changed entities are read: neither the head nor the change feed — and not even
        those the write gives as ``stored`` (``(type, id)`` → the entity exactly as it
        committed), which are fed as they are.
        """
        if self._index is None:
            return 0
        with self._lock:
            index = self._index
            if index.revision != revision - 1:
                return index.revision if index.revision >= revision else self._follow(index)
            self._followed_at = time.monotonic()
            changed: dict[str, set[str]] = defaultdict(set)
            given: list[tuple[str, Any]] = []
            for change in changes:
                target_type, target_id = change
                if target_type not in _FEEDERS:
                    continue
                if stored is not None and (entity := stored.get(change)) is not None:
                    given.append((target_type, entity))
                else:
                    changed[target_type].add(target_id)
            if changed:
                with self._reading() as session:
                    _apply(session, index, changed, given)
            elif given:
                _apply(None, index, changed, given)
            index.revision = revision
            return revision

    def current(self) -> DecisionIndex:
        """The index, caught up with every change committed so far (one small query when
        nothing changed). Authorization uses this: a revoked administrator is refused at once,
        whichever process revoked them.

        Inside a write nothing else can commit, so an index at the revision just below the
        write's is current without a query.
        """
        index = self.index
        writing = self._runtime.write_in_progress()
        if writing is None:
            self.follow()
            return index
        with self._lock:  # waits for a follow in progress (the write before this one)
            if index.revision < writing - 1:
                self._follow(index)
        return index

    def _follow(self, index: DecisionIndex) -> int:
        self._followed_at = time.monotonic()
        with self._reading() as session:
            head = current_revision(session)
            if head <= index.revision:
                return index.revision
            changed: dict[str, set[str]] = defaultdict(set)
            for _, target_type, target_id in changes_since(session, index.revision):
                if target_type in _FEEDERS:
                    changed[target_type].add(target_id)
            _apply(session, index, changed)
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


def _apply(
    session: Session | None,
    index: DecisionIndex,
    changed: dict[str, set[str]],
    given: Sequence[tuple[str, Any]] = (),
) -> None:
    """Re-read the changed entities (type → ids) and feed them, with the ``given`` entities
    (type, entity), in one bulk block."""
    with index.bulk():
        # In the build's order (principals and groups before the edges between them),
        # whatever order the changes came in.
        for target_type, (table, feed, to_entity) in _FEEDERS.items():
            ids = sorted(changed.get(target_type, ()))
            for start in range(0, len(ids), _IN_CHUNK):
                assert session is not None  # given when something is to be read
                for row in _stream(session, table, ids[start : start + _IN_CHUNK]):
                    feed(index, to_entity(row))
            for entity_type, entity in given:
                if entity_type == target_type:
                    feed(index, entity)


def _may_ask_about(
    runtime: Pimlico, index: DecisionIndex, actor: Actor | None, principal_id: str
) -> None:
    """Anyone may ask about themselves; asking about others takes ``pim.decisions.read``,
    decided on the same index as the answer, so with the same staleness (at most
    ``decision_max_staleness``, or exactly ``at_least_revision``): a policy point asking
    thousands of questions a second pays no store round trip for each. (Writes authorize on
    ``current()``, which never lags.)"""
    if actor is not None and actor.principal_id != principal_id:
        authorize(runtime, actor, Perm.DECISIONS_READ, index=index)


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
    index = runtime.decisions.at_least(at_least_revision)
    _may_ask_about(runtime, index, actor, principal_id)
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
    index = runtime.decisions.at_least(at_least_revision)
    _may_ask_about(runtime, index, actor, principal_id)
    return index.effective_access(principal_id, at or runtime.clock.now())


def authorize(
    runtime: Pimlico,
    actor: Actor,
    permission: str,
    scope: str = "/",
    *,
    index: DecisionIndex | None = None,
) -> None:
    """Raise ``PermissionDenied`` unless ``actor`` holds ``permission`` at ``scope`` now (and
    its token's scopes allow it).

    Pimlico guards itself with itself: the answer comes from the same decision index as every
    other decision, so an administrator's power lasts exactly as long as their activation.
    Decided on ``current()`` (never lagging) unless the caller gives the ``index`` it answers
    from (reads of decisions: see ``_may_ask_about``).
    """
    if actor.system:
        return
    if actor.principal_id is None:
        raise PermissionDenied(f"{permission} is needed at {scope}")
    if not actor.may_use(permission):
        raise PermissionDenied(f"{permission} is needed at {scope}; the token's scopes exclude it")
    decision = (index or runtime.decisions.current()).decide(
        actor.principal_id, permission, scope, runtime.clock.now()
    )
    if not decision.allowed:
        raise PermissionDenied(f"{permission} is needed at {scope}")


def allows(runtime: Pimlico, actor: Actor, permission: str, scope: str = "/") -> bool:
    """``authorize`` as a question: may ``actor`` use ``permission`` at ``scope`` now? (For
    reads that show what a caller may see, and leave out the rest.)"""
    try:
        authorize(runtime, actor, permission, scope)
    except PermissionDenied:
        return False
    return True
