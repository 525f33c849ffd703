"""The ``pimlico`` command line, driven as a person would, against a real SQLite database.

Every command runs at least once; refusals are one red line on stderr, exit code 2 and no
change to the store (the audit log and the lists read the same before and after). Commands
are written as they would be typed; the clock stands at 2026-03-01T09:00:00Z.
"""

from __future__ import annotations

import ast
import csv
import io
import json
import re
import shlex
import sqlite3
from datetime import datetime, timedelta
from pathlib import Path

import pytest

from pimlico import cli as cli_package
from pimlico.cli import app
from pimlico.db import migrate
from pimlico.domain.audit import AuditRecord, verify_chain
from tests.cli.conftest import Pimlico

HOUR = timedelta(hours=1)


def one_error_line(stderr: str, code: str) -> str:
    lines = stderr.splitlines()
    assert len(lines) == 1, stderr
    assert lines[0].startswith(f"error: {code}: "), lines[0]
    return lines[0]


def events(pimlico: Pimlico) -> list[dict[str, object]]:
    exported = pimlico("audit export --format jsonl").stdout
    return [json.loads(line) for line in exported.splitlines()]


def actions(pimlico: Pimlico) -> list[object]:
    return [event["action"] for event in events(pimlico)]


def store_state(pimlico: Pimlico) -> tuple[str, ...]:
    """What a refused command must leave alone: the log, the assignments, settings, members."""
    return (
        pimlico("audit export").stdout,
        pimlico("assignment list --all").stdout,
        pimlico("settings show role:Reader --json").stdout,
        pimlico("group show Readers").stdout,
        pimlico("user list").stdout,
    )


@pytest.fixture
def world(pimlico: Pimlico) -> Pimlico:
    """Alex; a role Reader (mail.read); a role-assignable group Readers; and Alex active in
    Reader for eight hours (revision 4; six audit events: the assignment is a request too)."""
    pimlico("user create alex --display-name 'Alex Analyst'")
    pimlico("role create Reader --permission mail.read")
    pimlico("group create Readers --role-assignable")
    pimlico("assignment add alex role:Reader --active --duration PT8H --justification INC-1")
    return pimlico


# -- the database ---------------------------------------------------------------------------


def test_db_upgrade_migrates_and_db_current_names_the_head(pimlico: Pimlico) -> None:
    assert pimlico("db current").stdout.strip() == f"{migrate.heads()[0]} (head)"
    assert "already at" in pimlico("db upgrade").stdout


def test_a_command_on_a_database_never_migrated_says_to_run_db_upgrade(
    pimlico: Pimlico, tmp_path: Path
) -> None:
    fresh = {"PIMLICO_DATABASE_URL": f"sqlite:///{tmp_path / 'fresh.db'}"}

    refused = pimlico.runner.invoke(app, ["user", "list"], env=fresh)

    assert refused.exit_code == 2
    assert "pimlico db upgrade" in one_error_line(refused.stderr, "DatabaseNotMigrated")
    assert "not migrated" in pimlico.runner.invoke(app, ["db", "current"], env=fresh).stdout


# -- the directory --------------------------------------------------------------------------


def test_users_are_created_listed_shown_disabled_and_enabled(pimlico: Pimlico) -> None:
    pimlico("user create bob")
    created = pimlico(
        "user create alex --display-name 'Alex Analyst' --email alex@example.com --manager bob"
    )
    assert created.stdout.startswith("created user alex (")
    assert created.stdout.rstrip().endswith("; revision 2")
    listed = pimlico("user list").stdout
    assert "Alex Analyst" in listed
    assert "alex@example.com" in listed
    shown = pimlico("user show alex").stdout
    assert "user:bob" in shown  # the manager, by name
    assert "access of user:alex" in shown

    disabled = pimlico("user disable alex --reason left").stdout
    assert disabled.strip() == "disabled user alex; revision 3"
    assert pimlico("user enable alex").stdout.strip() == "enabled user alex; revision 4"
    assert actions(pimlico)[-2:] == ["user.disable", "user.enable"]
    assert events(pimlico)[-2]["reason"] == "left"


