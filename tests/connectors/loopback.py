"""A real HTTP server for a WSGI application, on a free loopback port, in a thread.

The tests of the HTTP connectors (SCIM, webhook) and the benchmarks serve their downstream
systems with it. It can be stopped and started again on the same port, so that a test can
take a system down and bring it back; while stopped, connections are refused. It uses only
the standard library's ``wsgiref`` (one thread per request; HTTP/1.0, so no connection
outlives its request and a stopped server really is gone).
"""

from __future__ import annotations

import threading
from socketserver import ThreadingMixIn
from types import TracebackType
from typing import Self
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server
from wsgiref.types import WSGIApplication

HOST = "127.0.0.1"


class _ThreadingWSGIServer(ThreadingMixIn, WSGIServer):
    daemon_threads = True


class _QuietHandler(WSGIRequestHandler):
    def log_message(self, format: str, *args: object) -> None:
        """Keep test output free of one access-log line per request."""


class LoopbackServer:
    """Serves ``app`` on ``http://127.0.0.1:<port>``; the port is picked at the first start."""

    def __init__(self, app: WSGIApplication) -> None:
        self.app = app
        self.port = 0
        self._server: _ThreadingWSGIServer | None = None
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        if not self.port:
            raise RuntimeError("the server has not been started yet")
        return f"http://{HOST}:{self.port}"

    @property
    def running(self) -> bool:
        return self._server is not None

    def start(self) -> None:
        """Listen (again, on the same port after a stop) and serve in a thread."""
        if self._server is not None:
            return
        server = make_server(
            HOST,
            self.port,
            self.app,
            server_class=_ThreadingWSGIServer,
            handler_class=_QuietHandler,
        )
        self.port = server.server_address[1]
        self._server = server
        self._thread = threading.Thread(
            target=server.serve_forever,
            kwargs={"poll_interval": 0.05},
            name=f"loopback-{self.port}",
            daemon=True,
        )
        self._thread.start()

    def stop(self) -> None:
        """Stop listening: from now on connections to the port are refused."""
        server, thread = self._server, self._thread
        if server is None or thread is None:
            return
        server.shutdown()
        server.server_close()
        thread.join()
        self._server = self._thread = None

    def restart(self) -> None:
        self.stop()
        self.start()

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
