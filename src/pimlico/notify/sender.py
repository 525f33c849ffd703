"""The sender: sends the recorded messages (``notify.send`` jobs) outside every store write.

The worker runs a claimed job's handler inside a write (``jobs.worker``), and every write
holds the store's single write lock: an SMTP server that takes its 10 s timeout to answer
would stall every activation and approval of the installation for as long. So ``notify.send``
jobs are not given to the worker: the sender owns them, in three steps, two of them short
transactions that take no revision —

1. **claim** up to ``batch`` due jobs with a lease, counting an attempt (``jobs.claims.claim``,
   the worker's own statement: ``SKIP LOCKED`` on PostgreSQL, so senders of several processes
   take disjoint jobs; a job whose lease ran out — its sender died — is claimable again);
2. **render and send** each, no transaction open (``render``, ``transport``);
3. **record** each outcome, if the job is still this sender's (``jobs.claims.retry``'s
   re-check): ``done``; or, as the worker does, ``pending`` again at
   ``base_delay * 2**(attempt-1)`` plus up to 10 % jitter with ``last_error`` kept, and
   ``failed`` after ``max_attempts`` or at once for a ``transport.Permanent`` error.

A message whose channel is off (no SMTP host, no webhook URL for its kind) is marked ``done``
with ``last_error`` saying it was skipped. A sender that dies between 2 and 3 sends the
message again once the lease runs out: delivery is at least once.

Waking: like the worker, it sleeps until its next job falls due (``cap`` at most) and is
woken by a commit that enqueued jobs (this process; on PostgreSQL, any process).
"""

from __future__ import annotations

import logging
import random
import threading
from datetime import datetime, timedelta
from typing import Any

import httpx

from pimlico.jobs import claims
from pimlico.jobs.outbox import DONE, FAILED, PENDING, listen, listen_postgres, next_due, unlisten
from pimlico.jobs.worker import Job
from pimlico.notify import SEND_JOB, transport
from pimlico.notify.render import Renderer
from pimlico.notify.settings import NotifySettings
from pimlico.services.runtime import Pimlico

log = logging.getLogger(__name__)

_ERROR_LENGTH = 4000


class _Skipped(Exception):
    """The message's channel is off."""


class Sender:
    """Sends due ``notify.send`` jobs; ``name`` is recorded on each job it claims."""

    def __init__(
        self,
        rt: Pimlico,
        settings: NotifySettings,
        *,
        name: str,
        batch: int = 50,
        lease: timedelta = timedelta(minutes=5),
        cap: timedelta = timedelta(seconds=5),
    ) -> None:
        self.rt = rt
        self.settings = settings
        self.name = name
        self.batch = batch
        self.lease = lease
        self.cap = cap
        self.max_attempts = settings.notify_max_attempts
        self.base_delay = timedelta(seconds=settings.notify_base_delay)
        self._wake = threading.Event()
        self._random = random.Random()  # noqa: S311 (jitter, not a secret)
        dialect = rt.engine.dialect.name
        self._claiming = claims.claim([SEND_JOB], name=name, postgres=dialect == "postgresql")
        self._client = httpx.Client(timeout=settings.webhook_timeout)
        self._renderer = Renderer(settings.notify_templates)

    def close(self) -> None:
        self._client.close()

    def wake(self) -> None:
        self._wake.set()

    def run_once(self) -> int:
        """Send every message due now; how many were tried."""
        tried = 0
        while jobs := self._claim(self.rt.clock.now()):
            for job in jobs:
                self._record(job, self._send(job))
            tried += len(jobs)
        return tried

    def run_forever(self, stop: threading.Event) -> None:
        """Send messages as they fall due until ``stop`` is set (then call ``wake``)."""
        with self.rt.sessions() as s:
            listen(s, self._wake)
        done = threading.Event()
        listener = threading.Thread(
            target=self._listen, args=(done,), name=f"{self.name}-notify-listen", daemon=True
        )
        listener.start()
        try:
            while not stop.is_set():
                self._wake.clear()
                try:
                    self.run_once()
                except Exception:
                    log.exception("sender %s: a pass failed; trying again", self.name)
                self._wake.wait(self._sleep())
        finally:
            done.set()
            with self.rt.sessions() as s:
                unlisten(s, self._wake)
            listener.join()

    def _listen(self, done: threading.Event) -> None:
        try:
            listen_postgres(self.rt.engine, self._wake, done)
        except Exception:
            log.exception("sender %s stopped listening; polling every %s", self.name, self.cap)

    def _sleep(self) -> float:
        with self.rt.reading() as s:
            due = next_due(s, [SEND_JOB])
        now = self.rt.clock.now()
        wait = self.cap if due is None else min(self.cap, max(due - now, timedelta(0)))
        return wait.total_seconds()

    def _claim(self, now: datetime) -> list[Job]:
        values = {"now": now, "until": now + self.lease, "batch": self.batch}
        with self.rt.sessions() as s, s.begin():
            rows = s.execute(self._claiming, values).all()
        return claims.jobs(rows, self.rt.engine.dialect, counted=True)

    def _send(self, job: Job) -> Exception | None:
        """The error sending ``job`` failed with, ``None`` once sent."""
        payload = job.payload
        channel, kind = str(payload["channel"]), str(payload["kind"])
        context = {**payload["context"], "recipient": payload.get("recipient")}
        try:
            if channel == "email":
                if not self.settings.email_enabled:
                    raise _Skipped("email is off (no PIMLICO_SMTP_HOST)")
                rendered = self._renderer.render(kind, context)
                transport.send_email(self.settings, str(payload["to"]), rendered)
            else:
                url = self.settings.chat_url(channel, kind)
                if url is None:
                    raise _Skipped(f"no {channel} webhook for {kind}")
                rendered = self._renderer.render(kind, context)
                body = transport.chat_payload(channel, rendered, context.get("link"))
                transport.post_chat(self._client, url, body)
        except Exception as error:
            return error
        return None

    def _record(self, job: Job, error: Exception | None) -> None:
        now = self.rt.clock.now()
        values: dict[str, Any] = {"claimed_until": None, "last_error": None}
        if error is None or isinstance(error, _Skipped):
            values |= {"status": DONE, "finished_at": now}
            if error is not None:
                log.info("message %s skipped: %s", job.id, error)
                values["last_error"] = f"skipped: {error}"
        else:
            log.warning("message %s (attempt %s) not sent: %r", job.id, job.attempt, error)
            values["last_error"] = f"{type(error).__name__}: {error}"[:_ERROR_LENGTH]
            if job.attempt >= self.max_attempts or isinstance(error, transport.Permanent):
                values |= {"status": FAILED, "finished_at": now}
            else:
                delay = self.base_delay * 2 ** (job.attempt - 1)
                jitter = 1 + self._random.uniform(0, 0.1)
                values |= {"status": PENDING, "claimed_by": None, "due_at": now + delay * jitter}
        with self.rt.sessions() as s, s.begin():
            s.execute(claims.retry(job.id, job.attempt, taken=False, name=self.name, **values))


def start(
    rt: Pimlico, settings: NotifySettings, *, name: str, stop: threading.Event
) -> tuple[Sender, threading.Thread]:
    """A sender running in a thread of its own until ``stop`` is set (then ``wake`` it)."""
    sender = Sender(rt, settings, name=name)

    def run() -> None:
        try:
            sender.run_forever(stop)
        finally:
            sender.close()

    thread = threading.Thread(target=run, name=f"{name}-notify", daemon=True)
    thread.start()
    return sender, thread
