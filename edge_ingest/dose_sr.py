"""Turn a radiation dose SR (RDSR) into a `DoseReport`: one depth-first walk, keyed on concept codes. Pure.

Only allow-listed concepts are read (the table is `sr_codes.py`); everything else, person names, observer
context, locations, comments and private-scheme items included, is never read, so it cannot leak. Raw
Irradiation Event UIDs leave only through `pseudonymize_uid`, DICOM DT strings only through `to_utc`, and the
one free-text concept (Acquisition Protocol) only through `scrub`.

Where pydicom bites (3.0.2):
- A DS that does not parse ("1,5") comes back as `str` with a UserWarning, several values as `MultiValue`;
  both are skipped here, value by value, and the walk goes on.
- Text in nested SR items is decoded with the root's SpecificCharacterSet when first read. A vendor that
  labels UTF-8 bytes as ISO_IR 100 therefore yields mojibake, repaired below (`_repair_utf8_read_as_latin1`).
- DT values are `str`, or `pydicom.valuerep.DT` when `config.datetime_conversion` is on; both are handled.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Final

from pydicom.dataset import Dataset
from pydicom.multival import MultiValue

from edge_ingest import sr_codes as C
from edge_ingest.units import Quantity, UnitError, normalise
from schemas.events import AccumulatedDose, DoseReport, IrradiationEvent

__all__ = ["extract_dose_report", "is_dose_report"]

Issue = Callable[[str], None]

# Errors pydicom raises on malformed or truncated elements; anything else is a bug and propagates.
_READ_ERRORS: Final = (ValueError, TypeError, AttributeError, IndexError, KeyError, OverflowError)
# Real RDSRs nest about 5 deep; the cap stops a hostile or corrupt tree from exhausting the stack.
_MAX_DEPTH: Final = 32

# Per-event NUM concepts → (IrradiationEvent field, quantity). The first value in an event wins (dual-source
# CT: source A's kVp and mA).
_EVENT_NUMS: Final[dict[C.Code, tuple[str, Quantity]]] = {
    C.MEAN_CTDIVOL: ("ctdivol_mgy", Quantity.DOSE_MGY),
    C.DLP: ("dlp_mgy_cm", Quantity.DLP_MGY_CM),
    C.SCANNING_LENGTH: ("scanning_length_mm", Quantity.LENGTH_MM),
    C.EXPOSURE_TIME: ("exposure_time_s", Quantity.TIME_S),
    C.EXPOSURE_TIME_RETIRED: ("exposure_time_s", Quantity.TIME_S),
    C.PITCH_FACTOR: ("pitch", Quantity.DIMENSIONLESS),
    C.KVP: ("kvp", Quantity.VOLTAGE_KV),
    C.XRAY_TUBE_CURRENT: ("tube_current_ma", Quantity.CURRENT_MA),
    C.SIZE_SPECIFIC_DOSE_ESTIMATE: ("ssde_mgy", Quantity.DOSE_MGY),
    C.WATER_EQUIVALENT_DIAMETER: ("water_equivalent_diameter_mm", Quantity.LENGTH_MM),
    C.DOSE_AREA_PRODUCT: ("dap_gy_cm2", Quantity.DAP_GY_CM2),
    C.DOSE_RP: ("dose_rp_mgy", Quantity.DOSE_MGY),
    C.ENTRANCE_EXPOSURE_AT_RP: ("entrance_exposure_mgy", Quantity.DOSE_MGY),
    C.IRRADIATION_DURATION: ("irradiation_duration_s", Quantity.TIME_S),
    C.AVERAGE_GLANDULAR_DOSE: ("agd_mgy", Quantity.DOSE_MGY),
    C.EXPOSURE_INDEX: ("exposure_index", Quantity.DIMENSIONLESS),
    C.TARGET_EXPOSURE_INDEX: ("target_exposure_index", Quantity.DIMENSIONLESS),
    C.DEVIATION_INDEX: ("deviation_index", Quantity.DIMENSIONLESS),
    C.EXPOSURE_MAS: ("exposure_mas", Quantity.CHARGE_MAS),
}

# Accumulated NUM concepts → (AccumulatedDose field, quantity), summed over per-plane containers.
_ACCUMULATED_NUMS: Final[dict[C.Code, tuple[str, Quantity]]] = {
    C.CT_DLP_TOTAL: ("ct_dlp_total_mgy_cm", Quantity.DLP_MGY_CM),
    C.DAP_TOTAL: ("dap_total_gy_cm2", Quantity.DAP_GY_CM2),
    C.FLUORO_DAP_TOTAL: ("fluoro_dap_total_gy_cm2", Quantity.DAP_GY_CM2),
    C.ACQUISITION_DAP_TOTAL: ("acquisition_dap_total_gy_cm2", Quantity.DAP_GY_CM2),
    C.DOSE_RP_TOTAL: ("dose_rp_total_mgy", Quantity.DOSE_MGY),
    C.FLUORO_DOSE_RP_TOTAL: ("fluoro_dose_rp_total_mgy", Quantity.DOSE_MGY),
    C.ACQUISITION_DOSE_RP_TOTAL: ("acquisition_dose_rp_total_mgy", Quantity.DOSE_MGY),
    C.TOTAL_FLUORO_TIME: ("fluoro_time_total_s", Quantity.TIME_S),
    C.TOTAL_ACQUISITION_TIME: ("acquisition_time_total_s", Quantity.TIME_S),
}
# Per-event CODE concepts → (IrradiationEvent field, value set). Unknown values map to None.
_EVENT_CODES: Final[dict[C.Code, tuple[str, dict[C.Code, str]]]] = {
    C.CT_ACQUISITION_TYPE: ("acquisition_type", C.CT_ACQUISITION_TYPES),
    C.CTDIW_PHANTOM_TYPE: ("ctdi_phantom", C.PHANTOMS),
    C.IRRADIATION_EVENT_TYPE: ("event_type", C.IRRADIATION_EVENT_TYPES),
    C.LATERALITY: ("laterality", C.LATERALITIES),
}
_AGD_FIELDS: Final[dict[str, str]] = {"L": "agd_left_mgy", "R": "agd_right_mgy", "B": "agd_both_mgy"}


def _ignore(_message: str) -> None:
    """Default issue sink: skipped values are simply dropped."""


# --- Reading primitives ----------------------------------------------------------------------------------------


def _first(seq: Any) -> Dataset | None:
    """First item of a sequence value, or None when absent or empty."""
    if not seq:
        return None
    item: Dataset = seq[0]
    return item


def _code_of(seq: Any) -> C.Code | None:
    """Canonical (CodeValue, Scheme) of the first item of a code sequence."""
    item = _first(seq)
    if item is None:
        return None
    value = item.get("CodeValue") or item.get("LongCodeValue") or item.get("URNCodeValue")
    if not value:
        return None
    return C.canonical(str(value), str(item.get("CodingSchemeDesignator") or ""))


def _label(key: C.Code) -> str:
    """PHI-free name of a concept for issue messages, e.g. "113830^DCM"."""
    return f"{key[0]}^{key[1]}"


def _single_float(raw: Any) -> float | None:
    """One finite float from a DS/FD value; None for absent, multi-valued or malformed values."""
    if raw is None or isinstance(raw, (MultiValue, list, tuple)):
        return None
    try:
        value = float(raw)
    except (TypeError, ValueError, OverflowError):
        return None
    return value if math.isfinite(value) else None


def _template_id(ds: Dataset) -> str | None:
    """ContentTemplateSequence[0].TemplateIdentifier, without blanks or a "TID" prefix."""
    item = _first(ds.get("ContentTemplateSequence"))
    if item is None:
        return None
    tid = str(item.get("TemplateIdentifier") or "").strip().upper().removeprefix("TID").strip()
    return tid or None


def _dt_string(raw: Any) -> str | None:
    """The DT text of a DateTime value, whether pydicom kept it as str or converted it."""
    if raw is None:
        return None
    text = getattr(raw, "original_string", None) or str(raw)
    return text.strip() or None


# --- Vendor repairs: one named function per defect -------------------------------------------------------------


def _repair_utf8_read_as_latin1(text: str, utf8_declared: bool) -> str:
    """Siemens (Flash sample): UTF-8 bytes under ISO_IR 100 read as "testÃ¦Ã¸Ã¥"; re-decode as UTF-8.

    Genuine Latin-1 text almost never forms valid multi-byte UTF-8, so a successful re-decode is the tell.
    """
    if utf8_declared or text.isascii():
        return text
    try:
        return text.encode("latin-1").decode("utf-8")
    except (UnicodeEncodeError, UnicodeDecodeError):
        return text


def _fallback_event_uid(sop_instance_uid: str | None, ordinal: int) -> str | None:
    """Events sent without an Irradiation Event UID: derive a stable one so a resend still de-duplicates."""
    if not sop_instance_uid:
        return None
    return f"{sop_instance_uid}.{ordinal}"


# --- The walk --------------------------------------------------------------------------------------------------


@dataclass(slots=True)
class _Event:
    """Values gathered inside one event container."""

    uid: str | None = None
    fields: dict[str, Any] = field(default_factory=dict)


@dataclass(slots=True)
class _Accumulated:
    """Values gathered inside one accumulated-dose container (one per plane in projection reports)."""

    plane: str | None = None
    values: dict[str, float] = field(default_factory=dict)
    agd: dict[str, float] = field(default_factory=dict)


class _Walker:
    """One depth-first pass over the content tree, routing each allow-listed concept by its container."""

    def __init__(
        self,
        *,
        pseudonymize_uid: Callable[[str], str],
        to_utc: Callable[[str], datetime | None],
        scrub: Callable[[str], str],
        issue: Issue,
        utf8_declared: bool,
        sop_instance_uid: str | None,
    ) -> None:
        self.pseudonymize_uid = pseudonymize_uid
        self.to_utc = to_utc
        self.scrub = scrub
        self.issue = issue
        self.utf8_declared = utf8_declared
        self.sop_instance_uid = sop_instance_uid
        self.events: list[IrradiationEvent] = []
        self.accumulated: list[_Accumulated] = []
        self.root: dict[str, Any] = {}
        self.event_count = 0

    def walk(self, items: Iterable[Dataset], event: _Event | None, acc: _Accumulated | None, depth: int) -> None:
        if depth > _MAX_DEPTH:
            self.issue(f"content tree deeper than {_MAX_DEPTH} levels: the rest of this branch is skipped")
            return
        for item in items:
            try:
                key = _code_of(item.get("ConceptNameCodeSequence"))
                if key is None or C.is_private_scheme(key[1]):
                    continue  # untitled items and private schemes (Philips 99PHI-IXR-XPER) are not ours to read
                self._item(item, key, event, acc, depth)
            except _READ_ERRORS as exc:
                self.issue(f"unreadable content item skipped ({type(exc).__name__})")

    def _item(self, item: Dataset, key: C.Code, event: _Event | None, acc: _Accumulated | None, depth: int) -> None:
        value_type = item.get("ValueType")
        if value_type == "CONTAINER":
            self._container(item, key, event, acc, depth)
            return
        if value_type == "NUM":
            self._num(item, key, event, acc)
        elif value_type == "CODE":
            self._code(item, key, event, acc)
        elif value_type == "UIDREF":
            if event is not None and key == C.IRRADIATION_EVENT_UID and event.uid is None:
                uid = str(item.get("UID") or "").strip().rstrip("\x00")
                event.uid = uid or None
        elif value_type == "DATETIME":
            self._datetime(item, key, event)
        elif value_type == "TEXT":
            if event is not None and key == C.ACQUISITION_PROTOCOL and "acquisition_protocol" not in event.fields:
                event.fields["acquisition_protocol"] = self._scrubbed(item.get("TextValue"))
        elif value_type == "PNAME":
            return  # a person and everything said about them (ID, organisation, role) stays unread
        # IMAGE, COMPOSITE and any other value type is never read.
        children = item.get("ContentSequence")
        if children:
            self.walk(children, event, acc, depth + 1)  # modifiers such as Laterality hang under their item

    def _container(
        self, item: Dataset, key: C.Code, event: _Event | None, acc: _Accumulated | None, depth: int
    ) -> None:
        if key in C.SKIPPED_CONTAINERS:
            return
        children = item.get("ContentSequence") or ()
        if key in C.EVENT_CONTAINERS:
            new_event = _Event()
            self.walk(children, new_event, None, depth + 1)
            self._finish_event(new_event)
        elif key in C.ACCUMULATED_CONTAINERS:
            block = _Accumulated()
            self.accumulated.append(block)
            self.walk(children, None, block, depth + 1)
        else:
            self.walk(children, event, acc, depth + 1)

    def _measured(self, item: Dataset, key: C.Code, quantity: Quantity) -> float | None:
        """The NUM value in the target unit, or None (absent, malformed or in an unknown unit)."""
        measured = _first(item.get("MeasuredValueSequence"))
        if measured is None:
            return None  # no value; NumericValueQualifierCodeSequence may say why
        raw = measured.get("FloatingPointValue")
        if raw is None:
            raw = measured.get("NumericValue")
        value = _single_float(raw)
        # A qualifier (NaN, "Measurement failure"...) explains an unusable value: drop it quietly.
        qualified = bool(item.get("NumericValueQualifierCodeSequence"))
        if value is None:
            if raw is not None and raw != "" and not qualified:
                self.issue(f"{_label(key)}: multi-valued or malformed number skipped")
            return None
        unit_item = _first(measured.get("MeasurementUnitsCodeSequence"))
        unit = str(unit_item.get("CodeValue") or "") if unit_item is not None else None
        try:
            return normalise(value, unit, quantity, _label(key))
        except UnitError as exc:
            if not qualified:
                self.issue(str(exc))
            return None

    def _num(self, item: Dataset, key: C.Code, event: _Event | None, acc: _Accumulated | None) -> None:
        if event is not None:
            spec = _EVENT_NUMS.get(key)
            if spec is not None and spec[0] not in event.fields:
                value = self._measured(item, key, spec[1])
                if value is not None:
                    event.fields[spec[0]] = value
            return
        if acc is None:
            return
        if key == C.ACCUMULATED_AGD:
            self._accumulated_agd(item, key, acc)
        elif key == C.TOTAL_NUMBER_OF_IRRADIATION_EVENTS:
            count = self._measured(item, key, Quantity.DIMENSIONLESS)
            if count is not None and "total_events" not in acc.values:
                acc.values["total_events"] = count
        else:
            spec = _ACCUMULATED_NUMS.get(key)
            if spec is not None and spec[0] not in acc.values:
                value = self._measured(item, key, spec[1])
                if value is not None:
                    acc.values[spec[0]] = value

    def _accumulated_agd(self, item: Dataset, key: C.Code, acc: _Accumulated) -> None:
        """Accumulated AGD (TID 10005): one NUM per breast, the side in a Laterality modifier under it."""
        side = None
        for child in item.get("ContentSequence") or ():
            if _code_of(child.get("ConceptNameCodeSequence")) == C.LATERALITY:
                side = C.LATERALITIES.get(_code_of(child.get("ConceptCodeSequence")) or ("", ""))
                break
        if side is None:
            self.issue(f"{_label(key)}: accumulated AGD without a known breast laterality skipped")
            return
        value = self._measured(item, key, Quantity.DOSE_MGY)
        if value is not None and side not in acc.agd:
            acc.agd[side] = value

    def _code(self, item: Dataset, key: C.Code, event: _Event | None, acc: _Accumulated | None) -> None:
        if key == C.DEVICE_ROLE_IN_PROCEDURE:
            if "device_role" not in self.root:
                self.root["device_role"] = C.DEVICE_ROLES.get(_code_of(item.get("ConceptCodeSequence")) or ("", ""))
            return
        if key == C.ACQUISITION_PLANE:
            plane = C.ACQUISITION_PLANES.get(_code_of(item.get("ConceptCodeSequence")) or ("", ""))
            if event is not None:
                event.fields.setdefault("acquisition_plane", plane)
            elif acc is not None and acc.plane is None:
                acc.plane = plane
            return
        if event is not None:
            self._event_code(item, key, event)
        elif acc is None:
            self._root_code(item, key)

    def _event_code(self, item: Dataset, key: C.Code, event: _Event) -> None:
        fields = event.fields
        if key == C.TARGET_REGION:
            if "target_region_code" not in fields:
                target = _first(item.get("ConceptCodeSequence"))
                if target is not None and target.get("CodeValue"):
                    # kept as sent (legacy SRT or SCT, or private like GE "99GEMS"); mapping is downstream's job
                    fields["target_region_code"] = (
                        f"{str(target.CodeValue).strip()}^{str(target.get('CodingSchemeDesignator') or '').strip()}"
                    )
                    fields["target_region"] = str(target.get("CodeMeaning") or "").strip() or None
            return
        table = _EVENT_CODES.get(key)
        if table is not None and table[0] not in fields:
            fields[table[0]] = table[1].get(_code_of(item.get("ConceptCodeSequence")) or ("", ""))

    def _root_code(self, item: Dataset, key: C.Code) -> None:
        if key == C.PROCEDURE_REPORTED and "procedure_reported" not in self.root:
            procedure = _code_of(item.get("ConceptCodeSequence"))
            self.root["procedure_reported"] = _label(procedure) if procedure else None
        elif key == C.SCOPE_OF_ACCUMULATION and "scope" not in self.root:
            self.root["scope"] = C.SCOPES.get(_code_of(item.get("ConceptCodeSequence")) or ("", ""))
        elif key == C.ACQUISITION_DEVICE_TYPE and "device_type" not in self.root:
            code = _code_of(item.get("ConceptCodeSequence")) or ("", "")
            self.root["device_type"] = C.ACQUISITION_DEVICE_TYPES.get(code)

    def _datetime(self, item: Dataset, key: C.Code, event: _Event | None) -> None:
        if event is not None:
            if key == C.DATETIME_STARTED and "datetime_started_utc" not in event.fields:
                event.fields["datetime_started_utc"] = self._utc(item.get("DateTime"), key)
        elif key == C.START_OF_XRAY_IRRADIATION and "start_utc" not in self.root:
            self.root["start_utc"] = self._utc(item.get("DateTime"), key)
        elif key == C.END_OF_XRAY_IRRADIATION and "end_utc" not in self.root:
            self.root["end_utc"] = self._utc(item.get("DateTime"), key)

    def _utc(self, raw: Any, key: C.Code) -> datetime | None:
        text = _dt_string(raw)
        if text is None:
            return None
        try:
            return self.to_utc(text)
        except ValueError:
            self.issue(f"{_label(key)}: date-time not understood, skipped")
            return None

    def _scrubbed(self, raw: Any) -> str | None:
        if raw is None:
            return None
        text = _repair_utf8_read_as_latin1(str(raw), self.utf8_declared).strip()
        if not text:
            return None
        scrubbed = self.scrub(text)
        return (scrubbed.strip() or None) if scrubbed else None  # a scrubber may blank the whole text

    def _finish_event(self, event: _Event) -> None:
        self.event_count += 1
        uid = event.uid or _fallback_event_uid(self.sop_instance_uid, self.event_count)
        if uid is None:
            self.issue("irradiation event without an Irradiation Event UID or SOP Instance UID skipped")
            return
        self.events.append(IrradiationEvent(event_pseudonym=self.pseudonymize_uid(uid), **event.fields))

    def totals(self) -> AccumulatedDose:
        """Sum the accumulated containers; an explicit "All Planes" container replaces the per-plane sum."""
        all_planes = [block for block in self.accumulated if block.plane == C.ALL_PLANES]
        blocks = all_planes or self.accumulated
        sums: dict[str, float] = {}
        for block in blocks:
            for name, value in block.values.items():
                sums[name] = sums.get(name, 0.0) + value
            for side, value in block.agd.items():
                name = _AGD_FIELDS[side]
                sums[name] = sums.get(name, 0.0) + value
        total_events = sums.pop("total_events", None)
        return AccumulatedDose(
            total_events=None if total_events is None else round(total_events),
            **sums,
        )


# --- Public API ------------------------------------------------------------------------------------------------


def is_dose_report(ds: Dataset) -> str | None:
    """The kind of X-Ray Radiation Dose Report: "CT" (TID 10011), "PROJECTION" (TID 10001), else None.

    The document title (113701, DCM) decides, not the SOP class (GE sends Enhanced SR). The template
    identifier then says which kind; without one, the root's containers or Procedure Reported do.
    """
    try:
        if _code_of(ds.get("ConceptNameCodeSequence")) != C.X_RAY_RADIATION_DOSE_REPORT:
            return None
        template = _template_id(ds)
        if template == C.TEMPLATE_CT_RADIATION_DOSE:
            return "CT"
        if template == C.TEMPLATE_PROJECTION_RADIATION_DOSE:
            return "PROJECTION"
        kind_by_procedure = None
        for item in ds.get("ContentSequence") or ():
            key = _code_of(item.get("ConceptNameCodeSequence"))
            if key in C.CT_CONTAINERS:
                return "CT"
            if key in C.PROJECTION_CONTAINERS:
                return "PROJECTION"
            if key == C.PROCEDURE_REPORTED and kind_by_procedure is None:
                procedure = _code_of(item.get("ConceptCodeSequence"))
                if procedure == C.PROCEDURE_CT:
                    kind_by_procedure = "CT"
                elif procedure in (C.PROCEDURE_PROJECTION, C.PROCEDURE_MAMMOGRAPHY):
                    kind_by_procedure = "PROJECTION"
        return kind_by_procedure
    except _READ_ERRORS:
        return None


def extract_dose_report(
    ds: Dataset,
    *,
    pseudonymize_uid: Callable[[str], str],
    to_utc: Callable[[str], datetime | None],
    scrub: Callable[[str], str],
    on_issue: Issue | None = None,
) -> DoseReport | None:
    """The `DoseReport` carried by `ds`, or None when `ds` is not a radiation dose SR.

    `pseudonymize_uid` receives each Irradiation Event UID, `to_utc` each DICOM DT string, `scrub` the
    Acquisition Protocol text. `on_issue` (optional) receives one PHI-free line per value that was skipped
    (malformed number, unknown unit, unreadable item); it names concept codes and units, never values.
    """
    kind = is_dose_report(ds)
    if kind is None:
        return None
    charset = ds.get("SpecificCharacterSet")
    charsets = [charset] if isinstance(charset, str) else list(charset or [])
    walker = _Walker(
        pseudonymize_uid=pseudonymize_uid,
        to_utc=to_utc,
        scrub=scrub,
        issue=on_issue or _ignore,
        utf8_declared=any(str(c).strip().upper() == "ISO_IR 192" for c in charsets),
        sop_instance_uid=str(ds.get("SOPInstanceUID") or "").strip() or None,
    )
    walker.walk(ds.get("ContentSequence") or (), None, None, 0)
    completion = str(ds.get("CompletionFlag") or "").strip().upper()
    return DoseReport(
        kind=kind,
        template_id=_template_id(ds),
        procedure_reported=walker.root.get("procedure_reported"),
        scope=walker.root.get("scope"),
        completion_flag=completion if completion in ("COMPLETE", "PARTIAL") else None,
        device_role=walker.root.get("device_role"),
        start_utc=walker.root.get("start_utc"),
        end_utc=walker.root.get("end_utc"),
        totals=walker.totals(),
        events=tuple(walker.events),
        acquisition_device_type=walker.root.get("device_type"),
    )


def person_names(ds: Dataset, max_items: int = 5000) -> list[str]:
    """Every person name (PNAME items: observers, operators, physicians) anywhere in the SR content tree.

    De-identification removes them from free text (the Acquisition Protocol) wherever they occur in the tree;
    they are collected before the tree is read, since a name may follow the text it appears in."""
    names: list[str] = []
    stack: list[Any] = list(ds.get("ContentSequence") or ())
    seen = 0
    while stack and seen < max_items:
        item = stack.pop()
        seen += 1
        try:
            if item.get("ValueType") == "PNAME" and item.get("PersonName"):
                names.append(str(item.get("PersonName")))
            stack.extend(item.get("ContentSequence") or ())
        except _READ_ERRORS:
            continue
    return names
