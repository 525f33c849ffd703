"""Reads for the portal's My roles pages: what a person holds, by name, with what they may ask
of it, and what the policy of a target asks before an activation.

``my_roles`` lists the person's eligible and active assignments — their own, and those held
through a group they belong to (nested too, as the decision index sees it) — with the names
of the roles and groups, and which self-service requests make sense for each (activate,
deactivate, extend, renew), by the same windows the request rules use. ``activation_terms``
says what activating one eligibility asks: the policy's activation rules, whether approval is
needed and by whom (names), and the person's MFA state.

Reads only, for the person themselves: nothing here writes, and what it offers is a hint —
``services.requests.submit`` still judges every request.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import Select, or_, select
from sqlalchemy.orm import Session

from pimlico.db import mappers
from pimlico.db.tables import AssignmentRow, GroupRow, RoleRow, UserRow
from pimlico.domain.model import Assignment, AssignmentKind, PrincipalType, Target, TargetType
from pimlico.domain.policy import ActivationRules, ApprovalStage, ApproverType
from pimlico.domain.request_rules import (
    RENEW_WINDOW,
    approval_stages,
    default_length,
    may_extend,
)
from pimlico.domain.requests import RequestAction
from pimlico.errors import NotFound, PermissionDenied
from pimlico.services import decisions, mfa
from pimlico.services.role_settings import load_policy
from pimlico.services.runtime import Actor, Pimlico

ADMINISTRATORS = "an administrator who may approve requests"
"""Who approves a stage that names nobody (the holders of ``pim.requests.approve``)."""


@dataclass(frozen=True, slots=True)
class Held:
    """One assignment as its holder sees it on My roles."""

    assignment_id: str
    kind: AssignmentKind
    target: Target
    name: str
    """The role's or group's name."""
    start: datetime | None
    end: datetime | None
    """When it stops applying to the viewer (bounded by the membership it is held through)."""
    via: str | None
    """The group it is held through; ``None``: held directly."""
    activated: bool
    """An activation the viewer made (from an eligible assignment)."""
    can_activate: bool = False
    can_deactivate: bool = False
    can_extend: bool = False
    can_renew: bool = False

    @property
    def relation(self) -> str:
        """``role``, ``member`` or ``owner``: what the target grants, in words for pages."""
        if self.target.type is TargetType.ROLE:
            return "role"
        return "member" if self.target.type is TargetType.GROUP_MEMBER else "owner"


@dataclass(frozen=True, slots=True)
class MyRoles:
    eligible: tuple[Held, ...]
    """In force now or later."""
    active: tuple[Held, ...]
    """In force now or later: activations, assignments made by administrators, and what a
    group the viewer belongs to holds."""
    expired: tuple[Held, ...]
    """The viewer's own that ran out within the renewal window (renewable)."""


@dataclass(frozen=True, slots=True)
class ActivationTerms:
    """What activating ``held`` asks, before the person submits."""

    held: Held
    rules: ActivationRules
    mfa_required: bool
    needs_approval: bool
    approvers: tuple[str, ...]
    """Names, stage by stage (``ADMINISTRATORS`` for a stage naming nobody)."""
    longest: timedelta
    """The longest activation the person may ask for now (policy maximum, within the
    eligibility)."""
    has_factor: bool
    """A confirmed MFA factor."""
    mfa_fresh_until: datetime | None
    """Until when the person's last verification counts for ``MfaRule`` (``None``: not fresh)."""


@dataclass(frozen=True, slots=True)
class ChangeTerms:
    """What asking to extend or renew ``held`` involves: always an approval."""

    held: Held
    approvers: tuple[str, ...]
    longest: timedelta
    """The policy's maximum for this kind of assignment (counted from now)."""


def _me(actor: Actor) -> str:
    if actor.principal_id is None or actor.principal_type is not PrincipalType.USER:
        raise PermissionDenied("only a person has roles to show")
    return actor.principal_id


