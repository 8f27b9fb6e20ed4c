"""Fixtures the integration tests share."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from sinks.clickhouse import Database, connect
from sinks.migrate import migrate


@pytest.fixture
def db(chdb_root: Path) -> Iterator[Database]:
    """A fresh, migrated database in the session's chDB folder (one engine per process); dropped afterwards."""
    name = "t_" + uuid.uuid4().hex[:10]
    database = connect(f"chdb://{chdb_root}?database={name}")
    migrate(database)
    yield database
    database.command(f"DROP DATABASE IF EXISTS {name}")
    database.close()
