"""Waking the provisioning dispatchers when what must be true downstream changed.

A commit that changed ``provisioning`` rows wakes this process's dispatchers (``listen``) and,
on PostgreSQL, every process's through ``NOTIFY pimlico_provisioning`` (``listen_postgres``):
a revocation reaches the downstream system within milliseconds of its decision rather than at
the dispatcher's next poll.
"""

from __future__ import annotations

import threading

from sqlalchemy import Engine, text
from sqlalchemy import event as event_api
from sqlalchemy.orm import Session

from pimlico.jobs import outbox

CHANNEL = "pimlico_provisioning"
_WAKE_FLAG = "pimlico.provisioning.wake"
_lock = threading.Lock()
_listeners: dict[str, set[threading.Event]] = {}


def wake_after_commit(session: Session, *, committing: bool = False) -> None:
    """Wake the dispatchers once ``session``'s transaction commits (in this process and, on
    PostgreSQL, in every process listening). ``committing``: called from the session's own
    ``before_commit``, so the notification is sent now (PostgreSQL delivers it at commit)."""
    if session.info.get(_WAKE_FLAG):
        return
    session.info[_WAKE_FLAG] = True
    event_api.listen(session, "after_commit", _after_commit, once=True)
    event_api.listen(session, "after_rollback", _forget, once=True)
    if session.get_bind().dialect.name == "postgresql":
        if committing:
            _notify(session)
        else:
            event_api.listen(session, "before_commit", _notify, once=True)


def _notify(session: Session) -> None:
    session.execute(text(f"SELECT pg_notify('{CHANNEL}', '')"))


def _forget(session: Session) -> None:
    session.info.pop(_WAKE_FLAG, None)


def _after_commit(session: Session) -> None:
    session.info.pop(_WAKE_FLAG, None)
    with _lock:
        waiting = list(_listeners.get(_database_of(session.get_bind()), ()))
    for wake in waiting:
        wake.set()


def _database_of(bind: object) -> str:
    engine = bind if isinstance(bind, Engine) else getattr(bind, "engine")  # noqa: B009
    return str(engine.url.render_as_string(hide_password=False))


def listen(engine: Engine, wake: threading.Event) -> None:
    with _lock:
        _listeners.setdefault(_database_of(engine), set()).add(wake)


def unlisten(engine: Engine, wake: threading.Event) -> None:
    with _lock:
        _listeners.get(_database_of(engine), set()).discard(wake)


def listen_postgres(engine: Engine, wake: threading.Event, stop: threading.Event) -> None:
    """Set ``wake`` on every ``pimlico_provisioning`` notification until ``stop`` (a thread
    of its own, its own autocommit connection). Returns at once on SQLite."""
    outbox.listen_postgres(engine, wake, stop, channel=CHANNEL, every=0.5)
