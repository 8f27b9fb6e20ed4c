"""infra/: the compose file, the Dockerfile, ClickHouse users, Grafana provisioning and the cluster DDL's shape.

No Docker engine or Grafana runs here: files are parsed and cross-checked (every mount exists, every variable a
provisioning file reads is set, users and data source agree). ``docker compose config`` runs only where a
docker CLI with compose and a daemon answer (``test_compose_config_with_docker``). That the cluster DDL parses
in ClickHouse is checked on chDB in ``tests/integration/test_dashboard_sql.py``.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

import pytest
import yaml

from dashboards import alerts, spec
from dashboards.build import ALERTING_DIR
from sinks.cluster_ddl import ClusterDdlError, cluster_ddl, statements
from sinks.migrate import discover

REPO = Path(__file__).resolve().parents[2]
INFRA = REPO / "infra"
COMPOSE = yaml.safe_load((INFRA / "compose.yaml").read_text(encoding="utf-8"))
SERVICES: dict[str, Any] = COMPOSE["services"]
PROVISIONING = INFRA / "grafana" / "provisioning"
ENV_REF = re.compile(r"\$\{?([A-Z][A-Z0-9_]*)")  # $VAR / ${VAR} as Grafana and ClickHouse expand them


def _env(service: str) -> dict[str, str]:
    return {k: str(v) for k, v in (SERVICES[service].get("environment") or {}).items()}


def _yaml(path: Path) -> Any:
    return yaml.safe_load(path.read_text(encoding="utf-8"))


# ------------------------------------------------------------------------------------------------------ compose
def test_compose_services_and_images() -> None:
    assert set(SERVICES) == {"kafka", "clickhouse", "grafana", "edge", "streams", "sink"}
    assert re.fullmatch(r"apache/kafka:4\.\d+\.\d+", SERVICES["kafka"]["image"])
    assert SERVICES["clickhouse"]["image"].startswith("clickhouse/clickhouse-server:")
    assert SERVICES["grafana"]["image"].startswith("grafana/grafana:")
    assert "grafana-clickhouse-datasource" in _env("grafana")["GF_INSTALL_PLUGINS"]
    kafka = _env("kafka")
    assert kafka["KAFKA_PROCESS_ROLES"] == "broker,controller"  # KRaft, no ZooKeeper
    for name in ("edge", "streams", "sink"):
        svc = SERVICES[name]
        assert svc["build"] == {"context": "..", "dockerfile": "infra/Dockerfile"}
        assert svc["command"] == [name]
        assert _env(name)["RADPULSE_KAFKA__BOOTSTRAP_SERVERS"] == "kafka:9092"


def test_every_service_has_a_healthcheck_and_waits_for_its_dependencies() -> None:
    for name, svc in SERVICES.items():
        assert svc["healthcheck"]["test"], name
        for dep, cond in (svc.get("depends_on") or {}).items():
            assert dep in SERVICES and cond == {"condition": "service_healthy"}, (name, dep)


def test_bind_mounts_exist_and_named_volumes_are_declared() -> None:
    declared = set(COMPOSE["volumes"])
    for name, svc in SERVICES.items():
        for mount in svc.get("volumes", []):
            source = mount.split(":")[0]
            if source.startswith("."):
                assert (INFRA / source).exists(), f"{name}: {source} does not exist"
            else:
                assert source in declared, f"{name}: volume {source} not declared"
    assert "edge-data" in {m.split(":")[0] for m in SERVICES["edge"]["volumes"]}  # keys + spool survive


def _compose_value(value: str) -> str:
    """``${VAR:-default}`` → default, ``${VAR:?msg}`` / ``${VAR}`` → "x" (as if the operator had set it)."""
    return re.sub(r"\$\{\w+(?::-([^}]*)|:\?[^}]*)?\}", lambda m: m.group(1) if m.group(1) is not None else "x", value)


def test_settings_come_from_radpulse_variables() -> None:
    import dataclasses
    from typing import get_type_hints

    from schemas.config import Settings, load_settings

    fields = {name: {f.name for f in dataclasses.fields(cls)} for name, cls in get_type_hints(Settings).items()}
    for name in ("edge", "streams", "sink"):
        env = {k: _compose_value(v) for k, v in _env(name).items()}
        for key in env:  # load_settings ignores unknown names inside a known section: check them here
            section, _, setting = key.removeprefix("RADPULSE_").lower().partition("__")
            assert setting in fields.get(section, set()), f"{name}: {key} is not a radpulse setting"
        settings = load_settings(os.devnull, env={**env, "RADPULSE_CONFIG": os.devnull})
        assert settings.kafka.bootstrap_servers == "kafka:9092"
    assert re.fullmatch(r"http://writer:\$\{RADPULSE_CLICKHOUSE_WRITER_PASSWORD[^}]*\}@clickhouse:8123/radpulse",
                        _env("sink")["RADPULSE_CLICKHOUSE__URL"])  # fmt: skip


def test_compose_config_with_docker() -> None:
    docker = shutil.which("docker")
    probe = subprocess.run([docker, "compose", "version"], capture_output=True, timeout=20) if docker else None
    if probe is None or probe.returncode != 0:
        pytest.skip("`docker compose config` not checked: no docker CLI with the compose plugin here")
    if subprocess.run([docker, "info"], capture_output=True, timeout=20).returncode != 0:  # type: ignore[list-item]
        pytest.skip("`docker compose config` not checked: the docker CLI is here but no daemon answers")
    env = {**os.environ, **{v: "x" for v in _required_vars()}}
    done = subprocess.run([docker, "compose", "-f", str(INFRA / "compose.yaml"), "config", "--quiet"],  # type: ignore[list-item]
                          env=env, capture_output=True, text=True, timeout=60)  # fmt: skip
    assert done.returncode == 0, done.stderr


def _required_vars() -> set[str]:
    return set(re.findall(r"\$\{([A-Z0-9_]+):\?", (INFRA / "compose.yaml").read_text(encoding="utf-8")))


# --------------------------------------------------------------------------------------------------- Dockerfile
def test_dockerfile() -> None:
    text = (INFRA / "Dockerfile").read_text(encoding="utf-8")
    lines = [ln.strip() for ln in text.splitlines() if ln.strip() and not ln.strip().startswith("#")]
    assert lines[0] == "FROM python:3.11-slim"
    user = [ln.split()[1] for ln in lines if ln.startswith("USER ")]
    assert user and user[-1] not in ("root", "0")
    assert "/data/edge" in text and "VOLUME" in text
    assert any(ln.startswith("RUN pip install .") for ln in lines)
    for ln in lines:
        if ln.startswith("COPY "):
            for src in ln.split()[1:-1]:
                assert list(REPO.glob(src)), f"COPY source {src} missing"


# ----------------------------------------------------------------------------------------------- ClickHouse users
USERS = ET.parse(INFRA / "clickhouse" / "users.d" / "radpulse.xml").getroot()


def _user(name: str) -> ET.Element:
    user = USERS.find(f"users/{name}")
    assert user is not None, name
    return user


def test_clickhouse_users_writer_and_read_only() -> None:
    ro = USERS.find("profiles/radpulse_readonly")
    assert ro is not None and ro.findtext("readonly") == "1"
    assert ro.find("constraints/max_execution_time/changeable_in_readonly") is not None  # the plugin sets it
    for name in ("grafana", "analyst"):
        assert _user(name).findtext("profile") == "radpulse_readonly"
        grants = [q.text or "" for q in _user(name).findall("grants/query")]
        assert grants == ["GRANT SELECT ON radpulse.*"]
    writer = _user("writer")
    assert writer.findtext("profile") == "radpulse_writer"
    assert "INSERT" in (writer.findtext("grants/query") or "")


def test_clickhouse_passwords_come_from_the_environment() -> None:
    env = _env("clickhouse")
    for user in USERS.findall("users/*"):
        password = user.find("password")
        assert password is not None and not (password.text or "").strip(), f"{user.tag}: no literal password"
        assert password.get("from_env") in env, f"{user.tag}: {password.get('from_env')} not set for clickhouse"


# ------------------------------------------------------------------------------------------- Grafana provisioning
def test_datasource_provisioning_is_the_read_only_user() -> None:
    (ds,) = _yaml(PROVISIONING / "datasources" / "clickhouse.yaml")["datasources"]
    assert (ds["uid"], ds["type"], ds["name"]) == (spec.DATASOURCE_UID, spec.PLUGIN_ID, spec.DATASOURCE_NAME)
    assert ds["jsonData"]["username"] == "grafana" and ds["jsonData"]["defaultDatabase"] == "radpulse"
    assert ds["jsonData"]["host"] == "clickhouse" and ds["jsonData"]["port"] == 8123
    (var,) = ENV_REF.findall(ds["secureJsonData"]["password"])
    assert var in _env("grafana")
    assert _user("grafana").find("password").get("from_env") == var  # type: ignore[union-attr]


def test_dashboard_provider_points_at_the_mounted_json() -> None:
    (provider,) = _yaml(PROVISIONING / "dashboards" / "radpulse.yaml")["providers"]
    mounts = dict(m.split(":")[:2] for m in SERVICES["grafana"]["volumes"])
    assert mounts["../dashboards/json"] == provider["options"]["path"]
    assert provider["folderUid"] == spec.FOLDER_UID
    assert mounts["./grafana/provisioning"] == "/etc/grafana/provisioning"
    home = _env("grafana")["GF_DASHBOARDS_DEFAULT_HOME_DASHBOARD_PATH"]
    assert (REPO / "dashboards/json" / Path(home).name).is_file()


def test_alerting_provisioning_parses_and_its_variables_are_set() -> None:
    rules = _yaml(REPO / ALERTING_DIR / "rules.yaml")
    notes = _yaml(REPO / ALERTING_DIR / "notifications.yaml")
    assert rules == alerts.rules_document() and notes == alerts.notifications_document()
    for group in rules["groups"]:
        for rule in group["rules"]:
            assert {q["datasourceUid"] for q in rule["data"]} == {spec.DATASOURCE_UID, "__expr__"}
    text = (REPO / ALERTING_DIR / "notifications.yaml").read_text(encoding="utf-8")
    grafana_env = _env("grafana")
    assert set(ENV_REF.findall(text)) == set(alerts.contact_env_vars())
    for var in alerts.contact_env_vars():
        assert var in grafana_env, f"{var} (a contact point setting) is not set for grafana in compose"


# ----------------------------------------------------------------------------------------------- cluster DDL shape
DDL = cluster_ddl("radpulse_cluster")
STATEMENTS = statements(DDL)


def test_cluster_ddl_replicates_every_table_and_adds_distributed_tables() -> None:
    creates = [s for s in STATEMENTS if s.startswith("CREATE TABLE") and " Distributed(" not in s]
    tables = {re.search(r"radpulse\.(\w+) ON CLUSTER", s).group(1) for s in creates}  # type: ignore[union-attr]
    assert tables >= {"instances", "exams", "exam_dose", "dose_alerts", "device_kpis", "drl_values",
                      "schema_migrations"}  # fmt: skip
    for s in creates:
        assert "ON CLUSTER radpulse_cluster" in s and "ENGINE = Replicated" in s, s
    distributed = {re.search(r"radpulse\.(\w+)_all ON CLUSTER", s).group(1)  # type: ignore[union-attr]
                   for s in STATEMENTS if " Distributed(" in s}  # fmt: skip
    assert distributed == tables - {"drl_values", "schema_migrations"}  # reference data: a full copy everywhere
    assert "'/clickhouse/tables/{shard}/radpulse/exams', '{replica}', version)" in DDL
    assert "ReplicatedReplacingMergeTree('/clickhouse/tables/{shard}/radpulse/edge_health', '{replica}')" in DDL
    assert "'/clickhouse/tables/all/radpulse/drl_values'" in DDL


def test_cluster_ddl_views_and_alters() -> None:
    assert all("ON CLUSTER" in s for s in STATEMENTS if s.startswith(("CREATE", "ALTER")))
    bench = next(s for s in STATEMENTS if "VIEW radpulse.dose_benchmark " in s)
    assert "FROM radpulse.exam_dose_all FINAL" in bench and "FROM radpulse.exam_dose FINAL" not in bench
    assert not any("dose_benchmark_all" in s for s in STATEMENTS)
    assert any(s.startswith("CREATE OR REPLACE VIEW radpulse.exams_latest_all") for s in STATEMENTS)
    alters = [s for s in STATEMENTS if s.startswith("ALTER TABLE radpulse.exams")]
    assert len(alters) == 8  # four ADD COLUMNs of 0002, on exams and on exams_all


def test_cluster_ddl_records_the_migrations() -> None:
    insert = STATEMENTS[-1]
    assert insert.startswith("INSERT INTO radpulse.schema_migrations")
    for mig in discover():
        assert f"({mig.version}, '{mig.name}', '{mig.checksum}', now64(3))" in insert


@pytest.mark.parametrize("bad", ["", "a b", "c;DROP", "x" * 65])
def test_cluster_ddl_refuses_odd_names(bad: str) -> None:
    with pytest.raises(ClusterDdlError, match="expected letters"):
        cluster_ddl(bad)
