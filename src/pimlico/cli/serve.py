"""``pimlico serve``: the HTTP API (uvicorn), with the worker embedded by default.

One process, one runtime: the app and the worker share it (one engine, one decision index).
The worker runs in a thread of its own (``--no-worker`` leaves the jobs to ``pimlico
worker`` processes). The listening socket is bound here, before anything is printed, so the
URL printed is the one served (``--port 0`` takes a free port and prints it).

Ctrl-C or SIGTERM: uvicorn stops accepting connections and finishes the requests in flight;
then the worker is stopped (the write in progress commits) and the runtime closed; exit 0.
uvicorn re-raises the signal it caught once it has shut down, so this command's own handler
is installed first: the re-raised signal lands there, not on the default handler that would
kill the process mid-shutdown.
"""

from __future__ import annotations

import contextlib
import enum
import logging
import os
import signal
import socket
import threading
from typing import Annotated

import typer

from pimlico import notify
from pimlico.cli._common import fail_with, runtime, say, settings
from pimlico.jobs import provisioning
from pimlico.jobs.handlers import worker_handlers
from pimlico.jobs.worker import Worker
from pimlico.notify.sender import Sender

log = logging.getLogger(__name__)


class LogLevel(enum.StrEnum):
    CRITICAL = "critical"
    ERROR = "error"
    WARNING = "warning"
    INFO = "info"
    DEBUG = "debug"


RESTART_AFTER = 5.0
"""Seconds before the embedded worker starts again after it failed (the store went away)."""


def serve(
    host: Annotated[str, typer.Option("--host", help="The address to listen on.")] = "127.0.0.1",
    port: Annotated[
        int, typer.Option("--port", min=0, max=65535, help="The port (0: any free one).")
    ] = 8000,
    no_worker: Annotated[
        bool,
        typer.Option("--no-worker", help="Do not run due jobs here (run `pimlico worker`)."),
    ] = False,
    log_level: Annotated[
        LogLevel, typer.Option("--log-level", help="What uvicorn logs.")
    ] = LogLevel.INFO,
) -> None:
    """Serve the HTTP API (and run the worker) until Ctrl-C or SIGTERM."""
    # Imported here, not above: every other command would pay for loading the web stack.
    import uvicorn

    from pimlico.api import create_app, warm

    config = settings()
    stop = threading.Event()
    with runtime() as rt, contextlib.closing(_bind(host, port)) as listening:
        app = create_app(config, runtime=rt)
        warm(rt)
        server = uvicorn.Server(
            uvicorn.Config(app, log_level=log_level.value, lifespan="on", server_header=False)
        )
        name = f"{socket.gethostname()}:{os.getpid()}"
        running = None if no_worker else Worker(rt, worker_handlers(rt.settings), name=name)
        dispatcher: provisioning.Dispatcher | None = None
        sender: Sender | None = None

        def finish(signum: int, frame: object) -> None:
            server.should_exit = True  # (a signal before uvicorn's handlers are in place)
            stop.set()
            if running is not None:
                running.wake()
            if dispatcher is not None:
                dispatcher.wake()
            if sender is not None:
                sender.wake()

        for signum in (signal.SIGINT, signal.SIGTERM):
            signal.signal(signum, finish)
        thread = None
        if running is not None:
            thread = threading.Thread(
                target=_work, args=(running, stop), name=f"worker-{name}", daemon=True
            )
            thread.start()
            dispatcher, dispatching = provisioning.start(rt, name=name, stop=stop)
            sender, sending = notify.start_sender(rt, rt.settings.notify, name=name, stop=stop)
        say(f"Pimlico serving on {_url(listening)} (API documents: {_url(listening)}/docs)")
        say(f"Sign in to the portal: {_url(listening)}/portal/")
        say(
            f"worker {name} embedded"
            if running is not None
            else "no worker here: due jobs wait for `pimlico worker`"
        )
        say("Ctrl-C or SIGTERM stops it")
        try:
            server.run(sockets=[listening])
        finally:
            finish(signal.SIGTERM, None)
            if thread is not None:
                thread.join()
                dispatching.join()
                sending.join()
    say("stopped")


def _work(worker: Worker, stop: threading.Event) -> None:
    """Run the worker until ``stop``; if it fails (the store went away), log it and start
    it again after ``RESTART_AFTER``: the API stays up, and the jobs wait, not vanish."""
    while not stop.is_set():
        try:
            worker.run_forever(stop)
        except Exception:
            log.exception("the embedded worker failed; restarting in %ss", RESTART_AFTER)
            stop.wait(RESTART_AFTER)


def _bind(host: str, port: int) -> socket.socket:
    """A listening socket on ``host``:``port`` (IPv4 or IPv6, as ``host`` resolves)."""
    try:
        family, *_, address = socket.getaddrinfo(
            host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
        )[0]
        listening = socket.create_server(address[:2], family=family, backlog=2048)
    except OSError as error:
        fail_with("CannotListen", f"{host}:{port}: {error.strerror or error}")
    listening.set_inheritable(True)
    return listening


def _url(listening: socket.socket) -> str:
    host, port = listening.getsockname()[:2]
    return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"
