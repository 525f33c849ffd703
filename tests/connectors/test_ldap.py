"""The LDAP connector against a real OpenLDAP slapd: membership, resolution, errors, recovery."""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import ValidationError

from pimlico.connectors.base import ConnectorError, Member
from pimlico.connectors.ldap import (
    RESOLVE_CHUNK,
    LdapConnector,
    _parsed_canonical_dn,
    build,
    canonical_dn,
)
from tests.connectors.slapd import (
    PEOPLE,
    READER_DN,
    READER_PASSWORD,
    SERVICE_DN,
    SERVICE_PASSWORD,
    Slapd,
)

Connect = Callable[..., LdapConnector]
PLACEHOLDER = "cn=nobody,dc=example,dc=org"


@pytest.fixture
def connect(slapd: Slapd) -> Iterator[Connect]:
    """Build connectors to the test server (config overrides as keywords); close them after."""
    made: list[LdapConnector] = []

    def make(*, secret: str | None = SERVICE_PASSWORD, **overrides: object) -> LdapConnector:
        config: dict[str, object] = {"url": slapd.url, "bind_dn": SERVICE_DN, "user_base": PEOPLE}
        config.update(overrides)
        connector = build(config, secret)
        made.append(connector)
        return connector

    yield make
    for connector in made:
        connector.close()


def users(slapd: Slapd, *uids: str) -> list[str]:
    """Add users; their identities as the connector names them."""
    return [canonical_dn(dn) for dn in slapd.add_users(uids)]


def test_grant_adds_the_missing_members_in_one_modify(slapd: Slapd, connect: Connect) -> None:
    alice, bob, carol = users(slapd, "alice", "bob", "carol")
    group = slapd.add_group("purge", members=[alice])

    connect().grant(group, [alice, bob, carol])

    assert slapd.members(group) == {alice, bob, carol}
    assert slapd.modify_count(group) == 1


def test_a_second_identical_grant_changes_nothing(slapd: Slapd, connect: Connect) -> None:
    alice, bob = users(slapd, "alice", "bob")
    group = slapd.add_group("purge", members=[alice])
    connector = connect()
    connector.grant(group, [bob])

    connector.grant(group, [bob, alice])

    assert slapd.members(group) == {alice, bob}
    assert slapd.modify_count(group) == 1
    assert slapd.operation_count("BIND", SERVICE_DN) == 1  # one connection, kept


def test_revoke_removes_the_members(slapd: Slapd, connect: Connect) -> None:
    alice, bob, carol = users(slapd, "alice", "bob", "carol")
    group = slapd.add_group("purge", members=[alice, bob, carol])

    connect().revoke(group, [bob, carol])

    assert slapd.members(group) == {alice}
    assert slapd.modify_count(group) == 1


def test_revoking_a_non_member_changes_nothing(slapd: Slapd, connect: Connect) -> None:
    alice, bob = users(slapd, "alice", "bob")
    group = slapd.add_group("purge", members=[alice])

    connect().revoke(group, [bob])

    assert slapd.members(group) == {alice}
    assert slapd.modify_count(group) == 0


def test_group_of_unique_names_is_managed_through_unique_member(
    slapd: Slapd, connect: Connect
) -> None:
    alice, bob, carol = users(slapd, "alice", "bob", "carol")
    group = slapd.add_group("purge", members=[alice], object_class="groupOfUniqueNames")
    connector = connect()

    connector.grant(group, [bob, carol])
    connector.revoke(group, [alice])

    assert slapd.members(group) == {bob, carol}
    assert connector.list_current(group) == {bob, carol}


