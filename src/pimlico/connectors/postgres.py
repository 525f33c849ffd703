"""The PostgreSQL-roles connector: just-in-time database access by role membership.

A mapping's object is a PostgreSQL role (``mail_purge``); its members are login roles, one per
Pimlico user, named by ``identity_template`` (default ``{user_name}``). ``grant`` is one
``GRANT obj TO a, b, …`` for those not already members, ``revoke`` one ``REVOKE obj FROM …``
for those that are, ``list_current`` reads ``pg_auth_members``. Every name is quoted with
``psycopg.sql.Identifier``: nothing a user typed is ever spliced into SQL.

Configuration: ``dsn`` (a libpq connection string or URI, without a password: the password is
the connector's secret, kept sealed by Pimlico) and ``identity_template``. The connection is
opened on first use (``build`` never connects: configuration is validated offline), in
autocommit, and dropped after any error so the next call starts afresh.

Errors become ``ConnectorError``: a lost or refused connection, an admin shutdown, too many
connections, a serialization failure are retryable; an unknown role, missing privileges, bad
credentials are not (trying again changes nothing until someone fixes the configuration).
"""

from __future__ import annotations

from collections.abc import Collection, Iterator, Mapping
from contextlib import contextmanager
from typing import Any

import psycopg
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict
from pydantic import BaseModel, ConfigDict, Field, field_validator

from pimlico.connectors.base import Connector, ConnectorError, Member

KIND = "postgres"
_FIELDS = ("user_name", "email", "display_name", "principal_id")
_RETRYABLE_CLASSES = ("08", "40", "53", "57", "58")
"""SQLSTATE classes worth retrying: connection exceptions, transaction rollbacks
(serialization, deadlock), insufficient resources, operator intervention (shutdown),
system errors."""
_NOT_RETRYABLE_STATES = frozenset({"28000", "28P01", "3D000"})
"""Bad credentials and an unknown database: the configuration must change first."""

_MEMBERS = """
SELECT m.rolname FROM pg_auth_members am
JOIN pg_roles g ON g.oid = am.roleid
JOIN pg_roles m ON m.oid = am.member
WHERE g.rolname = %s
"""


class PostgresConfig(BaseModel):
    """The settings of a PostgreSQL-roles connector."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    dsn: str = Field(min_length=1, description="libpq connection string or URI, no password")
    identity_template: str = Field(
        default="{user_name}",
        min_length=1,
        description="The login role of a member: {user_name}, {email}, {principal_id}, …",
    )
    connect_timeout: int = Field(default=5, ge=1, le=120)

    @field_validator("dsn")
    @classmethod
    def _no_password(cls, value: str) -> str:
        try:
            parsed = conninfo_to_dict(value)
        except psycopg.ProgrammingError as error:
            raise ValueError(f"not a connection string: {error}") from None
        if parsed.get("password"):
            raise ValueError("must not hold a password: give it as the connector's secret")
        return value

    @field_validator("identity_template")
    @classmethod
    def _known_fields(cls, value: str) -> str:
        try:
            value.format(**dict.fromkeys(_FIELDS, "x"))
        except (KeyError, IndexError, ValueError) as error:
            raise ValueError(
                f"may use only {', '.join('{' + f + '}' for f in _FIELDS)} ({error})"
            ) from None
        return value


class PostgresRoles:
    """Members of PostgreSQL roles (see the module docstring)."""

    kind = KIND

    def __init__(self, config: PostgresConfig, password: str | None) -> None:
        self.config = config
        self._password = password
        self._connection: psycopg.Connection[Any] | None = None

    # -- the contract -------------------------------------------------------------------

    def resolve(self, members: Collection[Member]) -> dict[str, str | None]:
        wanted = {m.principal_id: self._identity(m) for m in members}
        names = sorted({n for n in wanted.values() if n is not None})
        with self._cursor() as cursor:
            cursor.execute("SELECT rolname FROM pg_roles WHERE rolname = ANY(%s)", (names,))
            existing = {row[0] for row in cursor.fetchall()}
        return {pid: (n if n in existing else None) for pid, n in wanted.items()}

    def grant(self, obj: str, identities: Collection[str]) -> None:
        if not identities:
            return
        with self._cursor() as cursor:
            missing = sorted(set(identities) - self._members(cursor, obj))
            if missing:
                cursor.execute(
                    sql.SQL("GRANT {} TO {}").format(sql.Identifier(obj), _names(missing))
                )

    def revoke(self, obj: str, identities: Collection[str]) -> None:
        if not identities:
            return
        with self._cursor() as cursor:
            present = sorted(set(identities) & self._members(cursor, obj))
            if present:
                cursor.execute(
                    sql.SQL("REVOKE {} FROM {}").format(sql.Identifier(obj), _names(present))
                )

    def list_current(self, obj: str) -> frozenset[str] | None:
        with self._cursor() as cursor:
            return frozenset(self._members(cursor, obj))

    def close(self) -> None:
        if self._connection is not None:
            connection, self._connection = self._connection, None
            connection.close()

    # -- internals ----------------------------------------------------------------------

    def _identity(self, member: Member) -> str | None:
        values = {
            "user_name": member.user_name,
            "email": member.email,
            "display_name": member.display_name,
            "principal_id": member.principal_id,
        }
        try:
            return (
                self.config.identity_template.format(
                    **{k: ("" if v is None else v) for k, v in values.items()}
                )
                or None
            )
        except (KeyError, IndexError, ValueError):
            return None

    def _members(self, cursor: psycopg.Cursor[Any], obj: str) -> set[str]:
        cursor.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", (obj,))
        if cursor.fetchone() is None:
            raise ConnectorError(f"no role {obj!r} in the database", retryable=False)
        cursor.execute(_MEMBERS, (obj,))
        return {row[0] for row in cursor.fetchall()}

    @contextmanager
    def _cursor(self) -> Iterator[psycopg.Cursor[Any]]:
        try:
            if self._connection is None or self._connection.closed:
                self._connection = psycopg.connect(
                    self.config.dsn,
                    password=self._password,
                    autocommit=True,
                    connect_timeout=self.config.connect_timeout,
                )
            with self._connection.cursor() as cursor:
                yield cursor
        except ConnectorError:
            raise
        except psycopg.Error as error:
            self.close()
            raise _mapped(error) from error
        except OSError as error:
            self.close()
            raise ConnectorError(f"PostgreSQL unreachable: {error}", retryable=True) from error


def _names(identities: list[str]) -> sql.Composed:
    return sql.SQL(", ").join(sql.Identifier(i) for i in identities)


def _mapped(error: psycopg.Error) -> ConnectorError:
    state = error.sqlstate or ""
    message = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
    if state in _NOT_RETRYABLE_STATES or "authentication failed" in message:
        retryable = False
    elif state == "23505" or "concurrently" in message:
        # Two GRANTs of one membership at once (a reconcile pass beside a dispatcher): the
        # loser sees a duplicate key or "tuple concurrently updated"; again, it finds it done.
        retryable = True
    elif state:
        retryable = state[:2] in _RETRYABLE_CLASSES
    else:  # no SQLSTATE: the connection itself failed (refused, timed out, lost)
        retryable = isinstance(error, psycopg.OperationalError | psycopg.InterfaceError)
    return ConnectorError(f"PostgreSQL: {message}", retryable=retryable)


def build(config: Mapping[str, object], secret: str | None) -> Connector:
    """A PostgreSQL-roles connector for ``config`` (validated: ``pydantic.ValidationError``
    if it breaks a rule), with ``secret`` as the password. Does not connect."""
    return PostgresRoles(PostgresConfig.model_validate(dict(config)), secret)