def test_service_accounts_are_created_listed_disabled_and_enabled(pimlico: Pimlico) -> None:
    pimlico("service-account create ci-bot --description builds")
    assert "builds" in pimlico("service-account list").stdout
    assert "disabled service account ci-bot" in pimlico("service-account disable ci-bot").stdout
    assert "enabled service account ci-bot" in pimlico("service-account enable sa:ci-bot").stdout


def test_groups_are_created_updated_listed_and_shown_with_members_and_owners(
    pimlico: Pimlico,
) -> None:
    pimlico("user create alex")
    pimlico("service-account create ci-bot")
    pimlico("group create 'Search and Purge' --role-assignable --description app")
    pimlico("group create 'Search and Purge PIM' --role-assignable")
    pimlico("group create Helpdesk")
    updated = pimlico("group update 'Search and Purge PIM' --pim-enabled --description 'for PIM'")
    assert "updated group Search and Purge PIM" in updated.stdout
    pimlico("group add-member 'Search and Purge' 'group:Search and Purge PIM'")
    pimlico("group add-member 'Search and Purge PIM' alex --owner")
    added = pimlico("group add-member Helpdesk sa:ci-bot")
    assert "added sa:ci-bot as member of group Helpdesk" in added.stdout

    assert "for PIM" in pimlico("group list").stdout
    shown = pimlico("group show 'Search and Purge PIM'").stdout
    assert "user:alex" in shown
    assert "owner" in shown
    assert "sa:ci-bot" in pimlico("group show Helpdesk").stdout
    assert "group:Search and Purge PIM" in pimlico("group show 'Search and Purge'").stdout

    removed = pimlico("group remove-member 'Search and Purge PIM' alex --owner --reason moved")
    assert "removed user:alex as owner" in removed.stdout
    assert "user:alex" not in pimlico("group show 'Search and Purge PIM'").stdout
    assert actions(pimlico)[-1] == "membership.end.owner"


def test_roles_are_created_updated_listed_and_shown(pimlico: Pimlico) -> None:
    created = pimlico("role create Purger -p mail.purge -p mail.read")
    assert "mail.purge, mail.read" in created.stdout
    pimlico("role update Purger --permission 'mail.*' --description 'all mail'")
    listed = pimlico("role list").stdout
    assert "Global Administrator" in listed
    assert "all mail" in listed
    shown = pimlico("role show purger").stdout
    assert "mail.*" in shown
    assert "mail.purge" not in shown


# -- settings -------------------------------------------------------------------------------


def test_settings_show_prints_every_rule_grouped_with_the_version(world: Pimlico) -> None:
    shown = world("settings show role:Reader").stdout
    assert "settings of role:Reader: version 0 (never set: the defaults apply)" in shown
    for section in ("activation", "approval", "assignment", "notifications"):
        assert section in shown
    for rule in ("maximum_duration", "stages[0].quorum", "allow_permanent_active"):
        assert rule in shown
    assert "activation.approver.additional_recipients" in shown
    assert "member:Readers: version 0" in world("settings show member:Readers").stdout


def test_settings_set_merges_a_file_json_and_dotted_keys_and_bumps_the_version(
    world: Pimlico, tmp_path: Path
) -> None:
    created = re.search(r"\(([0-9a-f-]{36})\)", world("user create bob").stdout)
    assert created is not None
    approvers = [{"type": "user", "id": created.group(1)}]
    document = tmp_path / "approval.json"
    document.write_text(json.dumps({"approval": {"stages": [{"approvers": approvers}]}}))
    recipients = 'notifications.activation.admin.additional_recipients=["sec@example.com"]'

    updated = world(
        f"settings set role:Reader --file {shlex.quote(str(document))}"
        ' --json \'{"approval": {"required": true}}\''
        " --set activation.maximum_duration=PT2H --set activation.require_ticket=true"
        f" --set {shlex.quote(recipients)} --if-version 0"
    )

    assert "version 1" in updated.stdout
    assert "activation.maximum_duration" in updated.stdout
    settings = json.loads(world("settings show role:Reader --json").stdout)
    assert settings["activation"]["maximum_duration"] == "PT2H"
    assert settings["activation"]["require_ticket"] is True
    assert settings["approval"]["required"] is True
    assert settings["approval"]["stages"][0]["approvers"] == approvers
    admin = settings["notifications"]["activation"]["admin"]
    assert admin["additional_recipients"] == ["sec@example.com"]
    shown = world("settings show role:Reader").stdout
    assert "version 1" in shown
    assert "user:bob" in shown  # approvers by name


