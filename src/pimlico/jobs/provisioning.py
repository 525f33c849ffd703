"""The provisioning dispatcher: makes downstream systems follow the decisions, outside writes.

What must be true downstream is recorded inside Pimlico's writes (``services.provisioning``:
one row per mapping and principal, ``present`` or not, ``pending`` until done). Calling the
downstream system is this thread's job, and it never happens inside a store write: every
write holds the store's single write lock (``pim_state``; see ``jobs.worker``), so a write
that waited on a slow or unreachable LDAP server would stall every activation, approval and
decision follow-up of the whole installation for as long as the network cared to take.

So one pass of the dispatcher is three steps, two of them short transactions (after it has
settled, in one write, what it finds out itself — see below):

1. **claim** (``services.provisioning_work.claim``, a transaction of its own, no revision):
   hold up to ``batch`` due rows with a lease (``SKIP LOCKED`` on PostgreSQL);
2. **call out**, no transaction open: group the work by (connector, object, grant or
   revoke), ``resolve`` the principals to downstream identities and ``grant`` / ``revoke``
   all of a group's identities in one call (ten thousand revocations falling due in the same
   second cost a few downstream round trips, not ten thousand);
3. **record** (``provisioning_work.record``, one ``rt.writing``): the outcomes, retries with
   exponential backoff and jitter, ``failed`` with an alert after the last attempt.

A dispatcher that dies between 1 and 3 leaves its rows held until the lease runs out; then
any dispatcher takes them again and calls again — connectors are idempotent, so a repeated
grant or revocation changes nothing. A decision that changes a row while it is held bumps
its generation, and step 3 then leaves it pending for the next pass rather than recording an
outcome for a desire that no longer holds.

What it finds out itself (``services.provisioning_feed``), first in each pass: the ends that
have come — each present row carries the earliest end of what backs it (``recheck_at``), and
its principal is settled again then, so an access is revoked at its end instant without
waiting for ``AssignmentEnded`` to reach provisioning through the outbox's fan-out and
deliveries (ten thousand ends in one second: revoked downstream 4 s after the end through
this path, 13 to 16 s through the events on the same loaded machine); and static
memberships and users changed since the last pass, from the audit change feed (they publish
no event).

Waking: the dispatcher sleeps until the next row falls due, the next ``recheck_at`` or
``cap`` (2 s, which bounds how late a static membership change is seen), and is woken at
once by a commit that changed rows (in this process, and through
``NOTIFY pimlico_provisioning`` from any process on PostgreSQL). A reconcile pass
(``jobs.reconcile``) runs in a thread of its own when the dispatcher starts and every
``reconcile_interval``.
"""

from __future__ import annotations

import logging
import threading
from collections import defaultdict
from datetime import datetime, timedelta

from sqlalchemy import func, select

from pimlico.connectors import registry
from pimlico.connectors.base import Connector, ConnectorError, Member
from pimlico.db.tables import ConnectorMappingRow, ConnectorRow, ProvisioningRow
from pimlico.jobs import reconcile
from pimlico.services import connectors as connector_config
from pimlico.services import provisioning_feed, provisioning_wake
from pimlico.services.provisioning import PENDING
from pimlico.services.provisioning_work import Outcome, Work, claim, record
from pimlico.services.runtime import Actor, Pimlico

log = logging.getLogger(__name__)

_RECHECK_ROUNDS = 100
"""Full batches of ends re-checked in one pass at most, before due work is taken."""