def test_emptying_a_group_leaves_the_placeholder_which_is_never_reported(
    slapd: Slapd, connect: Connect
) -> None:
    alice, bob = users(slapd, "alice", "bob")
    group = slapd.add_group("purge", members=[alice, bob])
    connector = connect(empty_member_dn=PLACEHOLDER)

    connector.revoke(group, [alice, bob])
    assert slapd.members(group) == {PLACEHOLDER}
    assert connector.list_current(group) == frozenset()
    assert slapd.modify_count(group) == 1

    connector.revoke(group, [PLACEHOLDER.upper()])
    connector.grant(group, [alice])
    assert slapd.members(group) == {PLACEHOLDER, alice}
    assert connector.list_current(group) == {alice}


def test_emptying_a_group_without_a_placeholder_is_refused_and_changes_nothing(
    slapd: Slapd, connect: Connect
) -> None:
    (alice,) = users(slapd, "alice")
    group = slapd.add_group("purge", members=[alice])

    with pytest.raises(ConnectorError, match="empty_member_dn") as caught:
        connect().revoke(group, [alice])

    assert not caught.value.retryable
    assert group in str(caught.value)
    assert slapd.members(group) == {alice}


def test_resolve_finds_users_by_uid_and_none_for_unknown_users(
    slapd: Slapd, connect: Connect
) -> None:
    alice, bob = users(slapd, "alice", "bob")

    found = connect().resolve([Member("p1", "alice"), Member("p2", "BOB"), Member("p3", "mallory")])

    assert found == {"p1": alice, "p2": bob, "p3": None}


def test_resolve_by_email_matches_the_mail_attribute(slapd: Slapd, connect: Connect) -> None:
    alice = canonical_dn(slapd.add_user("alice", mail="Alice.Smith@example.org"))
    slapd.add_user("twin1", mail="twin@example.org")
    slapd.add_user("twin2", mail="twin@example.org")

    found = connect(user_attribute="mail", match="email").resolve(
        [
            Member("p1", "asmith", email="alice.smith@example.org"),
            Member("p2", "nomail"),
            Member("p3", "twin", email="twin@example.org"),
            Member("p4", "ghost", email="ghost@example.org"),
        ]
    )

    assert found == {"p1": alice, "p2": None, "p3": None, "p4": None}


def test_resolve_escapes_filter_characters(slapd: Slapd, connect: Connect) -> None:
    users(slapd, "alice", "bob")

    found = connect().resolve([Member("p1", "*"), Member("p2", "alice)(uid=bob")])

    assert found == {"p1": None, "p2": None}


def test_identities_from_list_current_equal_those_from_resolve_whatever_the_spelling(
    slapd: Slapd, connect: Connect
) -> None:
    users(slapd, "alice", "bob")
    group = slapd.add_group("purge", members=["UID=Alice, OU=People,DC=Example,DC=Org"])
    slapd.add_member_by_hand(group, "uid=BOB,ou=people, DC=example,dc=org")
    connector = connect()

    resolved = connector.resolve([Member("p1", "alice"), Member("p2", "bob")])

    assert connector.list_current(group) == {resolved["p1"], resolved["p2"]}
    connector.grant(group, [resolved["p1"] or ""])
    assert slapd.modify_count(group) == 1  # only the hand-made change
    connector.revoke(group, [resolved["p2"] or ""])
    assert connector.list_current(group) == {resolved["p1"]}


def test_members_added_and_removed_by_hand_show_in_list_current(
    slapd: Slapd, connect: Connect
) -> None:
    alice, bob, carol = users(slapd, "alice", "bob", "carol")
    group = slapd.add_group("purge", members=[alice, bob])
    connector = connect()

    slapd.add_member_by_hand(group, carol)
    slapd.remove_member_by_hand(group, alice)

    assert connector.list_current(group) == {bob, carol}


