"""The Pimlico side of the end-to-end provisioning stories told against slapd and a SCIM server.

``test_provisioning_ldap`` and ``test_provisioning_scim`` drive the real pipeline (outbox
consumer → provisioning rows → dispatcher → connector; reconcile) into a downstream server of
their own and assert on that server. What they do in Pimlico to get there is the same for
both, and lives here: an administrator's active assignment, a user's self-activation of an
eligible role and its early end, and reads of the provisioning rows and of the audit log.
Everything goes through the real use cases (``services``); nothing here knows about a
downstream system.
"""

from __future__ import annotations

import json
from datetime import timedelta

from sqlalchemy import select

from pimlico.clock import FixedClock
from pimlico.db.tables import AuditEventRow, ProvisioningRow
from pimlico.domain.model import AssignmentKind, PrincipalRef, PrincipalType
from pimlico.domain.requests import RequestAction
from pimlico.services import assignments, requests
from pimlico.services.runtime import Actor, Pimlico
from tests.integration.test_requests import (
    READER,
    activate,
    eligible,
    reader_without_justification,
    with_mfa,
)
from tests.integration.world import OPERATOR, user

HOUR = timedelta(hours=1)


def active(rt: Pimlico, who: PrincipalRef, duration: timedelta = HOUR) -> str:
    """An administrator makes ``who`` an active Security Reader for ``duration``; its id."""
    return assignments.assign(
        rt,
        actor=OPERATOR,
        kind=AssignmentKind.ACTIVE,
        principal=who,
        target=READER,
        duration=duration,
        justification="end-to-end provisioning test",
    ).value.id


def self_activated(rt: Pimlico, clock: FixedClock, name: str) -> tuple[Actor, str]:
    """User ``name``, eligible for Security Reader, activates it (MFA, no justification
    needed); the user as an actor and the active assignment the activation made."""
    me = Actor.principal(user(rt, name).id)
    eligible(rt, PrincipalRef(PrincipalType.USER, me.name), READER)
    reader_without_justification(rt)
    with_mfa(rt, clock, me)
    made = activate(rt, me, READER).value.assignment_id
    assert made is not None, "the activation was not granted at once"
    return me, made


def self_deactivate(rt: Pimlico, me: Actor) -> None:
    """``me`` ends their own Security Reader activation before its end."""
    requests.submit(
        rt,
        actor=me,
        action=RequestAction.SELF_DEACTIVATE,
        kind=AssignmentKind.ACTIVE,
        target=READER,
    )


def rows(rt: Pimlico) -> list[ProvisioningRow]:
    """Every provisioning row, as stored."""
    with rt.reading() as s:
        return list(s.scalars(select(ProvisioningRow).order_by(ProvisioningRow.principal_id)))


def reconcile_audit(rt: Pimlico) -> list[tuple[str, str]]:
    """The ``reconcile.*`` audit events: (action, downstream identity), sorted."""
    with rt.reading() as s:
        found = s.scalars(
            select(AuditEventRow).where(AuditEventRow.action.startswith("reconcile."))
        )
        return sorted((e.action, str(json.loads(e.after or "{}")["identity"])) for e in found)
