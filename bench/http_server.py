"""The server the HTTP benchmarks load: ``create_app`` over the given store, plus one bare
route (``POST /bench/constant``) that returns a constant through the same stack — the same
uvicorn, middleware and JSON response — against which ``check`` is compared.

Run as ``python -m bench.http_server DATABASE_URL PORT``, one process, no worker, warmed up
as ``pimlico serve`` warms up (``pimlico.api.warm``); it serves until killed.
"""

from __future__ import annotations

import sys

import uvicorn
from fastapi import APIRouter

from pimlico.api import create_app, warm
from pimlico.api.routes import decisions
from pimlico.settings import Settings

CONSTANT_PATH = "/bench/constant"


def main(url: str, port: int) -> None:
    app = create_app(Settings(database_url=url))
    bare = APIRouter()

    @bare.post("/constant", include_in_schema=False)
    async def constant() -> dict[str, bool]:
        return {"allowed": True}

    # Matched like `check`: a route of an included router placed where the decisions router
    # is, so that both are found after the same route matching. (Appended at the end, the
    # constant paid for matching every route of the API first, and `check` looked faster
    # than it; as a plain route at the front, it skipped the included routers' matching.)
    app.include_router(bare, prefix="/bench")
    routes = app.router.routes
    included = routes.pop()
    at = next(
        i for i, r in enumerate(routes) if getattr(r, "original_router", None) is decisions.router
    )
    routes.insert(at, included)
    warm(app.state.runtime)  # as `pimlico serve` does

    uvicorn.run(app, host="127.0.0.1", port=port, log_level="warning", access_log=False)


if __name__ == "__main__":
    main(sys.argv[1], int(sys.argv[2]))
