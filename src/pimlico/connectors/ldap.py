"""The LDAP connector: members of ``groupOfNames`` / ``groupOfUniqueNames`` groups, by user DN.

It owns talking to one directory with ``ldap3``: finding users' DNs (``resolve``), reading and
changing a group's member attribute, and turning every ``ldap3`` failure into a
``ConnectorError``. It knows nothing of assignments or the store (see ``connectors.base``).

- **Objects** are group DNs; the group's class picks the attribute (``groupOfNames`` →
  ``member``, ``groupOfUniqueNames`` → ``uniqueMember``). **Identities** are user DNs in the
  canonical form of ``canonical_dn`` (attribute types and values lower-cased, escapes made
  uniform, no spaces around separators), so that the DNs ``resolve`` returns equal those
  ``list_current`` returns whatever spelling the directory or an administrator used.
  Values are compared case-insensitively, as the usual naming attributes (``uid``, ``cn``,
  ``ou``, ``dc``, ``mail``) match in LDAP.
- ``grant``/``revoke`` read the group once and send ONE modify with every value that differs
  (add or delete), with the permissive-modify control so that a concurrent change of the same
  value is not an error. Ten thousand revocations are two round trips.
- These classes must keep at least one member. With ``empty_member_dn`` set, a revocation that
  would empty the group leaves that DN as its only member (``list_current`` never reports it,
  ``revoke`` never removes it). Without it such a revocation changes nothing and raises a
  non-retryable ``ConnectorError`` that says to set it.
- One connection per connector instance, opened on first use. A connection the server dropped
  (restart, idle timeout) is replaced and the operation retried once, transparently; a server
  that cannot be reached or does not answer within ``timeout_seconds`` is a retryable error.
  Bad credentials, a missing group or an entry that is not a group are not retryable.

Must not: log or echo the bind password, or send a filter or DN built by string pasting
without escaping.
"""

from __future__ import annotations

import re
import ssl
import warnings
from collections.abc import Callable, Collection, Mapping
from functools import partial
from pathlib import Path
from typing import Literal, TypeVar

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from pimlico.connectors.base import ConnectorError, Member

with warnings.catch_warnings():
    # ldap3 2.9.1, its latest release, imports pyasn1 names (tagMap, typeMap) that pyasn1 0.6.2
    # deprecates; the names still work. Silenced here so that importing us never warns.
    warnings.filterwarnings("ignore", r"\w+ is deprecated\. Please use", DeprecationWarning)
    import ldap3
    from ldap3.core import exceptions as ldap_errors
    from ldap3.utils.conv import escape_filter_chars
    from ldap3.utils.dn import escape_rdn, parse_dn

__all__ = ["LdapConfig", "LdapConnector", "build", "canonical_dn"]

RESOLVE_CHUNK = 200
"""Members per search in ``resolve``: an OR filter of this many terms stays well within the
default size limits of servers (500 entries for OpenLDAP)."""

_PERMISSIVE_MODIFY = ("1.2.840.113556.1.4.1413", False, None)
"""Adding a value already there or deleting one already gone succeeds (OpenLDAP, AD)."""

_MEMBER_ATTRIBUTE = {"groupofnames": "member", "groupofuniquenames": "uniqueMember"}

_RETRYABLE_RESULTS = frozenset({3, 51, 52})
"""timeLimitExceeded, busy, unavailable: the server may do it later."""

_ATTRIBUTE_NAME = re.compile(r"^(?:[A-Za-z][A-Za-z0-9-]*|[0-9]+(?:\.[0-9]+)+)$")

_UNREACHABLE = (
    ldap_errors.LDAPCommunicationError,
    ldap_errors.LDAPResponseTimeoutError,
    ConnectionError,
    TimeoutError,
)
"""A dropped connection, a refused one, no answer in time: the server may be back later."""

_UNTRUSTED = (ssl.SSLCertVerificationError, ldap_errors.LDAPCertificateError)
"""A certificate not signed by a trusted CA, or not for this host: a configuration problem.
(ldap3 raises classes derived from both its own error and the ``ssl`` one.)"""

_SPECIAL = re.compile(r'[\\+"<>;#\x00]')
_SIMPLE_RDN = re.compile(r"\s*([A-Za-z][A-Za-z0-9-]*)\s*=\s*([^,=\s](?:[^,=]*[^,=\s])?)\s*")
"""An RDN of one attribute whose value has nothing to escape (``_SPECIAL`` excluded first)."""

T = TypeVar("T")