def test_settings_set_naming_a_version_that_moved_on_is_refused(world: Pimlico) -> None:
    world("settings set role:Reader --set activation.require_mfa=false")
    before = store_state(world)

    refused = world(
        "settings set role:Reader --set activation.require_mfa=true --if-version 0", code=2
    )

    one_error_line(refused.stderr, "PreconditionFailed")
    assert store_state(world) == before


# -- the story ------------------------------------------------------------------------------


def test_alex_may_purge_only_while_an_admin_has_made_him_an_active_member_of_the_nested_group(
    pimlico: Pimlico,
) -> None:
    pimlico("user create alex")
    pimlico("role create 'Search and Purge' --permission mail.purge")
    pimlico("group create 'Search and Purge' --role-assignable")
    pimlico("group create 'Search and Purge PIM' --role-assignable --pim-enabled")
    pimlico("group add-member 'Search and Purge' 'group:Search and Purge PIM'")
    pimlico("settings set 'role:Search and Purge' --set assignment.allow_permanent_active=true")
    pimlico(
        "assignment add 'group:Search and Purge' 'role:Search and Purge' --active --permanent"
        " --justification 'the app role group holds the role'"
    )
    pimlico("assignment add alex 'member:Search and Purge PIM' --eligible --duration P90D")

    denied = pimlico("check alex mail.purge --scope /apps/mail", code=1)
    assert denied.stdout.startswith("denied: user:alex may not use mail.purge at /apps/mail")

    activation = pimlico.assignment_id(
        "assignment add alex 'member:Search and Purge PIM' --active --duration PT8H"
        " --justification 'INC-4711 malicious mail'"
    )
    allowed = pimlico("check alex mail.purge --scope /apps/mail")
    assert allowed.stdout.startswith("allowed: user:alex may use mail.purge at /apps/mail")
    assert "through group:Search and Purge, until 2026-03-01T17:00:00Z" in allowed.stdout

    explained = pimlico("explain alex mail.purge --scope /apps/mail").stdout
    assert "user:alex → group:Search and Purge PIM → group:Search and Purge" in explained
    assert "role:Search and Purge" in explained
    assert activation in explained
    assert "2026-03-01T09:00:00Z → 2026-03-01T17:00:00Z" in explained

    removed = pimlico(f"assignment remove {activation} --reason purged")
    assert "ended active member:Search and Purge PIM for user:alex" in removed.stdout
    pimlico("check alex mail.purge --scope /apps/mail", code=1)
    assert "denied" in pimlico("explain alex mail.purge").stdout
    assert actions(pimlico)[-3:] == [
        "assignment.active.remove",
        "request.admin_remove.submit",
        "request.revoked",
    ]


# -- assignments ----------------------------------------------------------------------------


def test_an_assignment_is_updated_extended_and_ended_with_each_step_in_the_log(
    world: Pimlico,
) -> None:
    eligible = world.assignment_id(
        "assignment add alex role:Reader --eligible --scope /apps/mail"
        " --start 2026-03-02T09:00:00 --end 2026-06-01T09:00:00Z"
    )
    listed = world("assignment list --principal alex --kind eligible").stdout
    assert "role:Reader at /apps/mail" in listed
    assert "scheduled" in listed

    updated = world(f"assignment update {eligible} --duration P30D")
    assert "until 2026-04-01T09:00:00Z" in updated.stdout
    extended = world(f"assignment extend {eligible} --end 2026-05-01T00:00:00Z")
    assert "until 2026-05-01T00:00:00Z" in extended.stdout
    world(f"assignment remove {eligible}")

    assert [a for a in map(str, actions(world)) if a.startswith("assignment.")][-3:] == [
        "assignment.eligible.update",
        "assignment.eligible.extend",
        "assignment.eligible.remove",
    ]
    assert eligible not in world("assignment list").stdout
    assert "ended" in world("assignment list --all --kind eligible").stdout


