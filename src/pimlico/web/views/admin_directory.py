"""Administration of the directory: users (with their groups, assignments and MFA factor),
service accounts, and groups (role-assignable or not, PIM or not, members, owners, nesting).

Each view translates a form into one use case of ``services.directory`` (reads also from
``directory_reads``, ``portal_directory``, ``assignments`` and ``mfa``) with the viewer as
actor; the services decide who may do what. Actions are shown only to viewers who hold their
permission now. Refusals worth correcting in place (a taken name, a nesting cycle) are shown
beside the form; any other refusal becomes the error page.
"""

from __future__ import annotations

from typing import Annotated, Any
from urllib.parse import quote

from fastapi import Form, Query, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from pimlico.api.deps import runtime_of
from pimlico.domain.catalogue import Perm
from pimlico.domain.model import PrincipalRef, PrincipalType, Relation
from pimlico.errors import AlreadyExists, CycleDetected, DepthExceeded, FieldError, PimlicoError
from pimlico.services import assignments, directory, directory_reads, mfa, portal_directory
from pimlico.services.runtime import Pimlico
from pimlico.web import session
from pimlico.web.render import Problem, page
from pimlico.web.session import Viewer
from pimlico.web.views import ViewerDep, portal_router

router = portal_router()

Name = Annotated[str, Form(max_length=256)]
OptionalName = Annotated[str | None, Form(max_length=256)]
Email = Annotated[str | None, Form(max_length=320)]
Text = Annotated[str | None, Form(max_length=4000)]
Flag = Annotated[bool, Form()]
Search = Annotated[str, Query(max_length=256)]


def _done(request: Request, url: str, message: str) -> RedirectResponse:
    response = RedirectResponse(url, status_code=303)
    session.flash(request, response, message)
    return response


def _matches(q: str, *texts: str | None) -> bool:
    wanted = q.strip().casefold()
    return not wanted or any(wanted in t.casefold() for t in texts if t)


# -- users ----------------------------------------------------------------------------------


@router.get("/admin/users")
def users_page(request: Request, viewer: ViewerDep, q: Search = "") -> HTMLResponse:
    rt = runtime_of(request)
    users = [
        u
        for u in directory.list_users(rt, actor=viewer.actor)
        if _matches(q, u.user_name, u.display_name, u.email)
    ]
    return page(request, "admin_users.html", viewer=viewer, users=users, q=q)


def _new_user_form(viewer: Viewer, request: Request, **context: Any) -> HTMLResponse:
    fields = {"user_name": "", "display_name": "", "email": "", "manager": ""} | context
    return page(request, "admin_users_new.html", viewer=viewer, **fields)


@router.get("/admin/users/new")
def new_user_form(request: Request, viewer: ViewerDep) -> HTMLResponse:
    return _new_user_form(viewer, request)


@router.post("/admin/users")
def create_user(
    request: Request,
    viewer: ViewerDep,
    user_name: Name,
    display_name: OptionalName = None,
    email: Email = None,
    manager: OptionalName = None,
) -> Response:
    rt = runtime_of(request)
    try:
        manager_id = _manager_id(rt, viewer, manager)
        user = directory.create_user(
            rt,
            actor=viewer.actor,
            user_name=user_name,
            display_name=display_name or None,
            email=email or None,
            manager_id=manager_id,
        ).value
    except PimlicoError as error:
        return _new_user_form(
            viewer,
            request,
            status=error.status,
            problem=Problem.of(error),
            user_name=user_name,
            display_name=display_name or "",
            email=email or "",
            manager=manager or "",
        )
    return _done(request, f"/portal/admin/users/{user.id}", f"{user.display_name} was created.")


def _manager_id(rt: Pimlico, viewer: Viewer, manager: str | None) -> str | None:
    if not (manager and manager.strip()):
        return None  # left empty: no manager (or, when changing, the same one)
    user = PrincipalType.USER
    return portal_directory.principal_named(rt, actor=viewer.actor, kind=user, name=manager).id


