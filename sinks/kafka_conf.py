"""librdkafka settings from ``[kafka]``: the sinks' own copy, because sinks/ must not import edge_ingest/."""

from __future__ import annotations

from schemas.config import KafkaSettings


def client_config(settings: KafkaSettings) -> dict[str, str]:
    """Bootstrap servers and security settings shared by every radpulse Kafka client."""
    conf = {"bootstrap.servers": settings.bootstrap_servers, "security.protocol": settings.security_protocol}
    if settings.sasl_mechanism:
        conf["sasl.mechanism"] = settings.sasl_mechanism
        conf["sasl.username"] = settings.sasl_username
        conf["sasl.password"] = settings.sasl_password
    if settings.ssl_ca_location:
        conf["ssl.ca.location"] = settings.ssl_ca_location
    return conf
