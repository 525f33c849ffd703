"""``pimlico worker``: run the outbox's due jobs, until Ctrl-C or SIGTERM (or, with ``--once``,
until none is due). Either signal lets the write in progress finish and commit, then exits 0.

A thin entry point: it builds the runtime and a ``Worker`` with
``jobs.handlers.worker_handlers``, and starts the provisioning dispatcher
(``jobs.provisioning``) and the notifications' sender (``notify.sender``) beside it, which
call downstream systems and send messages outside the worker's writes.
The hidden ``--handlers module:attr`` (a mapping of kind → handler, added to the built-in
ones) and ``--lease-seconds`` exist for tests (the crash test runs its own job kind in a
subprocess); they are not part of the supported interface.
"""

from __future__ import annotations

import importlib
import os
import signal
import socket
import threading
from collections.abc import Mapping
from datetime import timedelta
from typing import Annotated, cast

import typer

from pimlico import notify
from pimlico.cli._common import runtime, say
from pimlico.jobs import provisioning
from pimlico.jobs.handlers import worker_handlers
from pimlico.jobs.worker import Handler, Worker
from pimlico.notify.sender import Sender


def worker(
    once: Annotated[bool, typer.Option("--once", help="Run what is due now, then exit.")] = False,
    handlers: Annotated[
        str | None, typer.Option("--handlers", hidden=True, help="Tests only: module:attr.")
    ] = None,
    lease_seconds: Annotated[
        float, typer.Option("--lease-seconds", hidden=True, help="Tests only: claim lease.")
    ] = 60.0,
) -> None:
    """Run the worker: due jobs (approval timeouts and escalations, …) as they fall due."""
    with runtime() as rt:
        kinds = worker_handlers(rt.settings)
        if handlers is not None:
            module, _, attr = handlers.partition(":")
            kinds.update(
                cast(Mapping[str, Handler], getattr(importlib.import_module(module), attr))
            )
        name = f"{socket.gethostname()}:{os.getpid()}"
        running = Worker(rt, kinds, name=name, lease=timedelta(seconds=lease_seconds))
        if once:
            say(f"ran {running.run_once(rt.clock.now())} job(s)")
            dispatcher = provisioning.Dispatcher(rt, name=name)
            sender = Sender(rt, rt.settings.notify, name=name)
            try:
                say(f"provisioned {dispatcher.run_once()} change(s)")
                say(f"sent {sender.run_once()} message(s)")
            finally:
                dispatcher.close()
                sender.close()
            return
        stop = threading.Event()
        dispatcher, thread = provisioning.start(rt, name=name, stop=stop)
        sender, sending = notify.start_sender(rt, rt.settings.notify, name=name, stop=stop)

        def finish(signum: int, frame: object) -> None:
            stop.set()
            running.wake()
            dispatcher.wake()
            sender.wake()

        for signum in (signal.SIGINT, signal.SIGTERM):
            signal.signal(signum, finish)
        say(f"worker {name} running; Ctrl-C or SIGTERM stops it")
        try:
            running.run_forever(stop)
        finally:
            finish(signal.SIGTERM, None)
            thread.join()
            sending.join()
        say("worker stopped")
