"""The tables of Pimlico's store (SQLAlchemy 2 declarative), for SQLite and PostgreSQL alike.

Rows here are storage, not the domain: ``pimlico.db.mappers`` turns them into domain entities.
Grants are never deleted: memberships and assignments carry ``ended_at``/``ended_by``/
``end_reason``. Every change is also a row of ``audit_events`` (written in the same
transaction), and ``pim_state`` holds the head of the audit chain and the store's revision.
Relationships are not used: services load what they need explicitly, so no query is hidden.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    DateTime,
    Dialect,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Text,
    TypeDecorator,
    UniqueConstraint,
    text,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

ID = String(36)
NAMING = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class UTCDateTime(TypeDecorator[datetime]):
    """An aware UTC instant; stored naive-UTC so SQLite and PostgreSQL round-trip alike."""

    impl = DateTime(timezone=False)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to a UTC column")
        return value.astimezone(UTC).replace(tzinfo=None)

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC)


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING)
    type_annotation_map = {  # noqa: RUF012 (SQLAlchemy reads it as a class-level map)
        datetime: UTCDateTime(),
        dict[str, Any]: JSON,
        list[str]: JSON,
    }


class UserRow(Base):
    """A person. ``user_name_key`` is the lower-cased user name, unique."""

    __tablename__ = "users"

    id: Mapped[str] = mapped_column(ID, primary_key=True)
    user_name: Mapped[str] = mapped_column(String(256))
    user_name_key: Mapped[str] = mapped_column(String(256), unique=True)
    display_name: Mapped[str] = mapped_column(String(256))
    email: Mapped[str | None] = mapped_column(String(320))
    enabled: Mapped[bool] = mapped_column(Boolean, default=True)
    manager_id: Mapped[str | None] = mapped_column(ID, ForeignKey("users.id"))
    created_at: Mapped[datetime]
    updated_at: Mapped[datetime]


class ServiceAccountRow(Base):
    """A non-human principal; holds active assignments only."""

    __tablename__ = "service_accounts"

    id: Mapped[str] = mapped_column(ID, primary_key=True)
    name: Mapped[str] = mapped_column(String(256), unique=True)
    display_name: Mapped[str] = mapped_column(String(256))
    description: Mapped[str] = mapped_column(Text, default="")
    enabled: Mapped[bool] = mapped_column(Boolean, default=True)
    created_at: Mapped[datetime]
    updated_at: Mapped[datetime]


class GroupRow(Base):
    """A security group. ``role_assignable`` is written once, at creation."""

    __tablename__ = "groups"

    id: Mapped[str] = mapped_column(ID, primary_key=True)
    name: Mapped[str] = mapped_column(String(256), unique=True)
    display_name: Mapped[str] = mapped_column(String(256))
    description: Mapped[str] = mapped_column(Text, default="")
    role_assignable: Mapped[bool] = mapped_column(Boolean)
    pim_enabled: Mapped[bool] = mapped_column(Boolean, default=False)
    created_at: Mapped[datetime]
    updated_at: Mapped[datetime]


class MembershipRow(Base):
    """A static membership or ownership of a group; ended, never deleted."""

    __tablename__ = "memberships"
    __table_args__ = (
        Index("ix_memberships_group_open", "group_id", "ended_at"),
        Index("ix_memberships_member", "member_type", "member_id"),
    )

    id: Mapped[str] = mapped_column(ID, primary_key=True)
    group_id: Mapped[str] = mapped_column(ID, ForeignKey("groups.id"))
    member_type: Mapped[str] = mapped_column(String(32))
    member_id: Mapped[str] = mapped_column(ID)
    relation: Mapped[str] = mapped_column(String(16))
    created_at: Mapped[datetime]
    created_by: Mapped[str | None] = mapped_column(ID)
    ended_at: Mapped[datetime | None]
    ended_by: Mapped[str | None] = mapped_column(ID)
    end_reason: Mapped[str | None] = mapped_column(Text)


class RoleRow(Base):
    """A role: a name and its permission patterns."""

    __tablename__ = "roles"

    id: Mapped[str] = mapped_column(ID, primary_key=True)
    name: Mapped[str] = mapped_column(String(256), unique=True)
    description: Mapped[str] = mapped_column(Text, default="")
    permissions: Mapped[list[str]]
    built_in: Mapped[bool] = mapped_column(Boolean, default=False)
    created_at: Mapped[datetime]
    updated_at: Mapped[datetime]


class RoleSettingsRow(Base):
    """The policy of one target (a role, a group's membership or ownership).

    ``version`` increases with each change; it is the ETag for optimistic concurrency.
    """

    __tablename__ = "role_settings"
    __table_args__ = (UniqueConstraint("target_type", "object_id"),)

    id: Mapped[str] = mapped_column(ID, primary_key=True)
    target_type: Mapped[str] = mapped_column(String(32))
    object_id: Mapped[str] = mapped_column(ID)
    settings: Mapped[dict[str, Any]]
    version: Mapped[int] = mapped_column(Integer)
    updated_at: Mapped[datetime]
    updated_by: Mapped[str | None] = mapped_column(ID)


class AssignmentRow(Base):
    """An eligible or active assignment of a target to a principal for ``[start_at, end_at)``."""

    __tablename__ = "assignments"
    __table_args__ = (
        Index("ix_assignments_principal", "principal_type", "principal_id"),
        Index("ix_assignments_target", "target_type", "target_id", "scope"),
        Index("ix_assignments_ended_at", "ended_at"),
    )

    id: Mapped[str] = mapped_column(ID, primary_key=True)
    kind: Mapped[str] = mapped_column(String(16))
    principal_type: Mapped[str] = mapped_column(String(32))
    principal_id: Mapped[str] = mapped_column(ID)
    target_type: Mapped[str] = mapped_column(String(32))
    target_id: Mapped[str] = mapped_column(ID)
    scope: Mapped[str] = mapped_column(String(1024))
    start_at: Mapped[datetime]
    end_at: Mapped[datetime | None]
    created_at: Mapped[datetime]
    created_by: Mapped[str | None] = mapped_column(ID)
    justification: Mapped[str | None] = mapped_column(Text)
    activated_from: Mapped[str | None] = mapped_column(ID, ForeignKey("assignments.id"))
    request_id: Mapped[str | None] = mapped_column(ID)
    ended_at: Mapped[datetime | None]
    ended_by: Mapped[str | None] = mapped_column(ID)
    end_reason: Mapped[str | None] = mapped_column(Text)


class AuditEventRow(Base):
    """One audited change. Append-only; ``hash`` chains it to the event before it.

    ``before``/``after`` hold canonical JSON text (not a JSON column) so the bytes that were
    hashed are exactly the bytes that are stored, on every database.
    """

    __tablename__ = "audit_events"
    __table_args__ = (
        Index("ix_audit_events_occurred_at", "occurred_at"),
        Index("ix_audit_events_actor", "actor"),
        Index("ix_audit_events_target", "target_type", "target_id"),
        Index("ix_audit_events_revision", "revision"),
    )

    sequence: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    revision: Mapped[int] = mapped_column(BigInteger)
    occurred_at: Mapped[datetime]
    actor: Mapped[str | None] = mapped_column(String(256))
    action: Mapped[str] = mapped_column(String(128))
    target_type: Mapped[str] = mapped_column(String(32))
    target_id: Mapped[str] = mapped_column(String(256))
    before: Mapped[str | None] = mapped_column(Text)
    after: Mapped[str | None] = mapped_column(Text)
    reason: Mapped[str | None] = mapped_column(Text)
    request_id: Mapped[str | None] = mapped_column(String(64))
    prev_hash: Mapped[str] = mapped_column(String(64))
    hash: Mapped[str] = mapped_column(String(64))


class PimStateRow(Base):
    """The single row that every write locks first: the store's revision and the chain head.

    Locking it serialises writers, which is what makes revisions gap-free and in commit
    order and the audit chain linear.
    """

    __tablename__ = "pim_state"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    revision: Mapped[int] = mapped_column(BigInteger)
    audit_sequence: Mapped[int] = mapped_column(BigInteger)
    audit_hash: Mapped[str] = mapped_column(String(64))


class MfaFactorRow(Base):
    """A user's TOTP factor. At most one per user is live (``removed_at`` is null); the service
    keeps it so under the user's row lock. Removed factors stay, their secret wiped.

    ``secret`` is the Fernet token of the TOTP secret, never the secret itself.
    ``last_used_step`` is the TOTP time step last accepted: a code of that step or an earlier
    one is refused (replay). ``failed_attempts`` counts failures since ``failures_since``, the
    start of the attempt window (see ``pimlico.domain.mfa.Attempts``).
    """

    __tablename__ = "mfa_factors"
    __table_args__ = (Index("ix_mfa_factors_user_live", "user_id", "removed_at"),)

    id: Mapped[str] = mapped_column(ID, primary_key=True)
    user_id: Mapped[str] = mapped_column(ID, ForeignKey("users.id"))
    method: Mapped[str] = mapped_column(String(16))
    secret: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime]
    created_by: Mapped[str | None] = mapped_column(String(256))
    confirmed_at: Mapped[datetime | None]
    last_used_step: Mapped[int | None] = mapped_column(BigInteger)
    failed_attempts: Mapped[int] = mapped_column(Integer, default=0)
    failures_since: Mapped[datetime | None]
    removed_at: Mapped[datetime | None]
    removed_by: Mapped[str | None] = mapped_column(String(256))
    remove_reason: Mapped[str | None] = mapped_column(Text)


class MfaRecoveryCodeRow(Base):
    """One one-time recovery code of a factor: its argon2 hash, and when it was used."""

    __tablename__ = "mfa_recovery_codes"
    __table_args__ = (Index("ix_mfa_recovery_codes_factor", "factor_id", "used_at"),)

    id: Mapped[str] = mapped_column(ID, primary_key=True)
    user_id: Mapped[str] = mapped_column(ID, ForeignKey("users.id"))
    factor_id: Mapped[str] = mapped_column(ID, ForeignKey("mfa_factors.id"))
    code_hash: Mapped[str] = mapped_column(String(256))
    created_at: Mapped[datetime]
    used_at: Mapped[datetime | None]


class MfaVerificationRow(Base):
    """A successful MFA verification: what step-up freshness is decided from."""

    __tablename__ = "mfa_verifications"
    __table_args__ = (Index("ix_mfa_verifications_user", "user_id", "verified_at"),)

    id: Mapped[str] = mapped_column(ID, primary_key=True)
    user_id: Mapped[str] = mapped_column(ID, ForeignKey("users.id"))
    factor_id: Mapped[str] = mapped_column(ID, ForeignKey("mfa_factors.id"))
    method: Mapped[str] = mapped_column(String(16))
    verified_at: Mapped[datetime]


class RequestRow(Base):
    """A request — self-service or an administrator's — and its kept status history.

    ``start_at``/``end_at`` hold the window the request was validated for. ``history`` is the
    list of status changes (JSON); ``stages`` the approval stages as they were when the request
    was made (so a later change of the role settings does not move the goalposts).
    ``assignment_id`` names the assignment the request created (activate) or acts on
    (deactivate). ``idempotency_key`` is unique per requester.
    """

    __tablename__ = "requests"
    __table_args__ = (
        UniqueConstraint("requested_by", "idempotency_key"),
        Index("ix_requests_status", "status"),
        Index("ix_requests_principal", "principal_type", "principal_id"),
        Index("ix_requests_target", "target_type", "target_id"),
        Index("ix_requests_requested_at", "requested_at"),
    )

    id: Mapped[str] = mapped_column(ID, primary_key=True)
    action: Mapped[str] = mapped_column(String(32))
    kind: Mapped[str] = mapped_column(String(16))
    principal_type: Mapped[str] = mapped_column(String(32))
    principal_id: Mapped[str] = mapped_column(ID)
    target_type: Mapped[str] = mapped_column(String(32))
    target_id: Mapped[str] = mapped_column(ID)
    scope: Mapped[str] = mapped_column(String(1024))
    expiration: Mapped[str] = mapped_column(String(32))
    start_at: Mapped[datetime | None]
    end_at: Mapped[datetime | None]
    justification: Mapped[str | None] = mapped_column(Text)
    ticket_system: Mapped[str | None] = mapped_column(String(256))
    ticket_number: Mapped[str | None] = mapped_column(String(256))
    requested_by: Mapped[str] = mapped_column(ID)
    requested_at: Mapped[datetime]
    status: Mapped[str] = mapped_column(String(32))
    history: Mapped[list[Any]] = mapped_column(JSON)
    mfa_verified_at: Mapped[datetime | None]
    idempotency_key: Mapped[str | None] = mapped_column(String(128))
    assignment_id: Mapped[str | None] = mapped_column(ID)
    stages: Mapped[list[Any]] = mapped_column(JSON)
    escalated: Mapped[list[Any]] = mapped_column(JSON, default=list, server_default=text("'[]'"))


class ApprovalDecisionRow(Base):
    """One approver's decision on one stage of a request. Append-only; one per approver and
    stage (the unique constraint backs the service's lock and re-check)."""

    __tablename__ = "approval_decisions"
    __table_args__ = (UniqueConstraint("request_id", "stage", "approver_id"),)

    id: Mapped[str] = mapped_column(ID, primary_key=True)
    request_id: Mapped[str] = mapped_column(ID, ForeignKey("requests.id"))
    stage: Mapped[int] = mapped_column(Integer)
    approver_id: Mapped[str] = mapped_column(ID)
    approved: Mapped[bool] = mapped_column(Boolean)
    justification: Mapped[str | None] = mapped_column(Text)
    decided_at: Mapped[datetime]


class JobRow(Base):
    """One outbox job: a follow-up written in the same transaction as the change it follows.

    ``status``: ``pending`` (waits for ``due_at``), ``running`` (claimed by ``claimed_by``
    until ``claimed_until``; a lease that runs out makes it claimable again), ``done`` or
    ``failed`` (``finished_at``; after the last attempt, ``last_error`` kept). ``dedupe_key``
    (unique when set) keeps the same follow-up from being enqueued twice. Jobs are kept as
    the record of what ran.
    """

    __tablename__ = "jobs"
    __table_args__ = (
        UniqueConstraint("dedupe_key"),
        Index("ix_jobs_status", "status", "due_at"),
    )

    id: Mapped[str] = mapped_column(ID, primary_key=True)
    kind: Mapped[str] = mapped_column(String(64))
    payload: Mapped[dict[str, Any]] = mapped_column(JSON)
    due_at: Mapped[datetime]
    created_at: Mapped[datetime]
    attempts: Mapped[int] = mapped_column(Integer)
    last_error: Mapped[str | None] = mapped_column(Text)
    status: Mapped[str] = mapped_column(String(16))
    claimed_by: Mapped[str | None] = mapped_column(String(128))
    claimed_until: Mapped[datetime | None]
    finished_at: Mapped[datetime | None]
    dedupe_key: Mapped[str | None] = mapped_column(String(256))


class CredentialRow(Base):
    """A user's local password: its argon2 hash, never the password. ``failed_attempts``
    counts failed sign-ins since ``failures_since`` (the start of the attempt window): past
    the limit, sign-in is refused until the window ends, whatever the password."""

    __tablename__ = "credentials"

    user_id: Mapped[str] = mapped_column(ID, ForeignKey("users.id"), primary_key=True)
    password_hash: Mapped[str] = mapped_column(Text)
    changed_at: Mapped[datetime]
    changed_by: Mapped[str] = mapped_column(String(256))
    failed_attempts: Mapped[int] = mapped_column(Integer, default=0)
    failures_since: Mapped[datetime | None]


class ApiTokenRow(Base):
    """A bearer token of a user or service account: a sign-in session (``kind`` ``session``)
    or a token made for a script (``personal``, ``service``). Only the SHA-256 of its secret
    is kept (the secret is 32 random bytes: a slow hash adds nothing to that). ``scopes``:
    the ``pim.*`` permission patterns it may use (``*``: all its holder's); every token
    expires; a revoked one stays, as the record of what existed."""

    __tablename__ = "api_tokens"
    __table_args__ = (Index("ix_api_tokens_principal", "principal_id", "revoked_at"),)

    id: Mapped[str] = mapped_column(ID, primary_key=True)
    secret_hash: Mapped[str] = mapped_column(String(64))
    kind: Mapped[str] = mapped_column(String(16))
    principal_type: Mapped[str] = mapped_column(String(32))
    principal_id: Mapped[str] = mapped_column(ID)
    name: Mapped[str] = mapped_column(String(256))
    scopes: Mapped[list[str]]
    created_at: Mapped[datetime]
    created_by: Mapped[str] = mapped_column(String(256))
    expires_at: Mapped[datetime]
    last_used_at: Mapped[datetime | None]
    revoked_at: Mapped[datetime | None]
    revoked_by: Mapped[str | None] = mapped_column(String(256))


class ConnectorRow(Base):
    """A configured downstream system. ``config`` is the kind's validated settings (never a
    password); ``secret`` the credential as a Fernet token (``None``: none given), never
    returned nor audited. ``mode``: ``authoritative`` or ``report_only``. Disabled, never
    deleted; ``config_version`` grows with every change (dispatchers rebuild on it)."""

    __tablename__ = "connectors"

    id: Mapped[str] = mapped_column(ID, primary_key=True)
    name: Mapped[str] = mapped_column(String(128), unique=True)
    kind: Mapped[str] = mapped_column(String(32))
    config: Mapped[dict[str, Any]]
    secret: Mapped[str | None] = mapped_column(Text)
    mode: Mapped[str] = mapped_column(String(16))
    enabled: Mapped[bool] = mapped_column(Boolean)
    config_version: Mapped[int] = mapped_column(Integer)
    created_at: Mapped[datetime]
    created_by: Mapped[str] = mapped_column(String(256))
    updated_at: Mapped[datetime]
    updated_by: Mapped[str] = mapped_column(String(256))


class ConnectorMappingRow(Base):
    """A Pimlico target (``target_type``, ``object_id``, ``scope``) driving one downstream
    object of a connector. Ended (``ended_at``), never deleted."""

    __tablename__ = "connector_mappings"
    __table_args__ = (Index("ix_connector_mappings_connector", "connector_id", "ended_at"),)

    id: Mapped[str] = mapped_column(ID, primary_key=True)
    connector_id: Mapped[str] = mapped_column(ID, ForeignKey("connectors.id"))
    target_type: Mapped[str] = mapped_column(String(32))
    object_id: Mapped[str] = mapped_column(ID)
    scope: Mapped[str] = mapped_column(String(1024))
    downstream_object: Mapped[str] = mapped_column(String(1024))
    created_at: Mapped[datetime]
    created_by: Mapped[str] = mapped_column(String(256))
    ended_at: Mapped[datetime | None]
    ended_by: Mapped[str | None] = mapped_column(String(256))
    end_reason: Mapped[str | None] = mapped_column(Text)


class ProvisioningRow(Base):
    """What must be true downstream for one principal under one mapping, and how far it got.

    ``present``: whether the principal must be a member of the mapping's object. ``status``:
    ``pending`` (to do at ``due_at``; a dispatcher holds it while ``claimed_until`` is
    ahead), ``provisioned`` / ``revoked`` (done), ``failed`` (gave up after ``attempts``,
    ``last_error`` kept). ``generation`` grows with every change of ``present``: a
    dispatcher records its outcome only if the generation it worked on is still current.
    ``recheck_at``: for a present row, the earliest instant what backs it ends, when the
    dispatcher settles it again itself (revoking at the end instant without waiting for the
    end's event to travel through the outbox)."""

    __tablename__ = "provisioning"
    __table_args__ = (
        UniqueConstraint("mapping_id", "principal_id"),
        Index("ix_provisioning_status", "status", "due_at"),
        Index("ix_provisioning_principal", "principal_id"),
        Index("ix_provisioning_recheck_at", "recheck_at"),
    )

    id: Mapped[str] = mapped_column(ID, primary_key=True)
    mapping_id: Mapped[str] = mapped_column(ID, ForeignKey("connector_mappings.id"))
    principal_id: Mapped[str] = mapped_column(ID)
    present: Mapped[bool] = mapped_column(Boolean)
    status: Mapped[str] = mapped_column(String(16))
    generation: Mapped[int] = mapped_column(Integer)
    attempts: Mapped[int] = mapped_column(Integer)
    due_at: Mapped[datetime]
    claimed_by: Mapped[str | None] = mapped_column(String(128))
    claimed_until: Mapped[datetime | None]
    identity: Mapped[str | None] = mapped_column(String(1024))
    last_error: Mapped[str | None] = mapped_column(Text)
    recheck_at: Mapped[datetime | None]
    updated_at: Mapped[datetime]
