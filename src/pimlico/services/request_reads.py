"""Paged reads of the request history: one page at a time, newest first, in as many queries
for a store of many requests as of few.

``services.requests.list_requests`` builds a view of every matching request (a query each,
for its decisions); a list endpoint needs one page of them. Here the page is chosen in SQL
(keyset: after the last ``(requested_at, id)`` of the previous page) and the decisions of
the whole page are read in one query. Authorized like ``list_requests``: one's own requests
need nothing, everyone's ``pim.requests.read``. Nothing here writes or judges.
"""

from __future__ import annotations

from collections import defaultdict
from datetime import datetime

from sqlalchemy import select

from pimlico.db.tables import ApprovalDecisionRow, RequestRow
from pimlico.domain.approvals import Decision
from pimlico.domain.catalogue import Perm
from pimlico.errors import FieldError, InvalidInput
from pimlico.services.decisions import authorize
from pimlico.services.lookups import newest_first_page
from pimlico.services.request_records import RequestView, new_view, person
from pimlico.services.requests import RequestFilter, _filtered
from pimlico.services.runtime import Actor, Pimlico


def requests_page(
    rt: Pimlico,
    *,
    actor: Actor,
    mine: bool = False,
    where: RequestFilter | None = None,
    after: tuple[datetime, str] | None = None,
    limit: int,
) -> list[RequestView]:
    """Up to ``limit`` requests, newest first (then by id): the actor's own (``mine``) or
    all of them (needs ``pim.requests.read``), narrowed by ``where``, and only those after
    ``after`` — the ``(requested_at, id)`` of the previous page's last request."""
    if limit < 1:
        raise InvalidInput(
            "limit must be positive", [FieldError("limit", "Range", "give 1 or more")]
        )
    query = _filtered(select(RequestRow), where or RequestFilter())
    if mine:
        query = query.where(RequestRow.requested_by == person(actor))
    else:
        authorize(rt, actor, Perm.REQUESTS_READ)
    query = newest_first_page(query, RequestRow.requested_at, RequestRow.id, after, limit)
    with rt.reading() as s:
        rows = list(s.scalars(query))
        decided: dict[str, list[Decision]] = defaultdict(list)
        if rows:
            found = s.scalars(
                select(ApprovalDecisionRow)
                .where(ApprovalDecisionRow.request_id.in_([r.id for r in rows]))
                .order_by(ApprovalDecisionRow.decided_at, ApprovalDecisionRow.stage)
            )
            for d in found:
                decided[d.request_id].append(
                    Decision(d.stage, d.approver_id, d.approved, d.decided_at, d.justification)
                )
        return [new_view(r, decisions=tuple(decided[r.id])) for r in rows]