class LdapConfig(BaseModel):
    """Where the directory is and how its users are found. The bind password is not here: it
    is the connector's secret, kept encrypted by Pimlico and passed to ``build``."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    url: str
    """``ldap://host[:port]`` or ``ldaps://host[:port]``."""
    bind_dn: str
    user_base: str
    """The subtree searched for users."""
    user_attribute: str = "uid"
    """The attribute whose value identifies a user (``uid``, ``mail``, ``sAMAccountName``)."""
    match: Literal["user_name", "email"] = "user_name"
    """Which field of a Pimlico principal is compared with ``user_attribute``."""
    start_tls: bool = False
    ca_file: Path | None = None
    """CA certificates for ``ldaps://`` and StartTLS; the system's trust store when unset.
    Certificates and host names are always verified."""
    timeout_seconds: int = Field(default=10, ge=1, le=300)
    """For connecting and for each answer (whole seconds: ldap3 sets SO_RCVTIMEO from it)."""
    empty_member_dn: str | None = None
    """The DN left as the only member of a group that revoking would empty (an entry of no
    one, e.g. ``cn=nobody,…``; it must exist where the server refuses dangling members)."""

    @field_validator("url")
    @classmethod
    def _url_scheme(cls, url: str) -> str:
        if not re.match(r"^ldaps?://[^/?#\s]+/?$", url, re.IGNORECASE):
            raise ValueError("must be ldap://host[:port] or ldaps://host[:port]")
        return url

    @field_validator("bind_dn", "user_base", "empty_member_dn")
    @classmethod
    def _valid_dn(cls, dn: str | None) -> str | None:
        if dn is not None:
            try:
                parse_dn(dn, escape=False, strip=True)
            except ldap_errors.LDAPInvalidDnError as error:
                raise ValueError(f"not a valid DN: {error}") from None
        return dn

    @field_validator("user_attribute")
    @classmethod
    def _valid_attribute(cls, name: str) -> str:
        if not _ATTRIBUTE_NAME.match(name):
            raise ValueError("must be an attribute name (letters, digits, hyphens) or an OID")
        return name

    @model_validator(mode="after")
    def _tls_once(self) -> LdapConfig:
        if self.start_tls and self.url.lower().startswith("ldaps://"):
            raise ValueError("start_tls is for ldap:// URLs; ldaps:// is TLS already")
        return self


def build(config: Mapping[str, object], secret: str | None) -> LdapConnector:
    """A connector from its stored configuration (validated here) and bind password.

    Building never connects. Without a password the connector is still built (so that a
    configuration can be checked before its secret is set), and each operation then fails
    with a non-retryable ``ConnectorError``."""
    return LdapConnector(LdapConfig.model_validate(dict(config)), password=secret)


def canonical_dn(dn: str) -> str:
    """``dn`` in one spelling per entry: ``UID=Alice , OU=People`` → ``uid=alice,ou=people``.

    Escapes are decoded and re-made uniformly (``\\2C`` and ``\\,`` are the same comma), the
    values of a multi-valued RDN are sorted. Raises ``ValueError`` for a malformed DN."""
    if not _SPECIAL.search(dn):
        # The usual DN (``uid=alice,ou=people,…``) needs no parser: the same result, 50 times
        # faster, which matters when a revocation compares ten thousand members.
        simple = [_SIMPLE_RDN.fullmatch(rdn) for rdn in dn.split(",")]
        if all(simple):
            return ",".join(f"{m[1].lower()}={m[2].lower()}" for m in simple if m)
    return _parsed_canonical_dn(dn)


def _parsed_canonical_dn(dn: str) -> str:
    try:
        parts = parse_dn(dn, escape=False, strip=True)
    except ldap_errors.LDAPInvalidDnError as error:
        raise ValueError(f"not a valid DN {dn!r}: {error}") from None
    rdns: list[list[str]] = [[]]
    for attribute, value, separator in parts:
        text = value.lower() if value.startswith("#") else escape_rdn(_unescape(value).lower())
        rdns[-1].append(f"{attribute.lower()}={text}")
        if separator == ",":
            rdns.append([])
    return ",".join("+".join(sorted(avas)) for avas in rdns if avas)


def _unescape(value: str) -> str:
    raw = bytearray()
    index = 0
    while index < len(value):
        char = value[index]
        if char == "\\" and index + 1 < len(value):
            pair = value[index + 1 : index + 3]
            if len(pair) == 2 and all(c in "0123456789abcdefABCDEF" for c in pair):
                raw += bytes.fromhex(pair)
                index += 3
                continue
            char = value[index + 1]
            index += 1
        raw += char.encode()
        index += 1
    return raw.decode("utf-8", errors="replace")


def _key(value: str) -> str:
    """The comparison key of a member value; one that is not a DN is compared as text."""
    try:
        return canonical_dn(value)
    except ValueError:
        return value.strip().lower()


