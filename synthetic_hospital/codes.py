"""Coded values and UIDs: the vocabulary every layer of the synthetic hospital shares."""

from __future__ import annotations

import hashlib

Code = tuple[str, str, str]  # (CodeValue, CodingSchemeDesignator, CodeMeaning)


def make_uid(*parts: object) -> str:
    """A deterministic ``2.25`` UID (at most 44 characters) from a hash of ``parts``."""
    digest = hashlib.sha256("|".join(str(p) for p in parts).encode()).digest()
    return f"2.25.{int.from_bytes(digest[:16], 'big')}"
