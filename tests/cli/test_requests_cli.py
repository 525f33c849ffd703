"""``pimlico activate|extend|renew|requests|approve|cancel`` and the administrators' requests
of ``pimlico assignment``, through the CLI on SQLite; the clock stands at T0 until moved."""

from __future__ import annotations

import json
import re
import shlex
from datetime import timedelta

import pytest

from pimlico.clock import FixedClock
from tests.cli.conftest import Pimlico

_REQUEST = re.compile(r"request ([0-9a-f-]{36}):")
_ID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")
DAY = timedelta(days=1)
APPROVER_ROLE = "'role:Privileged Role Administrator'"


@pytest.fixture
def world(pimlico: Pimlico) -> Pimlico:
    """Alex eligible for Reader (no MFA, no justification) and for the Purge group (approval
    by Bob); Bob exists."""
    pimlico("user create alex")
    pimlico("user create bob")
    pimlico("role create Reader -p security.read")
    pimlico("assignment add alex role:Reader --eligible --duration P30D")
    pimlico(
        "settings set role:Reader --set activation.require_mfa=false "
        "--set activation.require_justification=false"
    )
    pimlico("group create Purge --role-assignable")
    pimlico("assignment add alex member:Purge --eligible --duration P30D")
    bob = pimlico("user list").stdout
    bob_id = re.search(r"bob\s.*?([0-9a-f-]{36})", bob)
    assert bob_id is not None, bob
    stages = json.dumps([{"approvers": [{"type": "user", "id": bob_id.group(1)}]}])
    pimlico(
        "settings set member:Purge --set activation.require_mfa=false "
        f"--set approval.required=true --set approval.stages={shlex.quote(stages)}"
    )
    return pimlico


def request_id(out: str) -> str:
    match = _REQUEST.search(out)
    assert match is not None, out
    return match.group(1)


def test_alex_activates_reader_at_once(world: Pimlico) -> None:
    out = world("activate alex role:Reader --duration PT2H").stdout

    assert "self_activate role:Reader" in out
    assert "until 2026-03-01T11:00:00Z: provisioned" in out
    assert "allowed" in world("check alex security.read").stdout


def test_a_dry_run_writes_nothing(world: Pimlico) -> None:
    out = world("activate alex role:Reader --dry-run").stdout

    assert out.startswith("dry run, nothing written: would ask self_activate role:Reader")
    assert "request " not in out  # its id would name nothing
    assert "self_activate" not in world("requests --all").stdout


def test_bob_approves_alex_request_and_it_is_listed(world: Pimlico) -> None:
    asked = request_id(world("activate alex member:Purge --justification 'INC-7'").stdout)

    assert asked in world("requests --to-approve bob").stdout
    assert asked in world("requests --mine alex").stdout
    out = world(f"approve {asked} --as bob --justification ok").stdout

    assert "provisioned" in out
    assert asked not in world("requests --to-approve bob").stdout


def test_alex_cancels_a_pending_request(world: Pimlico) -> None:
    asked = request_id(world("activate alex member:Purge --justification 'INC-7'").stdout)

    out = world(f"cancel {asked} --as alex --reason 'not needed'").stdout

    assert f"request {asked}" in out
    assert "canceled" in out


def test_approving_ones_own_request_is_one_red_line_and_exit_code_2(world: Pimlico) -> None:
    asked = request_id(world("activate alex member:Purge --justification 'INC-7'").stdout)

    result = world(f"approve {asked} --as alex --justification mine", code=2)

    assert result.stderr.startswith("error: PermissionDenied: ")
    assert len(result.stderr.strip().splitlines()) == 1


def listed(cli: Pimlico, options: str) -> list[str]:
    """The ids ``pimlico requests OPTIONS`` lists (names stand for every other id)."""
    return _ID.findall(cli(f"requests {options}").stdout)


def make_bob_an_approver(cli: Pimlico) -> None:
    cli(f"assignment add bob {APPROVER_ROLE} --active --duration PT8H --justification on-call")


# -- extend and renew -------------------------------------------------------------------------


