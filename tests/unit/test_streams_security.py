"""`[kafka]` security settings reach the Faust worker as the aiokafka client configuration."""

from __future__ import annotations

import pytest
from faust.transport.drivers.aiokafka import credentials_to_aiokafka_auth

from schemas.config import ConfigError, KafkaSettings
from streams.app import broker_credentials


def test_plaintext_has_no_credentials() -> None:
    assert broker_credentials(KafkaSettings()) is None


def test_sasl_ssl_scram_reaches_aiokafka() -> None:
    k = KafkaSettings(security_protocol="SASL_SSL", sasl_mechanism="SCRAM-SHA-512", sasl_username="streams",
                      sasl_password="s3cret")
    conf = credentials_to_aiokafka_auth(broker_credentials(k))
    assert conf["security_protocol"] == "SASL_SSL"
    assert conf["sasl_mechanism"] == "SCRAM-SHA-512"
    assert (conf["sasl_plain_username"], conf["sasl_plain_password"]) == ("streams", "s3cret")
    assert conf["ssl_context"] is not None


def test_sasl_plaintext_has_no_tls() -> None:
    k = KafkaSettings(security_protocol="SASL_PLAINTEXT", sasl_mechanism="PLAIN", sasl_username="u",
                      sasl_password="p")
    conf = credentials_to_aiokafka_auth(broker_credentials(k))
    assert conf["security_protocol"] == "SASL_PLAINTEXT" and conf["ssl_context"] is None


def test_ssl_uses_the_configured_ca(tmp_path) -> None:
    with pytest.raises(ConfigError, match="ssl_ca_location"):
        broker_credentials(KafkaSettings(security_protocol="SSL", ssl_ca_location=str(tmp_path / "missing.pem")))
    conf = credentials_to_aiokafka_auth(broker_credentials(KafkaSettings(security_protocol="SSL")))
    assert conf["security_protocol"] == "SSL" and conf["ssl_context"] is not None


def test_sasl_without_a_mechanism_names_the_setting() -> None:
    with pytest.raises(ConfigError, match="sasl_mechanism"):
        broker_credentials(KafkaSettings(security_protocol="SASL_SSL"))