def my_roles(rt: Pimlico, *, actor: Actor) -> MyRoles:
    """The viewer's eligible, active and recently expired assignments, with their actions."""
    user_id = _me(actor)
    now = rt.clock.now()
    access = decisions.effective_access(rt, actor=actor, principal_id=user_id, at=now)
    with rt.reading() as s:
        rows = s.scalars(
            select(AssignmentRow)
            .where(
                AssignmentRow.principal_type == PrincipalType.USER.value,
                AssignmentRow.principal_id == user_id,
                AssignmentRow.ended_at.is_(None),
                or_(AssignmentRow.end_at.is_(None), AssignmentRow.end_at > now - RENEW_WINDOW),
            )
            .order_by(AssignmentRow.start_at, AssignmentRow.id)
        )
        own = [mappers.assignment(r) for r in rows]
        through = [h for h in access.eligible if h.holder_id != user_id]
        roles_through = [g for g in access.roles if g.holder_id != user_id]
        groups_through = [g for g in access.groups if g.chain and g.chain[-1].member_id != user_id]
        names = _names(
            s,
            roles=[a.target.object_id for a in own if not a.target.is_group]
            + [h.target_id for h in through if h.target_type == TargetType.ROLE.value]
            + [g.role_id for g in roles_through],
            groups=[a.target.object_id for a in own if a.target.is_group]
            + [h.target_id for h in through if h.target_type != TargetType.ROLE.value]
            + [h.holder_id for h in through]
            + [g.holder_id for g in roles_through]
            + [g.group_id for g in groups_through]
            + [g.chain[-1].member_id for g in groups_through],
        )
    current = [a for a in own if a.end is None or a.end > now]
    activated = {
        (a.target.type, a.target.object_id, a.target.scope)
        for a in current
        if a.kind is AssignmentKind.ACTIVE
    }

    def key(target: Target) -> tuple[TargetType, str, str]:
        return (target.type, target.object_id, target.scope)

    eligible: list[Held] = []
    active: list[Held] = []
    expired: list[Held] = []
    for a in own:
        name = names.get(a.target.object_id, a.target.object_id)
        ends_soon = may_extend(a.end, now)
        if a.end is not None and a.end <= now:
            again = any(c.kind is a.kind and key(c.target) == key(a.target) for c in current)
            if a.activated_from is None and not again:
                expired.append(_held(a, name, can_renew=True))
            continue
        if a.kind is AssignmentKind.ELIGIBLE:
            eligible.append(
                _held(
                    a,
                    name,
                    can_activate=a.in_force(now) and key(a.target) not in activated,
                    can_extend=ends_soon,
                )
            )
        else:
            is_activation = a.activated_from is not None
            active.append(
                _held(
                    a,
                    name,
                    can_deactivate=is_activation and a.in_force(now),
                    can_extend=ends_soon and not is_activation,
                )
            )
    for h in through:
        target = Target(TargetType(h.target_type), h.target_id, h.scope)
        eligible.append(
            Held(
                h.assignment_id,
                AssignmentKind.ELIGIBLE,
                target,
                names.get(h.target_id, h.target_id),
                h.start,
                h.end,
                names.get(h.holder_id, h.holder_id),
                False,
                can_activate=key(target) not in activated,
            )
        )
    for g in roles_through:
        active.append(
            Held(
                g.assignment_id,
                AssignmentKind.ACTIVE,
                Target.role(g.role_id, g.scope),
                names.get(g.role_id, g.role_id),
                g.start,
                g.end,
                names.get(g.holder_id, g.holder_id),
                False,
            )
        )
    for hg in groups_through:
        step = hg.chain[-1]
        target = (
            Target.group_member(hg.group_id)
            if hg.relation == "member"
            else Target.group_owner(hg.group_id)
        )
        active.append(
            Held(
                step.via_id,
                AssignmentKind.ACTIVE,
                target,
                names.get(hg.group_id, hg.group_id),
                None,
                hg.end,
                names.get(step.member_id, step.member_id),
                False,
            )
        )
    return MyRoles(tuple(eligible), tuple(active), tuple(expired))


def _held(a: Assignment, name: str, **actions: bool) -> Held:
    return Held(
        a.id,
        a.kind,
        a.target,
        name,
        a.start,
        a.end,
        None,
        a.activated_from is not None,
        **actions,
    )