def test_alex_extends_his_eligibility_near_its_end_once_an_approver_agrees(
    world: Pimlico, clock: FixedClock
) -> None:
    clock.advance(20 * DAY)  # the eligibility ends 2026-03-31T09:00:00Z, ten days from now

    out = world(
        "extend alex role:Reader --eligible --duration P30D --justification 'still on it'"
    ).stdout

    assert "self_extend eligible role:Reader at / for user:alex" in out
    assert "until 2026-04-20T09:00:00Z: pending_approval" in out
    assert "(stage 1 of 1: holders of pim.requests.approve)" in out
    asked = request_id(out)
    assert asked not in world("requests --to-approve bob").stdout
    make_bob_an_approver(world)
    assert asked in world("requests --to-approve bob").stdout
    approved = world(f"approve {asked} --as bob --justification 'still needed'").stdout
    assert ": provisioned" in approved
    eligibility = world("assignment list --principal alex --target role:Reader").stdout
    assert "2026-04-20T09:00:00Z" in eligibility
    assert "2026-03-31T09:00:00Z" not in eligibility


def test_extending_more_than_14_days_before_the_end_is_one_red_line(world: Pimlico) -> None:
    result = world(
        "extend alex role:Reader --eligible --duration P30D --justification early", code=2
    )

    assert result.stderr.startswith("error: RoleAssignmentRequestPolicyValidationFailed: ")
    assert "schedule [ExpirationRule] an assignment can be extended only within 14 days" in (
        result.stderr
    )
    assert len(result.stderr.strip().splitlines()) == 1


def test_alex_renews_his_expired_eligibility_once_an_approver_agrees(
    world: Pimlico, clock: FixedClock
) -> None:
    clock.advance(31 * DAY)  # expired at 2026-03-31T09:00:00Z, a day ago
    assert "expired" in world("assignment list --all --principal alex --kind eligible").stdout

    out = world(
        "renew alex role:Reader --eligible --end 2026-05-01T09:00:00Z --justification back "
        "--ticket-system Jira --ticket-number OPS-7"
    ).stdout

    assert "self_renew eligible role:Reader" in out
    assert ": pending_approval (stage 1 of 1: holders of pim.requests.approve)" in out
    make_bob_an_approver(world)
    world(f"approve {request_id(out)} --as bob --justification 'welcome back'")
    current = world("assignment list --principal alex --kind eligible --target role:Reader")
    assert "2026-04-01T09:00:00Z" in current.stdout
    assert "2026-05-01T09:00:00Z" in current.stdout


def test_extend_needs_a_new_end_or_a_duration(world: Pimlico) -> None:
    result = world("extend alex role:Reader --justification why", code=2)

    assert result.stderr.strip() == (
        "error: InvalidInput: end is required: end [Required] give one of --end or --duration"
    )


# -- the request list and its filters ---------------------------------------------------------


@pytest.fixture
def history(world: Pimlico, clock: FixedClock) -> dict[str, str]:
    """Besides the fixture's two admin_assign requests at 09:00: Alex activates Reader at
    09:00 (provisioned) and asks for Purge at 10:00 (pending Bob's approval)."""
    reader = request_id(world("activate alex role:Reader --duration PT2H").stdout)
    clock.advance(timedelta(hours=1))
    purge = request_id(world("activate alex member:Purge --justification INC-7").stdout)
    return {"reader": reader, "purge": purge}


def test_requests_lists_every_request_newest_first_by_default(
    world: Pimlico, history: dict[str, str]
) -> None:
    every = listed(world, "")

    assert len(every) == 4
    assert every[0] == history["purge"]
    assert listed(world, "--all") == every


def test_requests_are_filtered_by_status_action_and_target(
    world: Pimlico, history: dict[str, str]
) -> None:
    assert listed(world, "--status pending_approval") == [history["purge"]]
    assert listed(world, "--status PROVISIONED --action self_activate") == [history["reader"]]
    assert sorted(listed(world, "--action self_activate")) == sorted(history.values())
    assert len(listed(world, "--action admin_assign")) == 2
    on_purge = listed(world, "--target member:Purge")
    assert len(on_purge) == 2
    assert history["purge"] in on_purge
    assert history["reader"] not in on_purge


def test_requests_are_filtered_by_who_and_when_and_limited(
    world: Pimlico, history: dict[str, str]
) -> None:
    assert sorted(listed(world, "--requested-by alex")) == sorted(history.values())
    assert len(listed(world, "--requested-by system:cli")) == 2
    assert len(listed(world, "--principal alex")) == 4
    assert listed(world, "--principal bob") == []
    assert listed(world, "--since 2026-03-01T09:30:00Z") == [history["purge"]]
    before = listed(world, "--until 2026-03-01T09:30:00Z")
    assert len(before) == 3
    assert history["purge"] not in before
    assert listed(world, "--limit 1") == [history["purge"]]
    assert listed(world, "--mine alex --status provisioned") == [history["reader"]]
    assert listed(world, "--to-approve bob --target member:Purge") == [history["purge"]]


