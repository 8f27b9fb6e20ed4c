"""Source filters: which received objects become events. Pure.

A PACS that forwards everything would flood the pipeline with secondary captures and workstation objects; those
are answered with success (the sender must not retry) and counted as ignored.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from schemas.config import SourceFilter

SECONDARY_CAPTURE_PREFIX = "1.2.840.10008.5.1.4.1.1.7"  # SC and its multi-frame variants
DOSE_MODALITIES = frozenset({"CT", "MG", "DX", "CR", "RF", "XA"})
# header attributes that carry dose (CTDIvol, DAP, entrance dose, organ dose), top level or per exposure item
_DOSE_KEYWORDS = ("CTDIvol", "ImageAndFluoroscopyAreaDoseProduct", "EntranceDoseInmGy", "EntranceDose", "OrganDose")


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
    accept_dose_captures: bool = True

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
            f.accept_dose_captures,
        )

    def sop_class_ignored(self, sop_class_uid: str) -> str | None:
        """Reason to ignore by SOP class alone (checked before any parsing), or None."""
        if sop_class_uid in self.ignore_sop:
            return "sop_class"
        if self.accept_sop and sop_class_uid not in self.accept_sop:
            return "sop_class"
        return None

    def may_carry_dose(self, sop_class_uid: str) -> bool:
        """An ignored SOP class whose objects are parsed anyway, to keep those that carry dose (`carries_dose`)."""
        return (
            self.accept_dose_captures
            and sop_class_uid.startswith(SECONDARY_CAPTURE_PREFIX)
            and not (self.accept_sop and sop_class_uid not in self.accept_sop)
        )

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


def _has_value(ds: Any, keyword: str) -> bool:
    try:
        value = ds.get(keyword)
    except Exception:  # a malformed element carries nothing we can use
        return False
    return value not in (None, "") and str(value).strip() not in ("", "0")


def carries_dose(ds: Any) -> bool:
    """Does a (Secondary Capture) header carry dose from a dose-producing modality? Pure."""
    modality = str(ds.get("Modality") or "").strip().upper()
    if modality not in DOSE_MODALITIES:
        return False
    if any(_has_value(ds, k) for k in _DOSE_KEYWORDS):
        return True
    try:
        items = list(ds.get("ExposureDoseSequence") or ())
    except Exception:
        return False
    return any(_has_value(item, k) for item in items for k in _DOSE_KEYWORDS)