def _user_page(
    request: Request, viewer: Viewer, user_id: str, *, status: int = 200, **context: Any
) -> HTMLResponse:
    rt = runtime_of(request)
    actor = viewer.actor
    user = directory_reads.get_user(rt, actor=actor, user_id=user_id)
    manager = (
        directory_reads.get_user(rt, actor=actor, user_id=user.manager_id)
        if user.manager_id
        else None
    )
    principal = PrincipalRef(PrincipalType.USER, user_id)
    groups = (
        portal_directory.memberships_of(rt, actor=actor, principal=principal)
        if viewer.holds(Perm.GROUPS_READ)
        else None
    )
    held = (
        assignments.list_assignments(rt, actor=actor, principal=principal)
        if viewer.holds(Perm.ASSIGNMENTS_READ)
        else None
    )
    ids = [m.group_id for m in groups or []] + [a.target.object_id for a in held or []]
    return page(
        request,
        "admin_users_detail.html",
        viewer=viewer,
        status=status,
        user=user,
        manager=manager,
        groups=groups,
        assignments=held,
        names=portal_directory.names_of(rt, actor=actor, ids=ids),
        factor=mfa.factor_of(rt, actor=actor, user_id=user_id),
        assignments_href="/portal/admin/assignments?principal=" + quote(user_id, safe=""),
        **context,
    )


@router.get("/admin/users/{user_id}")
def user_page(request: Request, viewer: ViewerDep, user_id: str) -> HTMLResponse:
    return _user_page(request, viewer, user_id)


@router.post("/admin/users/{user_id}")
def update_user(
    request: Request,
    viewer: ViewerDep,
    user_id: str,
    display_name: OptionalName = None,
    email: Email = None,
    manager: OptionalName = None,
) -> Response:
    rt = runtime_of(request)
    try:
        done = directory.update_user(
            rt,
            actor=viewer.actor,
            user_id=user_id,
            display_name=display_name or None,
            email=email or "",
            manager_id=_manager_id(rt, viewer, manager),
        ).value
    except PimlicoError as error:
        return _user_page(request, viewer, user_id, status=error.status, problem=Problem.of(error))
    url = f"/portal/admin/users/{user_id}"
    return _done(request, url, f"The details of {done.display_name} were saved.")


@router.post("/admin/users/{user_id}/enabled")
def set_user_enabled(
    request: Request, viewer: ViewerDep, user_id: str, enabled: Flag, reason: Text = None
) -> Response:
    rt = runtime_of(request)
    user = directory.set_user_enabled(
        rt, actor=viewer.actor, user_id=user_id, enabled=enabled, reason=reason
    ).value
    message = (
        f"{user.display_name} is enabled again."
        if enabled
        else f"{user.display_name} is disabled: they hold nothing while disabled."
    )
    return _done(request, f"/portal/admin/users/{user_id}", message)


@router.post("/admin/users/{user_id}/mfa/remove")
def remove_factor(
    request: Request, viewer: ViewerDep, user_id: str, reason: Text = None
) -> Response:
    rt = runtime_of(request)
    mfa.remove(rt, actor=viewer.actor, user_id=user_id, reason=reason)
    user = directory_reads.get_user(rt, actor=viewer.actor, user_id=user_id)
    message = (
        f"The authenticator app of {user.display_name} was removed: "
        "they sign in with their password alone until they set up a new one."
    )
    return _done(request, f"/portal/admin/users/{user_id}", message)


# -- service accounts -----------------------------------------------------------------------


def _accounts_page(request: Request, viewer: Viewer, **context: Any) -> HTMLResponse:
    rt = runtime_of(request)
    found = directory.list_service_accounts(rt, actor=viewer.actor)
    fields = {"name": "", "display_name": "", "description": ""} | context
    return page(
        request, "admin_users_service_accounts.html", viewer=viewer, accounts=found, **fields
    )


@router.get("/admin/service-accounts")
def service_accounts_page(request: Request, viewer: ViewerDep) -> HTMLResponse:
    return _accounts_page(request, viewer)


