"""Roles (the built-in catalogue and custom roles), the scopes in use, and role settings.

Routes translate and call ``services.roles``, ``services.role_settings`` and
``services.directory_reads``; the services decide who may do what. Role settings use
optimistic concurrency: ``GET`` answers with an ``ETag`` (the policy's version) and a change
must send it back in ``If-Match`` — without it the answer is 428 ``PreconditionRequired``, with
a stale one 412 ``PreconditionFailed`` and nothing is written. ``PATCH`` merges a partial
document; ``PUT`` replaces the whole one.
"""

from __future__ import annotations

import re
from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Body, Header, Query, Response, status
from pydantic import BaseModel, ConfigDict, Field

from pimlico.api.deps import CallerDep, Page, PagingDep, RuntimeDep, written
from pimlico.api.problems import MEDIA_TYPE, Problem
from pimlico.api.routes.directory import Id, Input
from pimlico.domain.model import TargetType
from pimlico.domain.policy import ApproverType, NotificationLevel
from pimlico.domain.policy_codec import to_dict
from pimlico.errors import FieldError, InvalidInput
from pimlico.services import directory_reads, role_settings, roles
from pimlico.services.role_settings import Policy

router = APIRouter(tags=["roles"])

PERMISSION = Annotated[str, Field(max_length=256)]


# -- roles ----------------------------------------------------------------------------------


class RoleOut(BaseModel):
    """A named set of permission patterns. Built-in roles (Pimlico's own) cannot change."""

    model_config = ConfigDict(from_attributes=True)

    id: str
    name: str = Field(examples=["Mail Search and Purge"])
    description: str
    permissions: list[str] = Field(examples=[["mail.search", "mail.purge.*"]])
    built_in: bool
    created_at: datetime | None


class NewRole(Input):
    name: str = Field(max_length=256, examples=["Mail Search and Purge"])
    description: str = Field(default="", max_length=4000, examples=["Find and purge mail"])
    permissions: list[PERMISSION] = Field(
        max_length=roles.MAX_PERMISSIONS,
        description="Permissions, or prefixes ending in `.*`, or `*` for everything.",
        examples=[["mail.search", "mail.purge.*"]],
    )


class RoleChange(Input):
    """What to change; left out (or null): unchanged. ``permissions`` replaces the whole list."""

    description: str | None = Field(default=None, max_length=4000)
    permissions: list[PERMISSION] | None = Field(
        default=None, max_length=roles.MAX_PERMISSIONS, examples=[["mail.*"]]
    )


@router.get("/roles", response_model=Page[RoleOut], summary="Roles, built-in and custom, by name")
def list_roles(
    caller: CallerDep,
    rt: RuntimeDep,
    paging: PagingDep,
    q: Annotated[str | None, Query(max_length=256, description="Names starting with this.")] = None,
    built_in: Annotated[bool | None, Query(description="Only built-in or only custom.")] = None,
) -> Page[RoleOut]:
    found = [
        r
        for r in roles.list_roles(rt, actor=caller)
        if (q is None or r.name.casefold().startswith(q.casefold()))
        and built_in in (None, r.built_in)
    ]
    return paging.page(found, lambda r: (r.name.casefold(), r.id), RoleOut.model_validate)


@router.get("/roles/{role_id}", response_model=RoleOut, summary="One role")
def get_role(role_id: Id, caller: CallerDep, rt: RuntimeDep) -> RoleOut:
    return RoleOut.model_validate(roles.get_role(rt, actor=caller, role_id=role_id))


@router.post(
    "/roles",
    response_model=RoleOut,
    status_code=status.HTTP_201_CREATED,
    summary="Add a custom role",
)
def create_role(body: NewRole, caller: CallerDep, rt: RuntimeDep, response: Response) -> RoleOut:
    done = roles.create_role(rt, actor=caller, **body.model_dump())
    written(response, done.revision)
    return RoleOut.model_validate(done.value)


@router.patch(
    "/roles/{role_id}",
    response_model=RoleOut,
    summary="Change a custom role (its holders gain or lose the change at once)",
)
def update_role(
    role_id: Id, body: RoleChange, caller: CallerDep, rt: RuntimeDep, response: Response
) -> RoleOut:
    done = roles.update_role(rt, actor=caller, role_id=role_id, **body.model_dump())
    written(response, done.revision)
    return RoleOut.model_validate(done.value)


# -- scopes ---------------------------------------------------------------------------------


class ScopeOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    scope: str = Field(examples=["/apps/mail"])
    assignments: int = Field(description="Current or future role assignments at this scope.")


@router.get(
    "/scopes",
    response_model=Page[ScopeOut],
    summary="Scopes that role assignments use now or later (and `/`)",
)
def list_scopes(caller: CallerDep, rt: RuntimeDep, paging: PagingDep) -> Page[ScopeOut]:
    found = directory_reads.scopes_in_use(rt, actor=caller)
    return paging.page(found, lambda s: s.scope, ScopeOut.model_validate)


# -- role settings --------------------------------------------------------------------------

Duration = Annotated[
    str,
    Field(
        description="ISO 8601 duration.",
        examples=["PT8H"],
        json_schema_extra={"format": "duration"},
    ),
]


