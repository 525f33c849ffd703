"""The directory: users, service accounts, groups, and groups' static members and owners.

Routes translate and call ``services.directory`` (writes, lists) and
``services.directory_reads`` (one by id); the services decide who may do what. Lists are
cursor-paged in a stable order (name then id; memberships by creation then id) and narrowed by
filters. Memberships are ended, never deleted: removing one answers with the ended membership.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, TypeVar

from fastapi import APIRouter, Path, Query, Response, status
from pydantic import BaseModel, ConfigDict, Field, field_validator

from pimlico.api.deps import CallerDep, Page, PagingDep, RuntimeDep, written
from pimlico.domain.model import PrincipalRef, PrincipalType, Relation
from pimlico.services import directory, directory_reads
from pimlico.services.runtime import Written

router = APIRouter(tags=["directory"])
OutT = TypeVar("OutT", bound=BaseModel)

TEXT_MAX = 4000
ID_PATTERN = r"^[A-Za-z0-9._:-]{1,64}$"
Id = Annotated[str, Path(pattern=ID_PATTERN, description="An id, as this API gave it.")]
Q = Annotated[
    str | None,
    Query(max_length=256, description="Names starting with this (case-insensitive)."),
]
ENABLED = Annotated[bool | None, Query(description="Only enabled (true) or disabled (false).")]


class Input(BaseModel):
    """A request body: unknown fields are refused, and so is text with NUL characters (which
    no name or reason needs, and PostgreSQL cannot store)."""

    model_config = ConfigDict(extra="forbid")

    @field_validator("*")
    @classmethod
    def _no_nul(cls, value: object) -> object:
        if isinstance(value, str) and "\x00" in value:
            raise ValueError("must not contain NUL characters")
        return value


class _Out(BaseModel):
    model_config = ConfigDict(from_attributes=True)


class UserOut(_Out):
    """A person. A disabled user holds nothing, whatever they are assigned."""

    id: str
    user_name: str = Field(examples=["alex"])
    display_name: str = Field(examples=["Alex Wilber"])
    email: str | None = Field(examples=["alex@example.com"])
    enabled: bool
    manager_id: str | None
    created_at: datetime | None


class NewUser(Input):
    user_name: str = Field(max_length=256, examples=["alex"])
    display_name: str | None = Field(default=None, max_length=256, examples=["Alex Wilber"])
    email: str | None = Field(default=None, max_length=320, examples=["alex@example.com"])
    manager_id: str | None = Field(default=None, pattern=ID_PATTERN)


class UserChange(Input):
    """Fields to change; those left out (or null) stay as they are. An empty email clears it."""

    display_name: str | None = Field(default=None, max_length=256, examples=["Alex W."])
    email: str | None = Field(default=None, max_length=320, examples=["alex@example.org"])
    manager_id: str | None = Field(default=None, pattern=ID_PATTERN)


class Switch(Input):
    enabled: bool = Field(examples=[False])
    reason: str | None = Field(default=None, max_length=TEXT_MAX, examples=["left the company"])


class ServiceAccountOut(_Out):
    """A non-human principal (a script, a pipeline); it holds active assignments only."""

    id: str
    name: str = Field(examples=["nightly-report"])
    display_name: str
    description: str
    enabled: bool
    created_at: datetime | None


class NewServiceAccount(Input):
    name: str = Field(max_length=256, examples=["nightly-report"])
    display_name: str | None = Field(default=None, max_length=256, examples=["Nightly report"])
    description: str = Field(default="", max_length=TEXT_MAX, examples=["Mails the SOC report"])


class GroupOut(_Out):
    """A security group. ``role_assignable`` was chosen at creation and never changes."""

    id: str
    name: str = Field(examples=["Search and Purge PIM"])
    display_name: str
    description: str
    role_assignable: bool
    pim_enabled: bool
    created_at: datetime | None


class NewGroup(Input):
    name: str = Field(max_length=256, examples=["Search and Purge PIM"])
    display_name: str | None = Field(default=None, max_length=256)
    description: str = Field(default="", max_length=TEXT_MAX, examples=["Activate to purge"])
    role_assignable: bool = Field(
        default=False,
        description="May the group hold roles? Chosen now, never changed; needs "
        "pim.role_assignable_groups.write.",
    )
    pim_enabled: bool = Field(
        default=False,
        description="Are its membership and ownership managed just in time (eligible and "
        "active assignments)?",
    )


class GroupChange(Input):
    """Fields to change; those left out (or null) stay as they are. There is deliberately no
    ``role_assignable``."""

    display_name: str | None = Field(default=None, max_length=256, examples=["Purge PIM"])
    description: str | None = Field(default=None, max_length=TEXT_MAX)
    pim_enabled: bool | None = Field(default=None, examples=[True])


class MemberRef(_Out):
    type: PrincipalType
    id: str


class MembershipOut(_Out):
    """A static membership or ownership; ``ended_at`` is set once it is removed."""

    id: str
    group_id: str
    member: MemberRef
    relation: Relation
    created_at: datetime
    created_by: str | None
    ended_at: datetime | None
    ended_by: str | None
    end_reason: str | None


class NewMember(Input):
    member_type: PrincipalType = Field(examples=["user"])
    member_id: str = Field(pattern=ID_PATTERN, examples=["3f0c2a9e-5b1d-4c7e-9f7a-2d1b8e6c4a10"])
    reason: str | None = Field(default=None, max_length=TEXT_MAX, examples=["joins the SOC"])


def _named(q: str | None, *names: str) -> bool:
    return q is None or any(n.casefold().startswith(q.casefold()) for n in names)


def _by_name(name: str, entity_id: str) -> tuple[str, str]:
    return (name.casefold(), entity_id)


def _write(response: Response, done: Written[Any], out: type[OutT]) -> OutT:
    written(response, done.revision)
    return out.model_validate(done.value)


# -- users ----------------------------------------------------------------------------------


@router.get("/users", response_model=Page[UserOut], summary="Users, by user name")
def list_users(
    caller: CallerDep, rt: RuntimeDep, paging: PagingDep, q: Q = None, enabled: ENABLED = None
) -> Page[UserOut]:
    found = [
        u
        for u in directory.list_users(rt, actor=caller)
        if _named(q, u.user_name, u.display_name) and enabled in (None, u.enabled)
    ]
    return paging.page(found, lambda u: _by_name(u.user_name, u.id), UserOut.model_validate)


@router.get("/users/{user_id}", response_model=UserOut, summary="One user")
def get_user(user_id: Id, caller: CallerDep, rt: RuntimeDep) -> UserOut:
    return UserOut.model_validate(directory_reads.get_user(rt, actor=caller, user_id=user_id))


@router.post(
    "/users", response_model=UserOut, status_code=status.HTTP_201_CREATED, summary="Add a user"
)
def create_user(body: NewUser, caller: CallerDep, rt: RuntimeDep, response: Response) -> UserOut:
    done = directory.create_user(rt, actor=caller, **body.model_dump())
    return _write(response, done, UserOut)


@router.patch("/users/{user_id}", response_model=UserOut, summary="Change a user's details")
def update_user(
    user_id: Id, body: UserChange, caller: CallerDep, rt: RuntimeDep, response: Response
) -> UserOut:
    done = directory.update_user(rt, actor=caller, user_id=user_id, **body.model_dump())
    return _write(response, done, UserOut)


@router.put(
    "/users/{user_id}/enabled",
    response_model=UserOut,
    summary="Disable a user (they hold nothing while disabled) or enable them again",
)
def set_user_enabled(
    user_id: Id, body: Switch, caller: CallerDep, rt: RuntimeDep, response: Response
) -> UserOut:
    done = directory.set_user_enabled(rt, actor=caller, user_id=user_id, **body.model_dump())
    return _write(response, done, UserOut)


# -- service accounts -----------------------------------------------------------------------


@router.get(
    "/service-accounts", response_model=Page[ServiceAccountOut], summary="Service accounts, by name"
)
def list_service_accounts(
    caller: CallerDep, rt: RuntimeDep, paging: PagingDep, q: Q = None, enabled: ENABLED = None
) -> Page[ServiceAccountOut]:
    found = [
        a
        for a in directory.list_service_accounts(rt, actor=caller)
        if _named(q, a.name, a.display_name) and enabled in (None, a.enabled)
    ]
    return paging.page(found, lambda a: _by_name(a.name, a.id), ServiceAccountOut.model_validate)


@router.get(
    "/service-accounts/{account_id}",
    response_model=ServiceAccountOut,
    summary="One service account",
)
def get_service_account(account_id: Id, caller: CallerDep, rt: RuntimeDep) -> ServiceAccountOut:
    found = directory_reads.get_service_account(rt, actor=caller, account_id=account_id)
    return ServiceAccountOut.model_validate(found)


@router.post(
    "/service-accounts",
    response_model=ServiceAccountOut,
    status_code=status.HTTP_201_CREATED,
    summary="Add a service account",
)
def create_service_account(
    body: NewServiceAccount, caller: CallerDep, rt: RuntimeDep, response: Response
) -> ServiceAccountOut:
    done = directory.create_service_account(rt, actor=caller, **body.model_dump())
    return _write(response, done, ServiceAccountOut)


@router.put(
    "/service-accounts/{account_id}/enabled",
    response_model=ServiceAccountOut,
    summary="Disable a service account (its tokens and grants stop working) or enable it again",
)
def set_service_account_enabled(
    account_id: Id, body: Switch, caller: CallerDep, rt: RuntimeDep, response: Response
) -> ServiceAccountOut:
    done = directory.set_service_account_enabled(
        rt, actor=caller, account_id=account_id, **body.model_dump()
    )
    return _write(response, done, ServiceAccountOut)


# -- groups ---------------------------------------------------------------------------------


@router.get("/groups", response_model=Page[GroupOut], summary="Groups, by name")
def list_groups(
    caller: CallerDep,
    rt: RuntimeDep,
    paging: PagingDep,
    q: Q = None,
    role_assignable: Annotated[bool | None, Query(description="Only these.")] = None,
    pim_enabled: Annotated[bool | None, Query(description="Only these.")] = None,
) -> Page[GroupOut]:
    found = [
        g
        for g in directory.list_groups(rt, actor=caller)
        if _named(q, g.name, g.display_name)
        and role_assignable in (None, g.role_assignable)
        and pim_enabled in (None, g.pim_enabled)
    ]
    return paging.page(found, lambda g: _by_name(g.name, g.id), GroupOut.model_validate)


@router.get("/groups/{group_id}", response_model=GroupOut, summary="One group")
def get_group(group_id: Id, caller: CallerDep, rt: RuntimeDep) -> GroupOut:
    return GroupOut.model_validate(directory_reads.get_group(rt, actor=caller, group_id=group_id))


@router.post(
    "/groups",
    response_model=GroupOut,
    status_code=status.HTTP_201_CREATED,
    summary="Add a group (role-assignable or not, for good)",
)
def create_group(body: NewGroup, caller: CallerDep, rt: RuntimeDep, response: Response) -> GroupOut:
    return _write(response, directory.create_group(rt, actor=caller, **body.model_dump()), GroupOut)


@router.patch("/groups/{group_id}", response_model=GroupOut, summary="Change a group's details")
def update_group(
    group_id: Id, body: GroupChange, caller: CallerDep, rt: RuntimeDep, response: Response
) -> GroupOut:
    done = directory.update_group(rt, actor=caller, group_id=group_id, **body.model_dump())
    return _write(response, done, GroupOut)


# -- static members and owners --------------------------------------------------------------


ENDED = Annotated[bool, Query(description="Include ended ones too.")]
REASON = Annotated[
    str | None, Query(max_length=TEXT_MAX, pattern=r"^[^\x00]*$", description="Why it ends.")
]


def _membership_routes(relation: Relation, noun: str, who: str) -> None:
    """``GET``, ``POST`` and ``DELETE`` of a group's standing members or owners."""
    path = f"/groups/{{group_id}}/{noun}"

    @router.get(
        path,
        response_model=Page[MembershipOut],
        summary=f"A group's standing {noun} (current; ended ones too on request)",
        name=f"list_{noun}",
    )
    def listing(
        group_id: Id,
        caller: CallerDep,
        rt: RuntimeDep,
        paging: PagingDep,
        include_ended: ENDED = False,
    ) -> Page[MembershipOut]:
        found = directory.list_memberships(
            rt, actor=caller, group_id=group_id, include_ended=include_ended
        )
        mine = [m for m in found if m.relation is relation]
        return paging.page(mine, lambda m: (m.created_at, m.id), MembershipOut.model_validate)

    @router.post(
        path,
        response_model=MembershipOut,
        status_code=status.HTTP_201_CREATED,
        summary=f"Make {who} a standing {relation.value} of a group",
        name=f"add_{relation.value}",
    )
    def adding(
        group_id: Id, body: NewMember, caller: CallerDep, rt: RuntimeDep, response: Response
    ) -> MembershipOut:
        done = directory.add_member(
            rt,
            actor=caller,
            group_id=group_id,
            member=PrincipalRef(body.member_type, body.member_id),
            relation=relation,
            reason=body.reason,
        )
        return _write(response, done, MembershipOut)

    @router.delete(
        path + "/{member_type}/{member_id}",
        response_model=MembershipOut,
        summary=f"End a standing {relation.value}ship (its record stays, ended)",
        name=f"remove_{relation.value}",
    )
    def ending(
        group_id: Id,
        member_type: PrincipalType,
        member_id: Id,
        caller: CallerDep,
        rt: RuntimeDep,
        response: Response,
        reason: REASON = None,
    ) -> MembershipOut:
        done = directory.remove_member(
            rt,
            actor=caller,
            group_id=group_id,
            member=PrincipalRef(member_type, member_id),
            relation=relation,
            reason=reason,
        )
        return _write(response, done, MembershipOut)


_membership_routes(Relation.MEMBER, "members", "a user, group or service account")
_membership_routes(Relation.OWNER, "owners", "a user or service account")
