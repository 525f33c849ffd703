"""The server the HTTP benchmarks load: ``create_app`` over the given store, plus one bare
route (``POST /bench/constant``) that returns a constant through the same stack — the same
uvicorn, middleware and JSON response — against which ``check`` is compared.

Run as ``python -m bench.http_server DATABASE_URL PORT``, one process, no worker; it serves
until killed.
"""

from __future__ import annotations

import sys

import uvicorn

from pimlico.api import create_app
from pimlico.settings import Settings

CONSTANT_PATH = "/bench/constant"


def main(url: str, port: int) -> None:
    app = create_app(Settings(database_url=url))

    @app.post(CONSTANT_PATH, include_in_schema=False)
    async def constant() -> dict[str, bool]:
        return {"allowed": True}

    uvicorn.run(app, host="127.0.0.1", port=port, log_level="warning", access_log=False)


if __name__ == "__main__":
    main(sys.argv[1], int(sys.argv[2]))