@router.post("/admin/service-accounts")
def create_service_account(
    request: Request,
    viewer: ViewerDep,
    name: Name,
    display_name: OptionalName = None,
    description: Text = None,
) -> Response:
    rt = runtime_of(request)
    try:
        account = directory.create_service_account(
            rt,
            actor=viewer.actor,
            name=name,
            display_name=display_name or None,
            description=description or "",
        ).value
    except PimlicoError as error:
        return _accounts_page(
            request,
            viewer,
            status=error.status,
            problem=Problem.of(error),
            name=name,
            display_name=display_name or "",
            description=description or "",
        )
    return _done(request, "/portal/admin/service-accounts", f"{account.display_name} was created.")


@router.post("/admin/service-accounts/{account_id}/enabled")
def set_service_account_enabled(
    request: Request, viewer: ViewerDep, account_id: str, enabled: Flag, reason: Text = None
) -> Response:
    rt = runtime_of(request)
    account = directory.set_service_account_enabled(
        rt, actor=viewer.actor, account_id=account_id, enabled=enabled, reason=reason
    ).value
    state = "enabled again" if enabled else "disabled: its tokens and grants stop working"
    return _done(request, "/portal/admin/service-accounts", f"{account.display_name} is {state}.")


# -- groups ---------------------------------------------------------------------------------


@router.get("/admin/groups")
def groups_page(request: Request, viewer: ViewerDep, q: Search = "") -> HTMLResponse:
    rt = runtime_of(request)
    groups = [
        g
        for g in directory.list_groups(rt, actor=viewer.actor)
        if _matches(q, g.name, g.display_name, g.description)
    ]
    return page(request, "admin_groups.html", viewer=viewer, groups=groups, q=q)


def _new_group_form(request: Request, viewer: Viewer, **context: Any) -> HTMLResponse:
    fields: dict[str, Any] = {
        "name": "",
        "description": "",
        "role_assignable": False,
        "pim_enabled": False,
    } | context
    return page(request, "admin_groups_new.html", viewer=viewer, **fields)


@router.get("/admin/groups/new")
def new_group_form(request: Request, viewer: ViewerDep) -> HTMLResponse:
    return _new_group_form(request, viewer)


@router.post("/admin/groups")
def create_group(
    request: Request,
    viewer: ViewerDep,
    name: Name,
    description: Text = None,
    role_assignable: Flag = False,
    pim_enabled: Flag = False,
) -> Response:
    rt = runtime_of(request)
    try:
        group = directory.create_group(
            rt,
            actor=viewer.actor,
            name=name,
            description=description or "",
            role_assignable=role_assignable,
            pim_enabled=pim_enabled,
        ).value
    except PimlicoError as error:
        return _new_group_form(
            request,
            viewer,
            status=error.status,
            problem=Problem.of(error),
            name=name,
            description=description or "",
            role_assignable=role_assignable,
            pim_enabled=pim_enabled,
        )
    return _done(request, f"/portal/admin/groups/{group.id}", f"{group.display_name} was created.")


def _group_page(
    request: Request, viewer: Viewer, group_id: str, *, status: int = 200, **context: Any
) -> HTMLResponse:
    rt = runtime_of(request)
    actor = viewer.actor
    group = directory_reads.get_group(rt, actor=actor, group_id=group_id)
    current = directory.list_memberships(rt, actor=actor, group_id=group_id)
    parents = portal_directory.memberships_of(
        rt, actor=actor, principal=PrincipalRef(PrincipalType.GROUP, group_id)
    )
    ids = [m.member.id for m in current] + [m.group_id for m in parents]
    fields: dict[str, Any] = {
        "typed": {"relation": "member", "member_type": "user", "name": ""}
    } | context
    return page(
        request,
        "admin_groups_detail.html",
        viewer=viewer,
        status=status,
        group=group,
        members=[m for m in current if m.relation is Relation.MEMBER],
        owners=[m for m in current if m.relation is Relation.OWNER],
        parents=[m for m in parents if m.relation is Relation.MEMBER],
        names=portal_directory.names_of(rt, actor=actor, ids=ids),
        # Only to decide which buttons to show; the use case checks it again.
        may_change=viewer.holds(directory.group_write_permission(group.role_assignable)),
        **fields,
    )


