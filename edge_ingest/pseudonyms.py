"""Keyed pseudonyms and the reversible accession token. Pure once given the keys.

PS3.15 warns that plain hashes of identifiers fall to dictionary attacks, so every pseudonym is
HMAC-SHA256(key, label ‖ 0x1F ‖ value): the label keeps a patient ID and an accession number with the same digits
from linking. UIDs become "2.25.<128-bit integer>" (PS3.5 B.2) so they still look like UIDs and still join images
to dose-report events.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import uuid

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from edge_ingest.keys import EdgeKeys

TOKEN_PREFIX = "rpa1."
_AAD = b"radpulse accession v1"


class TokenError(ValueError):
    """An accession token that this edge's key cannot open (other site, other key, or altered)."""


def _mac(key: bytes, label: str, value: str) -> bytes:
    message = label.encode() + b"\x1f" + value.strip().encode("utf-8", "surrogateescape")
    return hmac.new(key, message, hashlib.sha256).digest()


def pseudonym(keys: EdgeKeys, label: str, value: str) -> str:
    """32 hex characters (128 bits) identifying `value` under this deployment's key."""
    return _mac(keys.pseudonym_key, label, value)[:16].hex()


def uid_pseudonym(keys: EdgeKeys, value: str) -> str:
    return "2.25." + str(int.from_bytes(_mac(keys.pseudonym_key, "uid", value)[:16], "big"))


def event_id_for(instance_pseudonym: str) -> str:
    """Deterministic event id: a resend of the same instance carries the same id."""
    return str(uuid.uuid5(uuid.NAMESPACE_OID, instance_pseudonym))


def encrypt_accession(keys: EdgeKeys, accession: str) -> str:
    """AES-256-GCM token. The nonce is derived from the value (synthetic IV), so a resent object yields the same
    token: the only thing that leaks is equality, which the accession pseudonym shows anyway."""
    plaintext = accession.strip().encode("utf-8", "surrogateescape")
    nonce = hmac.new(keys.accession_key, b"nonce\x1f" + plaintext, hashlib.sha256).digest()[:12]
    sealed = AESGCM(keys.accession_key).encrypt(nonce, plaintext, _AAD)
    return TOKEN_PREFIX + base64.urlsafe_b64encode(nonce + sealed).rstrip(b"=").decode("ascii")


def decrypt_accession(keys: EdgeKeys, token: str) -> str:
    token = token.strip()
    if not token.startswith(TOKEN_PREFIX):
        raise TokenError(f"not a radpulse accession token (they start with {TOKEN_PREFIX!r})")
    body = token[len(TOKEN_PREFIX) :]
    try:
        raw = base64.urlsafe_b64decode(body + "=" * (-len(body) % 4))
        return AESGCM(keys.accession_key).decrypt(raw[:12], raw[12:], _AAD).decode("utf-8", "surrogateescape")
    except (InvalidTag, ValueError):
        raise TokenError(
            "this token does not open with this edge's accession key: it was made at another site, under another "
            "key, or altered; run `radpulse reveal` on the edge that produced it"
        ) from None
