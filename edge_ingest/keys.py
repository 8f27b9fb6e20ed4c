"""The edge's two secrets: the pseudonym key (HMAC) and the accession key (AES-GCM).

Created on first run as files of mode 0600 in ``<edge data_dir>/keys``; loaded thereafter. Their bytes are never
logged, never put in an exception message, and never leave the hospital. Losing the pseudonym key breaks
longitudinal linkage; losing the accession key makes existing accession tokens unreadable: back both up.
"""

from __future__ import annotations

import hashlib
import os
import secrets
import stat
from dataclasses import dataclass, field
from pathlib import Path

KEY_BYTES = 32


class KeyFileError(RuntimeError):
    """A key file exists but is unusable (wrong size or too open permissions)."""


class KeyMissingError(KeyFileError):
    """A key file that must already exist does not (``radpulse reveal`` never creates keys)."""


@dataclass(frozen=True)
class EdgeKeys:
    pseudonym_key: bytes = field(repr=False)
    accession_key: bytes = field(repr=False)

    @property
    def key_id(self) -> str:
        """A short public id of the pseudonym key, so pseudonyms made under different keys are told apart."""
        return hashlib.sha256(b"radpulse-key-id" + self.pseudonym_key).hexdigest()[:8]

    def __repr__(self) -> str:
        return f"EdgeKeys(key_id={self.key_id})"


def _load_or_create(path: Path, create: bool = True) -> bytes:
    if not create and not path.exists():
        raise KeyMissingError(
            f"{path.name} is missing: looked for {path} (the keys folder of [edge] data_dir). Run this on the edge "
            "that produced the data, or restore its keys folder from backup; a new key could open nothing"
        )
    if path.exists():
        mode = stat.S_IMODE(path.stat().st_mode)
        if mode & 0o077:
            raise KeyFileError(f"{path}: permissions {oct(mode)} let others read the key; run `chmod 600 {path}`")
        data = path.read_bytes()
        if len(data) != KEY_BYTES:
            raise KeyFileError(
                f"{path}: expected {KEY_BYTES} bytes, found {len(data)}; restore it from backup "
                "(deleting it creates a new key and breaks linkage with earlier data)"
            )
        return data
    path.parent.mkdir(parents=True, exist_ok=True)
    os.chmod(path.parent, 0o700)
    key = secrets.token_bytes(KEY_BYTES)
    # O_EXCL: two processes starting together must not overwrite each other's fresh key
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return _load_or_create(path)
    try:
        os.write(fd, key)
        os.fsync(fd)
    finally:
        os.close(fd)
    return key


def load_keys(data_dir: str | os.PathLike[str], *, create: bool = True) -> EdgeKeys:
    """The edge's keys; created on first run unless ``create`` is False (then a missing key raises
    ``KeyMissingError`` naming the file it looked for)."""
    folder = Path(data_dir) / "keys"
    return EdgeKeys(_load_or_create(folder / "pseudonym.key", create),
                    _load_or_create(folder / "accession.key", create))
