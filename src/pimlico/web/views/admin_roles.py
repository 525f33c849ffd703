"""Administration of roles: the built-in roles (read-only) and custom roles with their
permissions.

Each view calls one use case of ``services.roles`` with the viewer as actor; the services
decide who may do what (and refuse any change to a built-in role). Permissions are typed one
per line; a trailing wildcard (``mail.*``) is allowed, as the API allows it.
"""

from __future__ import annotations

import re
from dataclasses import replace
from typing import Annotated, Any

from fastapi import Form, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from pimlico.api.deps import runtime_of
from pimlico.errors import FieldError, PimlicoError
from pimlico.services import roles
from pimlico.web import session
from pimlico.web.render import Problem, page
from pimlico.web.session import Viewer
from pimlico.web.views import ViewerDep, portal_router

router = portal_router()

PERMISSIONS_MAX = roles.MAX_PERMISSIONS * 257
Permissions = Annotated[str, Form(max_length=PERMISSIONS_MAX)]
Description = Annotated[str | None, Form(max_length=4000)]


def _lines(text: str) -> list[str]:
    """One permission a line; blank lines and surrounding spaces are not permissions."""
    return [line.strip() for line in text.splitlines() if line.strip()]


_NTH = re.compile(r"permissions\[(\d+)\]")


def _problem(error: PimlicoError, typed: list[str]) -> Problem:
    """The refusal, naming the permission a rule refers to rather than its index."""

    def named(field: str) -> str:
        found = _NTH.fullmatch(field)
        if found is None or int(found.group(1)) >= len(typed):
            return field
        return f"permission “{typed[int(found.group(1))]}”"

    problem = Problem.of(error)
    fields = tuple(FieldError(named(f.field), f.rule, f.message) for f in problem.fields)
    return replace(problem, fields=fields)


@router.get("/admin/roles")
def roles_page(request: Request, viewer: ViewerDep) -> HTMLResponse:
    found = roles.list_roles(runtime_of(request), actor=viewer.actor)
    return page(
        request,
        "admin_roles.html",
        viewer=viewer,
        custom=[r for r in found if not r.built_in],
        built_in=[r for r in found if r.built_in],
    )


def _new_role_form(request: Request, viewer: Viewer, **context: Any) -> HTMLResponse:
    fields = {"name": "", "description": "", "permissions": ""} | context
    return page(request, "admin_roles_new.html", viewer=viewer, **fields)


@router.get("/admin/roles/new")
def new_role_form(request: Request, viewer: ViewerDep) -> HTMLResponse:
    return _new_role_form(request, viewer)


@router.post("/admin/roles")
def create_role(
    request: Request,
    viewer: ViewerDep,
    name: Annotated[str, Form(max_length=256)],
    permissions: Permissions,
    description: Description = None,
) -> Response:
    typed = _lines(permissions)
    try:
        role = roles.create_role(
            runtime_of(request),
            actor=viewer.actor,
            name=name,
            permissions=typed,
            description=description or "",
        ).value
    except PimlicoError as error:
        return _new_role_form(
            request,
            viewer,
            status=error.status,
            problem=_problem(error, typed),
            name=name,
            description=description or "",
            permissions=permissions,
        )
    response = RedirectResponse(f"/portal/admin/roles/{role.id}", status_code=303)
    session.flash(request, response, f"The role {role.name} was created.")
    return response


def _role_page(
    request: Request, viewer: Viewer, role_id: str, *, status: int = 200, **context: Any
) -> HTMLResponse:
    role = roles.get_role(runtime_of(request), actor=viewer.actor, role_id=role_id)
    fields = {"permissions": "\n".join(role.permissions), "description": role.description}
    return page(
        request,
        "admin_roles_detail.html",
        viewer=viewer,
        status=status,
        role=role,
        **(fields | context),
    )


@router.get("/admin/roles/{role_id}")
def role_page(request: Request, viewer: ViewerDep, role_id: str) -> HTMLResponse:
    return _role_page(request, viewer, role_id)


@router.post("/admin/roles/{role_id}")
def update_role(
    request: Request,
    viewer: ViewerDep,
    role_id: str,
    permissions: Permissions,
    description: Description = None,
) -> Response:
    typed = _lines(permissions)
    try:
        role = roles.update_role(
            runtime_of(request),
            actor=viewer.actor,
            role_id=role_id,
            permissions=typed,
            description=description or "",
        ).value
    except PimlicoError as error:
        return _role_page(
            request,
            viewer,
            role_id,
            status=error.status,
            problem=_problem(error, typed),
            permissions=permissions,
            description=description or "",
        )
    response = RedirectResponse(f"/portal/admin/roles/{role_id}", status_code=303)
    session.flash(
        request, response, f"The role {role.name} was saved: its holders have the change now."
    )
    return response
