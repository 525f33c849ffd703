"""The audit log in the portal: events filtered by actor, target, action and time (typed in
the viewer's zone, asked in UTC), paged by the log's own cursor (the last sequence shown);
downloads of the current filter as JSON lines or CSV; and the verification of the chain.

Each page calls ``services.audit`` (and ``services.portal_admin`` for names and the export
with every filter), which checks the viewer holds ``pim.audit.read``.
"""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any
from urllib.parse import urlencode

from fastapi import Request
from fastapi.responses import HTMLResponse, StreamingResponse

from pimlico.api.deps import runtime_of
from pimlico.domain.audit import AuditRecord
from pimlico.errors import FieldError, InvalidInput
from pimlico.services import audit, portal_admin, portal_directory
from pimlico.services.audit import ChainCheck
from pimlico.web.render import page
from pimlico.web.session import UTC, Viewer
from pimlico.web.views import ViewerDep, portal_router

router = portal_router()

PAGE_SIZE = 50
MEDIA_TYPES = {"jsonl": "application/x-ndjson", "csv": "text/csv; charset=utf-8"}


class Filters:
    """The audit page's filters as typed, and what they mean to the log."""

    def __init__(self, actor: str, action: str, target: str, since: str, until: str) -> None:
        self.actor = actor.strip()[:256]
        self.action = action.strip()[:128]
        self.target = target.strip()[:256]
        self.since = since.strip()[:32]
        self.until = until.strip()[:32]

    def query(self, **more: str) -> str:
        typed = {
            "actor": self.actor,
            "action": self.action,
            "target": self.target,
            "since": self.since,
            "until": self.until,
            **more,
        }
        return urlencode({k: v for k, v in typed.items() if v})

    def instant(self, viewer: Viewer, name: str) -> datetime | None:
        """A ``datetime-local`` value read in the viewer's zone, as UTC."""
        text: str = getattr(self, name)
        if not text:
            return None
        try:
            local = datetime.fromisoformat(text)
            if local.tzinfo is None:
                local = local.replace(tzinfo=viewer.zone)
            # Year 1 or 9999 in a zone away from UTC falls outside datetime's range.
            return local.astimezone(UTC)
        except (ValueError, OverflowError):
            raise InvalidInput(
                "a time cannot be read",
                [
                    FieldError(
                        name, "DateTimeFormat", "give a date and time such as 2025-03-01T09:30"
                    )
                ],
            ) from None

    def asked(self, request: Request, viewer: Viewer) -> dict[str, Any]:
        """The use cases' keyword arguments for these filters."""
        rt = runtime_of(request)
        return {
            "by": portal_admin.audit_subject(rt, actor=viewer.actor, text=self.actor)
            if self.actor
            else None,
            "action": self.action or None,
            "target_id": portal_admin.audit_subject(rt, actor=viewer.actor, text=self.target)
            if self.target
            else None,
            "since": self.instant(viewer, "since"),
            "until": self.instant(viewer, "until"),
        }


def _pretty(text: str | None) -> str | None:
    return None if text is None else json.dumps(json.loads(text), indent=2, sort_keys=True)


def _audit_page(
    request: Request,
    viewer: Viewer,
    filters: Filters,
    before: int | None,
    *,
    verification: ChainCheck | None = None,
) -> HTMLResponse:
    rt = runtime_of(request)
    found: list[AuditRecord] = audit.list_events(
        rt,
        actor=viewer.actor,
        limit=PAGE_SIZE + 1,
        before_sequence=before,
        newest_first=True,
        **filters.asked(request, viewer),
    )
    shown = found[:PAGE_SIZE]
    names = portal_directory.names_of(
        rt,
        actor=viewer.actor,
        ids=[r.actor or "" for r in shown] + [r.target_id for r in shown],
    )
    events = [
        {
            "r": r,
            "actor": names.get(r.actor or "", r.actor or "—"),
            "target": names.get(r.target_id, r.target_id),
            "before": _pretty(r.before),
            "after": _pretty(r.after),
        }
        for r in shown
    ]
    more = len(found) > PAGE_SIZE
    return page(
        request,
        "admin_audit.html",
        viewer=viewer,
        events=events,
        filters=filters,
        next_url=f"/portal/admin/audit?{filters.query(before=str(shown[-1].sequence))}"
        if more
        else None,
        first_url=f"/portal/admin/audit?{filters.query()}" if before is not None else None,
        export_jsonl=f"/portal/admin/audit/export?{filters.query(format='jsonl')}",
        export_csv=f"/portal/admin/audit/export?{filters.query(format='csv')}",
        verification=verification,
    )


def _before(value: str) -> int | None:
    if not value:
        return None
    try:
        return max(0, int(value[:18]))
    except ValueError:
        raise InvalidInput(
            "not a page of this log", [FieldError("before", "Cursor", "follow the page links")]
        ) from None


@router.get("/admin/audit")
def audit_log(
    request: Request,
    viewer: ViewerDep,
    actor: str = "",
    action: str = "",
    target: str = "",
    since: str = "",
    until: str = "",
    before: str = "",
) -> HTMLResponse:
    filters = Filters(actor, action, target, since, until)
    return _audit_page(request, viewer, filters, _before(before))


@router.get("/admin/audit/export")
def export(
    request: Request,
    viewer: ViewerDep,
    format: str = "jsonl",
    actor: str = "",
    action: str = "",
    target: str = "",
    since: str = "",
    until: str = "",
) -> StreamingResponse:
    filters = Filters(actor, action, target, since, until)
    chunks = portal_admin.export_events(
        runtime_of(request),
        actor=viewer.actor,
        format=format[:8],
        **filters.asked(request, viewer),
    )
    chosen = audit.export_format(format[:8])
    return StreamingResponse(
        (chunk.encode() for chunk in chunks),
        media_type=MEDIA_TYPES[chosen],
        headers={"Content-Disposition": f'attachment; filename="pimlico-audit.{chosen}"'},
    )


@router.post("/admin/audit/verify")
def verify(request: Request, viewer: ViewerDep) -> HTMLResponse:
    checked = audit.verify_log(runtime_of(request), actor=viewer.actor)
    return _audit_page(request, viewer, Filters("", "", "", "", ""), None, verification=checked)