@pytest.mark.parametrize(
    ("options", "expected"),
    [
        pytest.param("--status nope", "status [Choice] must be one of pending_approval", id="st"),
        pytest.param("--action grant", "action [Choice] must be one of admin_assign", id="act"),
        pytest.param("--since yesterday", "since [InstantFormat] 'yesterday'", id="since"),
        pytest.param("--until 2026-13-01", "until [InstantFormat]", id="until"),
        pytest.param("--limit 0", "limit [Range] must be a whole number of at least 1", id="0"),
        pytest.param("--limit ten", "limit [Range]", id="limit"),
        pytest.param("--target team:x", "target [TargetFormat]", id="target"),
        pytest.param("--mine alex --all", "filter [Conflict]", id="two views"),
    ],
)
def test_a_bad_filter_is_one_red_line_and_exit_code_2(
    world: Pimlico, options: str, expected: str
) -> None:
    result = world(f"requests {options}", code=2)

    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("error: InvalidInput: ")
    assert expected in lines[0]
    assert result.stdout == ""


# -- idempotency and dry runs -----------------------------------------------------------------


def test_the_same_idempotency_key_answers_the_first_activation(world: Pimlico) -> None:
    first = request_id(world("activate alex role:Reader --idempotency-key try-1").stdout)

    again = request_id(world("activate alex role:Reader --idempotency-key try-1").stdout)

    assert again == first
    assert listed(world, "--action self_activate") == [first]


def test_an_administrators_change_prints_its_request_and_the_same_key_answers_it_again(
    world: Pimlico,
) -> None:
    command = (
        "assignment add bob role:Reader --eligible --duration P30D --idempotency-key onboard-bob "
        "--ticket-system Jira --ticket-number OPS-1"
    )
    out = world(command).stdout

    assert "assigned eligible role:Reader at / for user:bob" in out
    assert re.search(r"; request [0-9a-f-]{36}: provisioned; revision \d+$", out.strip()), out
    assert request_id(world(command).stdout) == request_id(out)
    assert len(listed(world, "--principal bob")) == 1
    assert "OPS-1" in world("audit export --format jsonl").stdout


def test_a_dry_run_assignment_changes_nothing(world: Pimlico) -> None:
    before = world("assignment list --all").stdout
    requested = listed(world, "")

    out = world("assignment add bob role:Reader --eligible --duration P30D --dry-run").stdout

    assert out.startswith("dry run, nothing written: would assign eligible role:Reader")
    assert "the admin_assign request would be provisioned" in out
    assert "(assignment" not in out  # it was never stored
    assert world("assignment list --all").stdout == before
    assert listed(world, "") == requested


def test_dry_runs_of_extend_and_remove_leave_the_assignment_as_it_was(world: Pimlico) -> None:
    held = world.assignment_id(
        "assignment add bob role:Reader --active --duration PT1H --justification INC-9"
    )
    before = world("assignment list --all").stdout

    extended = world(f"assignment extend {held} --duration PT4H --justification x --dry-run").stdout
    removed = world(f"assignment remove {held} --reason done --dry-run").stdout

    assert extended.startswith("dry run, nothing written: would extend active role:Reader")
    assert "until 2026-03-01T13:00:00Z" in extended
    assert removed.startswith("dry run, nothing written: would end active role:Reader")
    assert "the admin_remove request would be revoked" in removed
    assert world("assignment list --all").stdout == before


def test_an_administrators_removal_is_a_revoked_request(world: Pimlico) -> None:
    held = world.assignment_id(
        "assignment add bob role:Reader --active --duration PT1H --justification INC-9"
    )

    out = world(f"assignment remove {held} --reason done").stdout

    assert out.startswith("ended active role:Reader at / for user:bob")
    assert request_id(out) in listed(world, "--action admin_remove --status revoked")


def test_half_a_ticket_is_refused_by_name(world: Pimlico) -> None:
    result = world(
        "assignment add bob role:Reader --eligible --duration P30D --ticket-number OPS-1", code=2
    )

    assert "ticket.system [TicketingRule]" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
