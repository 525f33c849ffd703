"""The runtime every use case is given: settings, the store, the clock and the decision index.

Built once by an entry point (``Pimlico.open(settings)``) and passed in; nothing reads
globals. Also the write transaction (``writing``) and who is acting (``Actor``).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from sqlalchemy import Engine
from sqlalchemy.orm import Session, sessionmaker

from pimlico.clock import Clock, SystemClock
from pimlico.db import mappers
from pimlico.db.audit import WriteContext, begin_write, finish_write
from pimlico.db.engine import make_engine, make_sessionmaker
from pimlico.domain.model import PrincipalType
from pimlico.domain.permissions import matches
from pimlico.settings import Settings

T = TypeVar("T")
log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Actor:
    """Who asks. A user or service account (``principal_id``), or the local operator.

    The local operator (``system``) is whoever runs the CLI on the machine with the store's
    credentials: it could change the database directly, so Pimlico does not pretend to guard
    against it, but it is still named in every audit event.
    """

    name: str
    principal_id: str | None = None
    system: bool = False
    scopes: frozenset[str] | None = None
    """The permission patterns its credentials may use (a scoped token), or ``None``: all it
    holds. A scope narrows what the holder may do, never widens it."""
    principal_type: PrincipalType = PrincipalType.USER
    """What ``principal_id`` names: a user or a service account."""

    @classmethod
    def operator(cls, name: str = "cli") -> Actor:
        return cls(name=f"system:{name}", system=True)

    @classmethod
    def principal(
        cls,
        principal_id: str,
        scopes: frozenset[str] | None = None,
        principal_type: PrincipalType = PrincipalType.USER,
    ) -> Actor:
        return cls(principal_id, principal_id, False, scopes, principal_type)

    def may_use(self, permission: str) -> bool:
        """Do its credentials' scopes cover ``permission`` (whether it holds it or not)?"""
        return self.scopes is None or any(matches(p, permission) for p in self.scopes)


@dataclass(frozen=True, slots=True)
class Written(Generic[T]):
    """What a write use case returns: its result and the store revision it wrote."""

    value: T
    revision: int


def record_change(
    w: WriteContext,
    action: str,
    after: Any,
    *,
    before: Any = None,
    reason: str | None = None,
) -> None:
    """Audit a change of one entity: its type is the action's first word (``user.create`` →
    ``user``), its id the entity's; ``before`` and ``after`` are domain entities."""
    w.record(
        action=action,
        target_type=action.split(".", 1)[0],
        target_id=after.id,
        before=None if before is None else mappers.snapshot(before),
        after=mappers.snapshot(after),
        reason=reason,
    )


class Pimlico:
    """The runtime: one per process."""

    def __init__(
        self, settings: Settings, *, clock: Clock | None = None, engine: Engine | None = None
    ) -> None:
        from pimlico.services.decisions import DecisionFollower

        self.settings = settings
        self.clock: Clock = clock or SystemClock()
        self.engine = engine or make_engine(
            settings.database_url, connections=settings.database_pool_size
        )
        self.sessions: sessionmaker[Session] = make_sessionmaker(self.engine)
        self.decisions = DecisionFollower(self)
        self._thread = threading.local()
        self.caches: dict[str, object] = {}
        """What services keep in this process between calls, by service (``accounts``: the
        bearer tokens as last read)."""

    def close(self) -> None:
        self.decisions.close()
        self.engine.dispose()

    def __enter__(self) -> Pimlico:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @contextmanager
    def reading(self) -> Iterator[Session]:
        with self.sessions() as session, session.begin():
            yield session

    def write_in_progress(self) -> int | None:
        """The revision of the write this thread has open in this runtime, if any.

        While it is open the write lock keeps every other commit out, so the store's
        committed head is exactly one below it: the decision index uses that to know it is
        current without asking the store (see ``DecisionFollower.current``).
        """
        revision: int | None = getattr(self._thread, "writing", None)
        return revision

    @contextmanager
    def writing(self, actor: Actor, *, request_id: str | None = None) -> Iterator[WriteContext]:
        """One write transaction: the write lock first, audit events inside, commit at the end.

        The decision index of this process follows the write as soon as it commits, so the
        caller's next decision sees it.
        """
        outer = self.write_in_progress()
        with self.sessions() as session:
            with session.begin():
                ctx = begin_write(
                    session, actor=actor.name, at=self.clock.now(), request_id=request_id
                )
                self._thread.writing = ctx.revision
                try:
                    yield ctx
                    finish_write(ctx)
                finally:
                    self._thread.writing = outer
            try:
                self.decisions.follow_write(ctx.revision, ctx.changes(), ctx.stored)
            except Exception:  # the write is committed: report, never undo it by raising
                log.exception("decision index could not follow revision %s", ctx.revision)
