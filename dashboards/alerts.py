"""Grafana alert rules, contact points, notification policies and mute timings, as file-provisioning documents.

Rules, their queries and threshold expressions, contact points and policies are built with the SDK's alerting
builders (``grafana-foundation-sdk``), which produce Grafana's alerting API objects; the provisioning files nest
the same objects (rules inside groups, receivers inside contact points), so ``rules_document`` and
``notifications_document`` only regroup them. Mute timings stay plain: the SDK encodes a weekday range as
``{"begin": 1, "end": 5}`` and a time range as ``{"from", "to"}``, where Grafana reads ``"monday:friday"`` and
``start_time``/``end_time``.

``radpulse dashboards build`` writes them to ``infra/grafana/provisioning/alerting/`` (``rules.yaml``,
``notifications.yaml``). Each rule's query (``panels.ALERTS``) returns one row per site × device with string
columns ``site``, ``device``, ``department``, which Grafana turns into the alert's labels, and a number that a
threshold expression compares. Policies route on ``department`` (a cardiology team gets only cardiology rooms);
every alert also goes to the webhook. Grafana keeps rule query models verbatim (no ``$VAR`` expansion, so
``$__timeFilter`` survives); contact point settings are expanded, which is how addresses come from the
environment (``RADPULSE_ALERT_*``, set in ``infra/compose.yaml``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

from grafana_foundation_sdk.builders import alerting, expr
from grafana_foundation_sdk.models.alerting import RelativeTimeRange
from grafana_foundation_sdk.models.dashboard import DataSourceRef

from dashboards.panels import (
    DEFAULT_DEPARTMENT,
    DEPARTMENT_BY_DEVICE,
    DEPARTMENT_BY_MODALITY,
    INFRA_DEPARTMENT,
    QUERIES,
)
from dashboards.spec import DATASOURCE_UID, FOLDER_TITLE, FOLDER_UID, target, to_json

Json = dict[str, Any]
OPENING_HOURS_LABEL = ("schedule", "opening-hours")  # rules with it are muted outside opening hours
MUTE_OUTSIDE_HOURS = "outside-opening-hours"
SITE_TIMEZONE = "UTC"  # set to [site] timezone, e.g. Asia/Shanghai: mute timings run on the hospital's clock


@dataclass(frozen=True)
class Rule:
    """One alert rule on one ``panels.ALERTS`` query."""

    uid: str
    title: str
    query: str
    group: str
    window_s: int  # the query's time range: the last window_s seconds before each evaluation
    op: Literal["gt", "lt"]
    threshold: float
    pending: str  # how long the condition must hold before the alert fires ("for")
    severity: str
    summary: str
    description: str
    labels: tuple[tuple[str, str], ...] = field(default=())

    def fires(self, value: float) -> bool:
        return value > self.threshold if self.op == "gt" else value < self.threshold


RULES: list[Rule] = [
    Rule("radpulse-drl-exceedance", "New DRL exceedance", "alert.drl_exceedance", "radpulse-dose", 600, "gt", 0,
         "0s", "warning",
         "{{ $labels.device }} ({{ $labels.site }}): new DRL exceedance",
         "{{ $values.A.Value }} exam(s) on {{ $labels.device }} exceeded a diagnostic reference level in the last "
         "10 minutes. Review them on the Dose & DRL dashboard."),
    Rule("radpulse-patient-cumulative-dose", "Patient cumulative dose over threshold",
         "alert.patient_cumulative_dose", "radpulse-dose", 86400, "gt", 0, "0s", "warning",
         "{{ $labels.site }}: patients over the cumulative dose threshold",
         "{{ $values.A.Value }} patient(s) examined in the last 24 h are over a cumulative dose threshold "
         "([dose] cumulative_*) in the rolling window. See the Dose & DRL dashboard or `radpulse dose cumulative`."),
    Rule("radpulse-edge-silent", "Edge stopped sending", "alert.edge_silent", "radpulse-pipeline", 86400, "gt", 300,
         "5m", "critical",
         "Edge {{ $labels.device }} ({{ $labels.site }}) stopped sending",
         "No heartbeat from edge {{ $labels.device }} for {{ $values.A.Value }} s. Modalities cannot deliver "
         "through it: check the edge host and its network.",
         (OPENING_HOURS_LABEL,)),
    Rule("radpulse-spool-growing", "Edge spool keeps growing", "alert.spool_growing", "radpulse-pipeline", 900,
         "gt", 0, "10m", "warning",
         "Spool of edge {{ $labels.device }} ({{ $labels.site }}) keeps growing",
         "The spool grew by {{ $values.A.Value }} events in 15 minutes: the edge cannot reach Kafka. Nothing is "
         "lost until the spool is full (then modalities get 0xA700)."),
    Rule("radpulse-consumer-lag", "Consumer lag over 5 minutes", "alert.consumer_lag", "radpulse-pipeline", 3600,
         "gt", 300, "5m", "warning",
         "{{ $labels.site }}: ClickHouse is {{ $values.A.Value }} s behind the edges",
         "The edges delivered to Kafka more recently than the newest instance in ClickHouse: the sink or the "
         "streams are behind or stopped."),
]  # fmt: skip
RULES_BY_QUERY: dict[str, Rule] = {r.query: r for r in RULES}
GROUP_INTERVAL_S = 60
EXPR = "__expr__"  # Grafana's server-side expressions
# the keys of a rule in a provisioning file (the API object also carries folderUID, ruleGroup, orgID)
PROVISIONED_RULE_KEYS = ("uid", "title", "condition", "data", "noDataState", "execErrState", "for", "annotations",
                         "labels", "isPaused")


def rule_builder(rule: Rule) -> alerting.Rule:
    """The rule as Grafana's alerting API object: query A (ClickHouse), threshold B on A, condition B."""
    query = (alerting.Query("A").datasource_uid(DATASOURCE_UID)
             .relative_time_range(RelativeTimeRange(from_val=rule.window_s, to=0))
             .model(target(QUERIES[rule.query], "A").interval_ms(1000).max_data_points(43200)))
    evaluator = expr.ExprTypeThresholdConditionsEvaluator().type(rule.op).params([rule.threshold])
    threshold = (expr.TypeThreshold().ref_id("B").expression("A").datasource(DataSourceRef(type_val=EXPR, uid=EXPR))
                 .conditions([expr.ExprTypeThresholdConditions().evaluator(evaluator)]))
    condition = (alerting.Query("B").datasource_uid(EXPR).relative_time_range(RelativeTimeRange(from_val=0, to=0))
                 .model(threshold))
    return (alerting.Rule(rule.title).uid(rule.uid).condition("B").queries([query, condition])
            .no_data_state("OK").exec_err_state("Error").for_val(rule.pending)
            .annotations({"summary": rule.summary, "description": rule.description})
            .labels({"severity": rule.severity, "source": "radpulse", **dict(rule.labels)}).is_paused(False)
            .rule_group(rule.group).folder_uid(FOLDER_UID).org_id(1))


