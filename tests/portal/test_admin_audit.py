"""The audit log in the portal: filters (actor, action, time in the viewer's zone), the
downloads of the current filter, and the verification of the chain in plain words."""

from __future__ import annotations

import csv
import io
import json
import re
from datetime import timedelta
from html import unescape
from zoneinfo import ZoneInfo

from pimlico.clock import FixedClock
from pimlico.demo import Demo
from pimlico.domain.catalogue import SECURITY_READER
from pimlico.domain.model import TargetType
from pimlico.services import audit, role_settings
from pimlico.services.runtime import Actor, Pimlico
from tests.portal.conftest import Visit

AUDIT = "/portal/admin/audit"


def _change_reader(rt: Pimlico, actor: Actor) -> None:
    role_settings.update_policy(
        rt,
        actor=actor,
        target_type=TargetType.ROLE,
        object_id=SECURITY_READER.id,
        changes={"activation": {"require_ticket": True}},
    )


def test_the_log_filters_by_action_and_actor(
    visit: Visit, rt: Pimlico, demo: Demo, clock: FixedClock
) -> None:
    clock.advance(timedelta(minutes=1))
    _change_reader(rt, Actor.principal(demo.users["root"]))
    root = visit("root")
    text = root.get(f"{AUDIT}?action=role_settings.update&actor=root").text
    assert text.count("<code>role_settings.update</code>") == 1
    assert "Break-glass Administrator (root)" in text
    assert "Before and after" in text
    assert "&#34;require_ticket&#34;: true" in text
    everyone = root.get(f"{AUDIT}?action=role_settings.update").text
    assert everyone.count("<code>role_settings.update</code>") > 1  # the demo's changes too
    assert "No events match" in root.get(f"{AUDIT}?action=role_settings.update&actor=alex").text


def test_the_time_filter_is_read_in_the_viewers_zone(
    visit: Visit, rt: Pimlico, demo: Demo, clock: FixedClock
) -> None:
    clock.advance(timedelta(hours=3))
    _change_reader(rt, Actor.principal(demo.users["root"]))
    root = visit("root")
    root.client.cookies.set("pimlico_tz", "Europe/Berlin")
    # Half an hour ago in Berlin: read as UTC instead, it would lie after the change.
    later = (clock.now() - timedelta(minutes=30)).astimezone(ZoneInfo("Europe/Berlin"))
    text = root.get(f"{AUDIT}?action=role_settings.update&since={later:%Y-%m-%dT%H:%M}").text
    assert text.count("<code>role_settings.update</code>") == 1


def test_the_downloads_hold_the_filtered_events(visit: Visit, rt: Pimlico, demo: Demo) -> None:
    _change_reader(rt, Actor.principal(demo.users["root"]))
    root = visit("root")
    page = root.get(f"{AUDIT}?action=role_settings.update&actor=root").text
    assert (
        "/portal/admin/audit/export?actor=root&amp;action=role_settings.update&amp;format=csv"
        in page
    )
    jsonl = root.get(f"{AUDIT}/export?format=jsonl&actor=root&action=role_settings.update")
    assert jsonl.status_code == 200
    assert jsonl.headers["content-disposition"] == 'attachment; filename="pimlico-audit.jsonl"'
    lines = [json.loads(line) for line in jsonl.text.splitlines()]
    assert [(e["action"], e["actor"]) for e in lines] == [
        ("role_settings.update", demo.users["root"])
    ]
    csv_download = root.get(f"{AUDIT}/export?format=csv&actor=root&action=role_settings.update")
    assert csv_download.headers["content-type"].startswith("text/csv")
    rows = list(csv.DictReader(io.StringIO(csv_download.text)))
    assert [(r["action"], r["actor"], r["hash"]) for r in rows] == [
        ("role_settings.update", demo.users["root"], lines[0]["hash"])
    ]
    # The same format as the service's own export (filtered by actor alone here).
    expected = io.StringIO()
    audit.export_log(
        rt, expected, actor=Actor.operator("test"), format="csv", by=demo.users["root"]
    )
    by_root = root.get(f"{AUDIT}/export?format=csv&actor=root").text
    assert by_root == expected.getvalue()


def test_verifying_the_chain_reports_it_intact(visit: Visit, rt: Pimlico, demo: Demo) -> None:
    root = visit("root")
    response = root.submit(AUDIT, f"{AUDIT}/verify", {})
    assert response.status_code == 200
    checked = audit.verify_log(rt, actor=Actor.operator("test"))
    assert f"The chain is intact: {checked.events} events checked" in response.text
    assert 'data-verification="intact"' in response.text


def test_alex_without_an_admin_role_is_refused(visit: Visit, demo: Demo) -> None:
    alex = visit("alex")
    for path in (AUDIT, f"{AUDIT}/export?format=csv"):
        page = alex.get(path)
        assert page.status_code == 403
        assert 'data-code="PermissionDenied"' in page.text
    response = alex.submit(AUDIT, f"{AUDIT}/verify", {})
    assert response.status_code == 403


def test_the_log_shows_the_newest_events_first_and_pages_to_older_ones(
    visit: Visit, rt: Pimlico, demo: Demo
) -> None:
    root = visit("root")
    newest = audit.list_events(rt, actor=Actor.operator("test"), limit=500, newest_first=True)
    first = root.get(AUDIT).text
    shown = [int(n) for n in re.findall(r"Before and after \(event (\d+)\)", first)]
    assert shown == [e.sequence for e in newest[: len(shown)]]
    assert shown == sorted(shown, reverse=True)
    older = re.search(r'href="(/portal/admin/audit\?before=\d+)">Older events', first)
    assert older, "a first page of a long log links to older events"
    second = root.get(unescape(older.group(1))).text
    following = [int(n) for n in re.findall(r"Before and after \(event (\d+)\)", second)]
    assert following[0] == shown[-1] - 1
    assert "Newest events" in second
