"""The PostgreSQL-roles connector against the real PostgreSQL server: set-based, idempotent
grants and revocations, members listed from pg_auth_members, errors mapped to retryable or
not, and a configuration that refuses passwords in the DSN."""

from __future__ import annotations

import socket
from collections.abc import Iterator

import pytest
from pydantic import ValidationError

from pimlico.connectors.base import Connector, ConnectorError, Member
from pimlico.connectors.postgres import build
from tests.connectors.provisioning_world import Downstream, downstream

__all__ = ["downstream"]


@pytest.fixture
def roles(downstream: Downstream) -> Iterator[Connector]:
    made = build({"dsn": downstream.dsn()}, None)
    yield made
    made.close()


def member(name: str, **names: str) -> Member:
    return Member(principal_id=f"id-{name}", user_name=name, **names)


def test_resolve_names_only_the_roles_that_exist(roles: Connector, downstream: Downstream) -> None:
    alex = downstream.role("alex", login=True)

    found = roles.resolve([member(alex), member(f"{downstream.prefix}-ghost")])

    assert found == {f"id-{alex}": alex, f"id-{downstream.prefix}-ghost": None}


def test_the_identity_template_builds_the_login_role_from_the_member(
    downstream: Downstream,
) -> None:
    alex = downstream.role("db-alex", login=True)
    made = build({"dsn": downstream.dsn(), "identity_template": "{user_name}"}, None)
    templated = build(
        {"dsn": downstream.dsn(), "identity_template": downstream.prefix + "-db-{user_name}"},
        None,
    )
    try:
        assert templated.resolve([member("alex")]) == {"id-alex": alex}
        assert made.resolve([member("alex")]) == {"id-alex": None}
    finally:
        made.close()
        templated.close()


def test_grant_and_revoke_are_set_based_and_idempotent(
    roles: Connector, downstream: Downstream
) -> None:
    obj = downstream.role("reader")
    people = [downstream.role(n, login=True) for n in ("alex", "sam", "kim")]

    roles.grant(obj, people[:2])
    roles.grant(obj, people)  # two already members: only kim is added
    assert roles.list_current(obj) == frozenset(people) == frozenset(downstream.members(obj))

    roles.revoke(obj, [people[0], people[0]])
    roles.revoke(obj, [people[0]])  # no longer a member: nothing happens
    assert roles.list_current(obj) == frozenset(people[1:])


def test_names_are_quoted_so_odd_role_names_work_and_inject_nothing(
    roles: Connector, downstream: Downstream
) -> None:
    obj = downstream.role('odd "name"; DROP ROLE x')
    alex = downstream.role("Alex Smith", login=True)

    roles.grant(obj, [alex])

    assert downstream.members(obj) == {alex}


def test_an_unknown_object_is_an_error_not_worth_retrying(
    roles: Connector, downstream: Downstream
) -> None:
    with pytest.raises(ConnectorError) as raised:
        roles.grant(f"{downstream.prefix}-missing", [downstream.role("alex", login=True)])
    assert not raised.value.retryable


def test_an_unreachable_server_is_an_error_worth_retrying(downstream: Downstream) -> None:
    with socket.socket() as probe:  # a port nothing listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    unreachable = build({"dsn": downstream.dsn(port), "connect_timeout": 2}, "pw")
    with pytest.raises(ConnectorError) as raised:
        unreachable.list_current("anything")
    assert raised.value.retryable


def test_a_dsn_holding_a_password_is_refused() -> None:
    with pytest.raises(ValidationError) as raised:
        build({"dsn": "postgresql://app:hunter2@127.0.0.1/db"}, None)
    assert "password" in str(raised.value)
    with pytest.raises(ValidationError):
        build({"dsn": "host=127.0.0.1 password=hunter2"}, None)
    with pytest.raises(ValidationError):
        build({"dsn": "host=127.0.0.1", "identity_template": "{nope}"}, None)
