"""The administrators' assignment changes, each inside the caller's write: create, update,
remove, extend and renew.

Each checks the actor's permission and every rule of the target's settings at once (raising
``PolicyViolation`` with all of them) and makes the change; ``services.assignments`` runs
them as administrators' requests.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta

from pimlico.db import mappers
from pimlico.db.audit import WriteContext
from pimlico.db.tables import AssignmentRow
from pimlico.domain.assignment_rules import (
    assignment_problems,
    caller_problems,
    resolve_end,
    window_problems,
)
from pimlico.domain.model import (
    Assignment,
    AssignmentKind,
    PrincipalRef,
    PrincipalType,
    Target,
    new_id,
)
from pimlico.domain.requests import Ticket
from pimlico.errors import FieldError, InvalidInput, PolicyViolation, RoleAssignmentExists
from pimlico.services.assignment_store import (
    check_target,
    current_for_change,
    end_assignment,
    insert_assignment,
    keeping_an_administrator,
    overlapping,
    record_assignment_change,
    write_permission,
)
from pimlico.services.decisions import authorize
from pimlico.services.lookups import get_row, principal_row
from pimlico.services.role_settings import load_policy
from pimlico.services.runtime import Actor, Pimlico


@dataclass(frozen=True, slots=True)
class Asked:
    """What every administrator's request carries besides the change itself."""

    justification: str | None = None
    ticket: Ticket | None = None
    idempotency_key: str | None = None
    dry_run: bool = False
    mfa_verified: bool = False


Change = Callable[[WriteContext, Actor, Asked], Assignment]
"""Makes one change in the write and returns the assignment after it."""


def create(
    rt: Pimlico,
    w: WriteContext,
    actor: Actor,
    kind: AssignmentKind,
    principal: PrincipalRef,
    target: Target,
    start: datetime | None,
    end: datetime | None,
    duration: timedelta | None,
    asked: Asked,
) -> Assignment:
    s = w.session
    principal_row(s, principal)
    check_target(s, principal, target)
    authorize(rt, actor, write_permission(s, target), target.scope)
    if principal.type is PrincipalType.SERVICE_ACCOUNT and kind is AssignmentKind.ELIGIBLE:
        raise InvalidInput(
            "service accounts cannot be eligible",
            [
                FieldError(
                    "kind",
                    "ServiceAccountActiveOnly",
                    "a service account holds active, time-bound assignments only",
                )
            ],
        )
    begin = w.at if start is None or start < w.at else start
    finish, problems = resolve_end(begin, end, duration)
    policy = load_policy(s, target.type, target.object_id)
    problems += assignment_problems(
        policy.settings,
        kind=kind,
        start=begin,
        end=finish,
        now=w.at,
        justification=asked.justification,
        mfa_verified=asked.mfa_verified or actor.system,
    )
    problems += service_account_problems(principal, finish)
    if problems:
        raise PolicyViolation(problems)
    return insert_assignment(
        rt,
        w,
        Assignment(
            id=new_id(),
            kind=kind,
            principal=principal,
            target=target,
            start=begin,
            end=finish,
            created_at=w.at,
            created_by=actor.name,
            justification=asked.justification,
            request_id=w.request_id,
        ),
    )


def service_account_problems(principal: PrincipalRef, end: datetime | None) -> list[FieldError]:
    if principal.type is PrincipalType.SERVICE_ACCOUNT and end is None:
        return [FieldError("end", "ExpirationRule", "a service account's assignment needs an end")]
    return []


def update(
    rt: Pimlico,
    w: WriteContext,
    actor: Actor,
    assignment_id: str,
    start: datetime | None,
    end: datetime | None,
    duration: timedelta | None,
    permanent: bool,
    asked: Asked,
) -> Assignment:
    s = w.session
    row, before = current_for_change(rt, w, actor, assignment_id)
    begin = start or before.start
    if start is not None and start != before.start and start < w.at:
        raise PolicyViolation(
            [FieldError("start", "ExpirationRule", "a start cannot be moved into the past")]
        )
    if permanent:
        finish: datetime | None = None
        problems: list[FieldError] = []
    elif end is None and duration is None:
        finish, problems = before.end, []
    else:
        finish, problems = resolve_end(begin, end, duration)
    policy = load_policy(s, before.target.type, before.target.object_id)
    problems += assignment_problems(
        policy.settings,
        kind=before.kind,
        start=begin,
        end=finish,
        now=w.at,
        justification=asked.justification,
        mfa_verified=asked.mfa_verified or actor.system,
    )
    problems += service_account_problems(before.principal, finish)
    if problems:
        raise PolicyViolation(problems)
    clash = overlapping(
        s,
        kind=before.kind,
        principal=before.principal,
        target=before.target,
        start=begin,
        end=finish,
        now=w.at,
        excluding=assignment_id,
    )
    if clash is not None:
        raise RoleAssignmentExists(f"the new window overlaps assignment {clash.id}")
    with keeping_an_administrator(rt, w):
        row.start_at, row.end_at = begin, finish
    return record_assignment_change(w, "update", before, row, reason=asked.justification)


def remove(
    rt: Pimlico, w: WriteContext, actor: Actor, assignment_id: str, asked: Asked
) -> Assignment:
    row, before = current_for_change(rt, w, actor, assignment_id)
    return end_assignment(rt, w, row, before, by=actor.name, reason=asked.justification)


def extend(
    rt: Pimlico,
    w: WriteContext,
    actor: Actor,
    assignment_id: str,
    end: datetime | None,
    duration: timedelta | None,
    asked: Asked,
) -> Assignment:
    row, before = current_for_change(rt, w, actor, assignment_id)
    if before.end is None:
        raise InvalidInput(
            "nothing to extend",
            [FieldError("end", "ExpirationRule", "the assignment is already permanent")],
        )
    policy = load_policy(w.session, before.target.type, before.target.object_id)
    finish, problems = resolve_end(w.at, end, duration)
    problems += caller_problems(
        policy.settings,
        kind=before.kind,
        justification=asked.justification,
        mfa_verified=asked.mfa_verified or actor.system,
    )
    if finish is None:
        problems.append(FieldError("end", "Required", "give a new end or a duration"))
    elif finish <= before.end:
        problems.append(
            FieldError("end", "ExpirationRule", "an extension ends later than the current end")
        )
    else:
        problems += window_problems(
            policy.settings, kind=before.kind, start=before.start, end=finish, measured_from=w.at
        )
    if problems:
        raise PolicyViolation(problems)
    row.end_at = finish
    return record_assignment_change(w, "extend", before, row, reason=asked.justification)


def renew(
    rt: Pimlico,
    w: WriteContext,
    actor: Actor,
    assignment_id: str,
    end: datetime | None,
    duration: timedelta | None,
    asked: Asked,
) -> Assignment:
    old = mappers.assignment(get_row(w.session, AssignmentRow, assignment_id, "assignment"))
    authorize(rt, actor, write_permission(w.session, old.target), old.target.scope)
    if old.end is None or old.ended_at is not None or old.end > w.at:
        raise InvalidInput(
            "only an expired assignment can be renewed",
            [
                FieldError(
                    "assignment_id",
                    "RenewRule",
                    "renew is for assignments that ran to their end; extend a current one",
                )
            ],
        )
    return create(rt, w, actor, old.kind, old.principal, old.target, None, end, duration, asked)