class LdapConnector:
    """Group membership in one LDAP directory (see the module docstring)."""

    kind = "ldap"

    def __init__(self, config: LdapConfig, *, password: str | None) -> None:
        self.config = config
        self._password = password
        self._connection: ldap3.Connection | None = None
        self._placeholder = (
            _key(config.empty_member_dn) if config.empty_member_dn is not None else None
        )

    def resolve(self, members: Collection[Member]) -> dict[str, str | None]:
        """Each member's user DN, found by one OR search per ``RESOLVE_CHUNK`` members.

        ``None`` for a member with no value to match (no e-mail when matching by e-mail), with
        no entry under ``user_base``, or with more than one: an ambiguous match is refused
        rather than guessed."""
        found: dict[str, str | None] = {}
        wanted: dict[str, list[str]] = {}
        for member in members:
            value = member.user_name if self.config.match == "user_name" else member.email
            found[member.principal_id] = None
            if value:
                wanted.setdefault(value.strip().lower(), []).append(member.principal_id)
        values = sorted(wanted)
        for start in range(0, len(values), RESOLVE_CHUNK):
            chunk = values[start : start + RESOLVE_CHUNK]
            search = partial(self._search_users, values=chunk)
            for value, dn in self._run(search, about=f"users under {self.config.user_base}"):
                for principal_id in wanted[value]:
                    found[principal_id] = dn
        return found

    def grant(self, obj: str, identities: Collection[str]) -> None:
        """Add the identities ``obj`` does not have yet, in one modify (none if it has all)."""
        if identities:
            self._run(lambda c: self._change(c, obj, identities, add=True), about=obj)

    def revoke(self, obj: str, identities: Collection[str]) -> None:
        """Delete the identities ``obj`` has, in one modify; see ``empty_member_dn``."""
        if identities:
            self._run(lambda c: self._change(c, obj, identities, add=False), about=obj)

    def list_current(self, obj: str) -> frozenset[str]:
        """The canonical DNs of ``obj``'s members, without the ``empty_member_dn``."""
        _, values = self._run(lambda c: self._read_group(c, obj), about=obj)
        return frozenset(key for key in map(_key, values) if key != self._placeholder)

    def close(self) -> None:
        connection, self._connection = self._connection, None
        if connection is not None:
            _quietly_close(connection)

    # The directory operations, each given a bound connection by ``_run``.

    def _search_users(
        self, connection: ldap3.Connection, values: list[str]
    ) -> list[tuple[str, str]]:
        attribute = self.config.user_attribute
        terms = "".join(f"({attribute}={escape_filter_chars(value)})" for value in values)
        connection.search(
            self.config.user_base,
            f"(|{terms})",
            search_scope=ldap3.SUBTREE,
            attributes=[attribute],
        )
        entries: dict[str, list[str]] = {}
        for entry in connection.response or []:
            if entry.get("type") != "searchResEntry":
                continue  # a search reference: users are looked up in this server only
            dn = canonical_dn(entry["dn"])
            found = entry["attributes"].get(attribute, [])
            for value in [found] if isinstance(found, str) else found:
                matched = entries.setdefault(str(value).strip().lower(), [])
                if dn not in matched:
                    matched.append(dn)
        wanted = set(values)
        return [
            (value, dns[0]) for value, dns in entries.items() if value in wanted and len(dns) == 1
        ]

    def _read_group(self, connection: ldap3.Connection, obj: str) -> tuple[str, list[str]]:
        """The group's member attribute and its values as stored."""
        try:
            connection.search(
                obj,
                "(objectClass=*)",
                search_scope=ldap3.BASE,
                attributes=["objectClass", "member", "uniqueMember"],
            )
        except ldap_errors.LDAPNoSuchObjectResult:
            raise ConnectorError(f"no such LDAP group: {obj}", retryable=False) from None
        entry = next(
            (e for e in connection.response or [] if e.get("type") == "searchResEntry"), None
        )
        if entry is None:
            raise ConnectorError(f"no such LDAP group: {obj}", retryable=False)
        attributes = {name.lower(): value for name, value in entry["attributes"].items()}
        classes = {str(c).lower() for c in attributes.get("objectclass", [])}
        attribute = next((_MEMBER_ATTRIBUTE[c] for c in _MEMBER_ATTRIBUTE if c in classes), None)
        if attribute is None:
            raise ConnectorError(
                f"{obj} is not a groupOfNames or groupOfUniqueNames group", retryable=False
            )
        values = attributes.get(attribute.lower(), [])
        return attribute, [values] if isinstance(values, str) else [str(v) for v in values]

    def _change(
        self, connection: ldap3.Connection, obj: str, identities: Collection[str], *, add: bool
    ) -> None:
        attribute, values = self._read_group(connection, obj)
        current = {_key(value): value for value in values}
        changes: list[tuple[str, list[str]]] = []
        if add:
            missing: dict[str, str] = {}
            for identity in identities:
                key = _key(identity)
                if key not in current:
                    missing.setdefault(key, identity)
            if missing:
                changes.append((ldap3.MODIFY_ADD, list(missing.values())))
        else:
            wanted = {_key(identity) for identity in identities} - {self._placeholder}
            present = [current[key] for key in wanted if key in current]
            if not present:
                return
            if len(present) == len(current):
                if self.config.empty_member_dn is None:
                    raise ConnectorError(
                        f"revoking would leave {obj} with no member, which its class forbids; "
                        "set empty_member_dn to a DN to keep as its only member",
                        retryable=False,
                    )
                changes.append((ldap3.MODIFY_ADD, [self.config.empty_member_dn]))
            changes.append((ldap3.MODIFY_DELETE, present))
        if changes:
            connection.modify(  # type: ignore[no-untyped-call]  # the stubs leave it untyped
                obj, {attribute: changes}, controls=[_PERMISSIVE_MODIFY]
            )

    # Connections and errors.

    def _run(self, operation: Callable[[ldap3.Connection], T], *, about: str) -> T:
        """``operation`` on a bound connection, once more on a new one if the server dropped
        the old; every failure becomes a ``ConnectorError`` naming ``about``."""
        for attempt in (1, 2):
            reused = self._connection is not None
            try:
                return operation(self._connect())
            except ConnectorError:
                raise
            except _UNTRUSTED as error:
                self.close()
                raise ConnectorError(
                    f"LDAP server {self.config.url} presented a certificate that is not "
                    f"trusted (check ca_file and the host name): {error}",
                    retryable=False,
                ) from None
            except _UNREACHABLE as error:
                self.close()
                if reused and attempt == 1 and not isinstance(error, TimeoutError):
                    continue  # a connection the server dropped (a restart): one fresh try
                raise ConnectorError(
                    f"LDAP server {self.config.url} unreachable: {error}", retryable=True
                ) from None
            except ldap_errors.LDAPOperationResult as error:
                raise ConnectorError(
                    f"LDAP server {self.config.url} refused an operation on {about}: "
                    f"{error.description} ({error.result}) {error.message}".rstrip(),
                    retryable=error.result in _RETRYABLE_RESULTS,
                ) from None
            except ldap_errors.LDAPException as error:
                self.close()
                raise ConnectorError(
                    f"LDAP error with {self.config.url} on {about}: {error}", retryable=False
                ) from None
        raise AssertionError("unreachable")  # pragma: no cover

    def _connect(self) -> ldap3.Connection:
        if self._connection is not None:
            return self._connection
        config = self.config
        if not self._password:
            # ldap3 would send an "unauthenticated bind" with an empty password, which servers
            # accept as anonymous: refuse it rather than fail later with a puzzling error.
            raise ConnectorError(
                f"the LDAP connector to {config.url} has no bind password", retryable=False
            )
        tls = _VerifyingTls(
            validate=ssl.CERT_REQUIRED,
            ca_certs_file=str(config.ca_file) if config.ca_file else None,
        )
        server = ldap3.Server(
            config.url.rstrip("/"),
            get_info=ldap3.NONE,
            tls=tls,
            connect_timeout=config.timeout_seconds,
        )
        connection = ldap3.Connection(
            server,
            user=config.bind_dn,
            password=self._password,
            client_strategy=ldap3.SYNC,
            raise_exceptions=True,
            receive_timeout=config.timeout_seconds,
            auto_referrals=False,
        )
        try:
            connection.open()
            if config.start_tls:
                connection.start_tls()
            connection.bind()
        except ldap_errors.LDAPInvalidCredentialsResult:
            _quietly_close(connection)
            raise ConnectorError(
                f"LDAP server {config.url} refused the credentials of {config.bind_dn}",
                retryable=False,
            ) from None
        except BaseException:
            _quietly_close(connection)
            raise
        self._connection = connection
        return connection


class _VerifyingTls(ldap3.Tls):
    """TLS with Python's defaults: the certificate chain and the host name (or IP address) are
    checked during the handshake, so a failed check also closes the socket. (ldap3 checks
    the name after the handshake and then leaves the TLS socket open.)"""

    def wrap_socket(self, connection: ldap3.Connection, do_handshake: bool = False) -> None:
        context = ssl.create_default_context(cafile=self.ca_certs_file)
        connection.socket = context.wrap_socket(
            connection.socket,
            server_hostname=connection.server.host,
            do_handshake_on_connect=do_handshake,
        )


def _quietly_close(connection: ldap3.Connection) -> None:
    """Unbind if the server still listens; close the socket in any case."""
    try:
        connection.unbind()
    except (ldap_errors.LDAPException, OSError):
        pass  # never opened, or dropped by the server already
    finally:
        # ldap3 keeps the socket open when the unbind could not be sent or a receive failed.
        sock = connection.socket
        if sock is not None:
            sock.close()
            connection.socket = None
