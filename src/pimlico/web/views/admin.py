"""The Administration landing page: the sections the viewer may use now.

Administrators hold no standing rights: what shows here follows what the viewer holds at
this moment (an activated admin role), and every section's use case still decides for
itself. With nothing held, the page says so and leads to My roles to activate one.
"""

from __future__ import annotations

from dataclasses import dataclass

from fastapi import Request
from fastapi.responses import HTMLResponse

from pimlico.domain.catalogue import Perm
from pimlico.web.render import page
from pimlico.web.views import ViewerDep, portal_router

router = portal_router()


@dataclass(frozen=True)
class Section:
    """One part of the administration, and the permission that opens it."""

    title: str
    href: str
    permission: str
    about: str


SECTIONS: tuple[Section, ...] = (
    Section(
        "Users",
        "/portal/admin/users",
        Perm.USERS_READ,
        "People and service accounts: create, change, disable, MFA.",
    ),
    Section(
        "Groups",
        "/portal/admin/groups",
        Perm.GROUPS_READ,
        "Security groups, role-assignable or not; members, owners and nesting.",
    ),
    Section(
        "Roles",
        "/portal/admin/roles",
        Perm.ROLES_READ,
        "Built-in and custom roles and the permissions they grant.",
    ),
    Section(
        "Role settings",
        "/portal/admin/settings",
        Perm.POLICIES_READ,
        "How each role or group is activated, assigned and notified.",
    ),
    Section(
        "Assignments",
        "/portal/admin/assignments",
        Perm.ASSIGNMENTS_READ,
        "Who is eligible for or holds each role and group membership.",
    ),
    Section(
        "Audit log",
        "/portal/admin/audit",
        Perm.AUDIT_READ,
        "Every change, who made it and when; export and verify the chain.",
    ),
)


@router.get("/admin")
def admin_home(request: Request, viewer: ViewerDep) -> HTMLResponse:
    open_now = [s for s in SECTIONS if viewer.holds(s.permission)]
    return page(request, "admin.html", viewer=viewer, sections=open_now)
