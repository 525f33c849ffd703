"""``pimlico mfa``: enrol, confirm, verify and remove a user's TOTP factor, as the operator.

The secret and the recovery codes are printed once, here, and stored nowhere in clear.
"""

from __future__ import annotations

from typing import Annotated

import typer

from pimlico.cli._common import ACTOR, command, done, instant, runtime, say
from pimlico.services import mfa, resolve

app = typer.Typer(help="Multi-factor authentication (TOTP) for users.", no_args_is_help=True)

UserName = Annotated[str, typer.Argument(help="A user name (or id).", show_default=False)]
Code = Annotated[
    str, typer.Argument(help="A 6-digit code, or a recovery code.", show_default=False)
]
Reason = Annotated[str | None, typer.Option("--reason", help="Why: kept in the audit log.")]


@command(app, "enroll")
def enroll(name: UserName) -> None:
    """Start enrolling a TOTP factor: prints the secret and provisioning URI, once."""
    with runtime() as rt:
        user = resolve.resolve_user(rt, name)
        enrollment = mfa.enroll(rt, actor=ACTOR, user_id=user.id)
    done(f"enrolled an MFA factor for {user.user_name} (unconfirmed)", enrollment.revision)
    say(f"secret: {enrollment.secret}")
    say(f"provisioning URI: {enrollment.provisioning_uri}")
    say(f"add it to an authenticator app, then: pimlico mfa confirm {user.user_name} CODE")


@command(app, "confirm")
def confirm(name: UserName, code: Code) -> None:
    """Confirm an enrolment with a first code: prints the recovery codes, once."""
    with runtime() as rt:
        user = resolve.resolve_user(rt, name)
        codes = mfa.confirm(rt, actor=ACTOR, user_id=user.id, code=code)
    say(f"confirmed the MFA factor of {user.user_name}")
    say("recovery codes (each works once; keep them safe, they are not shown again):")
    for recovery in codes:
        say(f"  {recovery}")


@command(app, "verify")
def verify(name: UserName, code: Code) -> None:
    """Verify a code; a success counts as fresh MFA for step-up."""
    with runtime() as rt:
        user = resolve.resolve_user(rt, name)
        verification = mfa.verify(rt, actor=ACTOR, user_id=user.id, code=code)
    done(
        f"verified {user.user_name} by {verification.method} at "
        f"{instant(verification.verified_at)}; "
        f"{verification.recovery_codes_left} recovery codes left",
        verification.revision,
    )


@command(app, "remove")
def remove(name: UserName, reason: Reason = None) -> None:
    """Remove a user's MFA factor (they may enrol again)."""
    with runtime() as rt:
        user = resolve.resolve_user(rt, name)
        written = mfa.remove(rt, actor=ACTOR, user_id=user.id, reason=reason)
    done(f"removed the MFA factor of {user.user_name}", written.revision)
