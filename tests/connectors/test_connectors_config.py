"""Connector configuration: validated by the kind's model (field by field), audited, secrets
sealed and never returned nor audited, names unique, mappings ended not deleted, and all of it
guarded by ``pim.connectors.*``."""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import select

from pimlico.db.tables import AuditEventRow, ConnectorMappingRow, ConnectorRow
from pimlico.domain.catalogue import PRIVILEGED_ROLE_ADMINISTRATOR
from pimlico.domain.model import AssignmentKind, Target
from pimlico.errors import AlreadyExists, Conflict, InvalidInput, NotFound, PermissionDenied
from pimlico.services import assignments, connector_mappings, connectors
from pimlico.services.runtime import Actor, Pimlico
from tests.connectors.provisioning_world import clock, rt, settings
from tests.integration.test_requests import READER
from tests.integration.world import OPERATOR, user

__all__ = ["clock", "rt", "settings"]

SECRET = "s3cret-Pa55word-never-shown"
DSN = "host=127.0.0.1 port=5432 user=postgres dbname=postgres"


def add(rt: Pimlico, name: str = "db", **changes: object) -> connectors.ConnectorInfo:
    values: dict[str, object] = {
        "name": name,
        "kind": "postgres",
        "config": {"dsn": DSN},
        "secret": SECRET,
    }
    values.update(changes)
    return connectors.add_connector(rt, actor=OPERATOR, **values).value  # type: ignore[arg-type]


def test_a_connector_is_added_with_its_defaults_and_its_secret_sealed(rt: Pimlico) -> None:
    made = add(rt)

    assert (made.kind, made.mode, made.enabled, made.has_secret) == (
        "postgres",
        "authoritative",
        True,
        True,
    )
    assert SECRET not in repr(made)
    with rt.reading() as s:
        stored = s.scalars(select(ConnectorRow)).one()
        events = list(s.scalars(select(AuditEventRow)))
    assert stored.secret is not None
    assert SECRET not in stored.secret
    assert not any(SECRET in f"{e.before}{e.after}" for e in events)
    assert connectors.open_secret(rt, stored) == SECRET


def test_a_configuration_that_breaks_the_kind_s_rules_names_each_field(rt: Pimlico) -> None:
    with pytest.raises(InvalidInput) as raised:
        add(rt, config={"dsn": "postgresql://u:pw@h/db", "surprise": 1})

    fields = {e.field for e in raised.value.errors}
    assert fields == {"config.dsn", "config.surprise"}


def test_an_unknown_kind_and_an_unknown_mode_are_refused(rt: Pimlico) -> None:
    with pytest.raises(InvalidInput) as kind:
        add(rt, kind="carrier-pigeon")
    assert [e.field for e in kind.value.errors] == ["kind"]
    with pytest.raises(InvalidInput) as mode:
        add(rt, mode="sometimes")
    assert [e.field for e in mode.value.errors] == ["mode"]


def test_connector_names_are_unique_whatever_their_case(rt: Pimlico) -> None:
    add(rt, "db")
    with pytest.raises(AlreadyExists):
        add(rt, "DB")


def test_a_mapping_is_ended_not_deleted_and_cannot_be_ended_twice(rt: Pimlico) -> None:
    add(rt)
    mapping = connector_mappings.add_mapping(
        rt, actor=OPERATOR, connector="db", target=READER, downstream_object="reader"
    ).value
    with pytest.raises(AlreadyExists):
        connector_mappings.add_mapping(
            rt, actor=OPERATOR, connector="db", target=READER, downstream_object="reader"
        )

    connector_mappings.end_mapping(rt, actor=OPERATOR, mapping_id=mapping.id, reason="moved")

    assert connector_mappings.list_mappings(rt, actor=OPERATOR) == []
    [ended] = connector_mappings.list_mappings(rt, actor=OPERATOR, include_ended=True)
    assert ended.id == mapping.id
    assert ended.ended_at is not None
    with rt.reading() as s:
        assert s.get(ConnectorMappingRow, mapping.id) is not None
    with pytest.raises(Conflict):
        connector_mappings.end_mapping(rt, actor=OPERATOR, mapping_id=mapping.id)


def test_a_mapping_needs_an_existing_connector_and_target(rt: Pimlico) -> None:
    with pytest.raises(NotFound):
        connector_mappings.add_mapping(
            rt, actor=OPERATOR, connector="nope", target=READER, downstream_object="x"
        )
    add(rt)
    with pytest.raises(NotFound):
        connector_mappings.add_mapping(
            rt,
            actor=OPERATOR,
            connector="db",
            target=Target.group_member("00000000-0000-4000-8000-00000000dead"),
            downstream_object="x",
        )


def test_disabling_keeps_the_configuration_and_is_audited_with_its_reason(rt: Pimlico) -> None:
    add(rt)

    disabled = connectors.disable_connector(rt, actor=OPERATOR, name="db", reason="moving")

    assert not disabled.value.enabled
    assert disabled.value.config == {"dsn": DSN}
    with rt.reading() as s:
        event = s.scalars(
            select(AuditEventRow).where(AuditEventRow.action == "connector.update")
        ).one()
    assert event.reason == "moving"
    assert SECRET not in f"{event.before}{event.after}"


def test_only_holders_of_the_connectors_permissions_may_configure_or_read(rt: Pimlico) -> None:
    plain = Actor.principal(user(rt, "plain").id)
    admin = user(rt, "pra")
    assignments.assign(
        rt,
        actor=OPERATOR,
        kind=AssignmentKind.ACTIVE,
        principal=admin,
        target=Target.role(PRIVILEGED_ROLE_ADMINISTRATOR.id),
        duration=timedelta(hours=1),
        justification="admin",
    )
    with pytest.raises(PermissionDenied):
        connectors.add_connector(rt, actor=plain, name="db", kind="postgres", config={"dsn": DSN})
    with pytest.raises(PermissionDenied):
        connectors.list_connectors(rt, actor=plain)

    made = connectors.add_connector(
        rt, actor=Actor.principal(admin.id), name="db", kind="postgres", config={"dsn": DSN}
    )

    assert made.value.name == "db"
