"""Self-activations, many per write: the just-in-time hot path.

When a shift starts, or an incident pages a team, many people activate at once, and each
activation is a write: the store's one write lock, a dozen statements, a commit. Here the
activations that arrive together share one write (``GroupCommit``): what the rules need is
read once for the whole batch — the targets' settings, the requesters' fresh MFA
verifications, their own current activations, their eligibilities (from the decision index)
— then each activation is judged by ``request_rules.plan`` exactly as alone, and the ones
granted are stored by ``request_effects.activate_now``, their rows inserted together when the
write ends. Each answer is what submitting it alone would have answered: an activation sees
those made before it in the same batch (a second identical one is ``RoleAssignmentExists``),
and one that is refused writes nothing and leaves the others be.

What this path does not take goes its own way, in a write of its own (``Activation.alone``,
the general ``requests.submit`` path): an activation needing approval, and — should anything
unexpected fail while the batch is written — every activation of that batch, one by one.
Dry runs and idempotency keys never come here.
"""

from __future__ import annotations

import logging
import threading
import weakref
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, cast

from sqlalchemy import and_, or_, select
from sqlalchemy.orm import Session

from pimlico.db import mappers
from pimlico.db.audit import WriteContext
from pimlico.db.tables import AssignmentRow, Base
from pimlico.domain.model import (
    Assignment,
    AssignmentKind,
    PrincipalRef,
    PrincipalType,
    Target,
    new_id,
)
from pimlico.domain.policy import RoleSettings
from pimlico.domain.request_rules import plan
from pimlico.domain.requests import Request, RequestAction, Schedule, Ticket
from pimlico.errors import PimlicoError
from pimlico.services.group_commit import GroupCommit
from pimlico.services.mfa import fresh_verifications
from pimlico.services.request_effects import activate_now, bounded, current_of, held_eligibility
from pimlico.services.request_records import RequestView, new_view
from pimlico.services.role_settings import load_policy
from pimlico.services.runtime import Actor, Pimlico, Written

log = logging.getLogger(__name__)

MOST_PER_WRITE = 64
"""Activations in one write at most: enough to share the write's costs (beyond a few dozen
the per-activation work dominates), few enough that no caller waits long behind a batch."""
_ASSIGNMENTS = Base.metadata.tables[AssignmentRow.__tablename__]


@dataclass(frozen=True, slots=True)
class Activation:
    """A user's self-activation of ``target``, its input already checked (``requests``)."""

    user_id: str
    target: Target
    schedule: Schedule | None
    justification: str | None
    ticket: Ticket | None
    alone: Callable[[], Written[RequestView]]
    """Submits it through the general path, in a write of its own."""


def activate(rt: Pimlico, activation: Activation) -> Written[RequestView]:
    """Submit ``activation`` with whichever others are being submitted at the same time."""
    answer = _batcher(rt).submit(activation)
    return activation.alone() if answer is None else answer


_Answer = Written[RequestView] | None
"""A stored request, or ``None``: not for this path (``Activation.alone``)."""
_batchers: weakref.WeakKeyDictionary[Pimlico, GroupCommit[Activation, _Answer]] = (
    weakref.WeakKeyDictionary()
)
_batchers_lock = threading.Lock()


def _batcher(rt: Pimlico) -> GroupCommit[Activation, _Answer]:
    with _batchers_lock:
        batcher = _batchers.get(rt)
        if batcher is None:

            def run(batch: Sequence[Activation]) -> Sequence[_Answer | BaseException]:
                return submit_together(rt, batch)

            batcher = _batchers[rt] = GroupCommit(run, most=MOST_PER_WRITE)
        return batcher


class _NothingStored(Exception):
    """Rolls back a batch's write when every activation of it was refused or went alone."""


def submit_together(
    rt: Pimlico, batch: Sequence[Activation]
) -> list[Written[RequestView] | BaseException | None]:
    """Submit ``batch`` in one write: for each activation, in order, its stored request, the
    error refusing it, or ``None`` for one to submit alone (``Activation.alone``)."""
    answers: list[RequestView | PimlicoError | None] = [None] * len(batch)
    try:
        with rt.writing(Actor.principal(batch[0].user_id)) as w:
            if not _activate_all(rt, w, batch, answers):
                raise _NothingStored
    except _NothingStored:
        pass
    except Exception:
        # Nothing of the batch was kept: each activation goes again, alone, and meets
        # whatever failed on its own.
        log.exception("a batch of %s activations failed; submitting each alone", len(batch))
        return [None] * len(batch)
    return [Written(a, w.revision) if isinstance(a, RequestView) else a for a in answers]


