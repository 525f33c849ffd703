"""The demo directory: the stories of DESIGN.md, loaded through the ordinary use cases.

Alex (analyst) is eligible for Security Reader (MFA, no justification, no approval) and for
membership of "Search and Purge PIM" (MFA, justification, ticket, approval by Bob), a group
nested into the role-assignable "Search and Purge" group that holds the mail purge role.
Erin (Exchange engineer) is eligible for Exchange Administrator and for "Exchange Recipient
Admins". Dana and Mike are eligible for "MDE Administrators", approved by Sam. Root is the
break-glass Global Administrator, and Priya is eligible for Privileged Role Administrator.

Every demo person signs in with a demo password (``demo_password``): public, printed by
``pimlico demo sign-ins``, so they are for the demo store only — the demo loads into an
empty store, never beside real accounts.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import timedelta

from pimlico.domain.catalogue import GLOBAL_ADMINISTRATOR as GA
from pimlico.domain.catalogue import PRIVILEGED_ROLE_ADMINISTRATOR, SECURITY_READER
from pimlico.domain.model import AssignmentKind, PrincipalRef, PrincipalType, Target, TargetType
from pimlico.services import accounts, assignments, directory, role_settings, roles
from pimlico.services.runtime import Actor, Pimlico

ELIGIBLE = AssignmentKind.ELIGIBLE
ACTIVE = AssignmentKind.ACTIVE
YEAR = timedelta(days=365)


PEOPLE: tuple[tuple[str, str, str | None, str], ...] = (
    ("root", "Break-glass Administrator", None, "permanent Global Administrator"),
    ("alex", "Alex Analyst", "alex@example.org", "eligible: Security Reader, Search and Purge"),
    ("bob", "Bob Approver", "bob@example.org", "approves Search and Purge PIM"),
    ("erin", "Erin Exchange", "erin@example.org", "eligible: Exchange Administrator"),
    ("dana", "Dana Defender", "dana@example.org", "eligible: MDE Administrators"),
    ("mike", "Mike Defender", "mike@example.org", "eligible: MDE Administrators"),
    ("sam", "Sam Security Lead", "sam@example.org", "approves MDE Administrators"),
    ("priya", "Priya Privileged", "priya@example.org", "eligible: Privileged Role Administrator"),
)
"""The demo people: user name, display name, email, and their part in the stories."""


def demo_password(user_name: str) -> str:
    """The demo person's password: public, for the demo store only."""
    return f"{user_name}-demo-password"


@dataclass
class Demo:
    """The ids of what the demo created, by the names people use."""

    users: dict[str, str] = field(default_factory=dict)
    groups: dict[str, str] = field(default_factory=dict)
    roles: dict[str, str] = field(default_factory=dict)
    revision: int = 0


def _user(ref: str) -> PrincipalRef:
    return PrincipalRef(PrincipalType.USER, ref)


def _group(ref: str) -> PrincipalRef:
    return PrincipalRef(PrincipalType.GROUP, ref)


