"""Every released Avro schema, keyed by its CRC-64-AVRO fingerprint.

Schemas live in ``avsc/<Name>.v<N>.avsc``; a released file is never edited, a change is a new version.
The highest version of each name is the reader schema: every older writer must resolve against it
(``tests/unit/test_schema_compat.py`` proves this).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

from fastavro import parse_schema
from fastavro.schema import fingerprint, to_parsing_canonical_form

AVSC_DIR = Path(__file__).with_name("avsc")
_FILE_RE = re.compile(r"^(?P<name>[A-Za-z]+)\.v(?P<version>\d+)\.avsc$")


class UnknownSchemaError(LookupError):
    """A message names a schema fingerprint that this build does not know."""


@dataclass(frozen=True)
class SchemaVersion:
    """One released schema file."""

    name: str
    version: int
    path: Path
    parsed: Any  # fastavro's parsed schema
    fingerprint: bytes  # 8 bytes, little-endian CRC-64-AVRO, as in single-object encoding


@cache
def all_versions() -> tuple[SchemaVersion, ...]:
    out = []
    for path in sorted(AVSC_DIR.glob("*.avsc")):
        m = _FILE_RE.match(path.name)
        if not m:
            raise ValueError(f"{path}: schema files are named <Name>.v<N>.avsc")
        raw = json.loads(path.read_text(encoding="utf-8"))
        parsed = parse_schema(raw)
        fp = bytes.fromhex(fingerprint(to_parsing_canonical_form(parsed), "CRC-64-AVRO"))
        out.append(SchemaVersion(m["name"], int(m["version"]), path, parsed, fp))
    return tuple(out)


@cache
def by_fingerprint() -> dict[bytes, SchemaVersion]:
    return {v.fingerprint: v for v in all_versions()}


@cache
def latest(name: str) -> SchemaVersion:
    versions = [v for v in all_versions() if v.name == name]
    if not versions:
        raise UnknownSchemaError(f"no schema named {name!r} in {AVSC_DIR}")
    return max(versions, key=lambda v: v.version)


def writer_for(fp: bytes) -> SchemaVersion:
    try:
        return by_fingerprint()[fp]
    except KeyError:
        raise UnknownSchemaError(
            f"schema fingerprint {fp.hex()} is not in {AVSC_DIR}; upgrade radpulse on this consumer "
            "so it knows every schema its producers write"
        ) from None
