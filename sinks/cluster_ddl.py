"""The migrations' schema as DDL for a ClickHouse cluster: ``radpulse clickhouse ddl --cluster NAME``. Pure.

Each statement of ``sinks/migrations`` (in order) becomes its cluster form:

- ``CREATE TABLE t … ENGINE = XMergeTree(args)`` → ``CREATE TABLE db.t ON CLUSTER c … ENGINE =
  ReplicatedXMergeTree('/clickhouse/tables/{shard}/db/t', '{replica}', args)``, then ``db.t_all``, a
  ``Distributed(c, db, t, cityHash64(site_id))``. Sharding by site keeps a site's rows on one shard, so
  ReplacingMergeTree still collapses every duplicate (identities include ``site_id``) and joins within a site stay
  local. A table without ``site_id`` (``drl_values``: reference data) is replicated to every node instead
  (``/clickhouse/tables/all/…``) and gets no ``_all`` table: each node already holds all of it.
- ``ALTER TABLE t …`` → ``ALTER TABLE db.t ON CLUSTER c …``, and the same on ``db.t_all``.
- ``CREATE [OR REPLACE] VIEW v`` → ``… VIEW db.v ON CLUSTER c``, reading the shard's local tables, plus
  ``db.v_all`` over ``cluster(c, db, v)`` for all shards (a site lives on one shard, so per-site results add up).
  Views that compare sites (``CROSS_SITE_VIEWS``) read the ``_all`` tables instead and get no ``_all`` view.
- ``schema_migrations`` is created replicated to every node and filled with the versions and checksums
  ``sinks/migrate.py`` expects, so a sink that runs ``migrate()`` at start finds nothing to do and never
  replaces a cluster view with its single-node form.

Table names are qualified after FROM/JOIN and in headers, so the script runs from any current database. The
macros ``{shard}`` and ``{replica}`` come from each server's config; replica names must be unique in the cluster
(the host name is the usual choice).
"""

from __future__ import annotations

import re
from pathlib import Path

from sinks.migrate import MIGRATIONS_DIR, VERSIONS_TABLE_SQL, Migration, discover
from sinks.sqltext import Token, lex, render, split_statements

CROSS_SITE_VIEWS = frozenset({"dose_benchmark"})  # their result depends on every site's rows
SHARDING_KEY = "cityHash64(site_id)"
_IDENT = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,63}")


class ClusterDdlError(ValueError):
    """A name is not a plain identifier, or a migration holds a statement this module cannot translate."""


def _check(what: str, name: str) -> str:
    if not _IDENT.fullmatch(name):
        raise ClusterDdlError(f"{what} {name!r}: expected letters, digits and _, e.g. radpulse_cluster")
    return name


def _sig(tokens: list[Token]) -> list[int]:
    """Indexes of the tokens that are not whitespace."""
    return [i for i, t in enumerate(tokens) if t.kind != "space"]


def _text(tokens: list[Token]) -> str:
    return "".join(t.text for t in tokens)


def _matching_paren(tokens: list[Token], open_at: int) -> int:
    depth = 0
    for i in range(open_at, len(tokens)):
        if tokens[i].text == "(" and tokens[i].kind == "symbol":
            depth += 1
        elif tokens[i].text == ")" and tokens[i].kind == "symbol":
            depth -= 1
            if depth == 0:
                return i
    raise ClusterDdlError(f"unbalanced parentheses in: {_text(tokens)[:80]}…")


