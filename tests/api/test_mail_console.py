"""The seed story of DESIGN.md, end to end over HTTP: Alex, Bob and the example mail console
(``examples/mail_console``), each talking to a real Pimlico server (uvicorn on a loopback
port, in a thread of the test) through the typed client (``pimlico.client``).

The console asks Pimlico before every action with the caller's last write revision, so each
answer reflects the activation, approval or deactivation just made.
"""

from __future__ import annotations

from datetime import timedelta

import pyotp
import pytest
from examples.mail_console.app import create_console
from fastapi.testclient import TestClient
from pydantic import SecretStr

from pimlico.client import ApiError, Client, Target
from pimlico.clock import FixedClock
from pimlico.demo import demo_password, load_demo
from pimlico.domain.catalogue import SECURITY_READER
from pimlico.domain.model import AssignmentKind, PrincipalRef, PrincipalType
from pimlico.domain.model import Target as DomainTarget
from pimlico.services import accounts, assignments, directory
from pimlico.services.runtime import Pimlico
from pimlico.settings import Settings
from tests.integration.world import OPERATOR

KEY = "q5wqT0Vf0mB3rXy2kZ8nN4pL7sD1gH6jC9vE2aR5tYU="
STEP = timedelta(seconds=30)


@pytest.fixture
def settings(migrated_url: str) -> Settings:
    return Settings(database_url=migrated_url, secret_key=SecretStr(KEY), token_cache_seconds=0)


def console_token(rt: Pimlico) -> str:
    """The console's own identity: a service account that may ask about others."""
    account = directory.create_service_account(rt, actor=OPERATOR, name="mail-console").value
    assignments.assign(
        rt,
        actor=OPERATOR,
        kind=AssignmentKind.ACTIVE,
        principal=PrincipalRef(PrincipalType.SERVICE_ACCOUNT, account.id),
        target=DomainTarget.role(SECURITY_READER.id),
        duration=timedelta(days=30),
        justification="the mail console asks Pimlico",
    )
    return accounts.issue_token(
        rt,
        actor=OPERATOR,
        name="mail console",
        scopes=["pim.decisions.read"],
        service_account_id=account.id,
    ).bearer


def test_alex_purges_only_while_bob_approved_search_and_purge_is_active(
    rt: Pimlico, clock: FixedClock, pimlico_url: str
) -> None:
    demo = load_demo(rt)
    console = TestClient(create_console(pimlico_url, console_token(rt)))
    alex = Client(pimlico_url)
    signed_in = alex.sign_in("alex", demo_password("alex"))

    def as_alex(revision: int | None) -> dict[str, str]:
        headers = {"Authorization": f"Bearer {signed_in.token}"}
        if revision is not None:
            headers["Pimlico-Revision"] = str(revision)
        return headers

    refused = console.post("/messages/msg-1/purge", headers=as_alex(None))
    assert refused.status_code == 403
    assert refused.json() == {"error": "You need the Search and Purge role"}
    assert console.get("/quarantine", headers=as_alex(None)).status_code == 403

    # Alex enrols TOTP and steps up, all through the API.
    totp = pyotp.TOTP(alex.mfa_enroll().secret)
    assert len(alex.mfa_confirm(totp.at(clock.now()))) > 0
    clock.advance(STEP)
    alex.mfa_verify(totp.at(clock.now()))

    # Security Reader: MFA, no justification, no approval.
    reader = alex.activate(Target(type="role", object_id=SECURITY_READER.id))
    assert reader.status == "provisioned"
    seen = console.get("/quarantine", headers=as_alex(alex.last_revision))
    assert seen.status_code == 200
    still = console.post("/messages/msg-1/purge", headers=as_alex(alex.last_revision))
    assert still.status_code == 403

    # Search and Purge PIM: justification, ticket, Bob's approval.
    purge_group = Target(type="group_member", object_id=demo.groups["Search and Purge PIM"])
    with pytest.raises(ApiError) as missing:
        alex.activate(purge_group)
    assert {"JustificationRule", "TicketingRule"} <= set(missing.value.rules)
    asked = alex.activate(
        purge_group,
        duration=timedelta(hours=1),
        justification="Purge the phishing campaign of INC-4711",
        ticket=("ServiceNow", "INC-4711"),
    )
    assert asked.status == "pending_approval"
    with pytest.raises(ApiError) as own:
        alex.approve(asked.id, "I approve myself")
    assert own.value.status == 403
    waiting = console.post("/messages/msg-1/purge", headers=as_alex(alex.last_revision))
    assert waiting.status_code == 403

    bob = Client(pimlico_url)
    bob.sign_in("bob", demo_password("bob"))
    assert [r.id for r in bob.inbox()] == [asked.id]
    approved = bob.approve(asked.id, "Ticket checked")
    assert approved.status == "provisioned"
    purged = console.post("/messages/msg-1/purge", headers=as_alex(bob.last_revision))
    assert purged.status_code == 200
    assert purged.json() == {"purged": "msg-1"}

    # Alex deactivates early (after Entra's minimum of five minutes active): refused again
    # at once.
    clock.advance(timedelta(minutes=5))
    alex.deactivate(purge_group)
    again = console.post("/messages/msg-1/purge", headers=as_alex(alex.last_revision))
    assert again.status_code == 403
    for client in (alex, bob):
        client.close()
