"""Create or update the data source, the folder and every dashboard on a live Grafana, idempotently.

The only grafana-client import. Order: 1) data source (by uid; a name taken by another uid is an error, since the
dashboards reference the uid), 2) folder (by uid), 3) each dashboard (by uid, into the folder). Each step reads
first and writes only when something differs, so a second run reports every object ``unchanged``.
"Differs" compares only the fields we send (Grafana adds ids, versions and defaults of its own). The data source
password is write-only in Grafana: it is sent when the data source is created or otherwise changes, or when
Grafana says none is set; to rotate it alone, pass ``force_password``.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, Literal

from grafana_client import GrafanaApi
from grafana_client.client import GrafanaClientError, GrafanaException

from dashboards.spec import DATASOURCE_NAME, DATASOURCE_UID, FOLDER_TITLE, FOLDER_UID, PLUGIN_ID

log = logging.getLogger("radpulse.dashboards.push")

Outcome = Literal["created", "updated", "unchanged"]
Json = dict[str, Any]


class PushError(RuntimeError):
    """Grafana refused or could not be reached; the message names the object and the fix."""


@dataclass(frozen=True)
class Change:
    kind: str  # "datasource" | "folder" | "dashboard"
    name: str
    outcome: Outcome

    def __str__(self) -> str:
        return f"{self.kind} {self.name}: {self.outcome}"


@dataclass(frozen=True)
class ClickHouseTarget:
    """Where Grafana's data source points: the ClickHouse HTTP interface and the read-only user."""

    host: str = "clickhouse"
    port: int = 8123
    database: str = "radpulse"
    user: str = "grafana"
    password: str = ""
    secure: bool = False


def datasource_spec(ch: ClickHouseTarget) -> Json:
    """The data source as Grafana's API takes it (password separately, see ``push``)."""
    return {
        "uid": DATASOURCE_UID,
        "name": DATASOURCE_NAME,
        "type": PLUGIN_ID,
        "access": "proxy",
        "isDefault": True,
        "jsonData": {
            "host": ch.host,
            "port": ch.port,
            "protocol": "http",
            "secure": ch.secure,
            "username": ch.user,
            "defaultDatabase": ch.database,
        },
    }


def differs(desired: Any, actual: Any) -> bool:
    """True if ``actual`` lacks or has another value for anything ``desired`` sets (dicts compared by key)."""
    if isinstance(desired, dict):
        if not isinstance(actual, dict):
            return True
        return any(differs(v, actual.get(k)) for k, v in desired.items())
    return bool(desired != actual)


def _missing(exc: GrafanaException) -> bool:
    return isinstance(exc, GrafanaClientError) and exc.status_code == 404


def _fail(what: str, exc: Exception) -> PushError:
    return PushError(f"{what}: {exc}; check --url and that the token has the Admin (or Editor + data source) role")


def push_datasource(api: GrafanaApi, ch: ClickHouseTarget, force_password: bool = False) -> Change:
    desired = datasource_spec(ch)
    try:
        current = api.datasource.get_datasource_by_uid(DATASOURCE_UID)
    except GrafanaException as exc:
        if not _missing(exc):
            raise _fail(f"reading data source {DATASOURCE_UID}", exc) from exc
        current = None
    if current is None:
        try:
            other = api.datasource.get_datasource_by_name(DATASOURCE_NAME)
        except GrafanaException as exc:
            if not _missing(exc):
                raise _fail(f"reading data source {DATASOURCE_NAME!r}", exc) from exc
            other = None
        if other is not None:
            raise PushError(
                f"a data source named {DATASOURCE_NAME!r} already exists with uid {other.get('uid')!r}; the dashboards "
                f"need uid {DATASOURCE_UID!r}: delete or rename that data source in Grafana, then push again"
            )
        body = {**desired, "secureJsonData": {"password": ch.password}} if ch.password else desired
        try:
            api.datasource.create_datasource(body)
        except GrafanaException as exc:
            raise _fail(f"creating data source {DATASOURCE_NAME!r}", exc) from exc
        return Change("datasource", DATASOURCE_NAME, "created")
    no_password = ch.password and not (current.get("secureJsonFields") or {}).get("password")
    if not differs(desired, current) and not no_password and not force_password:
        return Change("datasource", DATASOURCE_NAME, "unchanged")
    body = {**desired, "secureJsonData": {"password": ch.password}} if ch.password else desired
    try:
        api.datasource.update_datasource_by_uid(DATASOURCE_UID, body)
    except GrafanaException as exc:
        raise _fail(f"updating data source {DATASOURCE_NAME!r}", exc) from exc
    return Change("datasource", DATASOURCE_NAME, "updated")


def push_folder(api: GrafanaApi, uid: str = FOLDER_UID, title: str = FOLDER_TITLE) -> Change:
    try:
        folders = api.folder.get_all_folders()
    except GrafanaException as exc:
        raise _fail("listing folders", exc) from exc
    found = next((f for f in folders if f.get("uid") == uid), None)
    try:
        if found is None:
            api.folder.create_folder(title, uid=uid)
            return Change("folder", title, "created")
        if found.get("title") == title:
            return Change("folder", title, "unchanged")
        api.folder.update_folder(uid, title=title, overwrite=True)
    except GrafanaException as exc:
        raise _fail(f"writing folder {title!r}", exc) from exc
    return Change("folder", title, "updated")


def push_dashboard(api: GrafanaApi, dashboard: Json, folder_uid: str = FOLDER_UID) -> Change:
    uid, title = dashboard["uid"], dashboard["title"]
    try:
        current = api.dashboard.get_dashboard(uid)
    except GrafanaException as exc:
        if not _missing(exc):
            raise _fail(f"reading dashboard {uid}", exc) from exc
        current = None
    if current is not None:
        same_folder = (current.get("meta") or {}).get("folderUid") == folder_uid
        if same_folder and not differs(dashboard, current.get("dashboard")):
            return Change("dashboard", title, "unchanged")
    body = {
        "dashboard": {**dashboard, "id": None},
        "folderUid": folder_uid,
        "overwrite": True,
        "message": "radpulse dashboards push",
    }
    try:
        api.dashboard.update_dashboard(body)
    except GrafanaException as exc:
        raise _fail(f"writing dashboard {uid}", exc) from exc
    return Change("dashboard", title, "created" if current is None else "updated")


def connect(url: str, token: str, timeout_s: float = 10.0) -> GrafanaApi:
    """A client for ``url`` with a service-account token (or ``user:password``)."""
    credential: str | tuple[str, str] = tuple(token.split(":", 1)) if ":" in token else token  # type: ignore[assignment]
    return GrafanaApi.from_url(url=url, credential=credential, timeout=timeout_s)


def push(api: GrafanaApi, dashboards: Iterable[Json], ch: ClickHouseTarget, force_password: bool = False
         ) -> list[Change]:  # fmt: skip
    """Data source, folder, then every dashboard; the list says what changed."""
    changes = [push_datasource(api, ch, force_password), push_folder(api)]
    for d in dashboards:
        changes.append(push_dashboard(api, d))
        log.info("%s", changes[-1])
    return changes