def test_two_thousand_members_are_granted_and_revoked_in_one_modify_each(
    slapd: Slapd, connect: Connect
) -> None:
    uids = [f"user{n:04d}" for n in range(2000)]
    identities = [canonical_dn(dn) for dn in slapd.add_users(uids)]
    owner = canonical_dn(slapd.add_user("owner"))
    group = slapd.add_group("bulk", members=[owner])
    connector = connect()

    resolved = connector.resolve([Member(uid, uid) for uid in uids])
    assert [resolved[uid] for uid in uids] == identities
    assert slapd.operation_count("SRCH", PEOPLE) == math.ceil(len(uids) / RESOLVE_CHUNK) > 1

    connector.grant(group, identities)
    assert slapd.members(group) == {owner, *identities}
    assert slapd.modify_count(group) == 1

    connector.revoke(group, identities)
    assert slapd.members(group) == {owner}
    assert slapd.modify_count(group) == 2


def test_a_stopped_server_is_a_retryable_error_and_a_restarted_one_works_again(
    slapd: Slapd, connect: Connect
) -> None:
    alice, bob = users(slapd, "alice", "bob")
    group = slapd.add_group("purge", members=[alice])
    connector = connect()
    assert connector.list_current(group) == {alice}

    slapd.stop()
    with pytest.raises(ConnectorError) as caught:
        connector.grant(group, [bob])
    assert caught.value.retryable

    slapd.start()
    connector.grant(group, [bob])
    assert slapd.members(group) == {alice, bob}
    assert slapd.operation_count("BIND", SERVICE_DN) == 2


def test_a_restart_between_calls_is_invisible_to_the_caller(slapd: Slapd, connect: Connect) -> None:
    alice, bob = users(slapd, "alice", "bob")
    group = slapd.add_group("purge", members=[alice])
    connector = connect()
    assert connector.list_current(group) == {alice}

    slapd.restart()

    connector.grant(group, [bob])
    assert slapd.members(group) == {alice, bob}
    assert slapd.operation_count("BIND", SERVICE_DN) == 2


def test_a_server_that_does_not_answer_is_a_retryable_timeout(
    slapd: Slapd, connect: Connect
) -> None:
    (alice,) = users(slapd, "alice")
    group = slapd.add_group("purge", members=[alice])
    connector = connect(timeout_seconds=1)

    slapd.pause()
    try:
        with pytest.raises(ConnectorError, match="timed out") as caught:
            connector.list_current(group)
    finally:
        slapd.resume()

    assert caught.value.retryable
    assert connector.list_current(group) == {alice}


def test_a_wrong_password_is_not_retryable(slapd: Slapd, connect: Connect) -> None:
    (alice,) = users(slapd, "alice")
    group = slapd.add_group("purge", members=[alice])

    with pytest.raises(ConnectorError, match="credentials") as caught:
        connect(secret="not-the-password").list_current(group)

    assert not caught.value.retryable


def test_an_account_without_write_access_is_refused_not_retryably_naming_the_group(
    slapd: Slapd, connect: Connect
) -> None:
    alice, bob = users(slapd, "alice", "bob")
    group = slapd.add_group("purge", members=[alice])
    reader = connect(bind_dn=READER_DN, secret=READER_PASSWORD)
    assert reader.list_current(group) == {alice}

    with pytest.raises(ConnectorError, match="insufficientAccessRights") as caught:
        reader.grant(group, [bob])

    assert not caught.value.retryable
    assert group in str(caught.value)
    assert slapd.members(group) == {alice}


def test_a_missing_group_is_not_retryable_and_named(slapd: Slapd, connect: Connect) -> None:
    (alice,) = users(slapd, "alice")
    missing = "cn=no-such-group,ou=groups,dc=example,dc=org"

    with pytest.raises(ConnectorError, match="no such LDAP group") as caught:
        connect().grant(missing, [alice])

    assert not caught.value.retryable
    assert missing in str(caught.value)


def test_an_entry_that_is_not_a_group_is_not_retryable(slapd: Slapd, connect: Connect) -> None:
    alice, bob = users(slapd, "alice", "bob")

    with pytest.raises(ConnectorError, match="not a groupOfNames") as caught:
        connect().grant(alice, [bob])

    assert not caught.value.retryable
    assert alice in str(caught.value)


