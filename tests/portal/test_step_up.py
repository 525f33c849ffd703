"""Step-up in the portal: a refusal for want of a fresh MFA verification offers "Verify now",
which comes back to the page the refused form was on."""

from __future__ import annotations

import re
from html import unescape
from urllib.parse import quote

from pimlico.demo import Demo
from pimlico.services.runtime import Pimlico
from tests.portal.conftest import Visit, enrol_mfa


def test_a_refusal_for_want_of_mfa_offers_to_verify_and_come_back_to_the_form(
    rt: Pimlico, demo: Demo, visit: Visit
) -> None:
    alex = visit("alex")
    enrol_mfa(rt, demo.users["alex"])  # enrolled, but not verified since: not fresh
    found = re.search(
        r'href="(/portal/roles/activate\?assignment=[^"]+)" aria-label="Activate Security Reader"',
        alex.get("/portal/roles").text,
    )
    assert found
    form = unescape(found.group(1))
    token = alex.csrf(form)
    refused = alex.client.post(
        "/portal/roles/activate",
        data={
            "assignment": form.split("=", 1)[1],
            "duration": "PT1H",
            "csrf_token": token,
        },
        headers={"Referer": f"http://testserver{form}"},
    )
    assert refused.status_code == 400
    assert 'data-rule="MfaRule"' in refused.text
    verify = f'href="/portal/security/verify?next={quote(form, safe="/")}">Verify now</a>'
    assert verify in unescape(refused.text)