def test_an_assignment_that_ran_to_its_end_is_renewed_as_a_new_one(world: Pimlico) -> None:
    first = world.assignment_id(
        "assignment add alex member:Readers --active --duration PT1H --justification short"
    )
    world.clock.advance(2 * HOUR)
    assert "expired" in world("assignment list --all --target member:Readers").stdout

    renewed = world.assignment_id(f"assignment renew {first} --duration PT4H --justification again")

    assert renewed != first
    listed = world("assignment list --target member:Readers").stdout
    assert renewed in listed
    assert first not in listed


def test_access_shows_roles_groups_with_chains_and_eligible_assignments(world: Pimlico) -> None:
    world("group create Analysts --role-assignable")
    world("group add-member Readers group:Analysts")
    world("group add-member Analysts alex")
    world(
        "assignment add group:Readers role:Reader --active --scope /apps/x --duration P30D"
        " --justification team"
    )
    world("assignment add alex member:Readers --eligible --duration P30D")

    access = world("access user:alex").stdout
    assert "user:alex → group:Analysts → group:Readers" in access
    assert "/apps/x" in access
    assert "member:Readers" in access  # eligible
    assert "mail.read" in access

    later = world("access alex --at 2026-03-01T18:00:00Z").stdout
    assert "2026-03-01T17:00:00Z" not in later  # the eight-hour assignment has ended by then


def test_check_answers_for_another_instant_and_after_a_revision_it_has_seen(
    world: Pimlico,
) -> None:
    world("check alex mail.read --at 2026-03-01T16:59:59Z --at-least-revision 4")
    world("check alex mail.read --at 2026-03-01T17:00:00Z", code=1)
    ahead = world("check alex mail.read --at-least-revision 99", code=2)
    assert "ahead of the store" in one_error_line(ahead.stderr, "InvalidInput")


# -- refusals -------------------------------------------------------------------------------

REFUSALS = [
    pytest.param(
        "assignment add nobody role:Reader --eligible --duration P30D",
        "NotFound",
        "'nobody'",
        id="unknown user",
    ),
    pytest.param(
        "assignment add alex role:Reader --eligible --duration PT8X",
        "InvalidInput",
        "duration [DurationFormat] 'PT8X' is not a duration",
        id="bad duration",
    ),
    pytest.param(
        "assignment add alex role:Reader --eligible --scope apps/x --duration P30D",
        "InvalidInput",
        "target.scope [ScopeFormat]",
        id="bad scope",
    ),
    pytest.param(
        "settings set role:Reader --set activation.maximum_duration=P2D",
        "InvalidPolicy",
        "activation.maximum_duration [Range] must be between PT5M and P1D inclusive, not P2D",
        id="invalid settings value",
    ),
    pytest.param(
        "assignment add alex role:Reader --active --duration PT4H --justification again",
        "RoleAssignmentExists",
        "already exists",
        id="duplicate active assignment",
    ),
    pytest.param(
        "assignment add alex member:Readers --active --duration PT1H",
        "RoleAssignmentRequestPolicyValidationFailed",
        "justification [JustificationRule]",
        id="missing justification",
    ),
    pytest.param(
        "assignment add alex role:Reader --eligible --end tomorrow",
        "InvalidInput",
        "end [InstantFormat] 'tomorrow'",
        id="bad instant",
    ),
    pytest.param(
        "assignment add alex role:Reader --duration PT1H",
        "InvalidInput",
        "kind [Required] give one of --eligible or --active",
        id="neither eligible nor active",
    ),
    pytest.param(
        "assignment add alex role:Reader --eligible",
        "InvalidInput",
        "end [Required] give one of --end, --duration or --permanent",
        id="no end given",
    ),
    pytest.param(
        "assignment add alex team:x --active --duration PT1H",
        "InvalidInput",
        "target [TargetFormat]",
        id="unknown target type",
    ),
    pytest.param("assignment remove nope", "NotFound", "nope", id="unknown assignment"),
    pytest.param("check nobody mail.read", "NotFound", "'nobody'", id="check for nobody"),
    pytest.param("check alex Mail.Read", "InvalidInput", "[PermissionFormat]", id="permission"),
    pytest.param(
        "group add-member Readers x:alex",
        "InvalidInput",
        "principal [PrincipalFormat]",
        id="unknown principal type",
    ),
    pytest.param(
        "settings set role:Reader --set activation.max=PT1H",
        "InvalidPolicy",
        "activation.max [UnknownField]",
        id="unknown setting",
    ),
    pytest.param(
        "settings set role:Reader --json '{oops'",
        "InvalidInput",
        "json [JsonFormat]",
        id="settings that are not JSON",
    ),
    pytest.param("settings set role:Reader", "InvalidInput", "changes [Required]", id="nothing"),
    pytest.param("role create Empty", "InvalidInput", "permissions [Required]", id="no perms"),
    pytest.param("user create alex", "AlreadyExists", "taken", id="duplicate user"),
    pytest.param("audit export --format xml", "InvalidInput", "format [Choice]", id="format"),
]


