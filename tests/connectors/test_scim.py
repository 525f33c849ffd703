"""The SCIM connector against a real SCIM 2.0 server (scim2-server) on loopback."""

from __future__ import annotations

from collections.abc import Iterator

import pydantic
import pytest

from pimlico.connectors import scim as scim_module
from pimlico.connectors.base import ConnectorError, Member
from pimlico.connectors.scim import FILTER_BATCH, ScimConnector, build
from tests.connectors.scim_server import ScimServer, Seen


@pytest.fixture
def scim() -> Iterator[ScimServer]:
    with ScimServer() as server:
        yield server


@pytest.fixture
def connector(scim: ScimServer) -> Iterator[ScimConnector]:
    connector = build(scim.config(), scim.token)
    yield connector
    connector.close()


def patches(scim: ScimServer) -> list[Seen]:
    return [seen for seen in scim.requests if seen.method == "PATCH"]


def test_grant_adds_every_identity_with_one_patch(
    scim: ScimServer, connector: ScimConnector
) -> None:
    users = [scim.create_user(name) for name in ("alex", "bob", "carol")]
    group = scim.create_group("mail-purge")
    scim.requests.clear()

    connector.grant(group, users)

    assert scim.members(group) == frozenset(users)
    assert [seen.path for seen in patches(scim)] == [f"/Groups/{group}"]


def test_granting_members_again_changes_nothing(scim: ScimServer, connector: ScimConnector) -> None:
    alex, bob = scim.create_user("alex"), scim.create_user("bob")
    group = scim.create_group("mail-purge", members=[alex])

    connector.grant(group, [alex, bob])
    connector.grant(group, [alex, bob, alex])

    assert scim.members(group) == {alex, bob}
    assert connector.list_current(group) == {alex, bob}


def test_revoke_removes_the_identities_and_leaves_the_others(
    scim: ScimServer, connector: ScimConnector
) -> None:
    alex, bob, carol = (scim.create_user(name) for name in ("alex", "bob", "carol"))
    group = scim.create_group("mail-purge", members=[alex, bob, carol])
    scim.requests.clear()

    connector.revoke(group, [alex, carol])

    assert scim.members(group) == {bob}
    assert len(patches(scim)) == 1


def test_revoking_a_non_member_succeeds_and_changes_nothing(
    scim: ScimServer, connector: ScimConnector
) -> None:
    alex, bob = scim.create_user("alex"), scim.create_user("bob")
    group = scim.create_group("mail-purge", members=[alex])

    connector.revoke(group, [bob])
    connector.revoke(group, ["no-such-user"])

    assert scim.members(group) == {alex}


def test_revoking_the_last_member_leaves_an_empty_group(
    scim: ScimServer, connector: ScimConnector
) -> None:
    alex = scim.create_user("alex")
    group = scim.create_group("mail-purge", members=[alex])

    connector.revoke(group, [alex])

    assert connector.list_current(group) == frozenset()


def test_no_identities_sends_nothing(scim: ScimServer, connector: ScimConnector) -> None:
    group = scim.create_group("mail-purge")
    scim.requests.clear()

    connector.grant(group, [])
    connector.revoke(group, set())

    assert scim.requests == []


def test_list_current_sees_members_added_and_removed_by_hand(
    scim: ScimServer, connector: ScimConnector
) -> None:
    alex, bob = scim.create_user("alex"), scim.create_user("bob")
    group = scim.create_group("mail-purge", members=[alex])

    scim.add_member_by_hand(group, bob)
    assert connector.list_current(group) == {alex, bob}

    scim.remove_member_by_hand(group, alex)
    assert connector.list_current(group) == {bob}


def test_two_hundred_members_go_in_and_out_with_one_patch_each(
    scim: ScimServer, connector: ScimConnector
) -> None:
    # (200, not more: the test server checks every member against every term of the remove
    # filter, so its time grows with their product — 500 took 3 s, near the 5 s timeout on a
    # loaded machine.)
    ids = scim.create_users((f"user{n:03}", None) for n in range(200))
    group = scim.create_group("mail-purge")
    scim.requests.clear()

    connector.grant(group, ids.values())
    assert len(patches(scim)) == 1
    assert connector.list_current(group) == frozenset(ids.values())

    scim.requests.clear()
    connector.revoke(group, ids.values())
    assert len(patches(scim)) == 1
    assert scim.members(group) == frozenset()


def test_resolve_by_user_name_ignores_case_and_answers_none_for_strangers(
    scim: ScimServer, connector: ScimConnector
) -> None:
    alex = scim.create_user("Alex")
    odd = scim.create_user('o"brien\\x')
    members = [
        Member(principal_id="p-alex", user_name="alex"),
        Member(principal_id="p-odd", user_name='o"brien\\x'),
        Member(principal_id="p-stranger", user_name="stranger"),
        Member(principal_id="p-injection", user_name='x" or userName pr or userName eq "y'),
    ]

    assert connector.resolve(members) == {
        "p-alex": alex,
        "p-odd": odd,
        "p-stranger": None,
        "p-injection": None,
    }


