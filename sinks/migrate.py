"""Versioned schema migrations: ``sinks/migrations/NNNN_name.sql``, applied in order, recorded in ``schema_migrations``.

Per migration, in this order: 1) run its statements one by one (each is ``CREATE … IF NOT EXISTS`` or otherwise
safe to repeat, so a crash half-way through a file is re-runnable); 2) record its version, name and checksum.
A rerun skips recorded versions, so it is a no-op. A recorded migration whose file changed since is an error:
migrations are append-only. The checksum covers statements without comments, so comment edits are allowed.
"""

from __future__ import annotations

import hashlib
import logging
import re
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from sinks.clickhouse import Database
from sinks.errors import ClickHouseError, MigrationError
from sinks.sqltext import LexError, render, split_statements

log = logging.getLogger("radpulse.sinks.migrate")

MIGRATIONS_DIR = Path(__file__).with_name("migrations")
_FILE = re.compile(r"^(?P<version>\d{4})_(?P<name>[a-z0-9_]+)\.sql$")

VERSIONS_TABLE_SQL = """
CREATE TABLE IF NOT EXISTS schema_migrations
(
    version UInt32,
    name String,
    checksum String,
    applied_at DateTime64(3, 'UTC')
)
ENGINE = MergeTree
ORDER BY version
"""


@dataclass(frozen=True)
class Migration:
    """One migration file, parsed into statements."""

    version: int
    name: str
    statements: tuple[str, ...]

    @property
    def checksum(self) -> str:
        return hashlib.sha256("\n;\n".join(self.statements).encode()).hexdigest()[:16]

    @property
    def filename(self) -> str:
        return f"{self.version:04d}_{self.name}.sql"


def discover(folder: Path = MIGRATIONS_DIR) -> list[Migration]:
    """Every migration in ``folder``, by version; malformed names, duplicates and gaps are errors."""
    found: list[Migration] = []
    for path in sorted(folder.glob("*.sql")):
        m = _FILE.match(path.name)
        if not m:
            raise MigrationError(f"{path}: migration files are named NNNN_lower_snake.sql, e.g. 0002_add_drl.sql")
        try:
            statements = tuple(render(s) for s in split_statements(path.read_text(encoding="utf-8")))
        except LexError as exc:
            raise MigrationError(f"{path}: {exc}") from None
        if not statements:
            raise MigrationError(f"{path}: holds no statement")
        found.append(Migration(int(m["version"]), m["name"], statements))
    for expected, mig in enumerate(found, start=1):
        if mig.version != expected:
            raise MigrationError(
                f"{folder}: expected migration {expected:04d} next, found {mig.filename}; versions run 0001, 0002, …"
            )
    return found


def applied(db: Database) -> dict[int, tuple[str, str]]:
    """version → (name, checksum) of every recorded migration (creates the versions table if missing)."""
    db.command(VERSIONS_TABLE_SQL)
    rows = db.query("SELECT version, name, checksum FROM schema_migrations ORDER BY version").rows
    return {int(v): (str(n), str(c)) for v, n, c in rows}


def migrate(db: Database, folder: Path = MIGRATIONS_DIR) -> list[Migration]:
    """Apply the migrations ``db`` lacks, in order; returns those applied now (empty on a rerun)."""
    migrations = discover(folder)
    done = applied(db)
    for mig in migrations:
        if mig.version in done and done[mig.version][1] != mig.checksum:
            raise MigrationError(
                f"{mig.filename} changed after it was applied to {db.describe()} (checksum {done[mig.version][1]} → "
                f"{mig.checksum}); migrations are append-only: restore the file and put the change in a new one"
            )
    new = [m for m in migrations if m.version not in done]
    for mig in new:
        for i, statement in enumerate(mig.statements, start=1):
            try:
                db.command(statement)
            except ClickHouseError as exc:
                raise MigrationError(f"{mig.filename}, statement {i}: {exc}") from exc
        db.insert(
            "schema_migrations",
            [(mig.version, mig.name, mig.checksum, datetime.now(UTC))],
            ("version", "name", "checksum", "applied_at"),
        )
        log.info("applied migration %s to %s", mig.filename, db.describe())
    return new