@pytest.mark.parametrize(("command", "code", "says"), REFUSALS)
def test_a_refused_command_prints_one_error_line_exits_2_and_changes_nothing(
    world: Pimlico, command: str, code: str, says: str
) -> None:
    before = store_state(world)

    refused = world(command, code=2)

    assert says in one_error_line(refused.stderr, code)
    assert refused.stdout == ""
    assert store_state(world) == before


# -- the audit log --------------------------------------------------------------------------


def test_audit_verify_reports_an_intact_chain_with_its_event_count(world: Pimlico) -> None:
    assert world("audit verify").stdout.strip() == "audit chain intact: 6 events"


def test_audit_verify_names_the_first_tampered_event_and_exits_1(world: Pimlico) -> None:
    connection = sqlite3.connect(world.database)
    with connection:
        connection.execute("UPDATE audit_events SET reason = 'forged' WHERE sequence = 2")
    connection.close()

    broken = world("audit verify", code=1)

    assert "audit chain BROKEN at event 2" in broken.stdout
    assert "edited" in broken.stdout


def test_audit_export_writes_json_lines_and_csv_that_verify_as_a_chain(
    world: Pimlico, tmp_path: Path
) -> None:
    lines = events(world)
    assert [e["sequence"] for e in lines] == [1, 2, 3, 4, 5, 6]
    after = lines[0]["after"]
    assert isinstance(after, dict)
    assert after["user_name"] == "alex"

    target = tmp_path / "audit.csv"
    written = world(f"audit export --format csv --output {shlex.quote(str(target))}")
    assert "exported 6 events" in written.stdout
    rows = list(csv.DictReader(io.StringIO(target.read_text(encoding="utf-8"))))
    records = [
        AuditRecord(
            sequence=int(r["sequence"]),
            revision=int(r["revision"]),
            occurred_at=datetime.fromisoformat(r["occurred_at"]),
            actor=r["actor"] or None,
            action=r["action"],
            target_type=r["target_type"],
            target_id=r["target_id"],
            before=r["before"] or None,
            after=r["after"] or None,
            reason=r["reason"] or None,
            request_id=r["request_id"] or None,
            prev_hash=r["prev_hash"],
            hash=r["hash"],
        )
        for r in rows
    ]
    assert verify_chain(records) is None

    assert world("audit export --since 2026-03-01T10:00:00Z").stdout == ""
    by_operator = world("audit export --format csv --actor system:cli").stdout
    assert len(by_operator.splitlines()) == 7  # the header and six events


def test_audit_list_shows_events_with_names_and_filters_them(world: Pimlico) -> None:
    listed = world("audit list").stdout
    assert "user:alex" in listed
    assert "role:Reader" in listed
    only_roles = world("audit list --action role.create").stdout
    assert "role.create" in only_roles
    assert "user.create" not in only_roles
    assert "group.create" in world("audit list --after 2 --limit 1").stdout
    assert "role.create" not in world("audit list --target-type group").stdout
    assert (
        "user.create" in world("audit list --since 2026-03-01T09:00:00Z --until 2026-03-02").stdout
    )


# -- the shape of the CLI -------------------------------------------------------------------


def test_the_cli_never_imports_the_orm() -> None:
    package = Path(cli_package.__file__).parent
    imported: set[str] = set()
    for path in package.glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                imported.update(alias.name for alias in node.names)
            elif isinstance(node, ast.ImportFrom) and node.module:
                imported.add(node.module)
    assert not {m for m in imported if m.startswith(("sqlalchemy", "pimlico.db.tables"))}
