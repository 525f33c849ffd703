"""Prometheus metrics of the API: requests by route template, method and status, and their
latency. Each app has its own registry, so several apps in one process (tests) do not clash.
``/metrics`` (``routes.system``) exposes it.

A plain ASGI middleware, not ``@app.middleware``: that one (``BaseHTTPMiddleware``) runs each
request through an extra task and memory stream, a cost every ``check`` would pay.
"""

from __future__ import annotations

import time
from typing import Any

from fastapi import FastAPI
from prometheus_client import CollectorRegistry, Counter, Histogram
from starlette.types import ASGIApp, Message, Receive, Scope, Send

REQUESTS = "pimlico_http_requests"
LATENCY = "pimlico_http_request_duration_seconds"


class _Measure:
    def __init__(self, app: ASGIApp, registry: CollectorRegistry) -> None:
        self.app = app
        self.requests = Counter(
            REQUESTS, "HTTP requests answered", ["method", "route", "status"], registry=registry
        )
        self.latency = Histogram(
            LATENCY,
            "Time to answer an HTTP request",
            ["method", "route"],
            buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5),
            registry=registry,
        )

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500

        async def sending(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, sending)
        finally:
            # The route's template (``/api/v1/users/{user_id}``), never the raw path, whose
            # ids would make a label value per object.
            route: Any = scope.get("route")
            template = str(getattr(route, "path", "unmatched"))
            method = scope["method"]
            self.latency.labels(method, template).observe(time.perf_counter() - started)
            self.requests.labels(method, template, str(status)).inc()


def install(app: FastAPI) -> None:
    registry = CollectorRegistry()
    app.state.metrics = registry
    app.add_middleware(_Measure, registry=registry)
