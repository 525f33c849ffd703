"""The revocation benchmark's downstream systems: PostgreSQL roles on a real server, and
``groupOfNames`` membership in a private slapd (``tests.connectors.slapd.Slapd``).

Each ``Downstream`` owns what it makes there — one object to provision into, one account per
Pimlico user, a few extra accounts Pimlico knows nothing of (for drift added by hand) — and
removes all of it when its ``with`` block ends, whatever happens: PostgreSQL roles (which are
cluster-wide, so named with a random prefix) are dropped, the slapd process is stopped and its
directory deleted. It reads and changes the object directly, never through a connector, so
what it reports is what the downstream system says. It must not know about the store.
"""

from __future__ import annotations

import secrets
import tempfile
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Protocol

import psycopg
from psycopg import sql
from sqlalchemy.engine import make_url
from tests.connectors.slapd import PEOPLE, SERVICE_DN, SERVICE_PASSWORD, Slapd, slapd_missing

from pimlico.connectors.ldap import canonical_dn

POSTGRES = "PostgreSQL roles"
LDAP = "LDAP groupOfNames (slapd)"
KINDS = (POSTGRES, LDAP)
_CHUNK = 1000
_PLACEHOLDER = "cn=nobody,dc=example,dc=org"
"""What the LDAP connector leaves in a group it empties (groupOfNames needs a member)."""


class Downstream(Protocol):
    """One downstream system, set up with its object, its users' accounts and extras."""

    kind: str
    """The connector kind that provisions into it (``postgres``, ``ldap``)."""
    config: dict[str, object]
    secret: str | None
    obj: str
    extras: list[str]
    """Identities of accounts no Pimlico user has (for drift added by hand)."""

    def identity(self, user_name: str) -> str: ...
    def members(self) -> set[str]: ...
    def add_by_hand(self, identities: Sequence[str]) -> None: ...
    def remove_by_hand(self, identities: Sequence[str]) -> None: ...


def why_missing(kind: str) -> str | None:
    return slapd_missing() if kind == LDAP else None


@contextmanager
def downstream(
    kind: str, *, admin_url: str, users: Sequence[str], extras: int
) -> Iterator[Downstream]:
    """``kind`` set up for ``users`` (Pimlico user names) and ``extras`` more accounts."""
    if kind == POSTGRES:
        with _postgres(admin_url, users, extras) as made:
            yield made
    else:
        with _ldap(users, extras) as found:
            yield found


class _Postgres:
    kind = "postgres"

    def __init__(self, conninfo: str, prefix: str, secret: str | None) -> None:
        self.conninfo = conninfo
        self.prefix = prefix
        self.secret = secret
        self.obj = f"{prefix}-object"
        self.extras: list[str] = []
        self.made: list[str] = []
        self.config: dict[str, object] = {
            "dsn": conninfo,
            "identity_template": prefix + "-{user_name}",
        }
        self._connection = (
            psycopg.connect(conninfo, password=secret, autocommit=True)
            if secret
            else psycopg.connect(conninfo, autocommit=True)
        )

    def identity(self, user_name: str) -> str:
        return f"{self.prefix}-{user_name}"

    def create(self, names: Sequence[str]) -> None:
        for start in range(0, len(names), _CHUNK):
            chunk = names[start : start + _CHUNK]
            self.made += chunk
            self._connection.execute(
                sql.SQL(";").join(
                    sql.SQL("CREATE ROLE {}").format(sql.Identifier(n)) for n in chunk
                )
            )

    def members(self) -> set[str]:
        rows = self._connection.execute(
            "SELECT m.rolname FROM pg_auth_members a JOIN pg_roles g ON g.oid = a.roleid "
            "JOIN pg_roles m ON m.oid = a.member WHERE g.rolname = %s",
            (self.obj,),
        ).fetchall()
        return {str(r[0]) for r in rows}

    def add_by_hand(self, identities: Sequence[str]) -> None:
        self._connection.execute(
            sql.SQL("GRANT {} TO {}").format(
                sql.Identifier(self.obj), sql.SQL(", ").join(map(sql.Identifier, identities))
            )
        )

    def remove_by_hand(self, identities: Sequence[str]) -> None:
        self._connection.execute(
            sql.SQL("REVOKE {} FROM {}").format(
                sql.Identifier(self.obj), sql.SQL(", ").join(map(sql.Identifier, identities))
            )
        )

    def drop(self) -> None:
        made = list(reversed(self.made))
        for start in range(0, len(made), _CHUNK):
            names = sql.SQL(", ").join(map(sql.Identifier, made[start : start + _CHUNK]))
            self._connection.execute(sql.SQL("DROP ROLE IF EXISTS {}").format(names))
        self._connection.close()


@contextmanager
def _postgres(admin_url: str, users: Sequence[str], extras: int) -> Iterator[_Postgres]:
    url = make_url(admin_url)
    conninfo = url.set(drivername="postgresql", password=None).render_as_string()
    made = _Postgres(conninfo, f"rv{secrets.token_hex(3)}", url.password)
    try:
        made.create([made.obj])
        made.extras = [f"{made.prefix}-extra-{i}" for i in range(extras)]
        made.create([made.identity(u) for u in users] + made.extras)
        yield made
    finally:
        made.drop()


class _Ldap:
    kind = "ldap"

    def __init__(self, server: Slapd) -> None:
        self.server = server
        self.secret: str | None = SERVICE_PASSWORD
        self.config: dict[str, object] = {
            "url": server.url,
            "bind_dn": SERVICE_DN,
            "user_base": PEOPLE,
            "empty_member_dn": _PLACEHOLDER,
        }
        self.obj = server.add_group("revocation", members=[_PLACEHOLDER])
        self.extras: list[str] = []

    def identity(self, user_name: str) -> str:
        return canonical_dn(f"uid={user_name},{PEOPLE}")

    def members(self) -> set[str]:
        # As stored: the connector writes canonical DNs, and so does this module (no
        # canonicalising of ten thousand values per poll, beside the dispatcher measured).
        return set(self.server.members(self.obj)) - {_PLACEHOLDER}

    def add_by_hand(self, identities: Sequence[str]) -> None:
        for identity in identities:
            self.server.add_member_by_hand(self.obj, identity)

    def remove_by_hand(self, identities: Sequence[str]) -> None:
        for identity in identities:
            self.server.remove_member_by_hand(self.obj, identity)


@contextmanager
def _ldap(users: Sequence[str], extras: int) -> Iterator[_Ldap]:
    with (
        tempfile.TemporaryDirectory(prefix="pimlico-bench-slapd-") as folder,
        Slapd(Path(folder), log_operations=False) as server,
    ):
        extra = [f"extra-{i}" for i in range(extras)]
        for start in range(0, len(users) + extras, _CHUNK):
            server.add_users([*users, *extra][start : start + _CHUNK])
        made = _Ldap(server)
        made.extras = [made.identity(u) for u in extra]
        yield made
