"""Health, readiness and metrics: open to anonymous callers (load balancers, Prometheus), and
saying nothing about who holds what."""

from __future__ import annotations

import logging
from typing import Literal

from fastapi import APIRouter, Request, Response
from fastapi.responses import JSONResponse
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from pydantic import BaseModel
from sqlalchemy import text
from sqlalchemy.exc import SQLAlchemyError

from pimlico.api.deps import RuntimeDep
from pimlico.api.problems import problem_response

log = logging.getLogger(__name__)

router = APIRouter(tags=["system"])


class Health(BaseModel):
    status: Literal["ok"]


class Readiness(BaseModel):
    status: Literal["ready"]
    revision: int
    """The store revision this process's decision index has reached."""


@router.get("/healthz", response_model=Health, summary="The process is alive")
def health() -> Health:
    return Health(status="ok")


@router.get(
    "/readyz",
    response_model=Readiness,
    summary="The store answers and the decision index is built",
    responses={503: {"description": "Not ready: the store does not answer"}},
)
def ready(rt: RuntimeDep) -> Readiness | JSONResponse:
    try:
        with rt.reading() as s:
            s.execute(text("SELECT 1"))
    except SQLAlchemyError as error:
        log.warning("not ready: %s", error)
        return problem_response(503, "NotReady", "the store does not answer")
    return Readiness(status="ready", revision=rt.decisions.current().revision)


@router.get(
    "/metrics",
    summary="Prometheus metrics",
    response_class=Response,
    responses={200: {"content": {CONTENT_TYPE_LATEST: {}}, "description": "Text format"}},
)
def metrics(request: Request) -> Response:
    return Response(generate_latest(request.app.state.metrics), media_type=CONTENT_TYPE_LATEST)