def _names(s: Session, *, roles: Iterable[str], groups: Iterable[str]) -> dict[str, str]:
    found: dict[str, str] = {}
    role_ids, group_ids = sorted(set(roles)), sorted(set(groups))
    if role_ids:
        found.update(_pairs(s, select(RoleRow.id, RoleRow.name).where(RoleRow.id.in_(role_ids))))
    if group_ids:
        found.update(
            _pairs(s, select(GroupRow.id, GroupRow.name).where(GroupRow.id.in_(group_ids)))
        )
    return found


def _pairs(s: Session, query: Select[str, str]) -> dict[str, str]:
    return {key: value for key, value in s.execute(query)}


def held_by_me(rt: Pimlico, *, actor: Actor, assignment_id: str) -> Held:
    """One of the viewer's assignments on My roles (``NotFound`` if it is not theirs)."""
    mine = my_roles(rt, actor=actor)
    for held in (*mine.eligible, *mine.active, *mine.expired):
        if held.assignment_id == assignment_id:
            return held
    raise NotFound(f"you hold no assignment {assignment_id}")


def activation_terms(rt: Pimlico, *, actor: Actor, assignment_id: str) -> ActivationTerms:
    """What activating the viewer's eligible assignment ``assignment_id`` asks."""
    user_id = _me(actor)
    held = held_by_me(rt, actor=actor, assignment_id=assignment_id)
    if held.kind is not AssignmentKind.ELIGIBLE:
        raise NotFound(f"assignment {assignment_id} is not an eligible one of yours")
    now = rt.clock.now()
    with rt.reading() as s:
        settings = load_policy(s, held.target.type, held.target.object_id).settings
        stages = approval_stages(settings, RequestAction.SELF_ACTIVATE)
        approvers = _approver_names(s, stages)
    factor = mfa.factor_of(rt, actor=actor, user_id=user_id)
    fresh = mfa.fresh_verification(rt, user_id=user_id, at=now)
    rules = settings.activation
    longest = rules.maximum_duration
    if held.end is not None:
        longest = max(min(longest, held.end - now), timedelta(0))
    return ActivationTerms(
        held=held,
        rules=rules,
        mfa_required=rules.require_mfa or rules.authentication_context_enabled,
        needs_approval=bool(stages),
        approvers=approvers,
        longest=longest,
        has_factor=factor is not None and factor.confirmed_at is not None,
        mfa_fresh_until=None
        if fresh is None
        else fresh + timedelta(seconds=rt.settings.mfa_freshness),
    )


def change_terms(
    rt: Pimlico, *, actor: Actor, assignment_id: str, action: RequestAction
) -> ChangeTerms:
    """What asking to extend or renew (``action``) the viewer's own assignment involves."""
    held = held_by_me(rt, actor=actor, assignment_id=assignment_id)
    allowed = held.can_extend if action is RequestAction.SELF_EXTEND else held.can_renew
    if not allowed:
        verb = "extended" if action is RequestAction.SELF_EXTEND else "renewed"
        raise NotFound(f"assignment {assignment_id} cannot be {verb} by you now")
    with rt.reading() as s:
        settings = load_policy(s, held.target.type, held.target.object_id).settings
        approvers = _approver_names(s, approval_stages(settings, action))
    return ChangeTerms(held, approvers, default_length(settings, held.kind))


def _approver_names(s: Session, stages: tuple[ApprovalStage, ...]) -> tuple[str, ...]:
    users = {a.id for st in stages for a in st.approvers if a.type is ApproverType.USER}
    groups = {a.id for st in stages for a in st.approvers if a.type is ApproverType.GROUP}
    found: dict[str, str] = {}
    if users:
        found.update(
            _pairs(s, select(UserRow.id, UserRow.display_name).where(UserRow.id.in_(users)))
        )
    if groups:
        found.update(_pairs(s, select(GroupRow.id, GroupRow.name).where(GroupRow.id.in_(groups))))
    names: list[str] = []
    for st in stages:
        if not st.approvers:
            names.append(ADMINISTRATORS)
        for a in st.approvers:
            name = found.get(a.id, a.id)
            names.append(name if a.type is ApproverType.USER else f"a member of {name}")
    return tuple(dict.fromkeys(names))