@router.get("/admin/groups/{group_id}")
def group_page(request: Request, viewer: ViewerDep, group_id: str) -> HTMLResponse:
    return _group_page(request, viewer, group_id)


@router.post("/admin/groups/{group_id}")
def update_group(
    request: Request,
    viewer: ViewerDep,
    group_id: str,
    display_name: OptionalName = None,
    description: Text = None,
    pim_enabled: Flag = False,
) -> Response:
    rt = runtime_of(request)
    try:
        group = directory.update_group(
            rt,
            actor=viewer.actor,
            group_id=group_id,
            display_name=display_name or None,
            description=description or "",
            pim_enabled=pim_enabled,
        ).value
    except PimlicoError as error:
        return _group_page(
            request, viewer, group_id, status=error.status, problem=Problem.of(error)
        )
    return _done(request, f"/portal/admin/groups/{group_id}", f"{group.display_name} was saved.")


@router.post("/admin/groups/{group_id}/members")
def add_member(
    request: Request,
    viewer: ViewerDep,
    group_id: str,
    relation: Annotated[Relation, Form()],
    member_type: Annotated[PrincipalType, Form()],
    name: Name,
    reason: Text = None,
) -> Response:
    rt = runtime_of(request)
    try:
        member = portal_directory.principal_named(
            rt, actor=viewer.actor, kind=member_type, name=name
        )
        directory.add_member(
            rt,
            actor=viewer.actor,
            group_id=group_id,
            member=member,
            relation=relation,
            reason=reason,
        )
    except PimlicoError as error:
        problem = _nesting_problem(rt, viewer, group_id, name, relation, error)
        return _group_page(
            request,
            viewer,
            group_id,
            status=error.status,
            problem=problem,
            typed={"relation": relation.value, "member_type": member_type.value, "name": name},
        )
    return _done(
        request, f"/portal/admin/groups/{group_id}", f"{name.strip()} is now {_as(relation)}."
    )


def _as(relation: Relation) -> str:
    return "a member" if relation is Relation.MEMBER else "an owner"


def _nesting_problem(
    rt: Pimlico, viewer: Viewer, group_id: str, name: str, relation: Relation, error: PimlicoError
) -> Problem:
    """The refusal in plain words, with names rather than the ids the service speaks in."""
    typed = name.strip()
    group = portal_directory.names_of(rt, actor=viewer.actor, ids=[group_id]).get(group_id, "")
    if isinstance(error, CycleDetected):
        said = (
            "A group cannot be a member of itself."
            if typed.casefold() == group.casefold()
            else f"{group} is already inside {typed}, directly or through other groups: "
            f"nesting {typed} into {group} would make a loop."
        )
        todo = "Nest them the other way round, or first remove the link that makes the loop."
    elif isinstance(error, DepthExceeded):
        cap = rt.settings.max_nesting_depth
        said = (
            f"Nesting {typed} into {group} would make a chain of groups deeper than the "
            f"{cap} levels this Pimlico allows."
        )
        todo = "Add the people directly, or remove a level of nesting."
    elif isinstance(error, AlreadyExists):
        said = f"{typed} is already {_as(relation)}."
        todo = "Nothing to do."
    else:
        return Problem.of(error)
    return Problem(
        code=error.code,
        message="That change was refused.",
        fields=(FieldError("member", error.code, said),),
        what_to_do=todo,
        status=error.status,
    )


@router.post("/admin/groups/{group_id}/members/remove")
def remove_member(
    request: Request,
    viewer: ViewerDep,
    group_id: str,
    relation: Annotated[Relation, Form()],
    member_type: Annotated[PrincipalType, Form()],
    member_id: Annotated[str, Form(max_length=64)],
    reason: Text = None,
) -> Response:
    rt = runtime_of(request)
    directory.remove_member(
        rt,
        actor=viewer.actor,
        group_id=group_id,
        member=PrincipalRef(member_type, member_id),
        relation=relation,
        reason=reason,
    )
    names = portal_directory.names_of(rt, actor=viewer.actor, ids=[member_id])
    message = f"{names.get(member_id, member_id)} is no longer {_as(relation)}."
    return _done(request, f"/portal/admin/groups/{group_id}", message)
