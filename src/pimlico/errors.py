"""The one error tree of Pimlico.

Every error a caller can cause is a ``PimlicoError`` with a stable ``code`` and an HTTP
``status``. Only the API layer renders them (problem+json) and only the CLI prints them;
nothing below those layers knows about HTTP or terminals. This module imports only the
standard library, so the domain may raise these errors.

    PimlicoError
    ├── InvalidInput            400  InvalidInput         one or more fields break a rule
    │   ├── InvalidPolicy       400  InvalidPolicy        role settings that break a rule
    │   └── PolicyViolation     400  RoleAssignmentRequestPolicyValidationFailed
    │                                                      (carries the failed rule codes)
    ├── NotFound            404  NotFound             the named thing does not exist
    ├── Conflict            409  Conflict             the state changed under the caller
    │   ├── AlreadyExists       409  AlreadyExists        a unique name is taken
    │   ├── RoleAssignmentExists 400 RoleAssignmentExists the same grant is already in force
    │   ├── RoleAssignmentDoesNotExist 400 RoleAssignmentDoesNotExist
    │   ├── ActiveDurationTooShort 400 ActiveDurationTooShort
    │   ├── CycleDetected       409  CycleDetected        a group would contain itself
    │   ├── DepthExceeded       409  NestingTooDeep       nesting deeper than the cap
    │   └── LastGlobalAdministrator 409 LastGlobalAdministrator
    ├── PermissionDenied    403  PermissionDenied     the caller may not do this
    ├── PreconditionRequired 428 PreconditionRequired a change that must name the version it
    │                                                      read (If-Match) did not
    ├── NotAuthenticated    401  NotAuthenticated     no valid credentials were given
    ├── TooManyAttempts     429  TooManyAttempts      sign-in refused until the window passes
    ├── AuditChainBroken    500  AuditChainBroken     the audit log was tampered with
    ├── MfaError            400  MfaError             multi-factor authentication refused
    │   ├── MfaNotEnrolled      400  MfaNotEnrolled       no (confirmed) factor to use
    │   ├── MfaCodeRequired     401  MfaCodeRequired      sign-in of an account with MFA needs
    │   │                                                  its code too
    │   ├── MfaAlreadyEnrolled  409  MfaAlreadyEnrolled   a confirmed factor must be removed first
    │   ├── MfaCodeInvalid      400  MfaCodeInvalid       wrong, expired or malformed code
    │   ├── MfaCodeReused       400  MfaCodeReused        the code (time step) was already used
    │   ├── MfaStepUpRequired   403  MfaStepUpRequired    a fresh verification is needed first
    │   └── MfaLocked           429  MfaLocked            too many failures: wait for the window
    └── SecretKeyNotConfigured 500 SecretKeyNotConfigured no key to encrypt secrets at rest
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime


@dataclass(frozen=True, slots=True)
class FieldError:
    """One rule that one field broke: ``field`` is a dotted path, ``rule`` names the rule."""

    field: str
    rule: str
    message: str


class PimlicoError(Exception):
    """Base of every error a caller can cause. ``code`` is stable; ``status`` is HTTP."""

    code: str = "PimlicoError"
    status: int = 500

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class InvalidInput(PimlicoError):
    """Input that breaks one or more rules; ``errors`` names each field and rule."""

    code = "InvalidInput"
    status = 400

    def __init__(self, message: str, errors: list[FieldError] | None = None) -> None:
        super().__init__(message)
        self.errors: list[FieldError] = list(errors or [])

    def __str__(self) -> str:
        if not self.errors:
            return self.message
        details = "; ".join(f"{e.field}: {e.message}" for e in self.errors)
        return f"{self.message}: {details}"


class InvalidPolicy(InvalidInput):
    """Role settings that break one or more rules."""

    code = "InvalidPolicy"


class PolicyViolation(InvalidInput):
    """A request that breaks the role settings; ``rules`` lists every failed rule at once."""

    code = "RoleAssignmentRequestPolicyValidationFailed"

    def __init__(self, rules: list[FieldError]) -> None:
        names = sorted({e.rule for e in rules})
        super().__init__(f"The following policy rules failed: {names}", rules)

    @property
    def rules(self) -> list[str]:
        return sorted({e.rule for e in self.errors})


class NotFound(PimlicoError):
    code = "NotFound"
    status = 404


class Conflict(PimlicoError):
    code = "Conflict"
    status = 409


class AlreadyExists(Conflict):
    code = "AlreadyExists"


class RoleAssignmentExists(Conflict):
    code = "RoleAssignmentExists"
    status = 400


class RoleAssignmentDoesNotExist(Conflict):
    code = "RoleAssignmentDoesNotExist"
    status = 400


class ActiveDurationTooShort(Conflict):
    code = "ActiveDurationTooShort"
    status = 400


class CycleDetected(Conflict):
    code = "CycleDetected"


class DepthExceeded(Conflict):
    code = "NestingTooDeep"


class LastGlobalAdministrator(Conflict):
    code = "LastGlobalAdministrator"


class PermissionDenied(PimlicoError):
    code = "PermissionDenied"
    status = 403


class PreconditionRequired(PimlicoError):
    """A change of role settings came without ``If-Match``: it would overwrite blindly."""

    code = "PreconditionRequired"
    status = 428


class NotAuthenticated(PimlicoError):
    """No credentials, or credentials that are wrong, expired or revoked. The message never
    says which, so a caller cannot tell an unknown account from a wrong password."""

    code = "NotAuthenticated"
    status = 401


class TooManyAttempts(PimlicoError):
    """Too many failed sign-ins: refused until ``retry_after`` (an instant), whatever the
    password."""

    code = "TooManyAttempts"
    status = 429

    def __init__(self, message: str, retry_after: datetime) -> None:
        super().__init__(message)
        self.retry_after = retry_after


@dataclass(frozen=True, slots=True)
class BrokenLink:
    """Where the audit chain first breaks, and why."""

    sequence: int
    reason: str
    details: dict[str, str] = field(default_factory=dict)


class AuditChainBroken(PimlicoError):
    code = "AuditChainBroken"
    status = 500

    def __init__(self, broken: BrokenLink) -> None:
        super().__init__(f"audit chain broken at event {broken.sequence}: {broken.reason}")
        self.broken = broken


class MfaError(PimlicoError):
    """Multi-factor authentication refused. Messages never carry a code or a secret."""

    code = "MfaError"
    status = 400


class MfaNotEnrolled(MfaError):
    code = "MfaNotEnrolled"


class MfaCodeRequired(MfaError):
    """The password was right, and the account has MFA: a sign-in needs its code too.
    ``user_id`` is for the caller that finishes the sign-in (the portal), never shown."""

    code = "MfaCodeRequired"
    status = 401

    def __init__(self, user_id: str) -> None:
        super().__init__(
            "this account uses MFA: sign in with the code from its authenticator app too"
        )
        self.user_id = user_id


class MfaAlreadyEnrolled(MfaError):
    code = "MfaAlreadyEnrolled"
    status = 409


class MfaCodeInvalid(MfaError):
    code = "MfaCodeInvalid"


class MfaCodeReused(MfaError):
    code = "MfaCodeReused"


class MfaStepUpRequired(MfaError):
    code = "MfaStepUpRequired"
    status = 403


class MfaLocked(MfaError):
    """Too many failed codes in the attempt window; ``until`` is when it unlocks."""

    code = "MfaLocked"
    status = 429

    def __init__(self, message: str, until: datetime) -> None:
        super().__init__(message)
        self.until = until


class SecretKeyNotConfigured(PimlicoError):
    """The deployment has no key to encrypt secrets at rest (``PIMLICO_SECRET_KEY``)."""

    code = "SecretKeyNotConfigured"
    status = 500
