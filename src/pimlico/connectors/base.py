"""What every connector is: the contract between Pimlico's provisioning and a downstream system.

A connector keeps the members of downstream *objects* (an LDAP group, a PostgreSQL role, a SCIM
group, a webhook receiver's notion of a group) equal to what Pimlico says is in force. It is a
small adapter and knows nothing of assignments, requests or the store: provisioning (jobs) and
reconciliation decide *what* must be true and call it with downstream names only.

Names:
- an **object** is the downstream thing a mapping drives, named as that system names it
  (``cn=mail-purge,ou=groups,dc=example,dc=org``; ``mail_purge``; a SCIM group id);
- an **identity** is how that system names a member (a user DN; a role name; a SCIM user id).
  ``resolve`` turns a Pimlico principal into its identity there; ``None`` when it has no
  account there, which provisioning reports as a failure of that principal, not of the batch.

Every operation is idempotent and set-based: granting an identity that is already a member, or
revoking one that is not, succeeds and changes nothing; many identities go in one call, so that
ten thousand revocations falling due in the same second cost a few downstream round trips, not
ten thousand. ``list_current`` answers ``None`` when the system cannot list members (a webhook),
and reconciliation then only reports.

Errors: a connector raises ``ConnectorError`` for anything the downstream system refused or
could not be reached for, never a library's own exception. ``retryable`` says whether trying
again later may succeed (a connection refused, a timeout, a 5xx) or not (no such object, bad
credentials, a 4xx). Connectors are synchronous and are called from the worker's threads; a
connector instance is used by one thread at a time and is closed with ``close``.

This module imports only the standard library.
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass
from typing import Protocol


@dataclass(frozen=True, slots=True)
class Member:
    """A Pimlico principal, as much of it as a downstream system may use to find its account."""

    principal_id: str
    user_name: str
    email: str | None = None
    display_name: str | None = None


class ConnectorError(Exception):
    """The downstream system refused the operation or could not be reached.

    ``retryable`` is true when trying again later may succeed (an outage, a timeout, a 5xx)."""

    def __init__(self, message: str, *, retryable: bool) -> None:
        super().__init__(message)
        self.retryable = retryable


class Connector(Protocol):
    """A downstream system whose objects' members Pimlico manages."""

    kind: str
    """The connector's kind, as configured: ``ldap``, ``postgres``, ``scim`` or ``webhook``."""

    def resolve(self, members: Collection[Member]) -> dict[str, str | None]:
        """Each member's identity downstream, by ``principal_id``; ``None`` if it has none."""
        ...

    def grant(self, obj: str, identities: Collection[str]) -> None:
        """Make every identity a member of ``obj`` (those already members stay as they are)."""
        ...

    def revoke(self, obj: str, identities: Collection[str]) -> None:
        """Make no identity a member of ``obj`` (those not members are left alone)."""
        ...

    def list_current(self, obj: str) -> frozenset[str] | None:
        """The identities that are members of ``obj`` now; ``None`` if the system cannot say."""
        ...

    def close(self) -> None:
        """Release connections. The instance is not used afterwards."""
        ...