def _activate_all(
    rt: Pimlico,
    w: WriteContext,
    batch: Sequence[Activation],
    answers: list[RequestView | PimlicoError | None],
) -> int:
    """Judge and store every activation of ``batch`` in the write ``w``, in order; fills
    ``answers`` and returns how many were stored."""
    s, at = w.session, w.at
    asked = [(a.user_id, a.target) for a in batch]
    settings: dict[Target, RoleSettings] = {
        target: load_policy(s, target.type, target.object_id).settings
        for target in dict.fromkeys(a.target for a in batch)
    }
    mfa = fresh_verifications(rt, s, {a.user_id for a in batch}, at)
    own, eligible = _assignments_of(rt, s, asked, at)
    stored = 0
    # Every read is done: the rows each activation adds are inserted together at the end.
    with s.no_autoflush:
        for i, activation in enumerate(batch):
            key = asked[i]
            request, _ = Request.submit(
                id=new_id(),
                action=RequestAction.SELF_ACTIVATE,
                kind=AssignmentKind.ACTIVE,
                principal=PrincipalRef(PrincipalType.USER, activation.user_id),
                target=activation.target,
                requested_by=activation.user_id,
                now=at,
                needs_approval=False,
                schedule=activation.schedule,
                justification=activation.justification,
                ticket=activation.ticket,
                mfa_verified_at=mfa.get(activation.user_id),
            )
            judged = plan(
                settings[activation.target],
                request,
                now=at,
                eligible=eligible.get(key),
                active=current_of(own.get(key, []), at),
                mfa_fresh=request.mfa_verified_at is not None,
            )
            try:
                judged.raise_for_problems()
            except PimlicoError as refused:
                answers[i] = refused
                continue
            if judged.needs_approval:
                continue  # stored pending by the general path (answer None)
            held = eligible[key]
            assert judged.window is not None  # plan() gives one to what it grants
            w.actor, w.request_id = activation.user_id, request.id
            row, created = activate_now(rt, w, request, judged.window, held)
            if created is not None:
                own.setdefault(key, []).append(created)
            answers[i] = new_view(row)
            stored += 1
    return stored


def _assignments_of(
    rt: Pimlico, s: Session, asked: Sequence[tuple[str, Target]], at: datetime
) -> tuple[dict[tuple[str, Target], list[Assignment]], dict[tuple[str, Target], Assignment]]:
    """For each (requester, target) asked, in one query: the requester's own activations of
    the target that were not removed and are in force at ``at`` or later (``plan`` refuses
    a second one), and the eligibility they hold of it at ``at``, directly or through groups
    (as ``request_effects.eligible_of`` finds it, from the decision index)."""
    held = {
        key: holding
        for key in dict.fromkeys(asked)
        if (holding := held_eligibility(rt, key[0], key[1], at)) is not None
    }
    table = _ASSIGNMENTS.c
    rows = s.execute(
        select(_ASSIGNMENTS).where(
            or_(
                table.id.in_(sorted({h.assignment_id for h in held.values()})),
                and_(
                    table.kind == AssignmentKind.ACTIVE.value,
                    table.principal_type == PrincipalType.USER.value,
                    table.principal_id.in_(sorted({user for user, _ in asked})),
                    table.ended_at.is_(None),
                    or_(table.end_at.is_(None), table.end_at > at),
                ),
            )
        )
    ).all()
    found: dict[str, Assignment] = {}
    own: dict[tuple[str, Target], list[Assignment]] = {}
    wanted = set(asked)
    for row in cast(Sequence[Any], rows):
        assignment = found[row.id] = mappers.assignment(row)
        key = (assignment.principal.id, assignment.target)
        if assignment.kind is AssignmentKind.ACTIVE and key in wanted:
            own.setdefault(key, []).append(assignment)
    eligible = {key: bounded(found[h.assignment_id], h) for key, h in held.items()}
    return own, eligible