def load_demo(rt: Pimlico, actor: Actor | None = None) -> Demo:
    """Create the demo directory in an empty store; returns what it made."""
    actor = actor or Actor.operator("demo")
    demo = Demo()
    for name, display, email, _ in PEOPLE:
        user = directory.create_user(
            rt, actor=actor, user_name=name, display_name=display, email=email
        ).value
        demo.users[name] = user.id
        accounts.set_password(rt, actor=actor, user_id=user.id, password=demo_password(name))

    mail = roles.create_role(
        rt,
        actor=actor,
        name="Mail Search and Purge",
        permissions=["mail.search", "mail.purge"],
        description="Search mailboxes and purge malicious email.",
    ).value
    exchange = roles.create_role(
        rt,
        actor=actor,
        name="Exchange Administrator",
        permissions=["exchange.*"],
        description="Administer Exchange Online.",
    ).value
    recipients = roles.create_role(
        rt,
        actor=actor,
        name="Exchange Recipient Administrator",
        permissions=["mail.recipients.*"],
        description="Manage mail recipients.",
    ).value
    mde = roles.create_role(
        rt,
        actor=actor,
        name="MDE Administrator",
        permissions=["defender.*"],
        description="Administer Microsoft Defender for Endpoint.",
    ).value
    demo.roles.update(
        {
            "Mail Search and Purge": mail.id,
            "Exchange Administrator": exchange.id,
            "Exchange Recipient Administrator": recipients.id,
            "MDE Administrator": mde.id,
        }
    )

    def group(name: str, description: str, *, role_assignable: bool, pim: bool) -> str:
        g = directory.create_group(
            rt,
            actor=actor,
            name=name,
            description=description,
            role_assignable=role_assignable,
            pim_enabled=pim,
        ).value
        demo.groups[name] = g.id
        return g.id

    sp = group("Search and Purge", "Holds the mail purge role.", role_assignable=True, pim=False)
    sp_pim = group(
        "Search and Purge PIM",
        "Eligible members activate into Search and Purge.",
        role_assignable=True,
        pim=True,
    )
    era = group("Exchange Recipient Admins", "Manage recipients.", role_assignable=True, pim=True)
    mde_admins = group(
        "MDE Administrators",
        "Defender for Endpoint administrators.",
        role_assignable=True,
        pim=True,
    )
    directory.add_member(rt, actor=actor, group_id=sp, member=_group(sp_pim))

    def grant(
        kind: AssignmentKind, who: PrincipalRef, target: Target, *, permanent: bool = False
    ) -> None:
        demo.revision = assignments.assign(
            rt,
            actor=actor,
            kind=kind,
            principal=who,
            target=target,
            duration=None if permanent else YEAR,
            justification="Demo directory",
        ).revision

    # Policies first: the groups' standing role grants are permanent, which they must allow.
    for role_id in (mail.id, recipients.id, mde.id, GA.id):
        role_settings.update_policy(
            rt,
            actor=actor,
            target_type=TargetType.ROLE,
            object_id=role_id,
            changes={"assignment": {"allow_permanent_active": True}},
        )
    role_settings.update_policy(
        rt,
        actor=actor,
        target_type=TargetType.ROLE,
        object_id=SECURITY_READER.id,
        changes={
            "activation": {
                "maximum_duration": "PT8H",
                "require_mfa": True,
                "require_justification": False,
            }
        },
    )
    role_settings.update_policy(
        rt,
        actor=actor,
        target_type=TargetType.GROUP_MEMBER,
        object_id=sp_pim,
        changes={
            "activation": {
                "maximum_duration": "PT2H",
                "require_mfa": True,
                "require_justification": True,
                "require_ticket": True,
            },
            "approval": {
                "required": True,
                "stages": [{"approvers": [{"type": "user", "id": demo.users["bob"]}]}],
            },
        },
    )
    role_settings.update_policy(
        rt,
        actor=actor,
        target_type=TargetType.GROUP_MEMBER,
        object_id=mde_admins,
        changes={
            "activation": {"maximum_duration": "PT4H", "require_justification": True},
            "approval": {
                "required": True,
                "stages": [{"approvers": [{"type": "user", "id": demo.users["sam"]}]}],
            },
        },
    )

    grant(ACTIVE, _user(demo.users["root"]), Target.role(GA.id), permanent=True)
    grant(ACTIVE, _group(sp), Target.role(mail.id, "/apps/mail"), permanent=True)
    grant(ACTIVE, _group(era), Target.role(recipients.id, "/apps/mail"), permanent=True)
    grant(ACTIVE, _group(mde_admins), Target.role(mde.id, "/apps/defender"), permanent=True)
    grant(ELIGIBLE, _user(demo.users["alex"]), Target.role(SECURITY_READER.id))
    grant(ELIGIBLE, _user(demo.users["alex"]), Target.group_member(sp_pim))
    grant(ELIGIBLE, _user(demo.users["erin"]), Target.role(exchange.id, "/apps/exchange"))
    grant(ELIGIBLE, _user(demo.users["erin"]), Target.group_member(era))
    grant(ELIGIBLE, _user(demo.users["dana"]), Target.group_member(mde_admins))
    grant(ELIGIBLE, _user(demo.users["mike"]), Target.group_member(mde_admins))
    grant(ELIGIBLE, _user(demo.users["priya"]), Target.role(PRIVILEGED_ROLE_ADMINISTRATOR.id))
    return demo
