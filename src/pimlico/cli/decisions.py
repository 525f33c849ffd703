"""``pimlico check``, ``explain`` and ``access``: decisions, answered from the decision index.

``check`` exits 0 when allowed and 1 when denied, so scripts can branch on it; ``explain``
always exits 0 (it answers *why*, not *whether*).
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from typing import Annotated

import typer

from pimlico.cli._common import (
    ACTOR,
    ANSWER_NO,
    instant,
    parse_instant,
    runtime,
    say,
    show,
    table,
    target_label,
)
from pimlico.domain.decisions import Access, Decision, Step, from_ts
from pimlico.domain.model import Target, TargetType
from pimlico.services import decisions, resolve
from pimlico.services.runtime import Pimlico

Principal = Annotated[
    str, typer.Argument(help="alex, user:alex, group:NAME, sa:NAME, or an id.", show_default=False)
]
Permission = Annotated[str, typer.Argument(help="A permission, such as mail.purge.")]
Scope = Annotated[str, typer.Option("--scope", help="The scope the permission is used at.")]
At = Annotated[
    str | None, typer.Option("--at", help="RFC 3339 instant to ask about (default: now).")
]


def _steps_ids(chain: Iterable[Step]) -> set[str]:
    ids: set[str] = set()
    for step in chain:
        ids.update((step.member_id, step.group_id))
    return ids


def chain_text(chain: tuple[Step, ...], labels: dict[str, str]) -> str:
    """``user:alex → group:A → group:B``; empty for a principal that holds it itself."""
    if not chain:
        return ""
    names = [labels.get(chain[0].member_id, chain[0].member_id)]
    names += [labels.get(step.group_id, step.group_id) for step in chain]
    return " → ".join(names)


def _until(end: datetime | None) -> str:
    return "permanently" if end is None else f"until {instant(end)}"


def _why(decision: Decision, labels: dict[str, str]) -> str:
    grant = decision.grant
    if grant is None:
        return decision.reason
    role = labels.get(grant.role_id, grant.role_id)
    through = (
        ""
        if grant.holder_id == decision.principal_id
        else f" through {labels.get(grant.holder_id, grant.holder_id)}"
    )
    return f"{role} at {grant.scope}{through}, {_until(grant.end)}"


def _decision_labels(rt: Pimlico, decision: Decision) -> dict[str, str]:
    ids = {decision.principal_id}
    if decision.grant is not None:
        ids.update((decision.grant.role_id, decision.grant.holder_id))
        ids.update(_steps_ids(decision.grant.chain))
    return resolve.labels(rt, ids)


def _decide(
    rt: Pimlico, principal: str, permission: str, scope: str, at: str | None, revision: int | None
) -> Decision:
    ref = resolve.resolve_principal(rt, principal)
    return decisions.check(
        rt,
        actor=ACTOR,
        principal_id=ref.id,
        permission=permission,
        scope=scope,
        at=parse_instant(at, "at"),
        at_least_revision=revision,
    )


def check(
    principal: Principal,
    permission: Permission,
    scope: Scope = "/",
    at: At = None,
    at_least_revision: Annotated[
        int | None,
        typer.Option("--at-least-revision", help="Answer only once this revision is seen."),
    ] = None,
) -> None:
    """May PRINCIPAL use PERMISSION at a scope? Exit 0 if allowed, 1 if denied."""
    with runtime() as rt:
        decision = _decide(rt, principal, permission, scope, at, at_least_revision)
        labels = _decision_labels(rt, decision)
    who = labels.get(decision.principal_id, decision.principal_id)
    if decision.allowed:
        say(f"allowed: {who} may use {permission} at {scope}: {_why(decision, labels)}")
        return
    say(f"denied: {who} may not use {permission} at {scope}: {_why(decision, labels)}")
    raise typer.Exit(ANSWER_NO)


def explain(
    principal: Principal, permission: Permission, scope: Scope = "/", at: At = None
) -> None:
    """Why PRINCIPAL may or may not use PERMISSION: assignment, role, window, chain of groups."""
    with runtime() as rt:
        decision = _decide(rt, principal, permission, scope, at, None)
        labels = _decision_labels(rt, decision)
    summary = table(None, "", "")
    summary.show_header = False
    summary.add_row("decision", "allowed" if decision.allowed else "denied")
    summary.add_row("principal", labels.get(decision.principal_id, decision.principal_id))
    summary.add_row("permission", decision.permission)
    summary.add_row("scope", decision.scope)
    summary.add_row("at", instant(decision.at))
    summary.add_row("revision", str(decision.revision))
    summary.add_row("why", _why(decision, labels))
    grant = decision.grant
    if grant is None:
        show(summary)
        return
    summary.add_row("assignment", grant.assignment_id)
    summary.add_row("role", labels.get(grant.role_id, grant.role_id))
    summary.add_row("granted at scope", grant.scope)
    summary.add_row("matching permission", grant.pattern)
    summary.add_row("held by", labels.get(grant.holder_id, grant.holder_id))
    summary.add_row("window", f"{instant(grant.start, 'always')} → {instant(grant.end, 'never')}")
    summary.add_row("chain", chain_text(grant.chain, labels) or "held directly")
    steps = table("chain of groups", "member", "is member of", "through", "from", "until")
    for step in grant.chain:
        steps.add_row(
            labels.get(step.member_id, step.member_id),
            labels.get(step.group_id, step.group_id),
            f"{step.via} {step.via_id}",
            instant(from_ts(step.start), "always"),
            instant(from_ts(step.end), "never"),
        )
    if grant.chain:
        show(summary, steps)
    else:
        show(summary)


def render_access(rt: Pimlico, access: Access) -> None:
    """Print what ``access`` holds: roles, groups, eligible assignments and permissions."""
    ids = {access.principal_id}
    for grant in access.roles:
        ids.update((grant.role_id, grant.holder_id, *_steps_ids(grant.chain)))
    for held in access.groups:
        ids.update((held.group_id, *_steps_ids(held.chain)))
    for eligible in access.eligible:
        ids.update((eligible.target_id, eligible.holder_id, *_steps_ids(eligible.chain)))
    labels = resolve.labels(rt, ids)
    who = labels.get(access.principal_id, access.principal_id)
    say(f"access of {who} at {instant(access.at)}")
    roles = table("active roles", "role", "scope", "through", "until", "assignment")
    for grant in access.roles:
        roles.add_row(
            labels.get(grant.role_id, grant.role_id),
            grant.scope,
            chain_text(grant.chain, labels) or "directly",
            instant(grant.end, "permanent"),
            grant.assignment_id,
        )
    groups = table("groups", "group", "relation", "chain", "until")
    for held in access.groups:
        groups.add_row(
            labels.get(held.group_id, held.group_id),
            held.relation,
            chain_text(held.chain, labels),
            instant(held.end, "permanent"),
        )
    eligible_table = table("eligible", "target", "through", "from", "until", "assignment")
    for eligible in access.eligible:
        target = Target(TargetType(eligible.target_type), eligible.target_id, eligible.scope)
        eligible_table.add_row(
            target_label(target, labels),
            chain_text(eligible.chain, labels) or "directly",
            instant(eligible.start, "always"),
            instant(eligible.end, "permanent"),
            eligible.assignment_id,
        )
    permissions = table("permissions", "permission", "scope")
    for pattern, scope in sorted(access.permissions):
        permissions.add_row(pattern, scope)
    show(roles, groups, eligible_table, permissions)


def access(principal: Principal, at: At = None) -> None:
    """Everything PRINCIPAL holds: roles with scopes and ends, groups with chains, eligibility."""
    with runtime() as rt:
        ref = resolve.resolve_principal(rt, principal)
        held = decisions.effective_access(
            rt, actor=ACTOR, principal_id=ref.id, at=parse_instant(at, "at")
        )
        render_access(rt, held)