class _Translator:
    def __init__(self, cluster: str, database: str) -> None:
        self.cluster = _check("cluster", cluster)
        self.db = _check("database", database)
        self.sharded: set[str] = set()  # tables with an _all Distributed table
        self.tables: set[str] = set()

    def qualify(self, tokens: list[Token], to_all: bool = False) -> list[Token]:
        """``FROM t`` / ``JOIN t`` → ``db.t`` (``db.t_all`` for sharded tables when ``to_all``)."""
        out = list(tokens)
        sig = _sig(out)
        for k, i in enumerate(sig[:-1]):
            if out[i].kind == "word" and out[i].upper in ("FROM", "JOIN"):
                j = sig[k + 1]
                name = out[j].text
                qualified = k + 2 < len(sig) and out[sig[k + 2]].text == "."
                if out[j].kind == "word" and name in self.tables and not qualified:
                    target = f"{name}_all" if to_all and name in self.sharded else name
                    out[j] = Token("word", f"{self.db}.{target}")
        return out

    def statement(self, sql: str) -> list[str]:
        tokens = lex(sql)
        sig = _sig(tokens)
        words = [tokens[i].upper for i in sig[:6]]
        if words[:2] == ["CREATE", "TABLE"]:
            return self.create_table(tokens, sig)
        if words[:2] == ["ALTER", "TABLE"]:
            return self.alter_table(tokens, sig)
        if words[0] == "CREATE" and "VIEW" in words[:4]:
            return self.create_view(tokens, sig)
        raise ClusterDdlError(
            f"cannot translate {render(tokens)[:60]!r}…: sinks/cluster_ddl.py knows CREATE TABLE, ALTER TABLE and "
            "CREATE VIEW; teach it this statement kind"
        )

    def _name_at(self, tokens: list[Token], sig: list[int], after: str) -> int:
        """Index (in ``sig``) of the object name after keyword ``after`` (skipping IF NOT EXISTS)."""
        k = next(k for k, i in enumerate(sig) if tokens[i].upper == after) + 1
        if tokens[sig[k]].upper == "IF":
            k += 3
        return k

    def create_table(self, tokens: list[Token], sig: list[int]) -> list[str]:
        k = self._name_at(tokens, sig, "TABLE")
        name = tokens[sig[k]].text
        self.tables.add(name)
        sharded = any(t.kind == "word" and t.text == "site_id" for t in tokens)
        e = next(k for k, i in enumerate(sig) if tokens[i].upper == "ENGINE")
        engine_at = sig[e + 2]  # ENGINE = Name
        engine = tokens[engine_at].text
        if not engine.endswith("MergeTree") or engine.startswith("Replicated"):
            raise ClusterDdlError(f"table {name}: engine {engine} has no Replicated form here; use a *MergeTree")
        args = ""
        end = engine_at
        if e + 3 < len(sig) and tokens[sig[e + 3]].text == "(":
            close = _matching_paren(tokens, sig[e + 3])
            args = _text(tokens[sig[e + 3] + 1 : close]).strip()
            end = close
        shard = "{shard}" if sharded else "all"
        path = f"'/clickhouse/tables/{shard}/{self.db}/{name}', '{{replica}}'"
        replicated = f"Replicated{engine}({path}{', ' + args if args else ''})"
        head = [*tokens[: sig[k]], Token("word", f"{self.db}.{name} ON CLUSTER {self.cluster}")]
        out = [_text(head + tokens[sig[k] + 1 : engine_at]) + replicated + _text(tokens[end + 1 :])]
        if sharded:
            self.sharded.add(name)
            out.append(
                f"CREATE TABLE IF NOT EXISTS {self.db}.{name}_all ON CLUSTER {self.cluster} AS {self.db}.{name} "
                f"ENGINE = Distributed({self.cluster}, {self.db}, {name}, {SHARDING_KEY})"
            )
        return out

    def alter_table(self, tokens: list[Token], sig: list[int]) -> list[str]:
        k = self._name_at(tokens, sig, "TABLE")
        name = tokens[sig[k]].text
        rest = _text(tokens[sig[k] + 1 :])
        out = [f"ALTER TABLE {self.db}.{name} ON CLUSTER {self.cluster}{rest}"]
        if name in self.sharded:
            out.append(f"ALTER TABLE {self.db}.{name}_all ON CLUSTER {self.cluster}{rest}")
        return out

    def create_view(self, tokens: list[Token], sig: list[int]) -> list[str]:
        k = self._name_at(tokens, sig, "VIEW")
        name = tokens[sig[k]].text
        cross = name in CROSS_SITE_VIEWS
        body = self.qualify(tokens[sig[k] + 1 :], to_all=cross)
        self.tables.add(name)
        head = _text(tokens[: sig[k]])
        out = [f"{head}{self.db}.{name} ON CLUSTER {self.cluster}{_text(body)}"]
        if not cross:
            out.append(
                f"CREATE OR REPLACE VIEW {self.db}.{name}_all ON CLUSTER {self.cluster} AS "
                f"SELECT * FROM cluster('{self.cluster}', '{self.db}', '{name}')"
            )
        return out


def _versions_rows(db: str, migrations: list[Migration]) -> str:
    values = ", ".join(f"({m.version}, '{m.name}', '{m.checksum}', now64(3))" for m in migrations)
    return f"INSERT INTO {db}.schema_migrations (version, name, checksum, applied_at) VALUES {values}"


def cluster_ddl(cluster: str, database: str = "radpulse", folder: Path = MIGRATIONS_DIR) -> str:
    """The whole schema for ``cluster`` as one script (statements end with ``;``), ready for clickhouse-client."""
    tr = _Translator(cluster, database)
    migrations = discover(folder)
    versions = render(split_statements(VERSIONS_TABLE_SQL)[0])
    out = [
        f"-- radpulse schema for ClickHouse cluster {cluster}, database {database}: sinks/migrations "
        f"{migrations[0].version:04d}–{migrations[-1].version:04d}.\n"
        "-- Generated by `radpulse clickhouse ddl`; apply once with clickhouse-client --multiquery < this file.",
        f"CREATE DATABASE IF NOT EXISTS {tr.db} ON CLUSTER {tr.cluster}",
        *tr.statement(versions)[:1],  # replicated everywhere (no site_id), no _all
    ]
    for mig in migrations:
        out.append(f"-- {mig.filename}")
        for stmt in mig.statements:
            out.extend(tr.statement(stmt))
    out.append("-- record the migrations as applied, so `radpulse sink` / `clickhouse migrate` leave the schema be")
    out.append(_versions_rows(tr.db, migrations))
    return "\n".join(s if s.startswith("--") else s + ";\n" for s in out)


def statements(ddl: str) -> list[str]:
    """The statements of a ``cluster_ddl`` script, comments dropped (for tests and tools)."""
    return [render(s) for s in split_statements(ddl)]
