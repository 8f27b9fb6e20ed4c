"""The ClickHouse-server path of the SQL endpoint (infra/): `radpulse sql` and the sink's endpoint read as `reader`,
whose profile is read-only with fixed limits and whose grants reach radpulse's tables and a few system tables only;
the server reads files only from an empty folder and puts system.* behind grants. No server runs here: the files are
parsed and cross-checked (the same restrictions are exercised on chDB by test_sql_endpoint.py)."""

from __future__ import annotations

import os
import re
import xml.etree.ElementTree as ET
from pathlib import Path

import yaml

from schemas.config import load_settings

INFRA = Path(__file__).resolve().parents[2] / "infra"
USERS = ET.parse(INFRA / "clickhouse" / "users.d" / "radpulse.xml").getroot()
CONFIG = ET.parse(INFRA / "clickhouse" / "config.d" / "radpulse.xml").getroot()
COMPOSE = yaml.safe_load((INFRA / "compose.yaml").read_text(encoding="utf-8"))


def test_reader_is_read_only_with_fixed_limits() -> None:
    reader = USERS.find("users/reader")
    assert reader is not None and reader.findtext("profile") == "radpulse_reader"
    profile = USERS.find("profiles/radpulse_reader")
    assert profile is not None and profile.findtext("readonly") == "1"
    assert profile.find("constraints") is None  # nothing changeable: the client sends no settings to this user
    for limit in ("max_execution_time", "max_result_rows", "max_result_bytes", "max_memory_usage"):
        assert int(profile.findtext(limit) or 0) > 0, limit
    assert profile.findtext("result_overflow_mode") == "throw"


def test_reader_grants_reach_radpulse_and_a_few_system_tables_only() -> None:
    grants = [q.text or "" for q in USERS.findall("users/reader/grants/query")]
    assert grants[0] == "GRANT SELECT ON radpulse.*"
    for grant in grants[1:]:
        assert re.fullmatch(r"GRANT SELECT ON system\.(functions|table_functions|databases|settings)", grant), grant
    for user in USERS.findall("users/*"):  # no radpulse user may read files, URLs, other servers or run programs
        text = " ".join(q.text or "" for q in user.findall("grants/query")).upper()
        for source in ("FILE", "URL", "REMOTE", "S3", "MYSQL", "POSTGRES", "HDFS", "JDBC", "ODBC", "SOURCES", "ALL"):
            assert not re.search(rf"\b{source}\b", text), (user.tag, source)


def test_server_reads_no_files_and_guards_system_tables() -> None:
    assert CONFIG.findtext("user_files_path") == "/var/lib/clickhouse/radpulse-no-user-files/"
    acl = CONFIG.find("access_control_improvements")
    assert acl is not None
    assert acl.findtext("select_from_system_db_requires_grant") == "true"
    assert acl.findtext("select_from_information_schema_requires_grant") == "true"


def test_compose_mounts_the_config_and_the_sink_reads_as_reader() -> None:
    ch = COMPOSE["services"]["clickhouse"]
    assert "./clickhouse/config.d/radpulse.xml:/etc/clickhouse-server/config.d/radpulse.xml:ro" in ch["volumes"]
    assert "RADPULSE_CLICKHOUSE_READER_PASSWORD" in ch["environment"]
    url = COMPOSE["services"]["sink"]["environment"]["RADPULSE_CLICKHOUSE__READER_URL"]
    assert re.fullmatch(r"http://reader:\$\{RADPULSE_CLICKHOUSE_READER_PASSWORD[^}]*\}@clickhouse:8123/radpulse", url)
    settings = load_settings(None, env={"RADPULSE_CONFIG": os.devnull, "RADPULSE_CLICKHOUSE__READER_URL":
                                        "http://reader:secret@clickhouse:8123/radpulse"})
    assert settings.clickhouse.reader_url.startswith("http://reader:")
    assert "secret" not in " ".join(settings.masked_lines())  # the reader's password never reaches a log line
