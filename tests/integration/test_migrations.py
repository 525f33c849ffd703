"""The migrations against real SQLite and PostgreSQL: one head, upgrade works, no drift."""

from __future__ import annotations

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import Engine, Table, UniqueConstraint, inspect, select
from sqlalchemy.exc import DBAPIError

from pimlico.db import migrate
from pimlico.db.engine import make_engine
from pimlico.db.tables import Base, PimStateRow, RoleRow
from pimlico.domain.audit import GENESIS_HASH
from pimlico.domain.catalogue import BUILT_IN_ROLES


def test_the_migrations_have_exactly_one_head() -> None:
    assert len(migrate.heads()) == 1


def test_an_empty_database_upgrades_to_head(database_url: str) -> None:
    assert migrate.current(database_url) is None

    migrate.upgrade(database_url)

    assert migrate.current(database_url) == migrate.heads()[0]


def test_a_failed_upgrade_leaves_the_database_as_it_was(database_url: str) -> None:
    engine = make_engine(database_url)
    try:
        with engine.begin() as connection:
            connection.exec_driver_sql("CREATE TABLE roles (id INTEGER)")

        with pytest.raises(DBAPIError):
            migrate.upgrade(database_url)

        assert inspect(engine).get_table_names() == ["roles"]
    finally:
        engine.dispose()
    assert migrate.current(database_url) is None


def test_upgrading_a_database_already_at_head_changes_nothing(migrated_url: str) -> None:
    migrate.upgrade(migrated_url)

    assert migrate.current(migrated_url) == migrate.heads()[0]


def test_the_migrated_schema_matches_the_tables_exactly(engine: Engine) -> None:
    with engine.connect() as connection:
        context = MigrationContext.configure(connection, opts={"compare_type": True})
        assert compare_metadata(context, Base.metadata) == []


def test_the_migrated_constraints_and_indexes_carry_the_naming_conventions_names(
    engine: Engine,
) -> None:
    inspector = inspect(engine)
    for table in Base.metadata.sorted_tables:
        expected = _names(table)
        actual: dict[str, set[str]] = {
            "pk": {inspector.get_pk_constraint(table.name)["name"] or ""},
            "fk": {fk["name"] or "" for fk in inspector.get_foreign_keys(table.name)},
            "uq": {uq["name"] or "" for uq in inspector.get_unique_constraints(table.name)},
            # PostgreSQL reports the index behind each unique constraint as well.
            "ix": {
                ix["name"] or ""
                for ix in inspector.get_indexes(table.name)
                if not ix.get("duplicates_constraint")
            },
        }
        assert actual == expected, table.name


def test_the_migrated_database_holds_the_state_row_at_revision_zero(engine: Engine) -> None:
    with engine.connect() as connection:
        state = connection.execute(select(PimStateRow.__table__)).all()

    assert [tuple(row) for row in state] == [(1, 0, 0, GENESIS_HASH)]


def test_the_migrated_database_holds_exactly_the_built_in_roles_of_the_catalogue(
    engine: Engine,
) -> None:
    with engine.connect() as connection:
        rows = connection.execute(select(RoleRow.__table__).order_by(RoleRow.id)).all()

    seeded = {
        row.id: (row.name, row.description, list(row.permissions), row.built_in) for row in rows
    }
    expected = {
        role.id: (role.name, role.description, list(role.permissions), True)
        for role in BUILT_IN_ROLES
    }
    assert seeded == expected


def test_the_seeded_roles_carry_a_fixed_creation_instant(migrated_url: str) -> None:
    engine = make_engine(migrated_url)
    try:
        with engine.connect() as connection:
            instants = set(connection.execute(select(RoleRow.created_at, RoleRow.updated_at)))
    finally:
        engine.dispose()

    assert {(a.isoformat(), b.isoformat()) for a, b in instants} == {
        ("2026-01-01T00:00:00+00:00", "2026-01-01T00:00:00+00:00")
    }


def _names(table: Table) -> dict[str, set[str]]:
    """The names the naming convention gives ``table``'s constraints and indexes."""
    return {
        "pk": {str(table.primary_key.name)},
        "fk": {str(fk.name) for fk in table.foreign_key_constraints},
        "uq": {str(c.name) for c in table.constraints if isinstance(c, UniqueConstraint)},
        "ix": {str(ix.name) for ix in table.indexes},
    }