def test_start_tls_and_ldaps_verify_the_server_certificate(
    tmp_path: Path, connect: Connect
) -> None:
    with Slapd(tmp_path / "tls", tls=True) as server:
        (alice,) = [canonical_dn(dn) for dn in server.add_users(["alice"])]
        ca = str(server.ca_file)
        by_start_tls = connect(url=server.url, start_tls=True, ca_file=ca)
        by_ldaps = connect(url=server.ldaps_url, ca_file=ca)
        untrusted = connect(url=server.ldaps_url)
        wrong_host = connect(url=server.url.replace("127.0.0.1", "localhost"), start_tls=True)

        assert by_start_tls.resolve([Member("p1", "alice")]) == {"p1": alice}
        assert by_ldaps.resolve([Member("p1", "alice")]) == {"p1": alice}
        for connector in (untrusted, wrong_host):
            with pytest.raises(ConnectorError, match="not trusted") as caught:
                connector.resolve([Member("p1", "alice")])
            assert not caught.value.retryable


# Configuration, without a server.

BASE_CONFIG = {"url": "ldap://127.0.0.1:389", "bind_dn": SERVICE_DN, "user_base": PEOPLE}


@pytest.mark.parametrize(
    "override",
    [
        {"url": "http://ldap.example.org"},
        {"url": "ldap://ldap.example.org/dc=example?uid"},
        {"bind_dn": "not a dn"},
        {"user_attribute": "uid)(objectClass=*"},
        {"match": "display_name"},
        {"timeout_seconds": 0},
        {"url": "ldaps://ldap.example.org", "start_tls": True},
        {"password": "in the config"},
    ],
)
def test_invalid_configurations_are_refused(override: dict[str, object]) -> None:
    with pytest.raises(ValidationError):
        build({**BASE_CONFIG, **override}, "secret")


@pytest.mark.parametrize("secret", [None, ""])
def test_without_a_bind_password_operations_are_refused_rather_than_binding_anonymously(
    slapd: Slapd, connect: Connect, secret: str | None
) -> None:
    (alice,) = users(slapd, "alice")
    group = slapd.add_group("purge", members=[alice])
    connector = connect(secret=secret)

    with pytest.raises(ConnectorError, match="no bind password") as caught:
        connector.list_current(group)

    assert not caught.value.retryable


@pytest.mark.parametrize(
    ("spelling", "canonical"),
    [
        ("UID=Alice , OU=People,DC=Example,DC=Org", "uid=alice,ou=people,dc=example,dc=org"),
        (r"cn=Smith\2C John,dc=org", r"cn=smith\, john,dc=org"),
        (r"cn=Smith\, John,dc=org", r"cn=smith\, john,dc=org"),
        ("cn=b+uid=A,dc=org", "cn=b+uid=a,dc=org"),
        ("uid=A+cn=B,dc=org", "cn=b+uid=a,dc=org"),
        (r"cn=J\C3\BCrgen,dc=org", "cn=jürgen,dc=org"),
    ],
)
def test_canonical_dn_gives_one_spelling_per_entry(spelling: str, canonical: str) -> None:
    assert canonical_dn(spelling) == canonical


@given(
    st.lists(
        st.tuples(
            st.sampled_from(["uid", "CN", "ou", "dc", "x-Attr1"]),
            st.text(alphabet='aZé 09-_.,=+#;<>\\"@*', min_size=1, max_size=8),
            st.sampled_from(["", " "]),
        ),
        min_size=1,
        max_size=4,
    )
)
def test_the_quick_path_of_canonical_dn_agrees_with_the_parser(
    rdns: list[tuple[str, str, str]],
) -> None:
    dn = ",".join(f"{space}{attribute}{space}={space}{value}" for attribute, value, space in rdns)
    try:
        expected = _parsed_canonical_dn(dn)
    except ValueError:
        with pytest.raises(ValueError, match="not a valid DN"):
            canonical_dn(dn)
    else:
        assert canonical_dn(dn) == expected