class _Doc(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ActivationDoc(_Doc):
    maximum_duration: Duration
    require_mfa: bool
    require_justification: bool
    require_ticket: bool
    authentication_context_enabled: bool
    authentication_context_claim: str | None


class ApproverDoc(_Doc):
    type: ApproverType
    id: str


class StageDoc(_Doc):
    approvers: list[ApproverDoc] = Field(description="None: holders of pim.requests.approve.")
    quorum: int
    timeout: Duration
    approver_justification_required: bool
    escalation_enabled: bool
    escalation_approvers: list[ApproverDoc]
    escalation_after: Duration


class ApprovalDoc(_Doc):
    required: bool
    required_for_extension: bool
    requestor_justification_required: bool
    stages: list[StageDoc]


class AssignmentDoc(_Doc):
    allow_permanent_eligible: bool
    eligible_maximum_duration: Duration
    allow_permanent_active: bool
    active_maximum_duration: Duration
    active_require_mfa: bool
    active_require_justification: bool
    eligible_require_mfa: bool
    eligible_require_justification: bool


class NotificationDoc(_Doc):
    level: NotificationLevel
    default_recipients: bool
    additional_recipients: list[str]


class RecipientsDoc(_Doc):
    admin: NotificationDoc
    requestor: NotificationDoc
    approver: NotificationDoc


class NotificationsDoc(_Doc):
    eligible_assignment: RecipientsDoc
    active_assignment: RecipientsDoc
    activation: RecipientsDoc


class SettingsDoc(_Doc):
    """The whole policy of a target (PIM-REFERENCE.md §1)."""

    activation: ActivationDoc
    approval: ApprovalDoc
    assignment: AssignmentDoc
    notifications: NotificationsDoc


class RoleSettingsOut(BaseModel):
    """A target's settings; ``version`` 0 means none were ever set and the defaults apply."""

    target_type: TargetType
    object_id: str
    version: int = Field(description="Also the ETag: send it back in If-Match to change them.")
    settings: SettingsDoc


def _settings(policy: Policy, response: Response) -> RoleSettingsOut:
    response.headers["ETag"] = f'"{policy.version}"'
    return RoleSettingsOut(
        target_type=policy.target_type,
        object_id=policy.object_id,
        version=policy.version,
        settings=SettingsDoc.model_validate(to_dict(policy.settings)),
    )


_ETAG = re.compile(r'"([0-9]{1,18})"')


def _version(if_match: str | None) -> int | None:
    """The version an ``If-Match`` names; ``None`` without one. ``*`` counts as none: it would
    overwrite whatever is there, which is what the precondition exists to prevent (the use
    case refuses a change without a version, once it has checked the caller may make it)."""
    if if_match is None or if_match.strip() == "*":
        return None
    found = _ETAG.fullmatch(if_match.strip())
    if found is None:
        raise InvalidInput(
            "If-Match is not an ETag of these settings",
            [FieldError("If-Match", "ETag", 'send the ETag header back unchanged, e.g. "3"')],
        )
    return int(found.group(1))


_WITH_ETAG: dict[int | str, dict[str, Any]] = {
    200: {
        "headers": {
            "ETag": {
                "description": "The settings' version: send it back in If-Match to change them.",
                "schema": {"type": "string", "examples": ['"3"']},
            }
        }
    }
}
_CONDITIONAL: dict[int | str, dict[str, Any]] = _WITH_ETAG | {
    code: {"model": Problem, "content": {MEDIA_TYPE: {}}, "description": description}
    for code, description in (
        (412, "If-Match names a version that is no longer current: read them again"),
        (428, "If-Match is missing"),
    )
}


@router.get(
    "/role-settings/{target_type}/{object_id}",
    response_model=RoleSettingsOut,
    summary="The settings of a role, or of a group's membership or ownership (with an ETag)",
    responses=_WITH_ETAG,
)
def get_role_settings(
    target_type: TargetType, object_id: Id, caller: CallerDep, rt: RuntimeDep, response: Response
) -> RoleSettingsOut:
    policy = role_settings.get_policy(
        rt, actor=caller, target_type=target_type, object_id=object_id
    )
    return _settings(policy, response)


@router.patch(
    "/role-settings/{target_type}/{object_id}",
    response_model=RoleSettingsOut,
    summary="Change settings (a partial document, merged as JSON Merge Patch); needs If-Match",
    responses=_CONDITIONAL,
)
def update_role_settings(
    target_type: TargetType,
    object_id: Id,
    changes: Annotated[
        dict[str, Any],
        Body(
            description="Any part of the settings document; objects merge, lists replace. "
            "Durations are ISO 8601.",
            examples=[{"activation": {"maximum_duration": "PT2H", "require_ticket": True}}],
        ),
    ],
    caller: CallerDep,
    rt: RuntimeDep,
    response: Response,
    if_match: Annotated[
        str | None, Header(description="The ETag from reading the settings.", max_length=64)
    ] = None,
) -> RoleSettingsOut:
    done = role_settings.update_policy(
        rt,
        actor=caller,
        target_type=target_type,
        object_id=object_id,
        changes=changes,
        if_version=_version(if_match),
        version_required=True,
    )
    written(response, done.revision)
    return _settings(done.value, response)


@router.put(
    "/role-settings/{target_type}/{object_id}",
    response_model=RoleSettingsOut,
    summary="Replace settings with a whole document (as GET gives it); needs If-Match",
    responses=_CONDITIONAL,
)
def replace_role_settings(
    target_type: TargetType,
    object_id: Id,
    body: SettingsDoc,
    caller: CallerDep,
    rt: RuntimeDep,
    response: Response,
    if_match: Annotated[
        str | None, Header(description="The ETag from reading the settings.", max_length=64)
    ] = None,
) -> RoleSettingsOut:
    # Every key of the document is present (SettingsDoc requires them all), so merging it
    # over the current settings replaces them whole.
    done = role_settings.update_policy(
        rt,
        actor=caller,
        target_type=target_type,
        object_id=object_id,
        changes=body.model_dump(mode="json"),
        if_version=_version(if_match),
        version_required=True,
    )
    written(response, done.revision)
    return _settings(done.value, response)
