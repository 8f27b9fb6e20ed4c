import os
import stat
from pathlib import Path

import pytest

from edge_ingest.keys import EdgeKeys, KeyFileError, load_keys
from edge_ingest.pseudonyms import (
    TokenError,
    decrypt_accession,
    encrypt_accession,
    event_id_for,
    pseudonym,
    uid_pseudonym,
)

KEYS = EdgeKeys(b"p" * 32, b"a" * 32)
OTHER = EdgeKeys(b"q" * 32, b"b" * 32)


def test_pseudonyms_are_keyed_labelled_and_stable() -> None:
    assert pseudonym(KEYS, "patient", "12345678") == pseudonym(KEYS, "patient", "12345678")
    assert pseudonym(KEYS, "patient", "12345678") != pseudonym(OTHER, "patient", "12345678")
    # the label stops a patient ID and an accession with the same digits from linking
    assert pseudonym(KEYS, "patient", "12345678") != pseudonym(KEYS, "accession", "12345678")
    assert "12345678" not in pseudonym(KEYS, "patient", "12345678")


def test_uid_pseudonym_is_a_valid_uid() -> None:
    uid = uid_pseudonym(KEYS, "1.2.840.113619.2.55.3.1234")
    assert uid.startswith("2.25.") and len(uid) <= 64 and uid.replace(".", "").isdigit()
    assert uid == uid_pseudonym(KEYS, "1.2.840.113619.2.55.3.1234")


def test_event_id_is_deterministic() -> None:
    p = uid_pseudonym(KEYS, "1.2.3")
    assert event_id_for(p) == event_id_for(p) and event_id_for(p) != event_id_for(uid_pseudonym(KEYS, "1.2.4"))


def test_accession_token_round_trip_and_tamper() -> None:
    token = encrypt_accession(KEYS, "ACC-2024-0001")
    assert "ACC" not in token and "0001" not in token
    assert decrypt_accession(KEYS, token) == "ACC-2024-0001"
    assert encrypt_accession(KEYS, "ACC-2024-0001") == token  # a resent object yields the same token
    with pytest.raises(TokenError):
        decrypt_accession(OTHER, token)
    tampered = token[:-2] + ("A" if token[-2] != "A" else "B") + token[-1]
    with pytest.raises(TokenError):
        decrypt_accession(KEYS, tampered)


def test_keys_created_0600_then_reused(tmp_path: Path) -> None:
    keys = load_keys(tmp_path)
    for name in ("pseudonym.key", "accession.key"):
        mode = stat.S_IMODE((tmp_path / "keys" / name).stat().st_mode)
        assert mode == 0o600
    assert load_keys(tmp_path).pseudonym_key == keys.pseudonym_key
    assert keys.pseudonym_key.hex() not in repr(keys)


def test_world_readable_key_is_refused_with_the_fix(tmp_path: Path) -> None:
    load_keys(tmp_path)
    path = tmp_path / "keys" / "pseudonym.key"
    os.chmod(path, 0o644)
    with pytest.raises(KeyFileError, match="chmod 600"):
        load_keys(tmp_path)
