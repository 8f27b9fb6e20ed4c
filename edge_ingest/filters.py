"""Source filters: which received objects become events. Pure.

A PACS that forwards everything would flood the pipeline with secondary captures and workstation objects; those
are answered with success (the sender must not retry) and counted as ignored.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from schemas.config import SourceFilter


def _compile(patterns: list[str]) -> tuple[re.Pattern[str], ...]:
    return tuple(re.compile(p) for p in patterns)


@dataclass(frozen=True)
class CompiledFilter:
    ignore_sop: frozenset[str]
    accept_sop: frozenset[str]
    ignore_station: tuple[re.Pattern[str], ...]
    accept_station: tuple[re.Pattern[str], ...]
    ignore_manufacturer: tuple[re.Pattern[str], ...]
    accept_manufacturer: tuple[re.Pattern[str], ...]
    ignore_model: tuple[re.Pattern[str], ...]
    accept_model: tuple[re.Pattern[str], ...]
    ignore_serial: frozenset[str]
    accept_serial: frozenset[str]

    @classmethod
    def from_settings(cls, f: SourceFilter) -> CompiledFilter:
        return cls(
            frozenset(f.ignore_sop_classes),
            frozenset(f.accept_sop_classes),
            _compile(f.ignore_station_names),
            _compile(f.accept_station_names),
            _compile(f.ignore_manufacturers),
            _compile(f.accept_manufacturers),
            _compile(f.ignore_models),
            _compile(f.accept_models),
            frozenset(f.ignore_device_serials),
            frozenset(f.accept_device_serials),
        )

    def sop_class_ignored(self, sop_class_uid: str) -> str | None:
        """Reason to ignore by SOP class alone (checked before any parsing), or None."""
        if sop_class_uid in self.ignore_sop:
            return "sop_class"
        if self.accept_sop and sop_class_uid not in self.accept_sop:
            return "sop_class"
        return None

    def device_ignored(
        self, station: str | None, manufacturer: str | None, model: str | None, serial: str | None
    ) -> str | None:
        checks = (
            ("station_name", station, self.ignore_station, self.accept_station),
            ("manufacturer", manufacturer, self.ignore_manufacturer, self.accept_manufacturer),
            ("model", model, self.ignore_model, self.accept_model),
        )
        for name, value, ignore, accept in checks:
            text = value or ""
            if any(p.search(text) for p in ignore):
                return name
            if accept and not any(p.search(text) for p in accept):
                return name
        if serial is not None and serial in self.ignore_serial:
            return "device_serial"
        if self.accept_serial and (serial or "") not in self.accept_serial:
            return "device_serial"
        return None
