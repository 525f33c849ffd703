"""A Pimlico runtime on a fresh migrated database (SQLite and PostgreSQL), with a fixed clock."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from pimlico.clock import FixedClock
from pimlico.services.runtime import Pimlico
from pimlico.settings import Settings
from tests.factories import T0


@pytest.fixture
def clock() -> FixedClock:
    return FixedClock(T0)


@pytest.fixture
def settings(migrated_url: str) -> Settings:
    return Settings(database_url=migrated_url, max_nesting_depth=4)


@pytest.fixture
def rt(settings: Settings, clock: FixedClock) -> Iterator[Pimlico]:
    with Pimlico(settings, clock=clock) as runtime:
        yield runtime