def rule_json(rule: Rule) -> Json:
    """The rule as a provisioning file holds it."""
    api = to_json(rule_builder(rule))
    return {k: api[k] for k in PROVISIONED_RULE_KEYS if k in api}


def rules_document() -> Json:
    groups: dict[str, list[Rule]] = {}
    for rule in RULES:
        groups.setdefault(rule.group, []).append(rule)
    out = []
    for name, rules in groups.items():
        group = to_json(alerting.RuleGroup(name).folder_uid(FOLDER_UID).interval(GROUP_INTERVAL_S)
                        .rules([rule_builder(r) for r in rules]))
        out.append({"orgId": 1, "name": group["title"], "folder": FOLDER_TITLE, "interval": f"{group['interval']}s",
                    "rules": [rule_json(r) for r in rules]})
    return {"apiVersion": 1, "groups": out}


def departments() -> list[str]:
    """Every value the ``department`` label can take."""
    return sorted({*DEPARTMENT_BY_MODALITY.values(), *DEPARTMENT_BY_DEVICE.values(), DEFAULT_DEPARTMENT,
                   INFRA_DEPARTMENT})  # fmt: skip


def _env(department: str) -> str:
    return "RADPULSE_ALERT_EMAIL_" + department.upper().replace("-", "_")


WEBHOOK = "radpulse-webhook"
WEBHOOK_ENV = "RADPULSE_ALERT_WEBHOOK_URL"


def email_receiver(department: str) -> str:
    return f"{department}-email"


def contact_env_vars() -> list[str]:
    """The environment variables the contact points read (compose must set them: empty means invalid)."""
    return [WEBHOOK_ENV, *(_env(d) for d in departments())]


def _contact_point(uid: str, kind: Literal["email", "webhook"], settings: Json) -> Json:
    """A one-receiver contact point: the SDK's API object, nested as a provisioning file holds it."""
    api = to_json(alerting.ContactPoint().uid(uid).name(uid).type(kind).settings(settings))
    return {"orgId": 1, "name": api["name"],
            "receivers": [{"uid": api["uid"], "type": api["type"], "settings": api["settings"]}]}


def notifications_document() -> Json:
    contact_points = [_contact_point(WEBHOOK, "webhook", {"url": f"${WEBHOOK_ENV}", "httpMethod": "POST"})]
    routes = [alerting.NotificationPolicy().receiver(WEBHOOK).continue_val(True)]  # no matcher: every alert, then on
    for dep in departments():
        contact_points.append(_contact_point(email_receiver(dep), "email",
                                             {"addresses": f"${_env(dep)}", "singleEmail": True}))
        route = alerting.NotificationPolicy().receiver(email_receiver(dep)).object_matchers([["department", "=", dep]])
        if dep == INFRA_DEPARTMENT:
            key, value = OPENING_HOURS_LABEL
            route.routes([alerting.NotificationPolicy().receiver(email_receiver(dep))
                          .object_matchers([[key, "=", value]]).mute_time_intervals([MUTE_OUTSIDE_HOURS])])
        routes.append(route)
    policy = (alerting.NotificationPolicy().receiver(WEBHOOK)
              .group_by(["grafana_folder", "alertname", "site", "department"])
              .group_wait("30s").group_interval("5m").repeat_interval("4h").routes(routes))
    mute = {
        "orgId": 1,
        "name": MUTE_OUTSIDE_HOURS,
        "time_intervals": [
            {"times": [{"start_time": "00:00", "end_time": "07:00"}, {"start_time": "19:00", "end_time": "24:00"}],
             "weekdays": ["monday:friday"], "location": SITE_TIMEZONE},
            {"weekdays": ["saturday", "sunday"], "location": SITE_TIMEZONE},
        ],
    }
    return {"apiVersion": 1, "contactPoints": contact_points, "policies": [{"orgId": 1, **to_json(policy)}],
            "muteTimes": [mute]}