class Dispatcher:
    """Takes due provisioning work, calls the connectors, records the outcomes."""

    def __init__(
        self,
        rt: Pimlico,
        *,
        name: str,
        batch: int = 5000,
        cap: timedelta = timedelta(seconds=2),
        reconcile_interval: float | None = None,
    ) -> None:
        self.rt = rt
        self.name = name
        self.batch = batch
        self.cap = cap.total_seconds()
        self.lease = timedelta(seconds=rt.settings.provisioning_lease)
        self.reconcile_interval = (
            rt.settings.reconcile_interval if reconcile_interval is None else reconcile_interval
        )
        self._wake = threading.Event()
        self._connectors: dict[str, tuple[int, Connector]] = {}
        self._feed = provisioning_feed.head(rt)

    def wake(self) -> None:
        self._wake.set()

    def close(self) -> None:
        for _, connector in self._connectors.values():
            try:
                connector.close()
            except Exception:
                log.exception("closing a connector failed")
        self._connectors.clear()

    def run_once(self, now: datetime | None = None) -> int:
        """Run every piece of work due at ``now`` (default: the clock's now); how many."""
        self._feed = provisioning_feed.follow_feed(self.rt, since=self._feed, actor=self._actor())
        total = 0
        while True:
            at = now or self.rt.clock.now()
            for _ in range(_RECHECK_ROUNDS):  # (bounded: never a loop without end)
                rechecked = provisioning_feed.recheck_due(
                    self.rt, now=at, actor=self._actor(), batch=self.batch
                )
                if rechecked < self.batch:
                    break
            work = claim(self.rt, name=self.name, now=at, lease=self.lease, batch=self.batch)
            if not work:
                return total
            self._run(work)
            total += len(work)

    def run_forever(self, stop: threading.Event) -> None:
        """Run due work until ``stop`` is set; reconcile at start and every interval, in a
        thread of its own (a reconcile pass that waits on a hung system must not hold up
        the revocations of every other one)."""
        provisioning_wake.listen(self.rt.engine, self._wake)
        done = threading.Event()
        helpers = [
            threading.Thread(
                target=self._listen, args=(done,), name=f"{self.name}-listen", daemon=True
            ),
            threading.Thread(
                target=self._reconcile, args=(stop,), name=f"{self.name}-reconcile", daemon=True
            ),
        ]
        for helper in helpers:
            helper.start()
        try:
            while not stop.is_set():
                self._wake.clear()
                try:
                    self.run_once()
                    wait = self._sleep()
                except Exception:
                    log.exception("provisioning dispatcher %s: a pass failed", self.name)
                    wait = self.cap
                self._wake.wait(wait)
        finally:
            done.set()
            provisioning_wake.unlisten(self.rt.engine, self._wake)
            helpers[0].join()
            self.close()

    def _reconcile(self, stop: threading.Event) -> None:
        while not stop.is_set():
            try:
                reconcile.reconcile(self.rt, actor=self._actor())
            except Exception:
                log.exception("dispatcher %s: a reconcile pass failed", self.name)
            if not self.reconcile_interval:
                return
            stop.wait(self.reconcile_interval)

    def _actor(self) -> Actor:
        return Actor.operator(f"dispatcher:{self.name}")

    def _listen(self, done: threading.Event) -> None:
        try:
            provisioning_wake.listen_postgres(self.rt.engine, self._wake, done)
        except Exception:
            log.exception("dispatcher %s stopped listening; polling every %ss", self.name, self.cap)

    def _sleep(self) -> float:
        """Seconds until the next pending row falls due (or a lease on one runs out), ``cap``
        at most."""
        now = self.rt.clock.now()
        pending = (
            select(ProvisioningRow.due_at, ProvisioningRow.claimed_until)
            .join(ConnectorMappingRow, ConnectorMappingRow.id == ProvisioningRow.mapping_id)
            .join(ConnectorRow, ConnectorRow.id == ConnectorMappingRow.connector_id)
            .where(
                ProvisioningRow.status == PENDING,
                ConnectorMappingRow.ended_at.is_(None),
                ConnectorRow.enabled.is_(True),
            )
            .subquery()
        )
        free = (pending.c.claimed_until.is_(None)) | (pending.c.claimed_until <= now)
        with self.rt.reading() as s:
            due = s.scalar(select(func.min(pending.c.due_at)).where(free))
            lease = s.scalar(select(func.min(pending.c.claimed_until)).where(~free))
        recheck = provisioning_feed.next_recheck(self.rt)
        found: list[datetime] = [at for at in (due, lease, recheck) if at is not None]
        if not found:
            return self.cap
        seconds: float = (min(found) - self.rt.clock.now()).total_seconds()
        return min(self.cap, max(seconds, 0.0))

    # -- one batch ------------------------------------------------------------------------

    def _run(self, work: list[Work]) -> None:
        names = self._refresh({w.connector_id for w in work})
        groups: dict[tuple[str, str, bool], list[Work]] = defaultdict(list)
        for item in work:
            groups[(item.connector_id, item.obj, item.present)].append(item)
        outcomes: list[Outcome] = []
        for (connector_id, obj, present), items in groups.items():
            outcomes += self._call(connector_id, obj, present, items)
        record(self.rt, name=self.name, outcomes=outcomes, connector_names=names)

    def _call(self, connector_id: str, obj: str, present: bool, items: list[Work]) -> list[Outcome]:
        entry = self._connectors.get(connector_id)
        if entry is None:
            return [
                Outcome(i, error="the connector could not be built", retryable=False) for i in items
            ]
        connector = entry[1]
        try:
            # A revocation takes away the identity that was granted, as recorded then: no
            # lookup downstream (ten thousand ends in one second are ten thousand lookups).
            identities: dict[str, str | None] = {}
            if not present:
                identities = {i.principal_id: i.identity for i in items if i.identity}
            members = [
                Member(i.principal_id, i.user_name, i.email, i.display_name)
                for i in items
                if i.principal_id not in identities
            ]
            if members:
                identities |= connector.resolve(members)
            known = [i for i in items if identities.get(i.principal_id)]
            ids = [identities[i.principal_id] or "" for i in known]
            if present:
                connector.grant(obj, ids)
            else:
                connector.revoke(obj, ids)
        except ConnectorError as error:
            return [Outcome(i, error=str(error), retryable=error.retryable) for i in items]
        except Exception as error:  # a connector's bug must not stop the others
            log.exception("connector %s failed on %s", connector.kind, obj)
            return [Outcome(i, error=f"{type(error).__name__}: {error}") for i in items]
        outcomes = [Outcome(i, identity=identities[i.principal_id]) for i in known]
        for i in items:
            if not identities.get(i.principal_id):
                if present:
                    message = f"{i.user_name} has no account in {connector.kind} to grant"
                    outcomes.append(Outcome(i, error=message, retryable=True))
                else:  # no account there: nothing to revoke
                    outcomes.append(Outcome(i))
        return outcomes

    def _refresh(self, connector_ids: set[str]) -> dict[str, str]:
        """Build (or rebuild, when their configuration changed) the connectors of
        ``connector_ids``; their names."""
        with self.rt.reading() as s:
            rows = list(s.scalars(select(ConnectorRow).where(ConnectorRow.id.in_(connector_ids))))
        names = {}
        for row in rows:
            names[row.id] = row.name
            cached = self._connectors.get(row.id)
            if cached is not None and cached[0] == row.config_version:
                continue
            if cached is not None:
                cached[1].close()
                del self._connectors[row.id]
            try:
                secret = connector_config.open_secret(self.rt, row)
                self._connectors[row.id] = (
                    row.config_version,
                    registry.build(row.kind, row.config, secret),
                )
            except Exception:
                log.exception("connector %s cannot be built", row.name)
        return names


RESTART_AFTER = 5.0
"""Seconds before a dispatcher that failed as a whole (the store went away) starts again."""


def start(rt: Pimlico, *, name: str, stop: threading.Event) -> tuple[Dispatcher, threading.Thread]:
    """A dispatcher running in a thread of its own until ``stop`` (set it, then call the
    dispatcher's ``wake`` and join the thread): what ``pimlico worker`` and ``pimlico serve``
    run beside the worker."""
    dispatcher = Dispatcher(rt, name=name)

    def run() -> None:
        while not stop.is_set():
            try:
                dispatcher.run_forever(stop)
            except Exception:
                log.exception("dispatcher %s failed; restarting in %ss", name, RESTART_AFTER)
                stop.wait(RESTART_AFTER)

    thread = threading.Thread(target=run, name=f"dispatcher-{name}", daemon=True)
    thread.start()
    return dispatcher, thread