def test_resolve_by_email_and_an_ambiguous_email_resolves_to_nobody(scim: ScimServer) -> None:
    alex = scim.create_user("alex", email="alex@example.org")
    scim.create_user("bob", email="shared@example.org")
    scim.create_user("bob2", email="shared@example.org")
    connector = build(scim.config(match="email"), scim.token)
    try:
        resolved = connector.resolve(
            [
                Member(principal_id="p-alex", user_name="whatever", email="ALEX@example.org"),
                Member(principal_id="p-shared", user_name="bob", email="shared@example.org"),
                Member(principal_id="p-none", user_name="carol", email=None),
                Member(principal_id="p-gone", user_name="dan", email="dan@example.org"),
            ]
        )
    finally:
        connector.close()

    assert resolved == {"p-alex": alex, "p-shared": None, "p-none": None, "p-gone": None}


def test_resolve_searches_in_batches_of_several_members(
    scim: ScimServer, connector: ScimConnector
) -> None:
    count = FILTER_BATCH * 2 + 7
    ids = scim.create_users((f"user{n:03}", None) for n in range(count))
    members = [Member(principal_id=f"p{n}", user_name=f"user{n:03}") for n in range(count)]
    scim.requests.clear()

    resolved = connector.resolve(members)

    assert resolved == {f"p{n}": ids[f"user{n:03}"] for n in range(count)}
    assert len([seen for seen in scim.requests if seen.path == "/Users"]) == 3


def test_resolve_follows_the_pages_of_a_search(
    scim: ScimServer, connector: ScimConnector, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(scim_module, "PAGE_SIZE", 7)
    ids = scim.create_users((f"user{n:02}", None) for n in range(30))
    members = [Member(principal_id=f"p{n}", user_name=f"user{n:02}") for n in range(30)]
    scim.requests.clear()

    resolved = connector.resolve(members)

    assert resolved == {f"p{n}": ids[f"user{n:02}"] for n in range(30)}
    assert len([seen for seen in scim.requests if seen.path == "/Users"]) == 5


def test_a_stopped_server_is_retryable_and_a_restarted_one_works(
    scim: ScimServer, connector: ScimConnector
) -> None:
    alex = scim.create_user("alex")
    group = scim.create_group("mail-purge")

    scim.stop()
    with pytest.raises(ConnectorError) as refused:
        connector.grant(group, [alex])
    assert refused.value.retryable
    assert group in str(refused.value)

    scim.start()
    connector.grant(group, [alex])
    assert scim.members(group) == {alex}


@pytest.mark.parametrize("status", [500, 503, 429])
def test_server_errors_and_throttling_are_retryable(
    scim: ScimServer, connector: ScimConnector, status: int
) -> None:
    group = scim.create_group("mail-purge")
    scim.forced_status = status

    with pytest.raises(ConnectorError) as failed:
        connector.revoke(group, ["someone"])

    assert failed.value.retryable
    assert f"HTTP {status}" in str(failed.value)


def test_a_bad_token_is_not_retryable_and_says_why(scim: ScimServer) -> None:
    group = scim.create_group("mail-purge")
    connector = build(scim.config(), "not-the-token")
    try:
        with pytest.raises(ConnectorError) as refused:
            connector.list_current(group)
    finally:
        connector.close()

    assert not refused.value.retryable
    assert "HTTP 401" in str(refused.value)
    assert "Authorization failure" in str(refused.value)


def test_a_missing_group_is_not_retryable_and_is_named(connector: ScimConnector) -> None:
    for call in (
        lambda: connector.grant("no-such-group", ["u1"]),
        lambda: connector.revoke("no-such-group", ["u1"]),
        lambda: connector.list_current("no-such-group"),
    ):
        with pytest.raises(ConnectorError) as missing:
            call()
        assert not missing.value.retryable
        assert "HTTP 404" in str(missing.value)
        assert "Group 'no-such-group' not found" in str(missing.value)


def test_a_group_id_cannot_reach_another_path(scim: ScimServer, connector: ScimConnector) -> None:
    scim.create_user("alex")
    scim.requests.clear()

    tricky = ("../Users", "x/../../Users", "?filter=x")
    for obj in tricky:
        with pytest.raises(ConnectorError) as missing:
            connector.list_current(obj)
        assert "HTTP 404" in str(missing.value)
        assert not missing.value.retryable
    for obj in ("", ".", ".."):
        with pytest.raises(ConnectorError) as refused:
            connector.grant(obj, ["u1"])
        assert not refused.value.retryable

    # The server saw each id whole, as one (percent-decoded) segment under /Groups.
    assert [seen.path for seen in scim.requests] == [f"/Groups/{obj}" for obj in tricky]


def test_the_configuration_is_checked() -> None:
    with pytest.raises(pydantic.ValidationError):
        build({"base_url": "http://127.0.0.1:1/v2", "password": "x"}, None)
    with pytest.raises(pydantic.ValidationError):
        build({"base_url": "ftp://example.org/scim"}, None)
    with pytest.raises(pydantic.ValidationError):
        build({"base_url": "http://127.0.0.1:1/v2", "match": "display_name"}, None)

    connector = build({"base_url": "https://idp.example.org/scim/v2/", "match": "email"}, "t")
    try:
        assert connector.config.base_url == "https://idp.example.org/scim/v2"
        assert connector.config.verify_tls
        assert connector.kind == "scim"
    finally:
        connector.close()
