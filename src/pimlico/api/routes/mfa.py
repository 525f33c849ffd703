"""MFA through the API: enrol a TOTP factor, confirm it, verify a code (step-up), remove it.

A verification is what makes a later request "with MFA": a request whose policy requires
MFA accepts a verification still fresh (``PIMLICO_MFA_FRESHNESS``) when it is made. The
secret and provisioning URI are shown once (enrolment), the recovery codes once
(confirmation); nothing here ever shows them again. One's own factor needs the token's
``pim.self`` scope; removing another user's takes ``pim.users.write`` (the services decide).
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Annotated

from fastapi import APIRouter, Query, Response, status
from pydantic import BaseModel, ConfigDict, Field

from pimlico.api.deps import CallerDep, RuntimeDep, SelfDep, written
from pimlico.services import mfa
from pimlico.services.lookups import MAX_TEXT
from pimlico.services.runtime import Actor, Pimlico

router = APIRouter(tags=["mfa"])


class FactorOut(BaseModel):
    """A user's MFA factor, never its secret."""

    id: str
    user_id: str
    method: str = Field(examples=["totp"])
    created_at: datetime
    confirmed_at: datetime | None
    removed_at: datetime | None

    @classmethod
    def of(cls, factor: mfa.Factor) -> FactorOut:
        return cls(
            id=factor.id,
            user_id=factor.user_id,
            method=factor.method,
            created_at=factor.created_at,
            confirmed_at=factor.confirmed_at,
            removed_at=factor.removed_at,
        )


class EnrollmentOut(BaseModel):
    """A new, unconfirmed factor and what an authenticator app needs: shown this once."""

    factor: FactorOut
    secret: str = Field(examples=["JBSWY3DPEHPK3PXP"], description="Base32 TOTP secret.")
    provisioning_uri: str = Field(
        examples=["otpauth://totp/Pimlico:alex?secret=JBSWY3DPEHPK3PXP&issuer=Pimlico"],
        description="For a QR code.",
    )


class Code(BaseModel):
    model_config = ConfigDict(extra="forbid")

    code: str = Field(
        max_length=64,
        description="A 6-digit TOTP code, or (to verify) a recovery code.",
        examples=["492039"],
    )


class RecoveryCodesOut(BaseModel):
    """The recovery codes of the confirmed factor: each works once; shown this once."""

    recovery_codes: list[str] = Field(examples=[["k3x9d-7qmwa", "…"]])


class VerificationOut(BaseModel):
    user_id: str
    method: str = Field(examples=["totp", "recovery"])
    verified_at: datetime
    fresh_until: datetime = Field(
        description="Requests that require MFA accept this verification until then."
    )
    recovery_codes_left: int


def _me(caller: Actor) -> str:
    assert caller.principal_id is not None  # authenticated callers are principals
    return caller.principal_id


def _head(rt: Pimlico) -> int:
    """The store's revision now: at or past the write just made (for a use case that does
    not return its own)."""
    return rt.decisions.current().revision


@router.post(
    "/me/mfa",
    response_model=EnrollmentOut,
    status_code=status.HTTP_201_CREATED,
    summary="Enrol a TOTP factor (replaces an unconfirmed one); shows its secret once",
)
def enroll(caller: SelfDep, rt: RuntimeDep, response: Response) -> EnrollmentOut:
    enrollment = mfa.enroll(rt, actor=caller, user_id=_me(caller))
    written(response, enrollment.revision)
    return EnrollmentOut(
        factor=FactorOut.of(enrollment.factor),
        secret=enrollment.secret,
        provisioning_uri=enrollment.provisioning_uri,
    )


@router.post(
    "/me/mfa/confirm",
    response_model=RecoveryCodesOut,
    summary="Confirm the enrolment with a first code; shows the recovery codes once",
)
def confirm(body: Code, caller: SelfDep, rt: RuntimeDep, response: Response) -> RecoveryCodesOut:
    codes = mfa.confirm(rt, actor=caller, user_id=_me(caller), code=body.code)
    written(response, _head(rt))
    return RecoveryCodesOut(recovery_codes=codes)


@router.post(
    "/me/mfa/verify",
    response_model=VerificationOut,
    summary="Verify a code (step-up): later requests that require MFA accept it while fresh",
)
def verify(body: Code, caller: SelfDep, rt: RuntimeDep, response: Response) -> VerificationOut:
    verification = mfa.verify(rt, actor=caller, user_id=_me(caller), code=body.code)
    written(response, verification.revision)
    return VerificationOut(
        user_id=verification.user_id,
        method=verification.method,
        verified_at=verification.verified_at,
        fresh_until=verification.verified_at + timedelta(seconds=rt.settings.mfa_freshness),
        recovery_codes_left=verification.recovery_codes_left,
    )


Reason = Annotated[
    str | None,
    Query(max_length=MAX_TEXT, description="Why: kept in the audit log.", examples=["lost it"]),
]


@router.delete(
    "/me/mfa",
    response_model=FactorOut,
    summary="Remove one's own factor (a confirmed one needs a fresh verification first)",
)
def remove_mine(
    caller: SelfDep, rt: RuntimeDep, response: Response, reason: Reason = None
) -> FactorOut:
    done = mfa.remove(rt, actor=caller, user_id=_me(caller), reason=reason)
    written(response, done.revision)
    return FactorOut.of(done.value)


@router.delete(
    "/users/{user_id}/mfa",
    response_model=FactorOut,
    summary="Remove another user's factor (pim.users.write), e.g. when they lost it",
)
def remove_theirs(
    user_id: str, caller: CallerDep, rt: RuntimeDep, response: Response, reason: Reason = None
) -> FactorOut:
    done = mfa.remove(rt, actor=caller, user_id=user_id, reason=reason)
    written(response, done.revision)
    return FactorOut.of(done.value)
