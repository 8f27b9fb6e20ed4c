"""The read-only guard of `radpulse sql` (sinks.sql.guard), the lexer under it, and the allow-list walk over the
engine's parse (sinks.sqlpolicy.check_ast, fed the lines ClickHouse's EXPLAIN AST prints): pure, no engine.

The engine also runs every query with readonly=1; these tests cover what the guard alone must catch, including
INTO OUTFILE, which chDB executes even in readonly mode.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from sinks.errors import RefusedQuery
from sinks.sql import guard, jsonable
from sinks.sqlpolicy import build_policy, check_ast
from sinks.sqltext import LexError, lex, split_statements

ALLOWED = [
    ("SELECT 1", "SELECT 1"),
    ("select count() from exams_latest", "select count() from exams_latest"),
    ("  SELECT 1 ;  ", "SELECT 1"),
    ("SELECT 1;;", "SELECT 1"),
    ("WITH 1 AS x SELECT x", "WITH 1 AS x SELECT x"),
    ("SHOW TABLES", "SHOW TABLES"),
    ("show create table exams", "show create table exams"),
    ("DESCRIBE TABLE instances", "DESCRIBE TABLE instances"),
    ("desc instances", "desc instances"),
    ("EXPLAIN SELECT 1", "EXPLAIN SELECT 1"),
    ("(SELECT 1) UNION ALL (SELECT 2)", "(SELECT 1) UNION ALL (SELECT 2)"),
    ("-- a comment\nSELECT 1", "SELECT 1"),
    ("/* lead */ SELECT /* mid */ 1 -- tail", "SELECT 1"),
    ("# hash comment\nSELECT 1", "SELECT 1"),
    ("SELECT 'DROP TABLE x; --' AS s", "SELECT 'DROP TABLE x; --' AS s"),  # inside a string: data, not SQL
    ('SELECT `drop`, "update" FROM t', 'SELECT `drop`, "update" FROM t'),  # quoted names
    ("SELECT 'it''s', 'a\\'b'", "SELECT 'it''s', 'a\\'b'"),
    ("SELECT * FROM system.parts WHERE table = 'exams'", "SELECT * FROM system.parts WHERE table = 'exams'"),
    ("SELECT updated_at, created FROM exams", "SELECT updated_at, created FROM exams"),  # words, not keywords
    ("SELECT 1 /* nested /* comment */ still */", "SELECT 1"),
]

REFUSED = [
    ("DROP TABLE exams", "refused DROP"),
    ("drop table exams", "refused DROP"),
    ("INSERT INTO exams SELECT * FROM exams", "refused INSERT"),
    ("ALTER TABLE exams DELETE WHERE 1", "refused ALTER"),
    ("CREATE TABLE x (a Int8) ENGINE = Memory", "refused CREATE"),
    ("TRUNCATE TABLE instances", "refused TRUNCATE"),
    ("OPTIMIZE TABLE exams FINAL", "refused OPTIMIZE"),
    ("SYSTEM STOP MERGES", "refused SYSTEM"),
    ("KILL QUERY WHERE 1", "refused KILL"),
    ("ATTACH TABLE x", "refused ATTACH"),
    ("DETACH TABLE exams", "refused DETACH"),
    ("RENAME TABLE exams TO e2", "refused RENAME"),
    ("GRANT SELECT ON *.* TO u", "refused GRANT"),
    ("SET readonly = 0", "refused SET"),
    ("USE other", "refused USE"),
    ("DELETE FROM exams WHERE 1", "refused DELETE"),
    ("UPDATE exams SET status = 'x' WHERE 1", "refused UPDATE"),
    ("SELECT 1; DROP TABLE x", "2 statements"),
    ("select 1;drop table x;", "2 statements"),
    ("SELECT 1 -- ok\n; DROP TABLE x", "2 statements"),
    ("/* SELECT */ DROP TABLE x", "refused DROP"),
    ("-- SELECT 1\nDROP TABLE x", "refused DROP"),
    ("WITH x AS (SELECT 1) INSERT INTO t SELECT * FROM x", "contains INSERT"),
    ("EXPLAIN PIPELINE INSERT INTO t SELECT 1", "contains INSERT"),
    ("SELECT 1 INTO OUTFILE '/tmp/x'", "INTO OUTFILE"),
    ("select * from exams into outfile 'x.csv'", "INTO OUTFILE"),
    ("SELECT 1 SETTINGS readonly = 0", "readonly"),
    ("SHOW TABLES; SHOW DATABASES", "2 statements"),
    ("", "no statement"),
    ("  ;  -- nothing\n", "no statement"),
    ("SELECT 'unterminated", "cannot read"),
    ("SELECT 1 /* unterminated", "cannot read"),
    ("(DROP TABLE x)", "refused DROP"),
]


@pytest.mark.parametrize(("sql", "runs"), ALLOWED)
def test_allowed(sql: str, runs: str) -> None:
    assert guard(sql) == runs


@pytest.mark.parametrize(("sql", "why"), REFUSED)
def test_refused(sql: str, why: str) -> None:
    with pytest.raises(RefusedQuery, match=why):
        guard(sql)


def test_refusal_names_the_fix() -> None:
    with pytest.raises(RefusedQuery) as info:
        guard("SELECT drop FROM t")
    assert "read-only" in str(info.value) and "`drop`" in str(info.value)


def test_what_runs_has_no_comment_left() -> None:
    # the guard returns what will run; a comment that hid something can't survive into it
    ran = guard("SELECT 1 /* ; DROP TABLE x */ -- ; DROP TABLE y")
    assert ran == "SELECT 1" and "DROP" not in ran


def test_lexer_round_trips_its_input() -> None:
    sql = "SELECT 'a;b' /* c */ , `d;` -- e\n FROM t;  SELECT 2"
    assert "".join(t.text for t in lex(sql)) == sql
    assert len(split_statements(sql)) == 2


def test_lexer_rejects_unterminated_identifier() -> None:
    with pytest.raises(LexError, match="unterminated"):
        lex("SELECT `abc")


def test_jsonable_values() -> None:
    from datetime import UTC, datetime
    from decimal import Decimal
    from uuid import UUID

    assert jsonable(datetime(2024, 3, 1, tzinfo=UTC)) == "2024-03-01T00:00:00+00:00"
    assert jsonable(float("nan")) is None and jsonable(1.5) == 1.5
    assert jsonable(("a", [1, None])) == ["a", [1, None]]
    assert jsonable(Decimal("1.10")) == "1.10" and jsonable(UUID(int=0)) == "00000000-0000-0000-0000-000000000000"


# -- sinks.sqlpolicy: the walk over ClickHouse's EXPLAIN AST (lines as the engine prints them) ---------------------

FUNCTIONS = [  # (name, alias_to, categories, is_aggregate, case_insensitive) as system.functions lists them
    ("plus", "", "Arithmetic", 0, 0), ("count", "", "Aggregate Functions", 1, 1),
    ("sum", "", "Aggregate Functions", 1, 0),
    ("upper", "", "String", 0, 1), ("ucase", "upper", "", 0, 1), ("file", "", "Other", 0, 0),
    ("currentDatabase", "", "Other", 0, 0), ("DATABASE", "currentDatabase", "", 0, 1),
    ("dictGet", "", "Dictionary", 0, 0), ("hostName", "", "Other", 0, 0), ("hostname", "hostName", "", 0, 1),
    ("aiGenerate", "", "AI", 0, 0), ("format", "", "String", 0, 0),
]
POLICY = build_policy("radpulse", ["radpulse", "system", "default", "INFORMATION_SCHEMA"], FUNCTIONS,
                      ["file", "url", "remote", "s3", "numbers", "format", "merge", "executable"])


def ast(*body: str) -> list[str]:
    return ["SelectWithUnionQuery (children 1)", " ExpressionList (children 1)", "  SelectQuery (children 2)", *body]


@pytest.mark.parametrize("lines", [
    ast("   ExpressionList (children 1)", "    Function count (children 1)", "     ExpressionList",
        "   TablesInSelectQuery (children 1)", "    TablesInSelectQueryElement (children 1)",
        "     TableExpression (children 1)", "      TableIdentifier exams_latest"),
    ast("    Function sumIf (children 1)", "    Function COUNT", "    Function UPPER (alias m)", "    Function ucase",
        "    Function DATABASE", "    Function lambda (children 1)", "    Function in (children 1)",
        "      Identifier t.exam_key", "      Identifier radpulse.exams"),
    ast("      TableIdentifier radpulse.exams (alias e)", "      TableIdentifier system.one",
        "      Function numbers (alias n) (children 1)", "      Literal 'file(\\'/etc/passwd\\')'", "   Set"),
    ["DescribeQuery (children 1)", " TableExpression (children 1)", "  TableIdentifier exams"],
    ["ShowTables"],
    ["Explain EXPLAIN PIPELINE (children 1)", " SelectWithUnionQuery (children 1)"],
])
def test_policy_allows_radpulse_reads(lines: list[str]) -> None:
    check_ast(POLICY, lines)


@pytest.mark.parametrize(("lines", "why"), [
    (ast("    Function file (children 1)"), "function file"),
    (ast("    Function FILE (children 1)"), "function FILE"),
    (ast("      Function file (alias t) (children 1)"), "function file"),  # the table function
    (ast("      Function url (children 1)"), "function url"),
    (ast("      Function Remote (children 1)"), "function Remote"),
    (ast("      Function executable (children 1)"), "function executable"),
    (ast("      Function merge (children 1)"), "function merge"),
    (ast("    Function dictGet (children 1)"), "function dictGet"),
    (ast("    Function hostName"), "function hostName"),
    (ast("    Function hostname"), "function hostname"),  # an alias of a refused function
    (ast("    Function aiGenerate"), "function aiGenerate"),
    (ast("    Function fileIf"), "function fileIf"),  # a combinator on something that is not an aggregate
    (ast("    Function no_such_function"), "function no_such_function"),
    (ast("      TableIdentifier system.users"), "system.users is outside"),
    (ast("      TableIdentifier default.exams"), "default.exams is outside"),
    (ast("      TableIdentifier INFORMATION_SCHEMA.TABLES"), "INFORMATION_SCHEMA.TABLES is outside"),
    (ast("      Identifier system.grants"), "system.grants is outside"),  # x IN system.grants
    (ast("    Function plus (alias a", "Function file) (children 1)"), r"function file\)"),  # alias injection
    (ast("   Set", "   Set"), "SETTINGS clause"),
    (["InsertQuery (children 1)"], "uses InsertQuery"),
    (["ShowCreateTableQuery system users (children 2)"], "uses ShowCreateTableQuery"),
    (ast("  1 garbage line"), "not allowed"),
])
def test_policy_refuses(lines: list[str], why: str) -> None:
    with pytest.raises(RefusedQuery, match=why):
        check_ast(POLICY, lines)


# -- the endpoint's token file and the SHOW TABLES shape ------------------------------------------------------------
def test_token_file_is_created_private_and_reused(tmp_path: Path) -> None:
    import os
    import stat

    from sinks.errors import EndpointAuthError
    from sinks.sql import ensure_token, read_token

    path = tmp_path / "data" / "sql-endpoint.token"
    assert read_token(path) is None
    token = ensure_token(path)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600 and len(token) >= 32
    assert ensure_token(path) == token == read_token(path)  # a restart keeps the token the clients hold
    os.chmod(path, 0o644)
    with pytest.raises(EndpointAuthError, match="chmod 600"):
        read_token(path)


@pytest.mark.parametrize(("sql", "ok"), [
    ("SHOW TABLES", True), ("show tables like 'exams%' limit 3", True), ("SHOW TABLES NOT ILIKE '%x%'", True),
    ("SHOW TABLES FROM system", False), ("SHOW DATABASES", False), ("SHOW SETTINGS LIKE '%path%'", False),
    ("SHOW MERGES", False), ("SHOW FULL TABLES", False),
])
def test_only_plain_show_tables(sql: str, ok: bool) -> None:
    from sinks.sql import _show_tables

    assert _show_tables(sql) is ok
